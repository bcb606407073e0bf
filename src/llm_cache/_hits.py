"""A buffer of per-entry hit counts, written to a store in batches (no I/O).

Writing on every hit would turn each read into a write transaction; the stores that keep
hit statistics for eviction policies (SQLite files, the local semantic store) buffer them
here and write a batch after ``flush_count`` hits or once the oldest is ``flush_seconds``
old, from a thread of their own.
"""

from __future__ import annotations

import threading
from typing import Callable, Hashable

__all__ = ["HitBuffer"]


class HitBuffer:
    """Hit counts and last-hit times per key, since the last :meth:`take`."""

    def __init__(self, flush_count: int = 1024, flush_seconds: float = 5.0) -> None:
        self.flush_count = flush_count
        self.flush_seconds = flush_seconds
        self._pending: dict[Hashable, list[float]] = {}
        self._count = 0
        self._since = 0.0
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def add(self, key: Hashable, now: float) -> bool:
        """Count one hit of ``key`` at ``now``; True when a batch is due."""
        with self._lock:
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = [1, now]
            else:
                pending[0] += 1
                pending[1] = now
            if not self._count:
                self._since = now
            self._count += 1
            return self._count >= self.flush_count or now - self._since >= self.flush_seconds

    def take(self) -> list[tuple[int, float, Hashable]]:
        """``(hits, last hit time, key)`` rows of everything buffered; the buffer is emptied."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._count = 0
        return [(int(count), last, key) for key, (count, last) in pending.items()]

    def flush_in_background(self, flush: Callable[[], None], name: str) -> None:
        """Run ``flush`` in a daemon thread unless one is still running."""
        with self._lock:
            if self._flusher is not None and self._flusher.is_alive():
                return
            self._flusher = threading.Thread(target=flush, name=name, daemon=True)
            self._flusher.start()

    def join(self) -> None:
        """Wait for a background flush to end."""
        flusher = self._flusher
        if flusher is not None:
            flusher.join()
