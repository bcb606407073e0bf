"""In-flight upstream calls, shared by concurrent identical requests (asyncio, one loop).

The first request that misses on a key starts a :class:`Flight`: a task that calls the
upstream once, independently of any one client. Later identical requests *join* it
instead of calling upstream themselves:

* a non-streaming follower waits for the complete answer;
* a streaming follower of a streaming flight subscribes to the live stream: it gets every
  event received so far, then each new one as it arrives (no waiting for the end);
* a streaming follower of a non-streaming flight gets the finished answer replayed as SSE.

Which mode the upstream call uses is the first request's; a follower never changes it.

The task keeps going when its first client goes away, so the answer can still be stored
for the others; but when *every* client of a streaming flight has disconnected before the
end, the upstream stream is cancelled, because providers keep generating (and billing)
for as long as the stream is read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .upstream import UpstreamError

__all__ = ["Flight"]


class Flight:
    """One upstream call and everything its clients need to answer from it."""

    def __init__(self, key: Any, *, stream: bool, injected_usage: bool) -> None:
        self.key = key
        self.stream = stream  # the upstream call streams
        self.injected_usage = (
            injected_usage  # we asked upstream for a usage chunk the client did not
        )
        self.task: asyncio.Task[None] | None = None
        # Set once the upstream's status and headers are known (or the call failed).
        self.head = asyncio.Event()
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.sse = False  # the upstream answered with an event stream
        # For event streams: (data text, parsed JSON or None, SSE event name) of each event.
        self.events: list[tuple[str, Any, str | None]] = []
        self.saw_done = False
        # Outcome, valid once ``finished``:
        self.finished = False
        self.body: bytes | None = None  # the upstream body of a non-SSE answer
        self.result: dict[str, Any] | None = None  # the complete 200 answer, as JSON
        self.storable = True  # False: larger than the proxy's max_stored_bytes
        self.error: UpstreamError | None = None  # connection failure, before or mid-body
        self.remote = False  # answered from an entry another process stored (see .leases)
        self.interest = 0  # clients currently waiting on or reading this flight
        self._changed = asyncio.Event()

    # -- producer side -------------------------------------------------------------------
    def set_head(self, status: int, headers: list[tuple[str, str]], sse: bool) -> None:
        self.status, self.headers, self.sse = status, headers, sse
        self.head.set()

    def push(self, data: str, parsed: Any, name: str | None = None) -> None:
        self.events.append((data, parsed, name))
        self._notify()

    def finish(self) -> None:
        self.finished = True
        self.head.set()  # a failure before any header still releases waiters
        self._notify()

    def fail(self, error: UpstreamError) -> None:
        self.error = error
        self.finish()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- consumer side -------------------------------------------------------------------
    async def changed(self) -> None:
        """Wait until a new event arrives or the flight finishes."""
        await self._changed.wait()

    async def wait_finished(self) -> None:
        while not self.finished:
            await self.changed()

    def release(self) -> bool:
        """A client is done with this flight; True if it was the last reader of an unfinished stream.

        The caller then abandons the flight (forgets it so nobody joins, and cancels it).
        """
        self.interest -= 1
        return self.interest <= 0 and not self.finished and self.stream
