"""The upstream client: one pooled ``httpx.AsyncClient`` per proxy app.

Keys: by default the client's own ``Authorization`` (or Azure ``api-key``) header is
passed through, so each caller pays with its own key and the proxy holds no secret. With
``api_key`` set, that fixed key replaces whatever the client sent. Either way the key only
ever travels in the upstream request's headers: it is not part of a cache key (the
namespace is a hash), a stored value, a log line or an error message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._imports import require
from ..urls import redact_url

__all__ = ["Upstream", "UpstreamError", "UpstreamResponse", "error_body"]

# Request headers worth forwarding; everything else (Host, Content-Length, Cookie, our
# own cache headers, hop-by-hop headers) is the proxy's business, not the upstream's.
_FORWARD = frozenset(
    {
        "authorization",
        "api-key",
        "x-api-key",  # Anthropic's
        "content-type",
        "accept",
        "user-agent",
        "idempotency-key",
    }
)
_FORWARD_PREFIXES = ("openai-", "x-stainless-", "anthropic-")

# Response headers never copied back: hop-by-hop ones, and those the proxy recomputes
# (httpx decodes the body, so the length and encoding change).
_DROP_RESPONSE = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "date",
        "server",
        # An upstream that is itself a caching proxy must not speak for this one.
        "x-cache",
        "x-cache-similarity",
        "x-cache-coalesced",
        "age",
    }
)


def error_body(message: str, code: str, type_: str = "upstream_error") -> dict[str, Any]:
    """An OpenAI-style error body, which the SDK turns into its exception's message."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class UpstreamError(Exception):
    """The upstream could not be reached or broke the connection.

    ``status`` is what the client gets: 502 (unreachable, protocol error) or 504 (timeout).
    """

    def __init__(self, kind: str, status: int, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return error_body(self.message, f"upstream_{self.kind}")


@dataclass(slots=True)
class UpstreamResponse:
    """Status and headers of an upstream answer; the body is read through ``response``."""

    status: int
    headers: list[tuple[str, str]]
    content_type: str
    response: Any  # httpx.Response, opened in streaming mode
    started: float

    async def read(self) -> bytes:
        try:
            return await self.response.aread()
        finally:
            await self.response.aclose()


class Upstream:
    """Sends requests to an OpenAI-compatible base URL (``https://api.openai.com/v1``)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        max_connections: int = 256,
        transport: Any = None,
    ) -> None:
        httpx = require("httpx", "proxy", "the llm-cache proxy")
        self._httpx = httpx
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        #: Whether it refused a completions request with several prompts (see ._split).
        self.refuses_prompt_lists = False
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            # Generations can take minutes without a byte on the wire (non-streamed), so
            # the read timeout is long; connecting to a dead host fails fast instead.
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=64),
            follow_redirects=False,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"Upstream({redact_url(self.base_url)!r}, fixed_key={self._api_key is not None})"

    @property
    def redacted_url(self) -> str:
        return redact_url(self.base_url)

    def forward_headers(self, headers: Mapping[str, str]) -> dict[str, str | bytes]:
        """The client's headers that go upstream, with the fixed key substituted if set.

        Values go as the bytes the client sent (headers are decoded as latin-1): httpx
        would refuse a non-ASCII ``str`` value, and the client's bad header is not an
        upstream failure.
        """
        out: dict[str, str | bytes] = {
            name: value.encode("latin-1")
            for name, value in headers.items()
            if name in _FORWARD or name.startswith(_FORWARD_PREFIXES)
        }
        if self._api_key is not None:
            out.pop("api-key", None)
            if "x-api-key" in out:  # an Anthropic client: the fixed key goes where it sent its own
                out["x-api-key"] = self._api_key
                out.pop("authorization", None)
            else:
                out["authorization"] = f"Bearer {self._api_key}"
        return out

    @staticmethod
    def response_headers(headers: Any) -> list[tuple[str, str]]:
        return [(k, v) for k, v in headers.multi_items() if k.lower() not in _DROP_RESPONSE]

    async def send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        params: Any = None,
    ) -> UpstreamResponse:
        """Send a request and return once the status and headers are in (body unread).

        Raises :class:`UpstreamError` when the upstream cannot be reached or times out.
        """
        httpx = self._httpx
        started = time.perf_counter()
        request = self._client.build_request(
            method,
            path.lstrip("/"),
            headers=self.forward_headers(headers),
            content=content,
            params=params,
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            kind = "connect_error" if isinstance(exc, httpx.ConnectTimeout) else "timeout"
            status = 502 if kind == "connect_error" else 504
            raise UpstreamError(kind, status, self._describe(exc)) from None
        except httpx.ConnectError as exc:
            raise UpstreamError("connect_error", 502, self._describe(exc)) from None
        except httpx.HTTPError as exc:
            raise UpstreamError("protocol_error", 502, self._describe(exc)) from None
        return UpstreamResponse(
            status=response.status_code,
            headers=self.response_headers(response.headers),
            content_type=response.headers.get("content-type", ""),
            response=response,
            started=started,
        )

    def read_error(self, exc: BaseException) -> UpstreamError:
        """Map an exception raised while reading a body to an :class:`UpstreamError`."""
        httpx = self._httpx
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamError("timeout", 504, self._describe(exc))
        return UpstreamError("protocol_error", 502, self._describe(exc))

    def _describe(self, exc: BaseException) -> str:
        # Exception texts carry no headers, so no key; the URL is redacted of any password.
        detail = str(exc) or type(exc).__name__
        return f"upstream {self.redacted_url} failed: {type(exc).__name__}: {detail}"

    async def aclose(self) -> None:
        await self._client.aclose()
