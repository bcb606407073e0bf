"""The caching proxy: an OpenAI- and Anthropic-compatible ASGI app (Starlette) in front of any upstream.

Routes (each cached one speaks its protocol through :mod:`llm_cache.protocols`):

=============================  ============================================================
``POST /v1/chat/completions``  cached (streaming included)
``POST /v1/completions``       cached (streaming included)
``POST /v1/embeddings``        cached (the whole request is one entry)
``POST /v1/responses``         cached (streaming included); ``background: true`` passes through
``POST /v1/messages``          Anthropic Messages, cached (streaming included)
``GET /v1/models``             passed through, kept in memory ``models_ttl`` seconds per tenant
``/v1/...`` (anything else)    passed through untouched (``X-Cache: BYPASS``): e.g.
                               ``GET/DELETE /v1/responses/{id}``, ``/v1/messages/count_tokens``
``GET /metrics``               Prometheus text format
``GET /healthz``               JSON; ``"status": "degraded"`` while the cache is unreachable
``/dashboard``                 the web dashboard, a tenant's own entries (:mod:`._dashboard`)
=============================  ============================================================

A request's way through :meth:`CachingProxy.cached_endpoint` (reached without the router,
see :class:`ProxyApp`):

0. Admission, the same for every ``/v1`` route: the API key (one of the proxy's client
   keys, if it has them), the namespace header, the body size, the parsed body (see
   :mod:`._request`); a request that fails gets a 4xx from the proxy (:class:`._http.Refusal`).
1. ``Cache-Control: no-store`` (or a query string, or a body the proxy cannot key) -> straight
   upstream, nothing stored, ``X-Cache: BYPASS``.
2. An identical request already in flight -> join it (see :mod:`.flights`): ``X-Cache: HIT``
   with ``X-Cache-Coalesced: true``; no upstream call of its own.
3. Cache lookup (skipped for ``no-cache``; entries older than ``max-age`` do not count) ->
   ``X-Cache: HIT`` (or ``SEMANTIC-HIT`` with ``X-Cache-Similarity``) and ``Age``; a
   streaming request gets the entry replayed as server-sent events.
4. Otherwise start a flight: one upstream call, its answer forwarded (streams live),
   stored when it completes with status 200, ``X-Cache: MISS``. The answer is sent
   before it is written; until the write ends, repeats share it (step 2).

``Cache-Control: only-if-cached`` answers 504 instead of calling upstream, on every path
(bypasses included). Limits (body, upstream calls, stored size, connections and timeouts)
are in :mod:`.limits` and docs/proxy.md. The namespace
header (``X-LLM-Cache-Namespace``) and the API key's hash partition entries (:mod:`.keys`);
the stored format and replay ids are described in :mod:`.codec`.

The cache is fail-open (:class:`~llm_cache.caches.base.BaseCache`): with the store down a
lookup is a miss and a write is dropped, so the proxy degrades to a pass-through. An
unreachable upstream gives 502 (504 on a timeout) with an OpenAI-style error body; an
upstream 4xx/5xx is passed through unchanged and never cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

from .._imports import require
from ..caches.base import BaseCache
from ..errors import ConfigurationError
from ..urls import cache_from_url, redact_url
from ._cached import _RENDER_MEMO_ENTRIES, _CachedEndpoints
from ._dashboard import SEMANTIC_HITS_KEPT, ProxyDashboard
from ._http import _JSON, ProxyRequest, Refusal, _dumps
from ._protocols import ANTHROPIC, error_for, error_protocol
from ._request import _NAMESPACE_MEMO_ENTRIES, _PARSE_MEMO_ENTRIES
from ._feedback import feedback_endpoint
from ._semantic import _is_semantic, semantic_cache_from_url
from ._state import _LRU
from .auth import ClientKeys
from .flights import Flight
from .keys import ENDPOINTS
from .leases import LeasePolicy, store_for_url
from .limits import ProxyLimits
from .metrics import Metrics, PriceTable
from .upstream import Upstream, error_body

__all__ = [
    "DEFAULT_CACHE_URL",
    "DEFAULT_NAMESPACE_HEADER",
    "DEFAULT_UPSTREAM",
    "CachingProxy",
    "ProxyApp",
    "ProxyRequest",
    "create_app",
    "semantic_cache_from_url",
]

logger = logging.getLogger("llm_cache.proxy")

DEFAULT_CACHE_URL = "sqlite:///.llm_cache_proxy.db"
DEFAULT_UPSTREAM = "https://api.openai.com/v1"
DEFAULT_NAMESPACE_HEADER = "X-LLM-Cache-Namespace"


class CachingProxy(_CachedEndpoints):
    """State and handlers of one proxy app (use :func:`create_app`).

    The handlers are grouped by job in private mixins over one declared state
    (:mod:`._state`): :mod:`._request` (tenant and cache key), :mod:`._endpoints`
    (pass-through, models, operations), :mod:`._cache_io` (cache reads and writes),
    :mod:`._relay` (flights: upstream calls shared by identical requests) and
    :mod:`._cached` (the cached endpoints, built on all of them).
    """

    def __init__(
        self,
        *,
        upstream: Upstream,
        cache: BaseCache,
        owns_cache: bool,
        share_across_keys: bool,
        namespace_header: str,
        ttl: float | None,
        semantic_cache: Any,
        owns_semantic: bool,
        prices: PriceTable,
        stream_usage: bool,
        models_ttl: float,
        limits: ProxyLimits,
        client_keys: ClientKeys | None,
        lease_store: Any = None,
    ) -> None:
        self.upstream = upstream
        self.lease_store = lease_store
        self.limits = limits
        self.client_keys = client_keys
        self._upstream_calls = 0
        self.cache = cache
        self._owns_cache = owns_cache
        self.share_across_keys = share_across_keys
        self.namespace_header = namespace_header.lower()
        self.ttl = ttl
        # Semantic mode adds a similarity index beside the exact cache: every answer is
        # stored in the exact cache (exact hits stay as fast, and work for every request),
        # and chat / single-prompt completions also in the semantic cache, which is asked
        # only after an exact miss. Embeddings and prompt lists are never matched by meaning.
        self.semantic_cache = semantic_cache
        self._owns_semantic = owns_semantic
        self.metrics = Metrics(prices)
        self.stream_usage = stream_usage
        self.models_ttl = models_ttl
        self._flights: dict[Any, Flight] = {}
        self._stores: dict[Any, asyncio.Future[None]] = {}  # the last pending write per key
        # Bumped whenever a flight ends. A request that saw it unchanged across its lookup
        # knows no answer was stored meanwhile and can start a flight without a 2nd lookup.
        self._completions = 0
        self._models: dict[str, tuple[float, bytes, list[tuple[str, str]]]] = {}
        # Memos of pure functions of their keys (no cache semantics change): the parsed
        # body and cache key of a raw body, the tenant of an Authorization header, and the
        # rendered bytes of a stored entry (keyed by its key and its stored created_at, so
        # a refreshed entry renders anew). Measured: they take the app's share of a cached
        # request from ~200 us to ~80 us of CPU.
        self._parse_memo = _LRU(_PARSE_MEMO_ENTRIES)
        self._namespace_memo = _LRU(_NAMESPACE_MEMO_ENTRIES)
        self._render_memo = _LRU(_RENDER_MEMO_ENTRIES)
        self.semantic_hits: deque[Any] = deque(maxlen=SEMANTIC_HITS_KEPT)

    async def aclose(self) -> None:
        """Close the upstream client, and the cache if the proxy created it."""
        for flight in list(self._flights.values()):
            if flight.task is not None:
                flight.task.cancel()
        await self.upstream.aclose()
        if self.lease_store is not None:
            with contextlib.suppress(Exception):
                await self.lease_store.aclose()
        if self._owns_cache:
            await asyncio.to_thread(self.cache.close)
        if self._owns_semantic:
            await asyncio.to_thread(self.semantic_cache.close)


def create_app(
    upstream: str = DEFAULT_UPSTREAM,
    cache: BaseCache | str = DEFAULT_CACHE_URL,
    *,
    upstream_api_key: str | None = None,
    share_across_keys: bool = False,
    namespace_header: str = DEFAULT_NAMESPACE_HEADER,
    ttl: float | None = None,
    semantic: bool = False,
    semantic_max_error_rate: float | None = None,
    semantic_cache: Any = None,
    prices: PriceTable | Mapping[str, tuple[float, float]] | None = None,
    stream_usage: bool = True,
    models_ttl: float = 60.0,
    timeout: float = 600.0,
    connect_timeout: float = 10.0,
    transport: Any = None,
    limits: ProxyLimits | None = None,
    client_keys: ClientKeys | str | os.PathLike[str] | None = None,
    shared_coalescing: Any = True,
    lease_ttl: float = 10.0,
) -> Any:
    """Build the caching proxy as a Starlette ASGI app.

    Args:
        upstream: base URL of the OpenAI-compatible API, as the SDK's ``base_url``
            (``https://api.openai.com/v1``).
        cache: a cache object, or a URL for :func:`llm_cache.urls.cache_from_url`
            (``memory://``, ``sqlite:///path.db``, ``redis://...``, ``postgresql://...``).
            A cache built from a URL is closed with the app; an object stays the caller's.
        upstream_api_key: a fixed key for every upstream call; by default each client's
            own ``Authorization`` is passed through. Never stored or logged.
        share_across_keys: one set of entries for all API keys (default: isolated per key
            by a sha256 of the key).
        namespace_header: request header naming an extra partition.
        ttl: seconds an entry may be served (also given to a cache built from a URL).
        semantic: also answer chat and single-prompt completion requests whose prompt means
            the same as a cached one (``X-Cache: SEMANTIC-HIT``): builds the semantic cache
            that goes with the ``cache`` URL (:func:`semantic_cache_from_url`).
        semantic_max_error_rate: with ``semantic``, the built cache is error-bounded
            (``SemanticCache(max_error_rate=...)``, docs/semantic.md): it learns from the
            upstream's answers and from ``POST /v1/cache/feedback``.
        semantic_cache: a semantic cache object to use instead (anything with
            ``alookup_with_score`` and ``aupdate``, like
            :class:`~llm_cache.semantic.cache.SemanticCache`); implies ``semantic``.
        prices: model -> USD per 1M (input, output) tokens for the cost-saved metric.
        stream_usage: on a streamed miss, ask upstream for the usage chunk (and hide it
            from clients that did not ask); turn off for upstreams that reject ``stream_options``.
        models_ttl: seconds ``GET /v1/models`` is kept per tenant (0: never).
        timeout, connect_timeout: upstream read and connect timeouts in seconds.
        transport: an ``httpx`` transport for the upstream client (tests).
        limits: body size, upstream concurrency, stored size, and the server's connection
            limits (:class:`~llm_cache.proxy.limits.ProxyLimits`; applied by
            :class:`ProxyServer` and ``llm-cache serve``). Default: ``ProxyLimits()``.
        client_keys: the proxy's own client keys (:class:`~llm_cache.proxy.auth.ClientKeys`
            or the path of a client-keys file); every ``/v1`` request must present one.
            Needs ``upstream_api_key`` (clients then never send the upstream key).
        shared_coalescing: coalesce identical misses across processes too (every worker
            and instance on the same store makes one upstream call, see :mod:`.leases`):
            ``True`` (default) for a ``redis://`` or ``postgresql://`` cache URL (others
            are one process's: nothing to share), ``False`` for in-process coalescing only,
            or a lease store object.
        lease_ttl: seconds after which the lease of a leader that died is free again.

    Returns a :class:`ProxyApp` (an ASGI callable for uvicorn or any ASGI server); its
    ``proxy`` (also ``state.proxy``) is the :class:`CachingProxy`: metrics, caches, flights.
    """
    require("starlette", "proxy", "the llm-cache proxy")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    if not isinstance(namespace_header, str) or not namespace_header.strip():
        raise ConfigurationError(
            "namespace_header must be a header name such as X-LLM-Cache-Namespace"
        )
    if not upstream.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"upstream must be an http(s) URL like https://api.openai.com/v1, not {redact_url(upstream)!r}"
        )
    if ttl is not None and (ttl <= 0):
        raise ConfigurationError("ttl must be a positive number of seconds")
    if semantic_max_error_rate is not None and (not semantic or semantic_cache is not None):
        raise ConfigurationError(
            "semantic_max_error_rate bounds the semantic cache the proxy builds: it needs semantic=True "
            "(with semantic_cache=, give that cache max_error_rate itself)"
        )
    limits = limits or ProxyLimits()
    if client_keys is not None and not isinstance(client_keys, ClientKeys):
        client_keys = ClientKeys.from_file(client_keys)
    if client_keys is not None and upstream_api_key is None:
        raise ConfigurationError(
            "client keys need a fixed upstream key (upstream_api_key / --upstream-api-key-env): "
            "without it each client's own key is passed upstream"
        )

    owns_cache = isinstance(cache, str)
    cache_obj = cache_from_url(cache, ttl=ttl) if isinstance(cache, str) else cache
    if not isinstance(cache_obj, BaseCache) and not callable(getattr(cache_obj, "alookup", None)):
        raise ConfigurationError(
            f"cache must be a cache URL or an llm_cache cache, not {type(cache).__name__}"
        )
    owns_semantic = False
    if semantic_cache is not None:
        if not _is_semantic(semantic_cache):
            raise ConfigurationError(
                f"semantic_cache must report similarities (alookup_with_score), like SemanticCache; "
                f"{type(semantic_cache).__name__} does not"
            )
    elif semantic:
        if not isinstance(cache, str):
            raise ConfigurationError(
                "semantic=True builds the semantic cache from a cache URL; with a cache "
                "object, pass semantic_cache=SemanticCache(...) instead"
            )
        try:
            semantic_cache = semantic_cache_from_url(cache, ttl=ttl, max_error_rate=semantic_max_error_rate)
        except BaseException:
            cache_obj.close()
            raise
        owns_semantic = True
    price_table = prices if isinstance(prices, PriceTable) else PriceTable(prices)
    lease_store: Any = None
    if shared_coalescing is True and isinstance(cache, str):
        lease_store = store_for_url(cache, LeasePolicy(ttl=lease_ttl, wait=timeout))
    elif shared_coalescing not in (True, False, None):
        lease_store = shared_coalescing

    proxy = CachingProxy(
        upstream=Upstream(
            upstream,
            api_key=upstream_api_key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_connections=limits.max_upstream,
            transport=transport,
        ),
        cache=cache_obj,
        owns_cache=owns_cache,
        share_across_keys=share_across_keys,
        namespace_header=namespace_header,
        ttl=ttl,
        semantic_cache=semantic_cache,
        owns_semantic=owns_semantic,
        prices=price_table,
        stream_usage=stream_usage,
        models_ttl=models_ttl,
        limits=limits,
        client_keys=client_keys,
        lease_store=lease_store,
    )

    # Handlers read scope["path"], never request.url: building the URL decodes the query
    # string as UTF-8, which raises for a client's non-UTF-8 bytes (found by the fuzz test).
    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refusal)
        path = request.scope["path"]
        if error_protocol(path.removeprefix("/v1")) == ANTHROPIC:  # e.g. /v1/messages/count_tokens
            endpoint = ANTHROPIC
        else:
            endpoint = "models" if path == "/v1/models" else "other"
        proxy.metrics.refused(endpoint, exc.code)
        return exc.response(endpoint)  # type: ignore[return-value]

    async def internal_error(request: Request, exc: Exception) -> Response:
        logger.exception(
            "llm-cache proxy: internal error on %s %s", request.method, request.scope["path"]
        )
        protocol = error_protocol(request.scope["path"].removeprefix("/v1"))
        message = f"llm-cache proxy error: {type(exc).__name__}"
        return Response(
            _dumps(error_for(protocol, 500, message, "proxy_error", "proxy_error")),
            status_code=500,
            media_type=_JSON,
        )

    async def not_found(request: Request) -> Response:
        return Response(
            _dumps(
                error_body(
                    f"unknown path {request.scope['path']}; the proxy serves /v1/...",
                    "not_found",
                    "invalid_request_error",
                )
            ),
            status_code=404,
            media_type=_JSON,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        dashboard.start()
        yield
        await dashboard.stop()
        await proxy.aclose()

    dashboard = ProxyDashboard(proxy)

    routes = [
        Route("/v1/models", proxy.models_endpoint, methods=["GET"]),
        Route("/metrics", proxy.metrics_endpoint, methods=["GET"]),
        Route("/healthz", proxy.healthz_endpoint, methods=["GET"]),
        *dashboard.routes(),
        Route("/v1/cache/feedback", functools.partial(feedback_endpoint, proxy), methods=["POST"]),
        Route(
            "/v1/{rest:path}",
            proxy.passthrough_endpoint,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        ),
        Route("/{rest:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
    ]
    router = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={Refusal: refused, Exception: internal_error},
    )
    router.state.proxy = proxy
    router.state.dashboard = dashboard  # its traffic samples and pages (ProxyDashboard)
    return ProxyApp(proxy, router)


_CACHED_PATHS = {f"/v1{path}": endpoint for path, endpoint in ENDPOINTS.items()}


class ProxyApp:
    """The ASGI app: ``POST`` to a cached endpoint goes straight to the proxy, the rest
    (models, pass-through, metrics, health, lifespan) through a Starlette router.

    The direct dispatch is for speed: the router and its middleware cost ~25 us a request,
    a tenth of a cached answer's budget on this machine.
    """

    def __init__(self, proxy: CachingProxy, router: Any) -> None:
        self.proxy = proxy
        self.router = router
        self.state = router.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = _CACHED_PATHS.get(scope["path"])
            if endpoint is not None:
                await self.proxy.asgi_cached(scope, receive, send, endpoint)
                return
        await self.router(scope, receive, send)
