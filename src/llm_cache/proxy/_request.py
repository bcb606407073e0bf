"""Request parsing and keying: the tenant partition and the cache key of a request body.

Both are pure functions of their inputs, memoised (bounded LRU) because repeats are the
hot path of a cache; see :class:`_RequestParsing`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._state import _ProxyState
from .keys import RequestKey, api_key_of, key_namespace, request_key, valid_namespace

# Memo limits: the parse memo only keeps small bodies, so it stays within a few MB.
_PARSE_MEMO_ENTRIES = 2048
_PARSE_MEMO_MAX_BODY = 16 * 1024
_NAMESPACE_MEMO_ENTRIES = 1024


@dataclass(slots=True)
class _Parsed:
    """A request body as the cache sees it (memoised by raw bytes: repeats are the hot path)."""

    body: dict[str, Any]
    key: RequestKey | None
    stream: bool
    include_usage: bool
    semantic: bool  # may be matched by meaning: chat, or a completion with one string prompt


class _RequestParsing(_ProxyState):
    """Mixin of :class:`~.app.CachingProxy`: who is asking, and for what."""

    def namespace(self, headers: Mapping[str, str]) -> str | None:
        """The tenant partition of a request; ``None`` if the namespace header is invalid."""
        parts = []
        if not self.share_across_keys:
            credential = (
                headers.get("authorization"),
                headers.get("api-key"),
                headers.get("x-api-key"),
            )
            tenant = self._namespace_memo.get_recent(credential)
            if tenant is None:
                tenant = key_namespace(api_key_of(headers))
                self._namespace_memo.put(credential, tenant)
            parts.append(tenant)
        named = headers.get(self.namespace_header)
        if named is not None:
            if not valid_namespace(named):
                return None
            parts.append("n:" + named)
        return "/".join(parts) if parts else "shared"

    def _parse(self, endpoint: str, raw: bytes, namespace: str) -> _Parsed | None:
        """The body and cache key of a request; ``None`` if the body is not a JSON object."""
        memo_key = (endpoint, namespace, raw)
        memoise = len(raw) <= _PARSE_MEMO_MAX_BODY
        if memoise:
            parsed = self._parse_memo.get_recent(memo_key)
            if parsed is not None:
                return parsed
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(body, dict):
            return None
        try:
            key = request_key(endpoint, body, namespace)
        except (ValueError, TypeError):
            key = None  # e.g. NaN or a malformed message: let the upstream judge it
        stream = body.get("stream") is True and endpoint != "embeddings"
        options = body.get("stream_options")
        include_usage = (
            stream and isinstance(options, dict) and options.get("include_usage") is True
        )
        semantic = key is not None and key.semantic
        parsed = _Parsed(body, key, stream, include_usage, semantic)
        if memoise:
            self._parse_memo.put(memo_key, parsed)  # shared: never mutate parsed.body
        return parsed
