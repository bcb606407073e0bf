"""The caching proxy: an OpenAI-compatible ASGI app (Starlette) in front of any upstream.

Routes:

=============================  ============================================================
``POST /v1/chat/completions``  cached (streaming included)
``POST /v1/completions``       cached (streaming included)
``POST /v1/embeddings``        cached (the whole request is one entry)
``GET /v1/models``             passed through, kept in memory ``models_ttl`` seconds per tenant
``/v1/...`` (anything else)    passed through untouched (``X-Cache: BYPASS``)
``GET /metrics``               Prometheus text format
``GET /healthz``               JSON; ``"status": "degraded"`` while the cache is unreachable
=============================  ============================================================

A request's way through :meth:`CachingProxy.cached_endpoint` (reached without the router,
see :class:`ProxyApp`):

1. ``Cache-Control: no-store`` (or a body the proxy cannot key) -> straight upstream, nothing
   stored, ``X-Cache: BYPASS``.
2. An identical request already in flight -> join it (see :mod:`.flights`): ``X-Cache: HIT``
   with ``X-Cache-Coalesced: true``; no upstream call of its own.
3. Cache lookup (skipped for ``no-cache``; entries older than ``max-age`` do not count) ->
   ``X-Cache: HIT`` (or ``SEMANTIC-HIT`` with ``X-Cache-Similarity``) and ``Age``; a
   streaming request gets the entry replayed as server-sent events.
4. Otherwise start a flight: one upstream call, its answer forwarded (streams live),
   stored when it completes with status 200, ``X-Cache: MISS``. The answer is sent
   before it is written; until the write ends, repeats share it (step 2).

``Cache-Control: only-if-cached`` answers 504 instead of calling upstream. The namespace
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
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._imports import require
from ..caches.base import BaseCache
from ..errors import ConfigurationError, CorruptEntryError
from ..urls import cache_from_url, redact_url
from .codec import generations_to_response, response_to_generations, stored_created_at
from .flights import Flight
from .keys import (
    ENDPOINTS,
    RequestKey,
    api_key_of,
    key_namespace,
    parse_cache_control,
    request_key,
    valid_namespace,
)
from .metrics import Metrics, PriceTable
from .sse import DONE_EVENT, SSEParser, StreamAssembler, format_event, replay_sse
from .upstream import Upstream, UpstreamError, UpstreamResponse, error_body

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

_JSON = "application/json"
_SSE = "text/event-stream; charset=utf-8"
_MAX_MODELS_ENTRIES = 1024


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _LRU(OrderedDict):  # type: ignore[type-arg]
    """A small bounded mapping; the least recently used entry goes first."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def get_recent(self, key: Any) -> Any:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        if len(self) > self.maxsize:
            self.popitem(last=False)


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


@dataclass(slots=True)
class _Parsed:
    """A request body as the cache sees it (memoised by raw bytes: repeats are the hot path)."""

    body: dict[str, Any]
    key: RequestKey | None
    stream: bool
    include_usage: bool
    semantic: bool  # may be matched by meaning: chat, or a completion with one string prompt


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


# Memo limits: the parse memo only keeps small bodies, so it stays within a few MB.
_PARSE_MEMO_ENTRIES = 2048
_PARSE_MEMO_MAX_BODY = 16 * 1024
_RENDER_MEMO_ENTRIES = 1024
_RENDER_MEMO_MAX_BYTES = 16 * 1024


@dataclass(slots=True)
class _Rendered:
    """What a hit needs of a stored entry, kept per entry: rendered bodies by (stream, usage)."""

    usage: dict[str, Any] | None
    model: Any
    variants: dict[tuple[bool, bool], bytes]


_NAMESPACE_MEMO_ENTRIES = 1024


def _is_semantic(cache: Any) -> bool:
    """Whether ``cache`` reports similarities: ``alookup_with_score`` -> a match or ``None``.

    The match has ``generations`` and ``similarity`` (1.0 for an exact hit), as
    :meth:`llm_cache.semantic.cache.SemanticCache.alookup_with_score` returns.
    """
    return callable(getattr(cache, "alookup_with_score", None)) and callable(
        getattr(cache, "aupdate", None)
    )


def semantic_cache_from_url(url: str, *, ttl: float | None = None) -> Any:
    """The semantic cache that goes with an exact cache URL (``--semantic``).

    ``memory://`` -> an in-memory :class:`~llm_cache.semantic.cache.SemanticCache`;
    ``sqlite:///x.db`` -> ``SemanticCache(data_dir="x.semantic")`` beside the file;
    ``redis://...`` -> ``RedisSemanticCache``; ``postgresql://...`` -> ``PGVectorSemanticCache``.
    Embeddings are the offline default (``LocalEmbeddings``).
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    bare = urlunsplit(parts._replace(query=""))
    try:
        if scheme == "memory":
            from ..semantic.cache import SemanticCache

            return SemanticCache(ttl=ttl)
        if scheme == "sqlite":
            from ..semantic.cache import SemanticCache

            path = parts.path.removeprefix("/")
            stem = path.removesuffix(".db")
            return SemanticCache(data_dir=stem + ".semantic", ttl=ttl)
        if scheme in ("redis", "rediss"):
            from ..semantic.stores.redis import RedisSemanticCache

            return RedisSemanticCache(redis_url=bare, ttl=ttl)
        if scheme.startswith(("postgresql", "postgres")):
            from ..semantic.stores.pgvector import PGVectorSemanticCache

            return PGVectorSemanticCache(bare, ttl=ttl)
    except ImportError as exc:
        raise ConfigurationError(
            f"--semantic needs llm-cache's semantic cache ({exc}); install it with: pip install 'llm-cache[semantic]'"
        ) from exc
    raise ConfigurationError(
        f"--semantic works with memory://, sqlite:///, redis:// and postgresql:// caches, not {redact_url(url)!r}"
    )


class CachingProxy:
    """State and handlers of one proxy app (use :func:`create_app`)."""

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
    ) -> None:
        self.upstream = upstream
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

    # -- helpers -------------------------------------------------------------------------
    def namespace(self, headers: Mapping[str, str]) -> str | None:
        """The tenant partition of a request; ``None`` if the namespace header is invalid."""
        parts = []
        if not self.share_across_keys:
            credential = (headers.get("authorization"), headers.get("api-key"))
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

    @staticmethod
    def _response(
        body: bytes,
        status: int = 200,
        *,
        media_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> _BytesResponse:
        raw = [(b"content-length", str(len(body)).encode("latin-1"))]
        if media_type is not None:
            raw.append((b"content-type", media_type.encode("latin-1")))
        if headers:
            for name, value in headers:
                lname = name.lower()
                if lname == "content-length" or (
                    media_type is not None and lname == "content-type"
                ):
                    continue
                raw.append((lname.encode("latin-1"), value.encode("latin-1")))
        if extra:
            for name, value in extra.items():
                raw.append((name.encode("latin-1"), value.encode("latin-1")))
        return _BytesResponse(body, status, raw)

    def _error(self, status: int, body: dict[str, Any], x_cache: str) -> Any:
        return self._response(_dumps(body), status, media_type=_JSON, extra={"x-cache": x_cache})

    async def _lookup(
        self, key: RequestKey, max_age: float | None, semantic: bool = False
    ) -> tuple[list[Any], float, float | None] | None:
        """(generations, stored-at time, similarity of a semantic hit) of a usable entry, or ``None``."""
        similarity: float | None = None
        try:
            generations = await self.cache.alookup(key.prompt, key.llm_string)
        except Exception as exc:  # noqa: BLE001 - a cache that raises (strict mode, a bug) must not fail the request
            logger.warning(
                "llm-cache proxy: cache lookup failed, answering from upstream: %s: %s",
                type(exc).__name__,
                exc,
            )
            generations = None
        if not generations and semantic and self.semantic_cache is not None:
            try:
                match = await self.semantic_cache.alookup_with_score(key.prompt, key.llm_string)
            except Exception as exc:  # noqa: BLE001 - fail open: a broken semantic index is a miss
                logger.warning(
                    "llm-cache proxy: semantic lookup failed: %s: %s", type(exc).__name__, exc
                )
                match = None
            if match is not None:
                generations, similarity = match.generations, float(match.similarity)
        if not generations:
            return None
        created = stored_created_at(generations)
        if created is None:
            logger.warning(
                "llm-cache proxy: an entry that is not a proxy entry was treated as a miss"
            )
            return None
        age = time.time() - created
        if (max_age is not None and age > max_age) or (self.ttl is not None and age > self.ttl):
            return None
        return generations, created, similarity

    async def _store(self, key: RequestKey, body: dict[str, Any], semantic: bool = False) -> None:
        # Writes of one key land in the order their answers arrived. Without this, a
        # `Cache-Control: no-cache` refresh whose write overtook the still-running write of
        # the answer before it (writes run in worker threads) was overwritten by that older
        # answer (seen as a flaky test: 3 runs in 14).
        previous = self._stores.get(key.flight_key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stores[key.flight_key] = mine
        try:
            if previous is not None:
                await asyncio.shield(previous)
            generations = response_to_generations(key.endpoint, body)
            targets = [self.cache]
            if semantic and self.semantic_cache is not None:
                targets.append(self.semantic_cache)
            for cache in targets:
                try:
                    await cache.aupdate(key.prompt, key.llm_string, generations)
                except Exception as exc:  # noqa: BLE001 - fail open: the answer was already given
                    logger.warning(
                        "llm-cache proxy: cache write failed: %s: %s", type(exc).__name__, exc
                    )
        finally:
            mine.set_result(None)
            if self._stores.get(key.flight_key) is mine:
                del self._stores[key.flight_key]

    # -- the cached endpoints --------------------------------------------------------------
    async def asgi_cached(
        self, scope: Mapping[str, Any], receive: Any, send: Any, endpoint: str
    ) -> None:
        """The ASGI entry of the cached endpoints (no router or middleware on this hot path)."""
        try:
            body = await _read_body(receive)
        except _Disconnected:
            return
        try:
            response = await self.cached_endpoint(ProxyRequest.from_scope(scope, body), endpoint)
        except Exception as exc:
            logger.exception("llm-cache proxy: internal error on POST %s", scope.get("path"))
            response = self._error(
                500,
                error_body(
                    f"llm-cache proxy error: {type(exc).__name__}", "proxy_error", "proxy_error"
                ),
                "BYPASS",
            )
        await response(scope, receive, send)

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
        semantic = endpoint == "chat.completions" or (
            endpoint == "completions" and isinstance(body.get("prompt"), str)
        )
        parsed = _Parsed(body, key, stream, include_usage, semantic)
        if memoise:
            self._parse_memo.put(memo_key, parsed)  # shared: never mutate parsed.body
        return parsed

    async def cached_endpoint(self, request: ProxyRequest, endpoint: str) -> Any:
        started = time.perf_counter()
        headers = request.headers
        if request.query:
            return await self._passthrough(request, endpoint, request.body, started)
        namespace = self.namespace(headers)
        if namespace is None:
            return self._error(
                400,
                error_body(
                    f"the {self.namespace_header} header must be 1-128 printable ASCII characters without spaces",
                    "invalid_namespace",
                    "invalid_request_error",
                ),
                "BYPASS",
            )
        directives = parse_cache_control(headers.get("cache-control"))
        parsed = None if directives.no_store else self._parse(endpoint, request.body, namespace)
        if parsed is None or parsed.key is None:
            return await self._passthrough(request, endpoint, request.body, started)
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
                response = self._hit(endpoint, key, *found, stream, include_usage, started)
                if response is not None:
                    return response
            flight = self._flights.get(key.flight_key)  # started while we looked up?
        if directives.only_if_cached and flight is None:
            self.metrics.request(endpoint, "miss", time.perf_counter() - started)
            return self._error(
                504,
                error_body(
                    "no cached answer for this request (only-if-cached)",
                    "only_if_cached",
                    "cache_miss",
                ),
                "MISS",
            )
        if flight is not None:
            return await self._answer(
                flight, endpoint, stream, include_usage, leader=False, started=started
            )
        flight = self._start_flight(
            request, key, parsed, register=key.flight_key not in self._flights
        )
        return await self._answer(
            flight, endpoint, stream, include_usage, leader=True, started=started
        )

    def _hit(
        self,
        endpoint: str,
        key: RequestKey,
        generations: list[Any],
        created_at: float,
        similarity: float | None,
        stream: bool,
        include_usage: bool,
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
                cached = generations_to_response(generations)
            except CorruptEntryError as exc:
                logger.warning("llm-cache proxy: unusable cache entry treated as a miss: %s", exc)
                return None
            if stream:
                content = replay_sse(endpoint, cached.body, include_usage)
            else:
                content = _dumps(cached.body)
            if rendered is None:
                rendered = _Rendered(cached.usage, cached.body.get("model"), {})
            if memo_key is not None and len(content) <= _RENDER_MEMO_MAX_BYTES:
                rendered.variants[variant] = content
                self._render_memo.put(memo_key, rendered)
        semantic = similarity is not None and similarity < 1.0
        extra = {
            "x-cache": "SEMANTIC-HIT" if semantic else "HIT",
            "age": str(max(0, int(time.time() - created_at))),
        }
        if semantic:
            extra["x-cache-similarity"] = f"{similarity:.4f}"
        self.metrics.saved(rendered.usage, rendered.model)
        self.metrics.request(
            endpoint, "semantic_hit" if semantic else "hit", time.perf_counter() - started
        )
        return self._response(content, media_type=_SSE if stream else _JSON, extra=extra)

    # -- flights ---------------------------------------------------------------------------
    def _start_flight(
        self, request: ProxyRequest, key: RequestKey, parsed: _Parsed, *, register: bool
    ) -> Flight:
        body, stream, include_usage = parsed.body, parsed.stream, parsed.include_usage
        injected = False
        content = request.body
        if stream and self.stream_usage and not include_usage:
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
        task = asyncio.get_running_loop().create_task(
            self._fly(flight, key, request.path, request.headers, content, parsed.semantic)
        )
        flight.task = task
        return flight

    async def _fly(
        self,
        flight: Flight,
        key: RequestKey,
        path: str,
        headers: dict[str, str],
        content: bytes,
        semantic: bool,
    ) -> None:
        endpoint = key.endpoint
        metrics = self.metrics
        metrics.inflight += 1
        up: UpstreamResponse | None = None
        try:
            try:
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
            if flight.result is not None:
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
            metrics.inflight -= 1
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
            self._completions += 1

    async def _read_stream(self, flight: Flight, up: UpstreamResponse, endpoint: str) -> None:
        parser = SSEParser()
        assembler = StreamAssembler(endpoint)
        loads = json.loads

        def accept(events: list[str]) -> None:
            for data in events:
                if data.strip() == "[DONE]":
                    flight.saw_done = True
                    continue
                try:
                    parsed = loads(data)
                except ValueError:
                    parsed = None
                assembler.add(parsed)
                flight.push(data, parsed)

        try:
            async for chunk in up.response.aiter_bytes():
                accept(parser.feed(chunk))
            accept(parser.close())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - ditto, mid-stream
            flight.error = self.upstream.read_error(exc)
            self.metrics.upstream_error(endpoint, "stream")
        if flight.error is None:
            if flight.saw_done and assembler.complete:
                flight.result = assembler.response()
            else:
                self.metrics.upstream_error(endpoint, "stream")
        flight.finish()

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
        label = "miss" if leader else "coalesced"
        # A follower shares an answer made for another request just now: a hit, of age 0.
        extra = (
            {"x-cache": "MISS"}
            if leader
            else {"x-cache": "HIT", "x-cache-coalesced": "true", "age": "0"}
        )
        flight.interest += 1
        handed_off = False
        try:
            await flight.head.wait()
            if flight.sse and stream:
                from starlette.responses import StreamingResponse

                strip_usage = flight.injected_usage and not include_usage
                handed_off = True
                response = StreamingResponse(
                    self._subscribe(flight, strip_usage, leader), status_code=200
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
                    return self._error(flight.error.status, flight.error.body(), extra["x-cache"])
                if flight.body is not None:  # an upstream error answer: passed through unchanged
                    return self._response(
                        flight.body, flight.status, headers=flight.headers, extra=extra
                    )
                return self._error(
                    502,
                    error_body(
                        "the upstream stream ended before the answer was complete",
                        "upstream_incomplete_stream",
                    ),
                    extra["x-cache"],
                )
            if not leader:
                self.metrics.saved(flight.result.get("usage"), flight.result.get("model"))
            if stream:
                return self._response(
                    replay_sse(endpoint, flight.result, include_usage), media_type=_SSE, extra=extra
                )
            if flight.body is not None:  # the upstream's own bytes
                return self._response(
                    flight.body,
                    headers=flight.headers if leader else None,
                    media_type=None if leader else _JSON,
                    extra=extra,
                )
            return self._response(_dumps(flight.result), media_type=_JSON, extra=extra)
        finally:
            if not handed_off:
                self._release(flight)

    async def _subscribe(
        self, flight: Flight, strip_usage: bool, leader: bool
    ) -> AsyncIterator[bytes]:
        """Stream a flight's events to one client: those so far, then each new one."""
        position = 0
        try:
            while True:
                events = flight.events
                if position < len(events):
                    end = len(events)
                    out = b"".join(
                        _render(data, parsed, strip_usage) for data, parsed in events[position:end]
                    )
                    position = end
                    if out:
                        yield out
                    continue
                if flight.finished:
                    break
                await flight.changed()
            if flight.error is not None:
                yield format_event(_dumps(flight.error.body()))
            elif flight.saw_done:
                yield DONE_EVENT
            if not leader and flight.result is not None:
                self.metrics.saved(flight.result.get("usage"), flight.result.get("model"))
        finally:
            self._release(flight)

    # -- pass-through ------------------------------------------------------------------------
    async def _passthrough(
        self, request: ProxyRequest, endpoint: str, content: bytes | None, started: float
    ) -> Any:
        from starlette.responses import StreamingResponse

        try:
            up = await self.upstream.send(
                request.method,
                request.path,
                headers=request.headers,
                content=content,
                params=request.query or None,
            )
        except UpstreamError as exc:
            self.metrics.upstream_error(endpoint, exc.kind)
            self.metrics.request(endpoint, "bypass", time.perf_counter() - started)
            logger.warning("llm-cache proxy: %s", exc.message)
            return self._error(exc.status, exc.body(), "BYPASS")
        if up.status >= 400:
            self.metrics.upstream_error(endpoint, "status")
        metrics = self.metrics

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in up.response.aiter_bytes():
                    yield chunk
            except Exception as exc:  # noqa: BLE001 - headers are sent: all we can do is end the body
                error = self.upstream.read_error(exc)
                metrics.upstream_error(endpoint, "stream")
                logger.warning("llm-cache proxy: %s", error.message)
            finally:
                await up.response.aclose()
                metrics.upstream(endpoint, up.status, time.perf_counter() - up.started)

        response = StreamingResponse(relay(), status_code=up.status)
        _add_headers(response, up.headers, {"x-cache": "BYPASS"})
        self.metrics.request(endpoint, "bypass", time.perf_counter() - started)
        return response

    async def passthrough_endpoint(self, request: Any) -> Any:
        started = time.perf_counter()
        body = await request.body()
        return await self._passthrough(
            ProxyRequest.from_scope(request.scope, body), "other", body or None, started
        )

    async def models_endpoint(self, request: Any) -> Any:
        """``GET /v1/models``: passed through, and kept briefly per tenant (lists rarely change)."""
        started = time.perf_counter()
        namespace = self.namespace(request.headers) or "invalid"
        now = time.monotonic()
        entry = self._models.get(namespace)
        if (
            entry is not None
            and entry[0] > now
            and "no-cache" not in (request.headers.get("cache-control") or "")
        ):
            self.metrics.request("models", "hit", time.perf_counter() - started)
            return self._response(entry[1], headers=entry[2], extra={"x-cache": "HIT"})
        try:
            up = await self.upstream.send("GET", "/models", headers=request.headers)
            data = await up.read()
        except UpstreamError as exc:
            self.metrics.upstream_error("models", exc.kind)
            return self._error(exc.status, exc.body(), "MISS")
        except Exception as exc:  # noqa: BLE001 - any read failure is an upstream failure for the client
            error = self.upstream.read_error(exc)
            self.metrics.upstream_error("models", error.kind)
            return self._error(error.status, error.body(), "MISS")
        self.metrics.upstream("models", up.status, time.perf_counter() - up.started)
        if up.status == 200 and self.models_ttl > 0:
            if len(self._models) >= _MAX_MODELS_ENTRIES:
                self._models.clear()
            self._models[namespace] = (now + self.models_ttl, data, up.headers)
        elif up.status >= 400:
            self.metrics.upstream_error("models", "status")
        self.metrics.request("models", "miss", time.perf_counter() - started)
        return self._response(data, up.status, headers=up.headers, extra={"x-cache": "MISS"})

    # -- operations ----------------------------------------------------------------------------
    async def metrics_endpoint(self, request: Any) -> Any:
        stats = getattr(self.cache, "stats", None)
        breaker = getattr(self.cache, "breaker", None)
        text = self.metrics.render(
            stats.as_dict() if stats is not None else None,
            breaker.is_open if breaker is not None else None,
        )
        return self._response(text.encode(), media_type="text/plain; version=0.0.4; charset=utf-8")

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
        return self._response(_dumps(body), media_type=_JSON)

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

    async def aclose(self) -> None:
        """Close the upstream client, and the cache if the proxy created it."""
        for flight in list(self._flights.values()):
            if flight.task is not None:
                flight.task.cancel()
        await self.upstream.aclose()
        if self._owns_cache:
            await asyncio.to_thread(self.cache.close)
        if self._owns_semantic:
            await asyncio.to_thread(self.semantic_cache.close)


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


def _render(data: str, parsed: Any, strip_usage: bool) -> bytes:
    """One upstream event as this client gets it."""
    if strip_usage and isinstance(parsed, dict) and "usage" in parsed:
        if parsed.get("choices") == [] and parsed.get("usage") is not None:
            return b""  # the usage chunk the proxy asked for, not the client
        return format_event(_dumps({k: v for k, v in parsed.items() if k != "usage"}))
    return format_event(data)


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


def create_app(
    upstream: str = DEFAULT_UPSTREAM,
    cache: BaseCache | str = DEFAULT_CACHE_URL,
    *,
    upstream_api_key: str | None = None,
    share_across_keys: bool = False,
    namespace_header: str = DEFAULT_NAMESPACE_HEADER,
    ttl: float | None = None,
    semantic: bool = False,
    semantic_cache: Any = None,
    prices: PriceTable | Mapping[str, tuple[float, float]] | None = None,
    stream_usage: bool = True,
    models_ttl: float = 60.0,
    timeout: float = 600.0,
    connect_timeout: float = 10.0,
    transport: Any = None,
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
        semantic_cache: a semantic cache object to use instead (anything with
            ``alookup_with_score`` and ``aupdate``, like
            :class:`~llm_cache.semantic.cache.SemanticCache`); implies ``semantic``.
        prices: model -> USD per 1M (input, output) tokens for the cost-saved metric.
        stream_usage: on a streamed miss, ask upstream for the usage chunk (and hide it
            from clients that did not ask); turn off for upstreams that reject ``stream_options``.
        models_ttl: seconds ``GET /v1/models`` is kept per tenant (0: never).
        timeout, connect_timeout: upstream read and connect timeouts in seconds.
        transport: an ``httpx`` transport for the upstream client (tests).

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
            semantic_cache = semantic_cache_from_url(cache, ttl=ttl)
        except BaseException:
            cache_obj.close()
            raise
        owns_semantic = True
    price_table = prices if isinstance(prices, PriceTable) else PriceTable(prices)

    proxy = CachingProxy(
        upstream=Upstream(
            upstream,
            api_key=upstream_api_key,
            timeout=timeout,
            connect_timeout=connect_timeout,
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
    )

    async def internal_error(request: Request, exc: Exception) -> Response:
        logger.exception(
            "llm-cache proxy: internal error on %s %s", request.method, request.url.path
        )
        return Response(
            _dumps(
                error_body(
                    f"llm-cache proxy error: {type(exc).__name__}", "proxy_error", "proxy_error"
                )
            ),
            status_code=500,
            media_type=_JSON,
        )

    async def not_found(request: Request) -> Response:
        return Response(
            _dumps(
                error_body(
                    f"unknown path {request.url.path}; the proxy serves /v1/...",
                    "not_found",
                    "invalid_request_error",
                )
            ),
            status_code=404,
            media_type=_JSON,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await proxy.aclose()

    routes = [
        Route("/v1/models", proxy.models_endpoint, methods=["GET"]),
        Route("/metrics", proxy.metrics_endpoint, methods=["GET"]),
        Route("/healthz", proxy.healthz_endpoint, methods=["GET"]),
        Route(
            "/v1/{rest:path}",
            proxy.passthrough_endpoint,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        ),
        Route("/{rest:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
    ]
    router = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={Exception: internal_error}
    )
    router.state.proxy = proxy
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
