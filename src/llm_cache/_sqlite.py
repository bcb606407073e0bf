"""SQLite connections as every llm-cache store opens them (SQLiteCache, the local vector store)."""

from __future__ import annotations

import sqlite3

__all__ = ["open_wal_connection"]


def open_wal_connection(path: str, busy_ms: int) -> sqlite3.Connection:
    """A connection in autocommit mode, WAL journal, ``synchronous=NORMAL``, with a busy timeout.

    WAL lets readers run beside the writer; NORMAL makes a commit an append rather than an
    fsync of the database (a cache may lose its last writes on power loss, never its
    consistency); the busy timeout makes writers from other processes wait their turn
    instead of failing. ``check_same_thread`` is off because the owner hands connections
    to its threads itself.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn
