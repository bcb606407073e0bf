"""``POST /v1/cache/feedback``: a client reports that a (semantic) cache answer was right or wrong.

Body: ``{"path": "/v1/chat/completions", "request": {...the request as sent...},
"correct": false}``. The proxy derives the request's cache identity exactly as it did
when it answered (same endpoint, same tenant: the namespace header and the credential,
unless keys share the cache), so a client needs nothing but what it sent. The verdict
goes to the semantic cache's :meth:`~llm_cache.semantic.cache.SemanticCache.feedback`:
a wrong semantic hit is never served again for that request and tightens the learned
bound (``max_error_rate``); a wrong exact semantic-cache entry is deleted.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ..errors import ConfigurationError
from ._http import _JSON, _dumps, _read_body
from ._protocols import ENDPOINTS

__all__ = ["feedback_endpoint"]


def _answer(status: int, body: dict[str, Any]) -> Any:
    from starlette.responses import Response

    return Response(_dumps(body), status_code=status, media_type=_JSON)


def _bad(message: str) -> Any:
    return _answer(400, {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_feedback"}})


async def feedback_endpoint(proxy: Any, request: Any) -> Any:
    """Apply one verdict (see the module docstring)."""
    # The same admission as every /v1 route: client keys, the API key's tenant, the namespace
    # header (a Refusal is answered by the app's handler), and the same body limit.
    namespace = proxy.tenant(request.headers)
    raw = await _read_body(request.receive, proxy.limits.max_body_bytes, request.headers.get("content-length"))
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _bad("the body must be JSON: {\"path\": \"/v1/chat/completions\", \"request\": {...}, \"correct\": false}")
    if not isinstance(body, dict) or not isinstance(body.get("request"), dict) or not isinstance(body.get("correct"), bool):
        return _bad("the body needs \"request\" (the request object as sent) and \"correct\" (true or false)")
    path = str(body.get("path", "/v1/chat/completions")).removeprefix("/v1")
    endpoint = ENDPOINTS.get(path)
    if endpoint is None:
        return _bad(f"unknown path {body.get('path')!r}: use one of " + ", ".join("/v1" + p for p in ENDPOINTS))
    parsed = proxy._parse(endpoint, json.dumps(body["request"]).encode(), namespace)
    if parsed is None or parsed.key is None or not parsed.semantic:
        return _bad("this request is not answered by the semantic cache (only chat and single-prompt completions are)")
    cache = proxy.semantic_cache
    if cache is None or not callable(getattr(cache, "feedback", None)):
        return _bad("the proxy runs without a semantic cache that takes feedback (start it with one)")
    try:
        await asyncio.to_thread(cache.feedback, parsed.key.prompt, parsed.key.llm_string, body["correct"])
    except ConfigurationError as exc:
        return _bad(str(exc))
    return _answer(200, {"recorded": True, "correct": body["correct"]})
