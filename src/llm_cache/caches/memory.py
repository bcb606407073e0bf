"""InMemoryCache: a thread-safe LRU (or LFU / cost-aware) cache with optional TTL, in this process only."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Iterator

from .._ttl import expires_at, validate_ttl
from ..errors import ConfigurationError
from ..eviction import Caps, EntryStats, Prunable, PruneReport, PruneRequest, plan, tokens_of
from ..generation import Generation, encode_generations
from .base import BaseCache, CacheEntry

__all__ = ["InMemoryCache"]

_Entry = tuple[tuple[Generation, ...], "float | None"]
# Per-entry statistics kept when a byte cap or a non-LRU policy needs them:
# [size in bytes, hits, last use (monotonic), tokens from stored usage or None]
_Stats = list


def _entry_size(prompt: str, llm_string: str, generations: list[Generation]) -> int:
    """Payload bytes of an entry, counted as the persistent stores count them."""
    return len(prompt.encode("utf-8", "surrogatepass")) + len(llm_string.encode("utf-8", "surrogatepass")) + len(
        encode_generations(generations).encode("utf-8", "surrogatepass")
    )


class InMemoryCache(BaseCache, Prunable):
    """Keep generations in a dict in this process.

    Args:
        maxsize: keep at most this many entries, evicting by ``policy``. ``None``: no count cap.
        max_bytes: keep at most this many payload bytes (prompt, llm_string and the
            generations' JSON). ``None``: no byte cap.
        policy: ``"lru"`` (least recently used, a hit counts as a use: the default),
            ``"lfu"`` or ``"cost"`` (see :mod:`llm_cache.eviction`).
        evict_batch: for ``"lfu"``/``"cost"``, entries past the cap before an eviction
            pass (default a twentieth of the cap). LRU evicts one entry at a time in O(1):
            the dict's order *is* the least-recently-used order the policy ranks by.
        ttl: seconds an entry lives after it is written; ``None`` keeps it forever.
        clock: the time source for TTL (monotonic by default; tests inject their own).

    The key is the exact ``(prompt, llm_string)`` pair, so a hit is exact by
    construction and no hash is computed on the hit path.
    """

    accepts_lone_surrogates = True  # live objects: any str is kept

    def __init__(
        self,
        maxsize: int | None = None,
        ttl: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        strict: bool = False,
        max_bytes: int | None = None,
        policy: str = "lru",
        evict_batch: int | None = None,
    ) -> None:
        super().__init__(strict=strict)
        if maxsize is not None and (isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1):
            raise ConfigurationError(f"maxsize must be a positive int or None, not {maxsize!r}")
        self.maxsize = maxsize
        self.caps = Caps(maxsize, max_bytes, policy, evict_batch)
        # Statistics cost a few µs a write; they are kept only when a cap needs them.
        self._track = max_bytes is not None or (self.caps.enabled and policy != "lru")
        self._stats: dict[tuple[str, str], _Stats] = {}
        self._bytes = 0
        self.ttl = validate_ttl(ttl)
        self._clock = clock
        self._data: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def count(self) -> int:
        """Number of live (unexpired) entries."""
        return sum(1 for _ in self.entries())

    def entries(self) -> Iterator[CacheEntry]:
        """A snapshot of the live entries, least recently used first.

        Expiry is kept on this cache's own (monotonic) clock; it is reported as wall-clock
        epoch seconds, like every other backend's.
        """
        now, wall = self._clock(), time.time()
        with self._lock:
            items = list(self._data.items())
        for (prompt, llm_string), (generations, expiry) in items:
            if expiry is not None and now >= expiry:
                continue
            yield CacheEntry(
                prompt, llm_string, list(generations), expires_at=None if expiry is None else wall + expiry - now
            )

    def _lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        key = (prompt, llm_string)
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            generations, expiry = entry
            if expiry is not None and self._clock() >= expiry:
                del self._data[key]
                self._forget(key)
                return None
            if self.maxsize is not None or self._track:  # recency only matters when something is evicted
                self._data.move_to_end(key)
            if self._track:
                stats = self._stats[key]
                stats[1] += 1
                stats[2] = self._clock()
        return list(generations)

    def _update(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        key = (prompt, llm_string)
        now = self._clock()
        entry = (tuple(generations), expires_at(now, self.ttl))
        stats: _Stats | None = None
        if self._track:
            stats = [_entry_size(prompt, llm_string, generations), 0, now, None]
            if self.caps.policy == "cost":
                stats[3] = tokens_of(generations)
        with self._lock:
            self._data[key] = entry
            self._data.move_to_end(key)
            if stats is not None:
                old = self._stats.get(key)
                if old is not None:
                    self._bytes -= old[0]
                    stats[1] = old[1]  # a rewrite keeps the entry's hit count
                self._stats[key] = stats
                self._bytes += stats[0]
            if not self.caps.enabled:
                return
            if self.caps.policy == "lru":
                self._evict_lru(self.caps)
            elif self.caps.over(len(self._data), self._bytes):
                self._evict_ranked(self.caps)

    # -- eviction (caller holds the lock) --------------------------------------------------
    def _evict_lru(self, caps: Caps) -> int:
        """Pop least recently used entries until within the caps: O(1) each, since the dict
        is kept in last-use order (the order :func:`llm_cache.eviction.select_victims`
        ranks ``"lru"`` by)."""
        removed = 0
        while self._data and caps.excess(len(self._data), self._bytes) != (0, 0):
            key, _ = self._data.popitem(last=False)
            self._forget(key)
            removed += 1
        return removed

    def _evict_ranked(self, caps: Caps) -> int:
        ranked = (
            EntryStats(key, *self._stats[key]) if self._track else EntryStats(key, 0, 0, float(i))
            for i, key in enumerate(self._data)
        )
        victims = plan(caps, len(self._data), self._bytes, ranked)
        for key in victims:
            del self._data[key]  # type: ignore[arg-type]
            self._forget(key)  # type: ignore[arg-type]
        return len(victims)

    def _forget(self, key: tuple[str, str]) -> None:
        stats = self._stats.pop(key, None)
        if stats is not None:
            self._bytes -= stats[0]

    def _drop_expired(self) -> int:
        now = self._clock()
        expired = [k for k, (_, expiry) in self._data.items() if expiry is not None and now >= expiry]
        for key in expired:
            del self._data[key]
            self._forget(key)
        return len(expired)

    def _prune(self, request: PruneRequest) -> PruneReport:
        """Drop expired entries and evict down to ``max_entries``/``max_bytes`` (default:
        this cache's caps). ``older_than`` is refused: this cache keeps no write times."""
        expired, older_than, max_entries, max_bytes, policy, dry_run = request
        if older_than is not None:
            raise ConfigurationError("InMemoryCache keeps no write times: prune it by --expired or a cap")
        caps = self.caps.with_overrides(max_entries=max_entries, max_bytes=max_bytes, policy=policy)
        if caps.max_bytes is not None and not self._track:
            raise ConfigurationError("this InMemoryCache keeps no entry sizes: create it with max_bytes= to cap bytes")
        if dry_run:
            with self._lock:
                snapshot = (OrderedDict(self._data), {k: list(v) for k, v in self._stats.items()}, self._bytes)
        with self._lock:
            n_expired = self._drop_expired() if expired else 0
            n_evicted = 0
            if caps.enabled:
                n_evicted = self._evict_lru(caps) if caps.policy == "lru" else self._evict_ranked(caps)
            report = PruneReport(n_expired, 0, n_evicted, len(self._data), self._bytes if self._track else None)
            if dry_run:
                self._data, self._stats, self._bytes = snapshot
        return report

    def _clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._stats.clear()
            self._bytes = 0

    def delete(self, prompt: str, llm_string: str) -> bool:
        """Remove one entry; whether it was there."""
        with self._lock:
            return self._data.pop((prompt, llm_string), None) is not None

    # Nothing here blocks, so the async twins run inline instead of in a worker thread.
    async def _alookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        return self._lookup(prompt, llm_string)

    async def _aupdate(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        self._update(prompt, llm_string, generations)

    async def _aclear(self) -> None:
        self._clear()
