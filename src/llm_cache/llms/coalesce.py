"""Request coalescing: concurrent identical misses in one process make one provider call.

The registry maps (cache, prompt, llm_string) to a :class:`concurrent.futures.Future`
owned by the caller that makes the provider call. Everyone else who misses on the same
key meanwhile waits on that future: threads with ``Future.result()``, coroutines with
``asyncio.wrap_future`` (which works across event loops and threads), so sync and async
callers coalesce with each other too.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Generic, TypeVar

from ..generation import Generation

if TYPE_CHECKING:
    from ..caches.base import BaseCache

__all__ = ["Coalescer", "COALESCER"]

Key = TypeVar("Key", bound=Hashable)


class Coalescer(Generic[Key]):
    """Registry of in-flight provider calls, by key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[Key, Future[list[Generation]]] = {}
        # Bumped on every resolve. A caller that read it before its cache lookup knows,
        # when it is unchanged at claim time, that no answer can have been stored in
        # between, and so can skip a second lookup.
        self.completions = 0

    def claim(self, keys: Iterable[Key]) -> tuple[list[Key], dict[Key, Future[list[Generation]]]]:
        """Split ``keys`` into those this caller now owns and those already in flight."""
        owned: list[Key] = []
        waiting: dict[Key, Future[list[Generation]]] = {}
        with self._lock:
            for key in keys:
                future = self._inflight.get(key)
                if future is None:
                    self._inflight[key] = Future()
                    owned.append(key)
                else:
                    waiting[key] = future
        return owned, waiting

    def resolve(self, key: Key, generations: list[Generation]) -> None:
        """Publish the answer for an owned key (after it was written to the cache)."""
        with self._lock:
            future = self._inflight.pop(key, None)
            self.completions += 1
        if future is not None:
            future.set_result(generations)

    def fail(self, keys: Iterable[Key], exc: BaseException) -> None:
        """Release owned keys that got no answer; their waiters see ``exc``."""
        futures = []
        with self._lock:
            for key in keys:
                future = self._inflight.pop(key, None)
                if future is not None:
                    futures.append(future)
        for future in futures:
            future.set_exception(exc)

    def __len__(self) -> int:
        return len(self._inflight)


# Keyed by (cache, prompt, llm_string): the same request through another cache is another call.
COALESCER: Coalescer[tuple[BaseCache, str, str]] = Coalescer()
