"""Semantic cache entries in Redis 8 vector sets (``VADD`` / ``VSIM``), sync and native async.

Layout (``{ns}`` is the namespace):

* ``{ns}:v:{sha256(partition)}`` -- one **vector set per partition**. Elements are entry keys
  (the hex sha256 of prompt + llm_string), vectors are sent as little-endian FP32 blobs. A
  search is one ``VSIM`` on the partition's own set: partition isolation is exact and costs
  nothing. The alternative, one set per namespace with ``SETATTR {"p": partition}`` and
  ``VSIM ... FILTER '.p == "..."'``, was measured on Redis 8.2.3 (20,000 random 384-d vectors,
  Q8, one partition of 18,000 and 100 of 20; a loaded 2-core machine, so the figures are
  rough): searching a 20-entry partition took 0.2-0.4 ms p50 in its own set and 10-34 ms p50
  through ``FILTER`` (the filtered HNSW walk visits the whole graph looking for the few
  matching nodes), with the same memory (21.7 MB vs 22.1 MB). The partition's name is hashed
  so that every key of the store has a fixed shape (see ``clear``).
* ``{ns}:e:{key}`` -- the entry's payload, a JSON string (partition, embedded text, full
  prompt, llm_string, encoded generations, times), written with ``SET ... PX`` so that the
  TTL is set atomically with the value and enforced by Redis itself.

Vector-set elements have no TTL of their own. A search therefore reads the payloads of the
candidates ``VSIM`` returns, drops those whose payload is gone (expired or deleted) or belongs
to another partition (an entry re-added elsewhere), ``VREM``-s them from the set (lazy purge),
and asks for more candidates when that left fewer than ``k``.

``VSIM ... WITHSCORES`` reports a similarity in [0, 1], ``(1 + cos) / 2`` (verified against
numpy on the server: 1.0 for the same vector, 0.0 for its opposite); the store converts it
back to the cosine similarity the :class:`VectorStore` contract speaks, ``2 * score - 1``.

``clear()`` walks this namespace with ``SCAN MATCH`` and ``UNLINK``-s in batches, never
``FLUSHDB``. The pattern is the escaped namespace followed by ``:e:`` or ``:v:`` and exactly 64
hex digits, so another namespace (even ``app:v`` next to ``app``) cannot match.

Quantization (``Q8`` by default, ``NOQUANT``, ``BIN``) is fixed when a set is created; Redis
refuses a ``VADD`` with another one, which the store reports as a ConfigurationError.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ... import _redis_clients as rc
from ..._imports import require
from ..._ttl import validate_ttl
from ...errors import ConfigurationError, CorruptEntryError
from ..cache import SemanticCache
from .base import Neighbour, SemanticEntry, VectorStore, embedding_with_dimension, positive_int

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RedisSemanticCache", "RedisVectorStore"]

logger = logging.getLogger("llm_cache.semantic.redis")

DEFAULT_NAMESPACE = "llm_cache_semantic"
DEFAULT_SOCKET_TIMEOUT = 0.25
QUANTIZATIONS = ("Q8", "NOQUANT", "BIN")

_FORMAT = 1  # version of the payload JSON
_KEY_RE = re.compile(r"[0-9a-f]{64}\Z")
# A search asks VSIM for k candidates, and for more (up to this many rounds) only when stale
# ones had to be dropped.
_MAX_ROUNDS = 4


class RedisVectorStore(VectorStore):
    """A :class:`VectorStore` on Redis 8 vector sets.

    Args:
        redis_: a ``redis.Redis`` client to use as it is (not closed by :meth:`close`).
        redis_url: instead of a client, ``redis://host:6379/0``; the store then owns its
            clients and gives them ``socket_timeout`` for connect and reads.
        namespace: key prefix; :meth:`clear` removes only this namespace.
        dimension: length of every vector (the embedding model's dimension).
        ttl: an upper bound, in seconds, on how long an entry lives (an entry's own
            ``expires_at`` applies when it is earlier). ``None``: only ``expires_at``.
        quantization: how the vector sets store vectors: ``"Q8"`` (int8, Redis's default),
            ``"NOQUANT"`` (float32) or ``"BIN"`` (1 bit per dimension; coarse).
        socket_timeout: seconds, for clients built from ``redis_url``.
        async_redis: a ``redis.asyncio.Redis`` for the async methods. Without it the store
            makes one per event loop from ``redis_url`` or from ``redis_``'s settings.
        ef: VSIM exploration factor (``None``: Redis's default). Higher finds the true
            nearest neighbours more often, at some cost in latency.
        nothread: run each VSIM on Redis's main thread (``NOTHREAD``) instead of its worker
            threads. Measured on a loaded 2-core machine (5,000 and 20 vectors of 384
            dimensions, Q8): p50 1.36 ms instead of 2.37 ms, p99 2.3 ms instead of 10.5 ms,
            and 0.25 instead of 0.37 ms for the small set; but the main thread serves no other
            client meanwhile, so the default keeps Redis's threaded search.
        clock: wall-clock source, compared with ``SemanticEntry.expires_at``.
    """

    def __init__(
        self,
        redis_: Any = None,
        *,
        redis_url: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        dimension: int,
        ttl: float | None = None,
        quantization: str = "Q8",
        socket_timeout: float | None = DEFAULT_SOCKET_TIMEOUT,
        async_redis: Any = None,
        ef: int | None = None,
        nothread: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = rc.redis_modules("RedisVectorStore")
        self._np = require("numpy", "semantic", "RedisVectorStore")
        self.namespace = rc.validate_namespace(namespace)
        self.malformed_rows = 0  # stored entries skipped by searches because they were unreadable
        self.dimension = positive_int(dimension, "dimension")
        self.ttl = validate_ttl(ttl)
        quant = str(quantization).upper() if isinstance(quantization, str) else quantization
        if quant not in QUANTIZATIONS:
            raise ConfigurationError(
                f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}"
            )
        self.quantization: str = quant
        self.ef = None if ef is None else positive_int(ef, "ef")
        self.nothread = bool(nothread)
        self.socket_timeout = rc.validate_socket_timeout(socket_timeout)
        self._clock = clock
        self._entry_prefix = self.namespace + ":e:"
        self._set_prefix = self.namespace + ":v:"
        self._match = rc.glob_escape(self.namespace) + ":[ev]:" + rc.HEX_GLOB
        self._entry_match = rc.glob_escape(self.namespace) + ":e:" + rc.HEX_GLOB

        if redis_ is not None and redis_url is not None:
            raise ConfigurationError(
                "pass either a Redis client (redis_=...) or redis_url=..., not both"
            )
        if redis_ is None and redis_url is None:
            raise ConfigurationError(
                "RedisVectorStore needs a server: pass redis_url='redis://localhost:6379/0' or a client (redis_=redis.Redis(...))"
            )
        self._owns_client = redis_ is None
        self._make_async: Callable[[], Any] | None = None
        if redis_url is not None:
            rc.validate_redis_url(redis_url)
            self._client = self._from_url(redis_url, asynchronous=False)
            self._make_async = lambda: self._from_url(redis_url, asynchronous=True)
        else:
            kind = rc.client_kind(self._redis, redis_)
            if kind not in ("standalone", "cluster"):
                raise ConfigurationError(
                    "redis_ must be a sync redis.Redis or redis.cluster.RedisCluster client "
                    f"(an asyncio client goes in async_redis=), not {type(redis_).__name__}"
                )
            self._client = redis_
            if kind == "standalone":
                # A cluster client gets no derived async twin: async use of a cluster takes an
                # explicit async_redis= (see test_redis_cluster_sync_and_async).
                try:
                    self._make_async = rc.twin_factory(self._redis, redis_, kind, asynchronous=True)
                except ConfigurationError:
                    pass  # e.g. Sentinel: only async use needs it, and it says to pass async_redis=
        self._async_user = async_redis
        # One async client per event loop: a redis.asyncio client belongs to the loop it first
        # ran on. Each is closed by the loop at shutdown (see _redis_clients.loop_client).
        self._aclients: rc.LoopRegistry = {}

    def __repr__(self) -> str:
        return (
            f"RedisVectorStore(namespace={self.namespace!r}, dimension={self.dimension}, "
            f"quantization={self.quantization!r}, ttl={self.ttl!r})"
        )

    # -- clients ----------------------------------------------------------------------------------
    def _from_url(self, url: str, *, asynchronous: bool) -> Any:
        return rc.client_from_url(
            self._redis, url, asynchronous=asynchronous, socket_timeout=self.socket_timeout
        )

    async def _aclient(self) -> Any:
        if self._async_user is not None:
            return self._async_user
        if self._make_async is None:
            raise ConfigurationError(
                "RedisVectorStore cannot derive an async client from this redis_ client; pass async_redis="
            )
        return await rc.loop_client(self._aclients, self._make_async)

    # -- keys and values --------------------------------------------------------------------------
    def _entry_key(self, key: str) -> str:
        return self._entry_prefix + key

    def _set_key(self, partition: str) -> str:
        digest = hashlib.sha256(partition.encode("utf-8", "surrogatepass")).hexdigest()
        return self._set_prefix + digest

    def _blob(self, vector: Any) -> bytes:
        array = self._np.asarray(vector, dtype="<f4").reshape(-1)
        if array.shape[0] != self.dimension:
            raise ConfigurationError(
                f"vector has dimension {array.shape[0]}, this store holds dimension {self.dimension}"
            )
        if not self._np.isfinite(array).all():
            raise ConfigurationError("vector contains NaN or infinity")
        return array.tobytes()

    def _px(self, entry: SemanticEntry, now: float) -> tuple[float | None, int | None]:
        """(effective expires_at, milliseconds to live) for an entry written at ``now``."""
        expiry = entry.expires_at
        if self.ttl is not None:
            cap = now + self.ttl
            expiry = cap if expiry is None else min(expiry, cap)
        if expiry is None:
            return None, None
        return expiry, math.ceil((expiry - now) * 1000)

    def _add_commands(self, entry: SemanticEntry, vector: Any) -> list[tuple[Any, ...]]:
        _check_key(entry.key)
        blob = self._blob(vector)
        now = self._clock()
        expiry, px = self._px(entry, now)
        ekey = self._entry_key(entry.key)
        if px is not None and px <= 0:
            # Already expired: adding it means the key has no live entry any more.
            return [("DEL", ekey)]
        payload = _encode(entry, expiry)
        set_cmd: tuple[Any, ...] = (
            ("SET", ekey, payload) if px is None else ("SET", ekey, payload, "PX", px)
        )
        # Payload first: a VADD that fails leaves an entry that get() finds and search does
        # not; the other order would leave an element without payload, which search purges.
        return [
            set_cmd,
            ("VADD", self._set_key(entry.partition), "FP32", blob, entry.key, self.quantization),
        ]

    def _vsim(self, partition: str, blob: bytes, count: int) -> tuple[Any, ...]:
        cmd: tuple[Any, ...] = (
            "VSIM",
            self._set_key(partition),
            "FP32",
            blob,
            "WITHSCORES",
            "COUNT",
            count,
        )
        if self.ef is not None:
            cmd += ("EF", self.ef)
        if self.nothread:
            cmd += ("NOTHREAD",)
        return cmd

    def _select(
        self, partition: str, candidates: list[tuple[str, float]], payloads: list[Any], now: float
    ) -> tuple[list[Neighbour], list[str]]:
        """Live neighbours among ``candidates`` and the elements to purge from the set."""
        found: list[Neighbour] = []
        stale: list[str] = []
        for (key, score), raw in zip(candidates, payloads):
            if raw is None:
                stale.append(key)
                continue
            try:
                entry = _decode(raw, key)
            except CorruptEntryError as exc:
                # One bad payload must not make every search near it fail; skip it (get()
                # raises for it, so the cache counts it when the exact path meets it).
                self.malformed_rows += 1
                logger.warning(
                    "llm-cache: skipping an undecodable semantic entry in %s: %s",
                    self.namespace,
                    exc,
                )
                continue
            if entry.partition != partition:
                stale.append(key)  # the key was re-added in another partition
                continue
            if entry.expires_at is not None and now >= entry.expires_at:
                continue  # Redis drops it within milliseconds; never return it meanwhile
            similarity = max(-1.0, min(1.0, 2.0 * score - 1.0))
            found.append(Neighbour(entry=entry, similarity=similarity))
        return found, stale

    # -- VectorStore ------------------------------------------------------------------------------
    def add(self, entry: SemanticEntry, vector: np.ndarray) -> None:
        """Insert or replace (by ``entry.key``) one entry with its vector."""
        commands = self._add_commands(entry, vector)
        pipe = self._client.pipeline(transaction=False)
        for cmd in commands:
            pipe.execute_command(*cmd)
        _raise_config_errors(pipe.execute(raise_on_error=False), self)

    def get(self, key: str) -> SemanticEntry | None:
        """The live entry with this exact key, or ``None``."""
        if not _KEY_RE.match(key):
            return None
        raw = self._client.get(self._entry_key(key))
        return self._live(raw, key)

    def search(self, partition: str, vector: np.ndarray, k: int = 4) -> list[Neighbour]:
        """Up to ``k`` live entries of ``partition`` nearest to ``vector``, most similar first."""
        if k <= 0:
            return []
        blob = self._blob(vector)
        client = self._client
        count = k
        purge: list[str] = []
        found: list[Neighbour] = []
        for _ in range(_MAX_ROUNDS):
            candidates = _parse_vsim(client.execute_command(*self._vsim(partition, blob, count)))
            if not candidates:
                break
            pipe = client.pipeline(transaction=False)
            for key, _score in candidates:
                pipe.get(self._entry_key(key))
            found, stale = self._select(partition, candidates, pipe.execute(), self._clock())
            purge.extend(stale)
            if len(found) >= k or len(candidates) < count:
                break
            count = 2 * count + len(stale)
        if purge:
            # VREM takes one element per call: pipeline them (one round trip).
            pipe = client.pipeline(transaction=False)
            for key in dict.fromkeys(purge):
                pipe.execute_command("VREM", self._set_key(partition), key)
            pipe.execute()
        return found[:k]

    def delete(self, keys: Sequence[str]) -> None:
        """Remove these entries (missing keys are ignored)."""
        keys = [key for key in dict.fromkeys(keys) if _KEY_RE.match(key)]
        if not keys:
            return
        client = self._client
        # GETs in a pipeline rather than MGET: one round trip either way, and a pipeline also
        # works on a Redis Cluster, where the keys of one MGET must share a slot.
        reads = client.pipeline(transaction=False)
        for key in keys:
            reads.get(self._entry_key(key))
        raws = reads.execute()
        pipe = client.pipeline(transaction=False)
        for cmd in self._delete_commands(keys, raws):
            pipe.execute_command(*cmd)
        pipe.execute()

    def _delete_commands(self, keys: list[str], raws: list[Any]) -> list[tuple[Any, ...]]:
        commands: list[tuple[Any, ...]] = []
        for key, raw in zip(keys, raws):
            if raw is not None:
                partition = _partition_of(raw)
                if partition is not None:
                    commands.append(("VREM", self._set_key(partition), key))
            # An entry whose payload already expired still has its element; the next search
            # of its partition purges it.
            commands.append(("UNLINK", self._entry_key(key)))
        return commands

    def clear(self) -> None:
        """Remove every entry of this namespace (payloads and vector sets), and nothing else."""
        rc.unlink_matching(self._client, self._match)

    def count(self) -> int:
        """Number of live entries (payload keys) in this namespace; a ``SCAN`` of the database."""
        return rc.count_matching(self._client, self._entry_match)

    def close(self) -> None:
        """Close the clients the store made (never one you passed)."""
        if self._owns_client:
            self._client.close()
        self._aclients.clear()

    async def aclose(self) -> None:
        """Close the async client made for the running event loop, if any."""
        await rc.aclose_loop_client(self._aclients)

    # -- native async twins -----------------------------------------------------------------------
    async def aadd(self, entry: SemanticEntry, vector: np.ndarray) -> None:
        commands = self._add_commands(entry, vector)
        client = await self._aclient()
        pipe = client.pipeline(transaction=False)
        for cmd in commands:
            pipe.execute_command(*cmd)
        _raise_config_errors(await pipe.execute(raise_on_error=False), self)

    async def aget(self, key: str) -> SemanticEntry | None:
        if not _KEY_RE.match(key):
            return None
        client = await self._aclient()
        return self._live(await client.get(self._entry_key(key)), key)

    async def asearch(self, partition: str, vector: np.ndarray, k: int = 4) -> list[Neighbour]:
        if k <= 0:
            return []
        blob = self._blob(vector)
        client = await self._aclient()
        count = k
        purge: list[str] = []
        found: list[Neighbour] = []
        for _ in range(_MAX_ROUNDS):
            candidates = _parse_vsim(
                await client.execute_command(*self._vsim(partition, blob, count))
            )
            if not candidates:
                break
            pipe = client.pipeline(transaction=False)
            for key, _score in candidates:
                pipe.get(self._entry_key(key))
            found, stale = self._select(partition, candidates, await pipe.execute(), self._clock())
            purge.extend(stale)
            if len(found) >= k or len(candidates) < count:
                break
            count = 2 * count + len(stale)
        if purge:
            pipe = client.pipeline(transaction=False)
            for key in dict.fromkeys(purge):
                pipe.execute_command("VREM", self._set_key(partition), key)
            await pipe.execute()
        return found[:k]

    async def adelete(self, keys: Sequence[str]) -> None:
        keys = [key for key in dict.fromkeys(keys) if _KEY_RE.match(key)]
        if not keys:
            return
        client = await self._aclient()
        reads = client.pipeline(transaction=False)
        for key in keys:
            reads.get(self._entry_key(key))
        raws = await reads.execute()
        pipe = client.pipeline(transaction=False)
        for cmd in self._delete_commands(keys, raws):
            pipe.execute_command(*cmd)
        await pipe.execute()

    async def aclear(self) -> None:
        await rc.aunlink_matching(await self._aclient(), self._match)

    async def acount(self) -> int:
        return await rc.acount_matching(await self._aclient(), self._entry_match)

    # -- helpers ----------------------------------------------------------------------------------
    def _live(self, raw: Any, key: str) -> SemanticEntry | None:
        if raw is None:
            return None
        entry = _decode(raw, key)
        if entry.expires_at is not None and self._clock() >= entry.expires_at:
            return None
        return entry

    def ping(self) -> None:
        """Raise when the server cannot be reached (a health check for circuit breakers)."""
        self._client.ping()


class RedisSemanticCache(SemanticCache):
    """A :class:`~llm_cache.semantic.cache.SemanticCache` whose entries live in Redis 8 vector sets.

    ``RedisSemanticCache(redis_url="redis://localhost:6379/0", embedding=LocalEmbeddings())``

    Args:
        redis_url, redis_, async_redis, quantization, socket_timeout, ef, nothread: as for
            :class:`RedisVectorStore`.
        embedding: the embedding model (default :class:`~llm_cache.embeddings.LocalEmbeddings`).
        namespace: the key prefix of this cache's entries in Redis; ``clear()`` removes only
            this namespace.
        ttl: seconds an entry lives (Redis expires it by itself).
        options: the other :class:`SemanticCache` options (``threshold``, ``guards``, ``k``,
            ``strict``, ``annotate``, ``clock``).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        embedding: Any = None,
        *,
        redis_: Any = None,
        async_redis: Any = None,
        namespace: str = DEFAULT_NAMESPACE,
        ttl: float | None = None,
        quantization: str = "Q8",
        socket_timeout: float | None = DEFAULT_SOCKET_TIMEOUT,
        ef: int | None = None,
        nothread: bool = False,
        clock: Callable[[], float] = time.time,
        **options: Any,
    ) -> None:
        embedding, dimension = embedding_with_dimension(embedding)
        store = RedisVectorStore(
            redis_,
            redis_url=redis_url,
            namespace=namespace,
            dimension=dimension,
            quantization=quantization,
            socket_timeout=socket_timeout,
            async_redis=async_redis,
            ef=ef,
            nothread=nothread,
            clock=clock,
        )
        self._init_owning(store, embedding=embedding, ttl=ttl, namespace=namespace, clock=clock, **options)


# -- helpers (no I/O) --------------------------------------------------------------------------
def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ConfigurationError(
            f"entry keys must be 64 lowercase hex digits (llm_cache.keys.cache_key_hex), not {key!r:.80}"
        )


def _parse_vsim(reply: Any) -> list[tuple[str, float]]:
    """``[(element, score)]`` from a VSIM WITHSCORES reply (RESP3 map or RESP2 flat list)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        pairs: Iterable[tuple[Any, Any]] = reply.items()
    else:
        it = iter(reply)
        pairs = zip(it, it)
    out = []
    for element, score in pairs:
        name = element.decode("ascii") if isinstance(element, bytes) else str(element)
        out.append((name, float(score)))
    return out


def _raise_config_errors(results: list[Any], store: RedisVectorStore) -> None:
    for result in results:
        if isinstance(result, Exception):
            message = str(result)
            if "mismatch" in message:
                raise ConfigurationError(
                    f"namespace {store.namespace!r} already holds vector sets made differently "
                    f"({message}); use another namespace for this embedding model or quantization, "
                    "or clear() it"
                ) from result
            raise result


def _encode(entry: SemanticEntry, expiry: float | None) -> bytes:
    text = json.dumps(
        {
            "v": _FORMAT,
            "p": entry.partition,
            "t": entry.text,
            "q": entry.prompt,
            "l": entry.llm_string,
            "r": entry.response,
            "c": entry.created_at,
            "x": expiry,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    # surrogatepass: prompts may hold lone surrogates; json.loads(bytes) restores them.
    return text.encode("utf-8", "surrogatepass")


def _decode(raw: bytes | str, key: str) -> SemanticEntry:
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("v") != _FORMAT:
            raise ValueError("not a semantic entry of this version")
        expiry = data["x"]
        entry = SemanticEntry(
            key=key,
            partition=data["p"],
            text=data["t"],
            prompt=data["q"],
            llm_string=data["l"],
            response=data["r"],
            created_at=float(data["c"]),
            expires_at=None if expiry is None else float(expiry),
        )
        for field in (entry.partition, entry.text, entry.prompt, entry.llm_string, entry.response):
            if not isinstance(field, str):
                raise TypeError("a text field is not a string")
        return entry
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptEntryError(f"undecodable semantic entry {key[:12]}...: {exc}") from exc


def _partition_of(raw: bytes | str) -> str | None:
    try:
        data = json.loads(raw)
        partition = data.get("p") if isinstance(data, dict) else None
    except ValueError:
        return None
    return partition if isinstance(partition, str) else None
