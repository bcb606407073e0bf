"""Misses: start a coalesced upstream call (a :class:`~.flights.Flight`) and relay it.

The flight task reads the upstream answer (streamed or not) and stores it; each client of
the flight, the one that started it and any that joined, gets its answer from here.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ._cache_io import _CacheIO
from ._http import _JSON, _SSE, ProxyRequest, _add_headers, _dumps, _error, _response
from ._request import _Parsed
from ._split import send_completions
from .codec import generations_to_response
from ..errors import CorruptEntryError
from .flights import Flight
from .keys import RequestKey
from .leases import Step, coordinate, lease_name
from ._protocols import NAMED_EVENTS, USAGE_CHUNK, error_for, protocol_of, render_events, stream_error
from .sse import DONE_EVENT, SSEParser, format_event
from .upstream import UpstreamError, UpstreamResponse

logger = logging.getLogger("llm_cache.proxy")


def _render(data: str, parsed: Any, strip_usage: bool, name: str | None = None) -> bytes:
    """One upstream event as this client gets it."""
    if strip_usage and isinstance(parsed, dict) and "usage" in parsed:
        if parsed.get("choices") == [] and parsed.get("usage") is not None:
            return b""  # the usage chunk the proxy asked for, not the client
        return format_event(_dumps({k: v for k, v in parsed.items() if k != "usage"}))
    return format_event(data, name)


def _error_of(endpoint: str, error: UpstreamError) -> dict[str, Any]:
    """An upstream failure as the endpoint's protocol reports errors."""
    return error_for(endpoint, error.status, error.message, f"upstream_{error.kind}")


class _FlightRelay(_CacheIO):
    """Mixin of :class:`~.app.CachingProxy`: upstream calls shared by identical requests."""

    def _start_flight(
        self,
        request: ProxyRequest,
        key: RequestKey,
        parsed: _Parsed,
        *,
        register: bool,
        shared: bool = True,
    ) -> Flight:
        """Start the flight of a miss; ``shared``: coalesce with other processes too (see
        :mod:`.leases`; off for ``no-cache`` refreshes, which must not take a stored answer)."""
        body, stream, include_usage = parsed.body, parsed.stream, parsed.include_usage
        injected = False
        content = request.body
        if stream and self.stream_usage and not include_usage and key.endpoint in USAGE_CHUNK:
            # Ask for the usage chunk even if this client did not, so that the stored answer
            # has usage (for tokens-saved metrics and for non-streamed hits); it is removed
            # again from what this client receives.
            content = _dumps(
                {
                    **body,
                    "stream_options": {**(body.get("stream_options") or {}), "include_usage": True},
                }
            )
            injected = True
        flight = Flight(key.flight_key, stream=stream, injected_usage=injected)
        if register:
            self._flights[key.flight_key] = flight
        found: Callable[[], Awaitable[dict[str, Any] | None]] | None = None
        if shared and self.lease_store is not None:
            found = functools.partial(self._stored_answer, key, body)

        task = asyncio.get_running_loop().create_task(
            self._fly(flight, key, request.path, request.headers, content, parsed.semantic, found)
        )
        flight.task = task
        # A done callback runs even if the task is cancelled before its first step (a
        # finally inside _fly would not): the upstream slot taken for it is always freed.
        task.add_done_callback(lambda _: self._free_upstream_slot())
        return flight

    async def _fly(
        self,
        flight: Flight,
        key: RequestKey,
        path: str,
        headers: dict[str, str],
        content: bytes,
        semantic: bool,
        found: Callable[[], Awaitable[dict[str, Any] | None]] | None = None,
    ) -> None:
        endpoint = key.endpoint
        metrics = self.metrics
        metrics.inflight += 1
        up: UpstreamResponse | None = None
        lease = None
        try:
            if found is not None and self.lease_store is not None:
                outcome = await coordinate(
                    self.lease_store, lease_name(key.prompt, key.llm_string), found
                )
                metrics.lease(endpoint, outcome.step.value)
                if outcome.step is Step.SERVE and outcome.found is not None:
                    # Another process called upstream and stored the answer: share it.
                    flight.remote = True
                    flight.result = outcome.found
                    flight.set_head(200, [], sse=False)
                    flight.finish()
                    return
                lease = outcome.lease
            try:
                if endpoint == "completions" and not flight.stream:
                    up = await send_completions(self.upstream, path, headers, content)  # lists split if refused
                else:
                    up = await self.upstream.send("POST", path, headers=headers, content=content)
            except UpstreamError as exc:
                metrics.upstream_error(endpoint, exc.kind)
                logger.warning("llm-cache proxy: %s", exc.message)
                flight.fail(exc)
                return
            if up.status == 200 and up.content_type.startswith("text/event-stream"):
                flight.set_head(200, up.headers, sse=True)
                await self._read_stream(flight, up, endpoint)
            else:
                try:
                    data = await up.read()
                except Exception as exc:  # noqa: BLE001 - any read failure is an upstream failure for the client
                    error = self.upstream.read_error(exc)
                    metrics.upstream_error(endpoint, error.kind)
                    flight.fail(error)
                    return
                flight.body = data
                if up.status == 200 and len(data) > self.limits.max_stored_bytes:
                    flight.storable = False  # passed on whole, kept in no store
                    metrics.not_stored_answer(endpoint, "too_large")
                if up.status == 200:
                    try:
                        parsed = json.loads(data)
                    except (ValueError, UnicodeDecodeError):
                        parsed = None
                    flight.result = parsed if isinstance(parsed, dict) else None
                else:
                    metrics.upstream_error(endpoint, "status")
                flight.set_head(up.status, up.headers, sse=False)
                flight.finish()
            metrics.upstream(endpoint, up.status, time.perf_counter() - up.started)
            if flight.result is not None and flight.storable:
                await self._store(key, flight.result, semantic)
        except asyncio.CancelledError:
            if not flight.finished:
                flight.fail(
                    UpstreamError("cancelled", 502, "every client of this stream disconnected")
                )
            raise
        except Exception as exc:  # a bug here must not leave followers waiting forever
            logger.exception("llm-cache proxy: upstream call failed unexpectedly")
            if not flight.finished:
                flight.fail(UpstreamError("proxy_error", 502, f"proxy error: {type(exc).__name__}"))
        finally:
            if up is not None and flight.sse:
                await up.response.aclose()
            if lease is not None:  # after the store: followers elsewhere now find the entry
                await lease.finish()
            metrics.inflight -= 1
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
            self._completions += 1

    async def _read_stream(self, flight: Flight, up: UpstreamResponse, endpoint: str) -> None:
        named = endpoint in NAMED_EVENTS
        parser = SSEParser(named=named)
        assembler = protocol_of(endpoint).assembler(None)
        loads = json.loads

        def accept(events: list[Any]) -> None:
            for event in events:
                name, data = event if named else (None, event)
                if data.strip() == "[DONE]":
                    flight.saw_done = True
                    continue
                try:
                    parsed = loads(data)
                except ValueError:
                    parsed = None
                assembler.add(name, parsed)
                flight.push(data, parsed, name)

        size = 0
        try:
            async for chunk in up.response.aiter_bytes():
                size += len(chunk)
                accept(parser.feed(chunk))
            accept(parser.close())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - ditto, mid-stream
            flight.error = self.upstream.read_error(exc)
            self.metrics.upstream_error(endpoint, "stream")
        if flight.error is None:
            # Chat and completions end with [DONE]; named-event protocols with their own
            # final event, which the assembler checks.
            if (flight.saw_done or named) and assembler.complete:
                flight.result = assembler.response()
                if size > self.limits.max_stored_bytes:
                    flight.storable = False  # relayed whole, kept in no store
                    self.metrics.not_stored_answer(endpoint, "too_large")
            else:
                self.metrics.upstream_error(endpoint, "stream")
        flight.finish()

    async def _stored_answer(
        self, key: RequestKey, request_body: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The answer another process stored for ``key`` (as a response body), or ``None``."""
        found = await self._lookup(key, None)
        if found is None:
            return None
        try:
            return generations_to_response(found[0], key.endpoint, request_body).body
        except CorruptEntryError as exc:
            logger.warning("llm-cache proxy: unusable cache entry treated as a miss: %s", exc)
            return None

    def _release(self, flight: Flight) -> None:
        if flight.release():
            # The last reader of an unfinished stream left: stop paying for it.
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
            if flight.task is not None:
                flight.task.cancel()

    async def _answer(
        self,
        flight: Flight,
        endpoint: str,
        stream: bool,
        include_usage: bool,
        *,
        leader: bool,
        started: float,
    ) -> Any:
        flight.interest += 1
        handed_off = False
        try:
            await flight.head.wait()
            leader = leader and not flight.remote  # another process made the answer
            label = "miss" if leader else "coalesced"
            # A follower shares an answer made for another request just now: a hit, of age 0.
            extra = (
                {"x-cache": "MISS"}
                if leader
                else {"x-cache": "HIT", "x-cache-coalesced": "true", "age": "0"}
            )
            if flight.sse and stream:
                from starlette.responses import StreamingResponse

                strip_usage = flight.injected_usage and not include_usage
                handed_off = True
                response = StreamingResponse(
                    self._subscribe(flight, endpoint, strip_usage, leader), status_code=200
                )
                _add_headers(
                    response, flight.headers if leader else [("content-type", _SSE)], extra
                )
                self.metrics.request(endpoint, label, time.perf_counter() - started)
                return response
            await flight.wait_finished()
            self.metrics.request(endpoint, label, time.perf_counter() - started)
            if flight.result is None:
                if flight.error is not None:
                    return _error(
                        flight.error.status, _error_of(endpoint, flight.error), extra["x-cache"]
                    )
                if flight.body is not None:  # an upstream error answer: passed through unchanged
                    return _response(
                        flight.body, flight.status, headers=flight.headers, extra=extra
                    )
                return _error(
                    502,
                    error_for(
                        endpoint,
                        502,
                        "the upstream stream ended before the answer was complete",
                        "upstream_incomplete_stream",
                    ),
                    extra["x-cache"],
                )
            if not leader:
                self.metrics.saved_usage(endpoint, protocol_of(endpoint).usage(flight.result))
            if stream:
                options = {"stream_options": {"include_usage": True}} if include_usage else {}
                return _response(
                    render_events(endpoint, flight.result, options), media_type=_SSE, extra=extra
                )
            if flight.body is not None:  # the upstream's own bytes
                return _response(
                    flight.body,
                    headers=flight.headers if leader else None,
                    media_type=None if leader else _JSON,
                    extra=extra,
                )
            return _response(_dumps(flight.result), media_type=_JSON, extra=extra)
        finally:
            if not handed_off:
                self._release(flight)

    async def _subscribe(
        self, flight: Flight, endpoint: str, strip_usage: bool, leader: bool
    ) -> AsyncIterator[bytes]:
        """Stream a flight's events to one client: those so far, then each new one."""
        position = 0
        try:
            while True:
                events = flight.events
                if position < len(events):
                    end = len(events)
                    out = b"".join(
                        _render(data, parsed, strip_usage, name)
                        for data, parsed, name in events[position:end]
                    )
                    position = end
                    if out:
                        yield out
                    continue
                if flight.finished:
                    break
                await flight.changed()
            if flight.error is not None:
                yield stream_error(endpoint, _error_of(endpoint, flight.error))
            elif flight.saw_done:
                yield DONE_EVENT
            if not leader and flight.result is not None:
                self.metrics.saved_usage(endpoint, protocol_of(endpoint).usage(flight.result))
        finally:
            self._release(flight)
