"""The routed endpoints: pass-through, ``GET /v1/models``, ``/metrics`` and ``/healthz``."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from ._http import _JSON, ProxyRequest, Refusal, _add_headers, _dumps, _error, _read_body, _response
from ._protocols import error_for, error_protocol
from ._request import _RequestParsing
from .keys import parse_cache_control
from .upstream import UpstreamError

logger = logging.getLogger("llm_cache.proxy")

_MAX_MODELS_ENTRIES = 1024


def _not_cached(x_cache: str) -> Refusal:
    """``only-if-cached`` without a usable entry: 504, as RFC 9111 5.2.1.7 asks."""
    return Refusal(
        504, "no cached answer for this request (only-if-cached)", "only_if_cached", x_cache=x_cache
    )


class _Relay:
    """A streamed upstream answer as an ASGI response; whatever happens while sending it,
    the upstream response is closed and the upstream slot freed (once)."""

    def __init__(self, stream: Any, close: Any) -> None:
        self._stream = stream
        self._close = close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self._stream(scope, receive, send)
        finally:
            await self._close()


class _RoutedEndpoints(_RequestParsing):
    """Mixin of :class:`~.app.CachingProxy`: everything that is not answered from the cache."""

    # -- pass-through ------------------------------------------------------------------------
    async def _passthrough(
        self,
        request: ProxyRequest,
        endpoint: str,
        content: bytes | None,
        started: float,
        only_if_cached: bool = False,
    ) -> Any:
        """Relay a request upstream untouched and uncached (``X-Cache: BYPASS``)."""
        from starlette.responses import StreamingResponse

        if only_if_cached:
            raise _not_cached("BYPASS")
        self._take_upstream_slot()
        try:
            up = await self.upstream.send(
                request.method,
                request.path,
                headers=request.headers,
                content=content,
                params=request.query or None,
            )
        except BaseException as exc:
            self._free_upstream_slot()
            if not isinstance(exc, UpstreamError):
                raise
            self.metrics.upstream_error(endpoint, exc.kind)
            self.metrics.request(endpoint, "bypass", time.perf_counter() - started)
            logger.warning("llm-cache proxy: %s", exc.message)
            # By path, not by metrics label: count_tokens is "other" but speaks Anthropic.
            body = error_for(error_protocol(request.path), exc.status, exc.message, f"upstream_{exc.kind}")
            return _error(exc.status, body, "BYPASS")
        if up.status >= 400:
            self.metrics.upstream_error(endpoint, "status")
        metrics = self.metrics
        closed = False

        async def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                self._free_upstream_slot()
                await up.response.aclose()
                metrics.upstream(endpoint, up.status, time.perf_counter() - up.started)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in up.response.aiter_bytes():
                    yield chunk
            except Exception as exc:  # noqa: BLE001 - headers are sent: all we can do is end the body
                error = self.upstream.read_error(exc)
                metrics.upstream_error(endpoint, "stream")
                logger.warning("llm-cache proxy: %s", error.message)
            finally:
                await close()

        response = StreamingResponse(relay(), status_code=up.status)
        _add_headers(response, up.headers, {"x-cache": "BYPASS"})
        self.metrics.request(endpoint, "bypass", time.perf_counter() - started)
        return _Relay(response, close)

    async def passthrough_endpoint(self, request: Any) -> Any:
        started = time.perf_counter()
        self.tenant(request.headers)
        directives = parse_cache_control(request.headers.get("cache-control"))
        if directives.only_if_cached:
            raise _not_cached("BYPASS")  # before reading a body that will not be used
        body = await _read_body(
            request.receive, self.limits.max_body_bytes, request.headers.get("content-length")
        )
        return await self._passthrough(
            ProxyRequest.from_scope(request.scope, body), "other", body or None, started
        )

    async def models_endpoint(self, request: Any) -> Any:
        """``GET /v1/models``: passed through, and kept briefly per tenant (lists rarely change)."""
        started = time.perf_counter()
        namespace = self.tenant(request.headers)
        directives = parse_cache_control(request.headers.get("cache-control"))
        if request.scope.get("query_string"):
            return await self._passthrough(
                ProxyRequest.from_scope(request.scope, b""),
                "models",
                None,
                started,
                directives.only_if_cached,
            )
        now = time.monotonic()
        entry = self._models.get(namespace)
        if (
            entry is not None
            and entry[0] > now
            and not (directives.no_cache or directives.no_store)
        ):
            self.metrics.request("models", "hit", time.perf_counter() - started)
            return _response(entry[1], headers=entry[2], extra={"x-cache": "HIT"})
        if directives.only_if_cached:
            raise _not_cached("MISS")
        self._take_upstream_slot()
        try:
            up = await self.upstream.send("GET", "/models", headers=request.headers)
            data = await up.read()
        except UpstreamError as exc:
            self.metrics.upstream_error("models", exc.kind)
            return _error(exc.status, exc.body(), "MISS")
        except Exception as exc:  # noqa: BLE001 - any read failure is an upstream failure for the client
            error = self.upstream.read_error(exc)
            self.metrics.upstream_error("models", error.kind)
            return _error(error.status, error.body(), "MISS")
        finally:
            self._free_upstream_slot()
        self.metrics.upstream("models", up.status, time.perf_counter() - up.started)
        if up.status == 200 and self.models_ttl > 0 and not directives.no_store:
            if len(self._models) >= _MAX_MODELS_ENTRIES:
                self._models.clear()
            self._models[namespace] = (now + self.models_ttl, data, up.headers)
        elif up.status >= 400:
            self.metrics.upstream_error("models", "status")
        self.metrics.request("models", "miss", time.perf_counter() - started)
        return _response(data, up.status, headers=up.headers, extra={"x-cache": "MISS"})

    # -- operations ----------------------------------------------------------------------------
    async def metrics_endpoint(self, request: Any) -> Any:
        stats = getattr(self.cache, "stats", None)
        breaker = getattr(self.cache, "breaker", None)
        text = self.metrics.render(
            stats.as_dict() if stats is not None else None,
            breaker.is_open if breaker is not None else None,
        )
        return _response(text.encode(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def healthz_endpoint(self, request: Any) -> Any:
        reachable, problem = await self.probe_cache(self.cache)
        breaker = getattr(self.cache, "breaker", None)
        body = {
            "status": "ok" if reachable else "degraded",
            "cache": {
                "backend": type(self.cache).__name__,
                "reachable": reachable,
                "breaker_open": bool(breaker.is_open) if breaker is not None else None,
                "error": problem,
            },
            "upstream": self.upstream.redacted_url,
            "inflight": self.metrics.inflight,
            "pid": os.getpid(),  # which worker answered (llm-cache serve --workers N)
        }
        if self.semantic_cache is not None:
            semantic_ok, semantic_problem = await self.probe_cache(self.semantic_cache)
            body["semantic_cache"] = {
                "backend": type(self.semantic_cache).__name__,
                "reachable": semantic_ok,
                "error": semantic_problem,
            }
            if not semantic_ok:
                body["status"] = "degraded"
        # 200 even when degraded: the proxy still answers (as a pass-through), which is what
        # a load balancer should know; "status" says whether answers come from the cache.
        return _response(_dumps(body), media_type=_JSON)

    async def probe_cache(self, cache: Any, timeout: float = 2.0) -> tuple[bool, str | None]:
        """Whether a cache's store answers right now (a lookup that matches nothing)."""
        probe = getattr(cache, "_probe", None)
        if probe is None:
            return True, None
        try:
            await asyncio.wait_for(asyncio.to_thread(probe), timeout)
        except asyncio.TimeoutError:
            return False, f"no answer within {timeout:g}s"
        except Exception as exc:  # noqa: BLE001 - reported in /healthz, whatever it is
            return False, f"{type(exc).__name__}: {exc}"[:300]
        return True, None
