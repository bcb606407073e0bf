"""Coalescing leases in PostgreSQL: advisory locks to lead, ``LISTEN/NOTIFY`` to say "done".

Each participant holds one connection for as long as it leads or waits (misses only, and
one per key and process, since identical requests in a process already share a flight).
The lease is the session-level ``pg_try_advisory_lock`` on 64 bits of the key's sha256:
the server frees it when the leader's connection ends, so a leader that dies loses its
lease as soon as its connection is gone (TCP keepalives bound a vanished host). A leader
releases with ``pg_advisory_unlock`` and ``pg_notify('llm_cache_lease', <sha256>)``.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .._imports import require
from .leases import LeasePolicy

_CHANNEL = "llm_cache_lease"


def _lock_id(name: str) -> int:
    """A signed 64-bit advisory lock id from the lease name (hex sha256)."""
    value = int(name[:16], 16)
    return value - (1 << 64) if value >= (1 << 63) else value


def conninfo(url: str) -> str:
    """A libpq URL from a cache URL (``postgresql+psycopg://...``; its query options dropped)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql", query="", fragment=""))


class _PostgresSession:
    def __init__(self, conn: Any, name: str) -> None:
        self._conn = conn
        self._name = name
        self._lock = _lock_id(name)

    async def acquire(self) -> bool:
        cur = await self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._lock,))
        row = await cur.fetchone()
        return bool(row and row[0])

    async def renew(self) -> bool:
        # The lock lives as long as the connection: renewing is checking that it is alive.
        await self._conn.execute("SELECT 1")
        return True

    async def wait(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            async for note in self._conn.notifies(timeout=left, stop_after=1):
                if note.payload == self._name:
                    return

    async def release(self) -> None:
        await self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._lock,))
        await self._conn.execute("SELECT pg_notify(%s, %s)", (_CHANNEL, self._name))

    async def close(self) -> None:
        try:
            await self._conn.close()
        except Exception:  # noqa: BLE001 - best effort
            pass


class PostgresLeaseStore:
    """Leases in the PostgreSQL database of a ``postgresql://`` cache URL."""

    def __init__(self, url: str, policy: LeasePolicy) -> None:
        require("psycopg", "sql", "coalescing on PostgreSQL")
        self.policy = policy
        self._conninfo = conninfo(url)

    async def session(self, name: str) -> _PostgresSession:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=max(1, int(self.policy.op_timeout)),
            keepalives=1,
            keepalives_idle=max(1, int(self.policy.ttl)),
            keepalives_interval=1,
            keepalives_count=3,
        )
        try:
            await conn.execute(f"LISTEN {_CHANNEL}")  # before acquiring: no "done" is missed
        except BaseException:
            await conn.close()
            raise
        return _PostgresSession(conn, name)

    async def aclose(self) -> None:
        """Nothing shared to close: each session owns its connection."""
