"""The cached endpoints: Cache-Control handling, the lookup/hit/store decisions.

The request flow is described in :mod:`.app`; a miss (or a join of an identical request
in flight) is handed to :mod:`._relay`, anything not cacheable to :mod:`._endpoints`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import CorruptEntryError
from ._dashboard import record_semantic_hit
from ._endpoints import _not_cached, _RoutedEndpoints
from ._http import (
    _JSON,
    _SSE,
    ProxyRequest,
    Refusal,
    _Disconnected,
    _dumps,
    _error,
    _headers_of,
    _read_body,
    _response,
)
from ._relay import _FlightRelay
from ..protocols.base import Usage
from ._protocols import error_for, protocol_of, render_events
from .codec import generations_to_response
from .keys import RequestKey, parse_cache_control

logger = logging.getLogger("llm_cache.proxy")

_RENDER_MEMO_ENTRIES = 1024
# What a replay needs of the request (chat/completions: whether it asked for a usage chunk).
_WITH_USAGE: Mapping[str, Any] = {"stream_options": {"include_usage": True}}
_NO_OPTIONS: Mapping[str, Any] = {}
_RENDER_MEMO_MAX_BYTES = 16 * 1024


@dataclass(slots=True)
class _Rendered:
    """What a hit needs of a stored entry, kept per entry: rendered bodies by (stream, usage)."""

    usage: Usage
    variants: dict[tuple[bool, bool], bytes]


class _CachedEndpoints(_FlightRelay, _RoutedEndpoints):
    """Mixin of :class:`~.app.CachingProxy`: the ``POST`` endpoints answered from the cache."""

    # -- the cached endpoints --------------------------------------------------------------
    async def asgi_cached(
        self, scope: Mapping[str, Any], receive: Any, send: Any, endpoint: str
    ) -> None:
        """The ASGI entry of the cached endpoints (no router or middleware on this hot path)."""
        try:
            # The headers are decoded once, for the body's declared length and the request.
            headers = _headers_of(scope)
            body = await _read_body(
                receive, self.limits.max_body_bytes, headers.get("content-length")
            )
            response = await self.cached_endpoint(
                ProxyRequest.from_scope(scope, body, headers), endpoint
            )
        except _Disconnected:
            return
        except Refusal as refusal:
            self.metrics.refused(endpoint, refusal.code)
            response = refusal.response(endpoint)
        except Exception as exc:
            logger.exception("llm-cache proxy: internal error on POST %s", scope.get("path"))
            response = _error(
                500,
                error_for(
                    endpoint,
                    500,
                    f"llm-cache proxy error: {type(exc).__name__}",
                    "proxy_error",
                    "proxy_error",
                ),
                "BYPASS",
            )
        await response(scope, receive, send)

    async def cached_endpoint(self, request: ProxyRequest, endpoint: str) -> Any:
        """Answer a cached endpoint's request (see :mod:`.app` for the flow).

        Raises :class:`~._http.Refusal` for a request the proxy answers itself.
        """
        started = time.perf_counter()
        headers = request.headers
        namespace = self.tenant(headers)
        directives = parse_cache_control(headers.get("cache-control"))
        if request.query or directives.no_store:
            return await self._passthrough(
                request, endpoint, request.body, started, directives.only_if_cached
            )
        parsed = self._parse(endpoint, request.body, namespace)
        if parsed.key is None:
            return await self._passthrough(
                request, endpoint, request.body, started, directives.only_if_cached
            )
        key, stream, include_usage = parsed.key, parsed.stream, parsed.include_usage

        flight = None if directives.no_cache else self._flights.get(key.flight_key)
        if flight is None and not directives.no_cache:
            seen = self._completions
            found = await self._lookup(key, directives.max_age, parsed.semantic)
            if found is None and self._completions != seen:
                found = await self._lookup(
                    key, directives.max_age, parsed.semantic
                )  # stored meanwhile
            if found is not None:
                response = self._hit(
                    endpoint, key, *found, stream, include_usage, parsed.body, started
                )
                if response is not None:
                    return response
            flight = self._flights.get(key.flight_key)  # started while we looked up?
        if directives.only_if_cached and flight is None:
            self.metrics.request(endpoint, "miss", time.perf_counter() - started)
            raise _not_cached("MISS")
        if flight is not None:
            return await self._answer(
                flight, endpoint, stream, include_usage, leader=False, started=started
            )
        self._take_upstream_slot()  # freed when the flight's task ends (see _start_flight)
        flight = self._start_flight(
            request,
            key,
            parsed,
            register=key.flight_key not in self._flights,
            shared=not directives.no_cache,
        )
        return await self._answer(
            flight, endpoint, stream, include_usage, leader=True, started=started
        )

    def _hit(
        self,
        endpoint: str,
        key: RequestKey,
        generations: list[Any],
        created_at: float | None,
        similarity: float | None,
        stream: bool,
        include_usage: bool,
        request: Mapping[str, Any],
        started: float,
    ) -> Any:
        """The response for a cache hit; ``None`` if the entry turns out unusable (a miss)."""
        # A semantic hit is another entry's answer: not memoised under this request's key.
        memo_key = (key.flight_key, created_at) if similarity is None else None
        rendered = self._render_memo.get_recent(memo_key) if memo_key is not None else None
        variant = (stream, include_usage)
        content = rendered.variants.get(variant) if rendered is not None else None
        if rendered is None or content is None:
            try:
                cached = generations_to_response(generations, endpoint, request)
            except CorruptEntryError as exc:
                logger.warning("llm-cache proxy: unusable cache entry treated as a miss: %s", exc)
                return None
            if stream:
                options = _WITH_USAGE if include_usage else _NO_OPTIONS
                content = render_events(endpoint, cached.body, options)
            else:
                content = _dumps(cached.body)
            if rendered is None:
                rendered = _Rendered(protocol_of(endpoint).usage(cached.body), {})
            if memo_key is not None and len(content) <= _RENDER_MEMO_MAX_BYTES:
                rendered.variants[variant] = content
                self._render_memo.put(memo_key, rendered)
        semantic = similarity is not None and similarity < 1.0
        extra = {"x-cache": "SEMANTIC-HIT" if semantic else "HIT"}
        if created_at is not None:  # unknown for entries written by a model
            extra["age"] = str(max(0, int(time.time() - created_at)))
        if semantic:
            extra["x-cache-similarity"] = f"{similarity:.4f}"
            record_semantic_hit(self.semantic_hits, key.prompt, key.llm_string, similarity, generations)
        self.metrics.saved_usage(endpoint, rendered.usage)
        self.metrics.request(
            endpoint, "semantic_hit" if semantic else "hit", time.perf_counter() - started
        )
        return _response(content, media_type=_SSE if stream else _JSON, extra=extra)
