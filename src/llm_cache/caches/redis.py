"""RedisCache: an exact cache in Redis (standalone or Redis Cluster), sync and async.

What is stored, and why:

* one Redis string per entry, key ``{namespace}:{sha256 hex}`` (the hash from
  :mod:`llm_cache.keys`). No hash tag, so on a cluster the entries spread over every node.
* the value is JSON: the codec's ``{"v": 1, "g": [...generations...]}`` plus ``"p"`` (the full
  prompt) and ``"l"`` (the full llm_string). A hit is returned only when both match exactly,
  so a hash collision, or a value some other writer put under our key, is a miss and never
  somebody else's answer. A hit costs one ``GET``, one ``json.loads`` and two string compares.
* the TTL is written with the value, ``SET key value PX ms``: there is no moment at which the
  entry exists without its expiry (a ``SET`` then ``EXPIRE`` pair leaves an immortal entry
  when the connection dies in between). ``ttl=None`` writes a plain ``SET``, which also
  removes any TTL a previous writer gave the key.
* ``clear()`` walks this namespace with ``SCAN MATCH`` and deletes in batches with ``UNLINK``
  (freed by a background thread of the server, so a big namespace does not block Redis). It
  never uses ``FLUSHDB``: the database is usually shared with other applications and other
  caches. The pattern is exact (the escaped namespace, ``:``, and 64 lowercase hex digits),
  so neither another application's keys nor a namespace that merely starts like ours
  (``app`` vs ``app:v2``) can match. On a Redis Cluster redis-py's ``scan_iter`` runs a
  cursor on every primary and ``unlink`` splits the keys by slot.

Clients, timeouts and failures:

* Give either a client (``redis.Redis``, ``redis.cluster.RedisCluster``) or ``redis_url``.
  A client you pass is used as it is: its timeouts and retries are yours. redis-py's defaults
  are a 5 s socket timeout and 10 retries with exponential backoff, which is what makes a
  cache that is down cost seconds per call; prefer short timeouts for a cache.
* From ``redis_url`` RedisCache builds its own clients with ``socket_timeout`` and
  ``socket_connect_timeout`` both equal to ``socket_timeout`` (0.25 s by default) and one
  immediate retry on a connection error (a pooled connection that went stale), none on a
  timeout. Options in the URL's query string (``?socket_timeout=1``) take precedence.
* Store errors are not handled here: :class:`~llm_cache.caches.base.BaseCache` applies the
  library's one fail-open policy (a logged, counted miss; ``strict=True`` raises) and its
  circuit breaker, whose background probe is a ``PING`` (:meth:`RedisCache._probe`).

Async: ``alookup``/``aupdate``/``aclear`` use ``redis.asyncio`` natively. A redis.asyncio
client belongs to the event loop it first ran on, so RedisCache keeps one async client per
running loop, made from the same URL or from the connection settings of the client you
passed (address, database, credentials, TLS, timeouts), and closes it when that loop shuts
down (``asyncio.run`` and pytest-asyncio do this through ``loop.shutdown_asyncgens()``).
An async client you pass as ``async_redis`` is used as it is, in whatever loop you call from,
so it must stay in the loop it was made for (redis-py's rule).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Iterator

from .. import _redis_clients as rc
from .._ttl import validate_ttl
from ..errors import ConfigurationError, CorruptEntryError
from ..generation import CODEC_VERSION, Generation, generations_from_payload, loads_stored
from ..keys import cache_key_hex
from .base import BaseCache, CacheEntry, logger

__all__ = ["RedisCache"]

DEFAULT_NAMESPACE = "llm_cache"
DEFAULT_SOCKET_TIMEOUT = 0.25


class RedisCache(BaseCache):
    """Cache generations in Redis (standalone or Redis Cluster), sync and async.

    Args:
        redis_: a ``redis.Redis`` or ``redis.cluster.RedisCluster`` client to use as it is
            (its timeouts and retries are yours; it is not closed by :meth:`close`).
        redis_url: instead of a client, a URL such as ``redis://localhost:6379/0``
            (``rediss://`` for TLS, ``unix:///path?db=0``); RedisCache then builds and owns
            its clients, with short timeouts. For a cluster pass a ``RedisCluster`` client.
        ttl: seconds an entry lives (set atomically with the value, millisecond precision);
            ``None`` keeps it until cleared or evicted by Redis.
        namespace: the key prefix, ``{namespace}:{hash}``. ``clear()`` removes only this
            namespace. Any non-empty string without whitespace; glob characters are fine.
        socket_timeout: seconds for connect and for each reply, for the clients RedisCache
            builds from ``redis_url`` (default 0.25 s: a cache that cannot answer in that
            time is worth less than the call it delays). Not applied to a client you pass.
        strict: raise :class:`~llm_cache.errors.CacheBackendError` on store errors instead of
            treating them as misses.
        async_redis: a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``
            client for ``alookup``/``aupdate``/``aclear``. Without it, RedisCache makes one
            per event loop from ``redis_url`` or from ``redis_``'s connection settings.
            Given alone, the sync client is made from its settings.

    Example::

        cache = RedisCache(redis_url="redis://localhost:6379/0", ttl=3600, namespace="myapp")
        set_llm_cache(cache)
    """

    accepts_lone_surrogates = True  # values are kept as they are (Redis: surrogatepass)

    def __init__(
        self,
        redis_: Any = None,
        *,
        redis_url: str | None = None,
        ttl: float | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        socket_timeout: float | None = DEFAULT_SOCKET_TIMEOUT,
        strict: bool = False,
        async_redis: Any = None,
    ) -> None:
        super().__init__(strict=strict)
        self._redis = rc.redis_modules("RedisCache")
        self.namespace = rc.validate_namespace(namespace)
        self.ttl = validate_ttl(ttl)
        self.socket_timeout = rc.validate_socket_timeout(socket_timeout)
        # Milliseconds for SET PX; at least 1, since PX 0 is an error in Redis.
        self._px: int | None = None if self.ttl is None else max(1, round(self.ttl * 1000))
        self._prefix = self.namespace + ":"
        self._match = rc.glob_escape(self.namespace) + ":" + rc.HEX_GLOB

        if redis_ is not None and redis_url is not None:
            raise ConfigurationError(
                "pass either a Redis client (redis_=...) or redis_url=..., not both"
            )
        if redis_ is None and redis_url is None and async_redis is None:
            raise ConfigurationError(
                "RedisCache needs a server: pass redis_url='redis://localhost:6379/0', "
                "a client (redis_=redis.Redis(...)), or async_redis=redis.asyncio.Redis(...)"
            )
        if redis_url is not None:
            rc.validate_redis_url(redis_url)

        self._client: Any = None  # the sync client, built lazily when it must be derived
        self._owns_client = False
        self._client_lock = threading.Lock()
        self._async_user: Any = None
        # Per event loop: (client, closer). The closer is an async generator whose ``finally``
        # closes the client when the loop runs shutdown_asyncgens() (see _redis_clients.loop_client).
        self._aclients: rc.LoopRegistry = {}
        self._make_async: Callable[[], Any] | None = None
        self._make_sync: Callable[[], Any] | None = None
        self._async_error: str | None = None
        self._where = "?"

        if redis_url is not None:
            self._client = self._client_from_url(redis_url, asynchronous=False)
            self._owns_client = True
            self._make_async = lambda: self._client_from_url(redis_url, asynchronous=True)
            self._where = rc.describe_url(redis_url)
        elif redis_ is not None:
            kind = rc.client_kind(self._redis, redis_)
            if kind.startswith("async"):
                raise ConfigurationError(
                    "redis_ takes a sync client and got "
                    f"{type(redis_).__module__}.{type(redis_).__name__}; "
                    "pass an asyncio client as async_redis=..."
                )
            if kind == "unknown":
                raise ConfigurationError(
                    "redis_ must be a redis.Redis or redis.cluster.RedisCluster client, "
                    f"not {type(redis_).__name__}"
                )
            self._client = redis_
            self._where = rc.describe_client(redis_)
            try:
                self._make_async = rc.twin_factory(self._redis, redis_, kind, asynchronous=True)
            except ConfigurationError as exc:
                # Only async use needs it: a sync-only user must not be refused for it.
                self._async_error = str(exc)

        if async_redis is not None:
            kind = rc.client_kind(self._redis, async_redis)
            if not kind.startswith("async"):
                raise ConfigurationError(
                    "async_redis must be a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster "
                    f"client, not {type(async_redis).__module__}.{type(async_redis).__name__}"
                )
            self._async_user = async_redis
            if self._client is None:
                # Checked now, not at the first sync call: the breaker's probe is sync, so an
                # async-only cache without a sync client could never close its breaker.
                self._make_sync = rc.twin_factory(self._redis, async_redis, kind, asynchronous=False)
                self._where = rc.describe_client(async_redis)

    @property
    def timeout(self) -> float | None:
        """``socket_timeout``, under the name every cache uses for its time bound."""
        return self.socket_timeout

    def __repr__(self) -> str:
        # Host and port only: a URL may carry a password, which must never reach a log.
        return f"RedisCache(namespace={self.namespace!r}, ttl={self.ttl!r}, server={self._where})"

    # -- clients -------------------------------------------------------------------------------
    def _client_from_url(self, url: str, *, asynchronous: bool) -> Any:
        return rc.client_from_url(
            self._redis, url, asynchronous=asynchronous, socket_timeout=self.socket_timeout
        )

    def _sync(self) -> Any:
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    assert self._make_sync is not None
                    self._client = self._make_sync()
                    self._owns_client = True
                client = self._client
        return client

    async def _aclient(self) -> Any:
        if self._async_user is not None:
            return self._async_user
        if self._make_async is None:
            raise ConfigurationError(
                f"RedisCache cannot make an async client: {self._async_error}"
                if self._async_error
                else "RedisCache has no way to make an async client; pass async_redis="
            )
        return await rc.loop_client(self._aclients, self._make_async)

    # -- keys and values ----------------------------------------------------------------------
    def _key(self, prompt: str, llm_string: str) -> str:
        return self._prefix + cache_key_hex(prompt, llm_string)

    # -- the store operations (errors go to BaseCache's policy) --------------------------------
    def _lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        # The hit path: one GET, one json.loads, two string compares (profiled: the rest of
        # the time is redis-py's round trip, the sha256 key and building the Generations).
        raw = self._sync().get(self._prefix + cache_key_hex(prompt, llm_string))
        return None if raw is None else _decode(raw, prompt, llm_string)

    def _update(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        value = _encode(prompt, llm_string, generations)
        self._sync().set(self._prefix + cache_key_hex(prompt, llm_string), value, px=self._px)

    def _clear(self) -> None:
        rc.unlink_matching(self._sync(), self._match)

    async def _alookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        client = await self._aclient()
        raw = await client.get(self._key(prompt, llm_string))
        return None if raw is None else _decode(raw, prompt, llm_string)

    async def _aupdate(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        client = await self._aclient()
        value = _encode(prompt, llm_string, generations)
        await client.set(self._key(prompt, llm_string), value, px=self._px)

    async def _aclear(self) -> None:
        await rc.aunlink_matching(await self._aclient(), self._match)

    # -- listing (what ``llm-cache stats | inspect | search | export`` read) ---------------------
    def entries(self) -> Iterator[CacheEntry]:
        """Every entry of this namespace, in SCAN order (unordered, each key once).

        Values are fetched with their remaining TTL in pipelined batches. A value that is not
        an llm-cache entry is skipped with a warning; one that expires or is cleared between
        SCAN and GET is skipped silently. Store errors are raised (this is not a lookup).
        """
        client = self._sync()
        for batch in rc.scan_batches(client, self._match):
            yield from self._entries_of(client, batch)

    def _entries_of(self, client: Any, keys: list[Any]) -> Iterator[CacheEntry]:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        replies = pipe.execute()
        now = time.time()
        for i, key in enumerate(keys):
            raw, pttl = replies[2 * i], replies[2 * i + 1]
            if raw is None:
                continue
            try:
                data = _parse(raw)
                generations = generations_from_payload(data)
            except CorruptEntryError as exc:
                self.stats.corrupt += 1
                logger.warning("llm-cache: RedisCache: skipping %r, not an llm-cache entry: %s", key, exc)
                continue
            expires = now + pttl / 1000 if isinstance(pttl, int) and pttl > 0 else None
            yield CacheEntry(data["p"], data["l"], generations, expires_at=expires)

    def namespaces(self) -> list[tuple[str, int, int]]:
        """``(namespace, entries, bytes of their values)`` of every RedisCache namespace in this
        database, largest first: a SCAN of ``*:<64 hex>`` keys whose values are llm-cache
        entries (other keys, such as semantic caches' or other programs', are not counted)."""
        client = self._sync()
        found: dict[str, list[int]] = {}
        for batch in rc.scan_batches(client, "*:" + rc.HEX_GLOB):
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.get(key)
            for key, raw in zip(batch, pipe.execute(raise_on_error=False)):
                if not isinstance(raw, (bytes, str)):
                    continue  # another type (a vector set, a hash): not ours
                try:
                    # the generations too: a semantic store's payload has "p" and "l" as well
                    generations_from_payload(_parse(raw))
                except CorruptEntryError:
                    continue
                name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
                stats = found.setdefault(name[: -65], [0, 0])
                stats[0] += 1
                stats[1] += len(raw)
        return sorted(((ns, n, size) for ns, (n, size) in found.items()), key=lambda r: (-r[1], r[0]))

    def count(self) -> int:
        """Number of keys in this namespace (one SCAN; no value is read or checked)."""
        return rc.count_matching(self._sync(), self._match)

    def _probe(self) -> None:
        """The breaker's health check: a PING (no key, no value to decode)."""
        self._sync().ping()

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the clients RedisCache made (never the ones you passed).

        Async clients are closed by their own event loops: dropping them here lets the loop
        finalise their closers; a loop that is already closed took its connections with it.
        """
        with self._client_lock:
            if self._owns_client and self._client is not None:
                self._client.close()
        self._aclients.clear()

    async def aclose(self) -> None:
        """Close the async client this cache made for the running event loop (if any)."""
        await rc.aclose_loop_client(self._aclients)


# -- helpers (no I/O) ----------------------------------------------------------------------------
def _encode(prompt: str, llm_string: str, generations: list[Generation]) -> bytes:
    """The stored value: the codec's ``{"v", "g"}`` plus the full prompt and llm_string."""
    text = json.dumps(
        {"v": CODEC_VERSION, "p": prompt, "l": llm_string, "g": [g.to_dict() for g in generations]},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    # surrogatepass: a prompt may hold lone surrogates (the key hashes them the same way);
    # json.loads(bytes) decodes with surrogatepass, so they come back unchanged.
    return text.encode("utf-8", "surrogatepass")


def _parse(raw: bytes | str) -> dict[str, Any]:
    """A stored value as a dict with string ``p`` and ``l``; CorruptEntryError otherwise."""
    data = loads_stored(raw)
    if not isinstance(data, dict) or data.get("v") != CODEC_VERSION:
        raise CorruptEntryError("stored value is not an llm-cache entry of a known format version")
    if not isinstance(data.get("p"), str) or not isinstance(data.get("l"), str):
        raise CorruptEntryError("stored value lacks the prompt or llm_string it answers")
    return data


def _decode(raw: bytes | str, prompt: str, llm_string: str) -> list[Generation] | None:
    """The generations in ``raw`` if it is an entry for exactly (prompt, llm_string).

    An entry for another pair (a hash collision, another writer) is a miss; a value that is
    not an entry at all raises CorruptEntryError (BaseCache counts it and returns a miss).
    """
    data = _parse(raw)
    if data["p"] != prompt or data["l"] != llm_string:
        return None
    return generations_from_payload(data)
