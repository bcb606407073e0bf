"""Async SQLAlchemy engines derived from a sync engine's URL: one per event loop.

An async driver's connections belong to the event loop that opened them, so a cache or
store used from several loops (``asyncio.run`` per request, a thread with a loop of its
own) needs an engine per loop, disposed while that loop still runs. Used by
:class:`~llm_cache.caches.sql.SQLAlchemyCache` and
:class:`~llm_cache.semantic.stores.pgvector.PGVectorStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["LoopEngines", "derive_async_url"]


def derive_async_url(url: Any) -> Any:
    """The URL of an async twin of a sync engine, or None when the dialect has no async driver here."""
    if importlib.util.find_spec("greenlet") is None:
        return None  # SQLAlchemy's asyncio extension needs greenlet
    backend = url.get_backend_name()
    if backend == "postgresql":
        return (
            url.set(drivername="postgresql+psycopg")
            if importlib.util.find_spec("psycopg")
            else None
        )
    if backend == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or "mode=memory" in str(url):
            return None  # another connection would open another, empty, database
        return (
            url.set(drivername="sqlite+aiosqlite")
            if importlib.util.find_spec("aiosqlite")
            else None
        )
    if backend in ("mysql", "mariadb"):
        return (
            url.set(drivername=f"{backend}+aiomysql")
            if importlib.util.find_spec("aiomysql")
            else None
        )
    return None


class LoopEngines:
    """The async engines of one URL, one per running event loop.

    ``url`` None means no async driver: :meth:`get` returns None and callers run their sync
    path in a worker thread. ``prepare(engine)`` runs once on each new engine, before its
    first connection (to add pool events); ``engine_options`` go to ``create_async_engine``.
    """

    def __init__(
        self, url: Any, *, prepare: Callable[[Any], None] | None = None, **engine_options: Any
    ) -> None:
        self.url = url
        self._prepare = prepare
        self._options = engine_options
        # loop -> (AsyncEngine, its finaliser): weak on the loop, so a finished loop's engine goes.
        self._engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def current(self) -> Any:
        """The running loop's engine if one was made, else None (always None without a driver)."""
        if self.url is None:
            return None
        found = self._engines.get(asyncio.get_running_loop())
        return None if found is None else found[0]

    async def get(self) -> Any:
        """The running loop's engine, made on first use; None without an async driver."""
        if self.url is None:
            return None
        loop = asyncio.get_running_loop()
        found = self._engines.get(loop)
        if found is not None:
            return found[0]
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(self.url, **self._options)
        if self._prepare is not None:
            self._prepare(engine)
        finaliser = _dispose_with_loop(engine)
        await finaliser.__anext__()
        self._engines[loop] = (engine, finaliser)
        return engine

    async def aclose(self) -> None:
        """Dispose of the running loop's engine (the others go with their loops)."""
        found = self._engines.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].dispose()
            await found[1].aclose()

    def forget(self) -> None:
        """Drop every engine without awaiting (their loops dispose of them when they end)."""
        self._engines = weakref.WeakKeyDictionary()


async def _dispose_with_loop(engine: Any) -> AsyncIterator[None]:
    """An async generator whose ``finally`` disposes ``engine`` when its event loop shuts down.

    ``asyncio.run`` (and any loop owner calling ``loop.shutdown_asyncgens()``) closes the
    async generators still suspended in the loop before closing it, so the pool's connections
    are closed while their loop can still run the close. Without this, they would be closed
    by the garbage collector after the loop is gone ("Event loop is closed" from aiomysql).
    """
    try:
        yield
    finally:
        # The loop is shutting down: a failure here has nobody left to tell.
        with contextlib.suppress(Exception):
            await engine.dispose()
