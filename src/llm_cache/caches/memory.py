"""InMemoryCache: a thread-safe LRU with optional TTL, in this process only."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Iterator

from .._ttl import expires_at, validate_ttl
from ..errors import ConfigurationError
from ..generation import Generation
from .base import BaseCache, CacheEntry

__all__ = ["InMemoryCache"]

_Entry = tuple[tuple[Generation, ...], "float | None"]


class InMemoryCache(BaseCache):
    """Keep generations in a dict in this process.

    Args:
        maxsize: keep at most this many entries, evicting the least recently used
            (a hit counts as a use). ``None`` keeps everything.
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
    ) -> None:
        super().__init__(strict=strict)
        if maxsize is not None and (isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1):
            raise ConfigurationError(f"maxsize must be a positive int or None, not {maxsize!r}")
        self.maxsize = maxsize
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
                return None
            if self.maxsize is not None:  # recency only matters when something is evicted
                self._data.move_to_end(key)
        return list(generations)

    def _update(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        key = (prompt, llm_string)
        entry = (tuple(generations), expires_at(self._clock(), self.ttl))
        with self._lock:
            self._data[key] = entry
            self._data.move_to_end(key)
            if self.maxsize is not None:
                while len(self._data) > self.maxsize:
                    self._data.popitem(last=False)

    def _clear(self) -> None:
        with self._lock:
            self._data.clear()

    # Nothing here blocks, so the async twins run inline instead of in a worker thread.
    async def _alookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        return self._lookup(prompt, llm_string)

    async def _aupdate(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        self._update(prompt, llm_string, generations)

    async def _aclear(self) -> None:
        self._clear()
