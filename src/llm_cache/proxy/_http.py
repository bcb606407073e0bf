"""HTTP plumbing of the proxy app: the request as the proxy sees it, and raw ASGI responses.

Kept free of cache logic: every other proxy module builds its answers with
:func:`_response` / :func:`_error` and relays streams with :func:`_add_headers`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ._protocols import error_for

_JSON = "application/json"
_SSE = "text/event-stream; charset=utf-8"
_PATH_SAFE = "/:@!$&'()*+,;=-._~"  # RFC 3986 pchar and "/": kept as they are
# A path made only of what quote() keeps as it is (ASCII letters and digits, _PATH_SAFE):
# quote() would return it unchanged, so the hot path skips the call.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=._~-]*").fullmatch


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
    def from_scope(
        cls, scope: Mapping[str, Any], body: bytes, headers: dict[str, str] | None = None
    ) -> ProxyRequest:
        """The request of an ASGI ``scope``; ``headers``: :func:`_headers_of` it, if already made."""
        if headers is None:
            headers = _headers_of(scope)
        # The server has percent-decoded the path: encode it again for the upstream URL
        # (a decoded "%09" or "%3F" would otherwise be a tab or a query in that URL).
        path = scope["path"]
        if _PLAIN_PATH(path) is None:
            path = quote(path, safe=_PATH_SAFE, errors="replace")
        return cls(
            scope["method"],
            path.removeprefix("/v1"),
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            body,
        )


class _Disconnected(Exception):
    pass


class Refusal(Exception):
    """A request the proxy answers itself, with an OpenAI-style error body.

    A 4xx for bad input (never a store error, never an upstream call), 503 with
    ``Retry-After`` at a cap, 504 for ``only-if-cached`` without an entry.
    """

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        *,
        param: str | None = None,
        retry_after: int | None = None,
        close: bool = False,
        x_cache: str = "BYPASS",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.close = close  # the rest of the request was not read: the connection cannot be reused
        self.x_cache = x_cache

    def response(self, endpoint: str = "other") -> _BytesResponse:
        """The answer, with an error body in the endpoint's protocol (Anthropic's or OpenAI's)."""
        if self.status == 504:
            type_ = "cache_miss"
        else:
            type_ = "server_error" if self.status >= 500 else "invalid_request_error"
        body = error_for(endpoint, self.status, self.message, self.code, type_)
        error = body.get("error")
        if self.param is not None and isinstance(error, dict) and "param" in error:
            error["param"] = self.param
        extra = {"x-cache": self.x_cache}
        if self.retry_after is not None:
            extra["retry-after"] = str(self.retry_after)
        if self.close:
            extra["connection"] = "close"
        return _response(_dumps(body), self.status, media_type=_JSON, extra=extra)


def _headers_of(scope: Mapping[str, Any]) -> dict[str, str]:
    """The request headers of an ASGI scope, as :class:`ProxyRequest` holds them."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def _read_body(
    receive: Callable[[], Awaitable[Mapping[str, Any]]],
    limit: int,
    declared: str | None = None,
) -> bytes:
    """The request body, at most ``limit`` bytes (else :class:`Refusal` 413).

    Enforced while reading: a declared ``Content-Length`` over the limit is refused before
    a byte of the body is read, and a chunked body as soon as it passes the limit, so the
    proxy never holds more than ``limit`` bytes of one request. ``declared``: the request's
    ``Content-Length`` header, if it has one.
    """
    if declared is not None:
        try:
            too_large = int(declared) > limit
        except ValueError:
            too_large = False  # not a number: the limit is enforced while reading
        if too_large:
            raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


def _too_large(limit: int) -> Refusal:
    return Refusal(
        413,
        f"the request body is larger than this proxy's limit of {limit} bytes",
        "request_too_large",
        close=True,
    )


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
