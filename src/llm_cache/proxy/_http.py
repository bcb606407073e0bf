"""HTTP plumbing of the proxy app: the request as the proxy sees it, and raw ASGI responses.

Kept free of cache logic: every other proxy module builds its answers with
:func:`_response` / :func:`_error` and relays streams with :func:`_add_headers`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

_JSON = "application/json"
_SSE = "text/event-stream; charset=utf-8"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(slots=True)
class ProxyRequest:
    """What the proxy needs of an HTTP request (header names lower-case, last one wins)."""

    method: str
    path: str  # after /v1, e.g. "/chat/completions"
    query: str
    headers: dict[str, str]
    body: bytes

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any], body: bytes) -> ProxyRequest:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        return cls(
            scope["method"],
            path.removeprefix("/v1"),
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            body,
        )


class _Disconnected(Exception):
    pass


async def _read_body(receive: Callable[[], Awaitable[Mapping[str, Any]]]) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


def _response(
    body: bytes,
    status: int = 200,
    *,
    media_type: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    extra: Mapping[str, str] | None = None,
) -> _BytesResponse:
    """A complete response; ``headers`` (upstream's) may not override the length or type."""
    raw = [(b"content-length", str(len(body)).encode("latin-1"))]
    if media_type is not None:
        raw.append((b"content-type", media_type.encode("latin-1")))
    if headers:
        for name, value in headers:
            lname = name.lower()
            if lname == "content-length" or (media_type is not None and lname == "content-type"):
                continue
            raw.append((lname.encode("latin-1"), value.encode("latin-1")))
    if extra:
        for name, value in extra.items():
            raw.append((name.encode("latin-1"), value.encode("latin-1")))
    return _BytesResponse(body, status, raw)


def _error(status: int, body: dict[str, Any], x_cache: str) -> Any:
    """A JSON error answer marked with ``X-Cache: x_cache``."""
    return _response(_dumps(body), status, media_type=_JSON, extra={"x-cache": x_cache})


class _BytesResponse:
    """A complete response as an ASGI callable: two messages, nothing else (the hit path)."""

    __slots__ = ("body", "raw_headers", "status_code")

    def __init__(self, body: bytes, status: int, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.body = body
        self.status_code = status
        self.raw_headers = raw_headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body})


def _add_headers(
    response: Any, headers: list[tuple[str, str]] | None, extra: Mapping[str, str] | None
) -> None:
    raw = response.raw_headers
    if headers:
        have = {name for name, _ in raw}
        for name, value in headers:
            lname = name.lower().encode("latin-1")
            if lname in have and lname in (b"content-type", b"content-length"):
                continue
            raw.append((lname, value.encode("latin-1")))
    if extra:
        for name, value in extra.items():
            raw.append((name.encode("latin-1"), value.encode("latin-1")))
