"""Connection limits uvicorn lacks: a uvicorn HTTP protocol (httptools) with guards.

uvicorn gives an idle keep-alive timeout (armed only after a first response) and
``limit_concurrency`` (which still accepts and holds every connection, answering 503
only once a request's headers are in). Measured against the landed proxy: 19,990 idle
connections locked out new clients, and a connection that never sent a byte, or sent
half a header, was still open after 90 s. This protocol adds, per connection:

* a cap on open connections: the next one gets a 503 with ``Retry-After`` and is closed
  at once (it never holds a slot);
* the idle timeout from the moment of connecting, not only after a response;
* a header-read timeout (first byte to end of headers, 408) and a header size limit (431);
* a body timeout (end of headers to end of body, 408): a client trickling its body cannot
  hold a connection and a request task for longer.

Every refusal is a complete HTTP response with an OpenAI-style JSON error body, followed
by closing the connection. The request body size is limited by the app (it also covers
other ASGI servers), see :func:`._http._read_body`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from itertools import chain
from typing import Any

from .._imports import require
from .limits import ProxyLimits
from .upstream import error_body

_REASONS = {
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def raw_error(status: int, message: str, code: str, retry_after: int | None = None) -> bytes:
    """A whole ``Connection: close`` HTTP/1.1 error response, written without the app."""
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    body = json.dumps(error_body(message, code, type_)).encode()
    head = [
        b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Error")),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
    ]
    if retry_after is not None:
        head.append(b"retry-after: %d" % retry_after)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


# What a connection is waiting for, and what happens when its deadline passes.
_IDLE, _HEADERS, _BODY = "idle", "headers", "body"


def _sweep_interval(limits: ProxyLimits) -> float:
    """How often deadlines are checked: a tenth of the shortest timeout, 50 ms to 1 s."""
    shortest = min(limits.header_timeout, limits.idle_timeout, limits.body_timeout)
    return min(1.0, max(0.05, shortest / 10))


def guarded_protocol(
    limits: ProxyLimits, on_refusal: Callable[[str], None] | None = None
) -> type[Any]:
    """A uvicorn ``http=`` protocol class enforcing ``limits`` (needs httptools).

    ``on_refusal(code)`` is called for each refusal (the proxy counts them in /metrics).

    Deadlines are timestamps checked by one sweep over the open connections every
    :func:`_sweep_interval`, not a timer per request: a uvloop timer costs ~4.6 us to arm
    and cancel (measured), two a request were +12 us on a ~85 us cached answer; a
    timestamp costs a clock read. A timeout is therefore enforced within one interval.
    """
    count = on_refusal or (lambda code: None)
    interval = _sweep_interval(limits)
    sweeper: dict[str, Any] = {"handle": None}
    require("httptools", "proxy", "the llm-cache proxy's HTTP server")
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    def sweep(loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        now = loop.time()
        for connection in list(connections):
            deadline = getattr(connection, "_deadline", None)
            if deadline is not None and now >= deadline:
                connection._expire()
        sweeper["handle"] = (
            loop.call_later(interval, sweep, loop, connections) if connections else None
        )

    class GuardedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol with the guards of :mod:`llm_cache.proxy._guard`."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._refused = False
            self._awaiting_headers = True
            self._header_bytes = 0  # bytes received while a request's headers are incomplete
            self._oversize = False
            self._deadline: float | None = None
            self._waiting_for = _IDLE

        def _wait(self, what: str, seconds: float) -> None:
            self._waiting_for = what
            self._deadline = self.loop.time() + seconds

        # -- connection ---------------------------------------------------------------
        def connection_made(self, transport: Any) -> None:
            if len(self.connections) >= limits.max_connections:
                # Refused before it is counted or parsed: it holds nothing.
                self._refused = True
                self.transport = transport
                count("too_many_connections")
                transport.write(
                    raw_error(
                        503,
                        f"the proxy has {limits.max_connections} open connections, its limit; "
                        "retry later",
                        "too_many_connections",
                        limits.retry_after,
                    )
                )
                transport.close()
                return
            super().connection_made(transport)
            # uvicorn arms its keep-alive timer only after a response: a connection that
            # never sends a byte would otherwise be held forever.
            self._wait(_IDLE, limits.idle_timeout)
            if sweeper["handle"] is None:
                sweeper["handle"] = self.loop.call_later(
                    interval, sweep, self.loop, self.connections
                )

        def connection_lost(self, exc: Exception | None) -> None:
            self._deadline = None
            if self._refused:
                return
            super().connection_lost(exc)

        def _expire(self) -> None:
            self._deadline = None
            if self._waiting_for == _HEADERS:
                self._reject(
                    408,
                    f"the request headers did not arrive within {limits.header_timeout:g} s",
                    "header_timeout",
                )
            elif self._waiting_for == _BODY:
                self._reject(
                    408,
                    f"the request body did not arrive within {limits.body_timeout:g} s",
                    "body_timeout",
                )
            elif not self.transport.is_closing():
                self.transport.close()

        def _reject(self, status: int, message: str, code: str) -> None:
            """Answer with an error (unless a response has begun) and close."""
            self._deadline = None
            if self.transport.is_closing():
                return
            count(code)
            cycle = self.cycle
            if cycle is None or cycle.response_complete or not cycle.response_started:
                if cycle is not None:
                    cycle.disconnected = True  # the app's own answer, if any, is dropped
                self.transport.write(raw_error(status, message, code))
            self.transport.close()

        # -- headers ------------------------------------------------------------------
        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._awaiting_headers:
                self._header_bytes += len(data)
                if self._waiting_for != _HEADERS or self._deadline is None:
                    # self._wait(_HEADERS, ...), inlined: this runs for every request
                    self._waiting_for = _HEADERS
                    self._deadline = self.loop.time() + limits.header_timeout
            super().data_received(data)
            # Two checks: bytes received while the headers are incomplete (a header block
            # that never ends), and the size of a complete header block that arrived in
            # one read (checked in on_headers_complete, which then starts no request).
            if (
                self._oversize
                or (self._awaiting_headers and self._header_bytes > limits.max_header_bytes)
            ) and not self.transport.is_closing():
                self._reject(
                    431,
                    f"the request line and headers exceed {limits.max_header_bytes} bytes",
                    "headers_too_large",
                )

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._awaiting_headers = True
            if self._waiting_for != _HEADERS or self._deadline is None:
                self._wait(_HEADERS, limits.header_timeout)

        def on_headers_complete(self) -> None:
            self._awaiting_headers = False
            self._header_bytes = 0
            # The parsed size (+4 a line: ": " and CRLF) of the request line and headers,
            # summed in C (a generator here was ~7 Python calls a request).
            headers = self.headers
            size = len(self.url) + 4 * len(headers) + sum(map(len, chain.from_iterable(headers)))
            if size > limits.max_header_bytes:
                self._oversize = True  # refused by data_received once the parser returns
                return
            super().on_headers_complete()
            # Cleared by on_message_complete, which follows at once for a bodyless request.
            # (self._wait(_BODY, ...), inlined: this runs for every request.)
            self._waiting_for = _BODY
            self._deadline = self.loop.time() + limits.body_timeout

        def on_body(self, body: bytes) -> None:
            if not self._oversize:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if self._oversize:
                return
            # While the app works and answers, no deadline; after the answer, uvicorn's
            # keep-alive timer closes an idle connection.
            self._deadline = None
            self._waiting_for = _IDLE
            self._awaiting_headers = True
            self._header_bytes = 0
            super().on_message_complete()

    return GuardedHttpToolsProtocol
