"""A list of prompts for an upstream that takes one prompt per completions request.

llama.cpp's server (and others) refuse a ``/v1/completions`` request whose ``prompt`` is a
list of several prompts (llama.cpp: HTTP 500). OpenAI's API takes one, so clients send
them. When the upstream refuses such a request, the proxy sends it again one prompt per
request (concurrently) and answers with one response built from theirs
(:func:`~llm_cache.protocols.openai_completions.merge_prompt_responses`), which is stored
under the list's key like any answer. The refusal is remembered for the proxy's life
(once a one-prompt request worked, so that a request refused either way, e.g. too long,
does not mislabel the upstream), and later lists go one by one at once, as the
:mod:`llm_cache.llms` models do (:mod:`llm_cache.llms.plans`).

Streamed lists are passed through as they are: a stream cannot be re-sent once started.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from ..llms.plans import REFUSAL_STATUSES
from ..protocols.openai_completions import merge_prompt_responses
from ._http import _dumps
from .upstream import Upstream, UpstreamResponse

__all__ = ["send_completions"]

logger = logging.getLogger("llm_cache.proxy")

class _Buffered:
    """A body already read, behind the part of ``httpx.Response`` the relay uses."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def aread(self) -> bytes:
        return self.data

    async def aclose(self) -> None:
        return None


def prompt_list(content: bytes) -> tuple[dict[str, Any], list[Any]] | None:
    """The body and its prompts if ``content`` asks for several prompts at once (strings,
    or token lists); ``None`` for one prompt (a string, or one list of token ids)."""
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    prompts = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(prompts, list) or len(prompts) < 2:
        return None
    if all(isinstance(p, str) for p in prompts) or all(isinstance(p, list) for p in prompts):
        return body, prompts
    return None


async def send_completions(
    upstream: Upstream, path: str, headers: Mapping[str, str], content: bytes
) -> UpstreamResponse:
    """Send a non-streamed completions request; a list of prompts the upstream refuses is
    sent again one prompt per request and answered as one response (see the module
    docstring). Raises :class:`~.upstream.UpstreamError` as ``Upstream.send`` does."""
    found = prompt_list(content)
    if found is None:
        return await upstream.send("POST", path, headers=headers, content=content)
    body, prompts = found
    if not upstream.refuses_prompt_lists:
        up = await upstream.send("POST", path, headers=headers, content=content)
        if up.status not in REFUSAL_STATUSES:
            return up
        await _read(upstream, up)  # the refusal: read and closed, never shown to the client
    answers = await asyncio.gather(
        *(_send_read(upstream, path, headers, {**body, "prompt": p}) for p in prompts),
        return_exceptions=True,
    )
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    done: list[tuple[UpstreamResponse, bytes]] = answers  # type: ignore[assignment]
    failed = next(((up, data) for up, data in done if up.status != 200), None)
    if failed is not None:
        return _buffered(*failed)  # the first failure, as the upstream gave it
    try:
        merged = merge_prompt_responses([json.loads(data) for _, data in done])
    except (ValueError, UnicodeDecodeError, AttributeError):
        return _buffered(*done[0])  # not completions responses: let the client see one
    if not upstream.refuses_prompt_lists:
        upstream.refuses_prompt_lists = True
        logger.info(
            "llm-cache proxy: %s refused a completions request with several prompts; "
            "sending one prompt per request to it from now on",
            upstream.redacted_url,
        )
    first = done[0][0]
    return UpstreamResponse(200, first.headers, "application/json", _Buffered(_dumps(merged)), first.started)


async def _send_read(
    upstream: Upstream, path: str, headers: Mapping[str, str], body: dict[str, Any]
) -> tuple[UpstreamResponse, bytes]:
    up = await upstream.send("POST", path, headers=headers, content=_dumps(body))
    return up, await _read(upstream, up)


async def _read(upstream: Upstream, up: UpstreamResponse) -> bytes:
    try:
        return await up.read()
    except Exception as exc:  # noqa: BLE001 - any read failure is an upstream failure
        raise upstream.read_error(exc) from None


def _buffered(up: UpstreamResponse, data: bytes) -> UpstreamResponse:
    return UpstreamResponse(up.status, up.headers, up.content_type, _Buffered(data), up.started)
