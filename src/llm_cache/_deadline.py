"""Deadlines for store calls whose driver cannot bound its own wait (private).

Why this exists: a PostgreSQL server whose processes are stopped (SIGSTOP, a frozen VM, a
stalled disk) keeps its TCP connections open, because the kernel still acknowledges every
packet. ``statement_timeout`` cannot fire (the server is not running), nor can TCP keepalive or
``tcp_user_timeout`` (the peer's kernel answers), and psycopg then waits forever for a reply:
every LLM call through the cache hung (issue 12). The caller must enforce the deadline itself.

Two tools, both used by :class:`~llm_cache.caches.sql.SQLAlchemyCache` and the pgvector store:

* :func:`guard` bounds a call that runs on an open connection *in the caller's thread*: a
  watchdog thread calls ``abort()`` (shut the connection's socket down, so the blocked read
  returns an error at once) if the call is still running at its deadline, and the call then
  raises :class:`~llm_cache.errors.CacheTimeoutError`. The hit path pays a dict insertion
  under a lock and a deletion (4.4 us a call measured on a loaded 2-core machine, where an
  empty ``contextlib.contextmanager`` block costs 2.7 us), not a hop to another thread.
* :func:`run_with_deadline` runs a call that has no socket to shut yet (opening a connection,
  a pool checkout) in a worker thread and stops waiting for it at the deadline. A late result
  is handed to ``discard`` (e.g. to close the connection that arrived too late).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import CacheTimeoutError, ConfigurationError

__all__ = ["DEFAULT_TIMEOUT", "Workers", "guard", "run_with_deadline", "socket_aborter", "validate_timeout"]

T = TypeVar("T")

#: Seconds a store call may take before it counts as a store error (a miss). A miss costs one
#: provider call; waiting on a hung store costs every caller the wait, so this is short.
DEFAULT_TIMEOUT = 0.5

# While calls are being watched the watchdog wakes at least this often (the deadline's
# precision); with nothing to watch for _LINGER seconds it sleeps until the next guard.
_TICK = 0.02
_LINGER = 2.0
# Worker threads for run_with_deadline: a hung connect holds one until the driver's own connect
# timeout; past this many, further calls queue and time out like the rest.
_WORKERS = 8


def validate_timeout(value: Any, name: str = "timeout") -> float:
    """A positive number of seconds, as a float (a ``ConfigurationError`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


class _Watch:
    __slots__ = ("deadline", "abort", "fired")

    def __init__(self, deadline: float, abort: Callable[[], None]) -> None:
        self.deadline = deadline
        self.abort = abort
        self.fired = False


class _Watchdog:
    """One daemon thread that aborts the watched calls that overran their deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._watches: dict[int, _Watch] = {}
        self._ids = itertools.count()
        self._sleeping = True
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def arm(self, seconds: float, abort: Callable[[], None]) -> tuple[int, _Watch]:
        watch = _Watch(time.monotonic() + seconds, abort)
        token = next(self._ids)
        with self._lock:  # held so that a watchdog about to sleep cannot miss this watch
            self._watches[token] = watch
            if self._thread is None or self._pid != os.getpid():
                self._start()
            elif self._sleeping:
                self._cond.notify()
        return token, watch

    def disarm(self, token: int) -> None:
        # No lock: a dict pop is atomic, and the watchdog iterates over a copy.
        self._watches.pop(token, None)

    def _start(self) -> None:
        # Also after a fork: the parent's watchdog thread does not exist in the child.
        self._pid = os.getpid()
        self._sleeping = False
        self._thread = threading.Thread(target=self._run, name="llm-cache-deadlines", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        idle_since = time.monotonic()
        with self._cond:
            while True:
                now = time.monotonic()
                watches = list(self._watches.values())  # a copy: disarm() takes no lock
                due = [w for w in watches if not w.fired and w.deadline <= now]
                for watch in due:
                    watch.fired = True
                if due:
                    self._cond.release()
                    try:
                        for watch in due:
                            with contextlib.suppress(Exception):
                                watch.abort()
                    finally:
                        self._cond.acquire()
                    continue
                if watches:
                    idle_since = now
                    pending = [w.deadline for w in watches if not w.fired]
                    wait = min([_TICK * 5, *(d - now for d in pending)]) if pending else _TICK * 5
                    self._cond.wait(max(wait, _TICK))
                elif now - idle_since < _LINGER:
                    self._cond.wait(_TICK * 5)
                else:
                    self._sleeping = True
                    self._cond.wait()
                    self._sleeping = False
                    idle_since = time.monotonic()


_watchdog = _Watchdog()


class guard:
    """``with guard(seconds, abort): ...``: the block with a deadline; past it, ``abort()`` runs
    and the block's exit raises CacheTimeoutError.

    ``abort`` runs in the watchdog thread and must make the blocked call return (with any
    error): shutting a socket down does that for every driver used here. (A class rather
    than a generator-based context manager: this is on every SQL call's path.)
    """

    __slots__ = ("seconds", "abort", "what", "_token", "_watch")

    def __init__(self, seconds: float, abort: Callable[[], None], what: str = "store call") -> None:
        self.seconds = seconds
        self.abort = abort
        self.what = what

    def __enter__(self) -> None:
        self._token, self._watch = _watchdog.arm(self.seconds, self.abort)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        _watchdog.disarm(self._token)
        if not self._watch.fired:
            return
        if exc_type is not None and not issubclass(exc_type, Exception):
            return  # KeyboardInterrupt and the like go through as they are
        # The call failed because its connection was shut, or finished just as the deadline
        # passed (its connection has been shut anyway): either way, a timeout.
        raise CacheTimeoutError(f"{self.what} did not finish within {self.seconds:g}s") from exc


def socket_aborter(dbapi_connection: Any) -> Callable[[], None]:
    """A function that makes a call blocked on this DBAPI connection return at once.

    psycopg 3 (``pgconn.socket``) and PyMySQL (``_sock``): shut the socket down, so the pending
    read fails; the driver then reports a lost connection, which the pool discards. sqlite3:
    ``interrupt()``. Anything else: a no-op (the call is then bounded only by its driver).
    """
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is not None:
        def shut_pg() -> None:
            _shutdown_fd(pgconn.socket)

        return shut_pg
    sock = getattr(dbapi_connection, "_sock", None)
    if isinstance(sock, socket.socket):
        return lambda: sock.shutdown(socket.SHUT_RDWR)
    interrupt = getattr(dbapi_connection, "interrupt", None)
    if callable(interrupt):
        return interrupt
    return lambda: None


def _shutdown_fd(fd: int) -> None:
    # A duplicate descriptor: shutting it down affects the shared socket, closing it does not.
    dup = socket.socket(fileno=os.dup(fd))
    try:
        dup.shutdown(socket.SHUT_RDWR)
    finally:
        dup.close()


class Workers:
    """The worker threads of :func:`run_with_deadline` for one store, made on first use.

    One set per store: connects hung on one server (each holds a worker until its driver
    gives up) then cannot delay another store's calls.
    """

    def __init__(self, size: int = _WORKERS) -> None:
        self.size = size
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], *args: Any) -> "concurrent.futures.Future[T]":
        with self._lock:
            if self._executor is None or self._pid != os.getpid():  # new, or the parent's
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self.size, thread_name_prefix="llm-cache-deadline"
                )
                self._pid = os.getpid()
            executor = self._executor
        return executor.submit(fn, *args)

    def close(self) -> None:
        """Let the threads end once their calls return (a hung one is not waited for)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


_shared_workers = Workers()


def run_with_deadline(
    seconds: float,
    fn: Callable[..., T],
    *args: Any,
    discard: Callable[[T], None] | None = None,
    what: str = "store call",
    workers: Workers | None = None,
) -> T:
    """``fn(*args)`` in a worker thread; CacheTimeoutError if it has not returned within ``seconds``.

    The worker is not interrupted (nothing can interrupt a blocked connect); a result that
    arrives after the caller gave up is passed to ``discard``.
    """
    future = (workers or _shared_workers).submit(fn, *args)
    try:
        return future.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        if not future.cancel() and discard is not None:
            def late(done: concurrent.futures.Future[T]) -> None:
                if done.exception() is None:
                    with contextlib.suppress(Exception):
                        discard(done.result())

            future.add_done_callback(late)
        raise CacheTimeoutError(f"{what} did not finish within {seconds:g}s") from None
