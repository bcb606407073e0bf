"""Per-namespace entry counts and byte totals kept by SQLite triggers (SQL text, no I/O).

The SQLite stores with size caps (:class:`~llm_cache.SQLiteCache`, the local semantic store)
keep ``(namespace, entries, bytes)`` in a usage table that triggers update inside every
write's own transaction, whichever process (or older build of the store) writes. Checking a
cap is then one primary-key read instead of a ``count(*)`` over the namespace.
"""

from __future__ import annotations

import sqlite3
from typing import Sequence

__all__ = ["UsageSchema"]


class UsageSchema:
    """The usage table and triggers of ``table`` whose entries are ``columns`` bytes big.

    ``text_columns`` are measured as UTF-8 (``length(CAST(c AS BLOB))``), ``blob_columns``
    as they are. ``update_columns``: an UPDATE of these re-counts the row (leave empty for
    tables whose rows are only inserted and deleted); hit-count updates must not be listed.
    """

    def __init__(
        self,
        table: str,
        usage_table: str,
        text_columns: Sequence[str],
        blob_columns: Sequence[str] = (),
        update_columns: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.usage_table = usage_table
        self._text = list(text_columns)
        self._blob = list(blob_columns)
        add = (
            f"INSERT INTO {usage_table} (namespace, entries, bytes) VALUES (NEW.namespace, 1, {self.size('NEW')}) "
            "ON CONFLICT (namespace) DO UPDATE SET entries = entries + 1, bytes = bytes + excluded.bytes;"
        )
        sub = (
            f"UPDATE {usage_table} SET entries = entries - 1, bytes = bytes - ({self.size('OLD')}) "
            "WHERE namespace = OLD.namespace;"
        )
        self.statements = [
            f"CREATE TABLE IF NOT EXISTS {usage_table} "
            "(namespace TEXT PRIMARY KEY, entries INTEGER NOT NULL, bytes INTEGER NOT NULL)",
            f"CREATE TRIGGER IF NOT EXISTS {usage_table}_insert AFTER INSERT ON {table} BEGIN {add} END",
            f"CREATE TRIGGER IF NOT EXISTS {usage_table}_delete AFTER DELETE ON {table} BEGIN {sub} END",
        ]
        if update_columns:
            self.statements.append(
                f"CREATE TRIGGER IF NOT EXISTS {usage_table}_update AFTER UPDATE OF {', '.join(update_columns)} "
                f"ON {table} BEGIN {sub} {add} END"
            )

    def size(self, row: str) -> str:
        """SQL for the bytes of an entry (``row``: ``NEW``, ``OLD`` or the table's name)."""
        parts = [f"length(CAST({row}.{c} AS BLOB))" for c in self._text]
        parts += [f"length({row}.{c})" for c in self._blob]
        return " + ".join(parts)

    def ensure(self, conn: sqlite3.Connection) -> None:
        """Inside the caller's schema transaction: create the table and triggers, filling the
        table from the rows already there when it is new (a file from before caps)."""
        new = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.usage_table,)
        ).fetchone() is None
        for statement in self.statements:
            conn.execute(statement)
        if new:
            conn.execute(
                f"INSERT OR REPLACE INTO {self.usage_table} (namespace, entries, bytes) SELECT namespace, count(*), "
                f"coalesce(sum({self.size(self.table)}), 0) FROM {self.table} GROUP BY namespace"
            )

    def ensure_stats_index(self, conn: sqlite3.Connection) -> None:
        """An index covering what a count-capped LRU/LFU eviction reads (``id``, hits, last
        use), so that a pass reads the index instead of every row: created for capped stores
        only (every writer then maintains it; uncapped files do without)."""
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS {self.table}_use ON {self.table} (namespace, hit_count, last_hit_at, created_at)"
        )

    def read(self, conn: sqlite3.Connection, namespace: str) -> tuple[int, int]:
        """``(entries, bytes)`` of ``namespace``."""
        row = conn.execute(
            f"SELECT entries, bytes FROM {self.usage_table} WHERE namespace = ?", (namespace,)
        ).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))
