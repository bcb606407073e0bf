"""Where an error-bounded semantic cache keeps what it learned: in the cache's own store.

Two kinds of state, both per namespace (see :mod:`.bounded`):

* **counters** — the judged outcomes per context class and similarity bin, a few thousand
  numbers at most. They change by atomic increments (SQLite/PostgreSQL ``INSERT ... ON
  CONFLICT DO UPDATE SET value = value + ?``, Redis ``HINCRBYFLOAT``), so processes sharing
  a store never lose each other's outcomes;
* **entry records** — per cached entry, the similarities at which it was judged wrong and
  the queries it must never answer again: a small JSON object, read with the candidate on
  a lookup, written only when the entry is judged wrong or reported.

Stores:

* :class:`~.stores.local.LocalVectorStore`: two tables in its SQLite file (WAL, every
  process sharing the directory sees them);
* :class:`~.stores.redis.RedisVectorStore`: a hash ``<namespace>:learned:counts`` and
  string keys ``<namespace>:learned:e:<key>`` with a TTL;
* :class:`~.stores.pgvector.PGVectorStore`: two tables beside the store's table;
* any other store: process memory (not shared; a warning says so).

Bounded: counters by construction; entry records to ``max_records`` per namespace (the
least recently written are dropped; in Redis they expire after ``record_ttl``). Records
are JSON, read with ``json.loads`` and validated (:meth:`.bounded.EntryRecord.from_json`);
nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Mapping, Sequence

__all__ = ["LearnedState", "MemoryLearnedState", "SQLiteLearnedState", "RedisLearnedState", "PGLearnedState", "learned_state_for"]

logger = logging.getLogger("llm_cache")

DEFAULT_MAX_RECORDS = 100_000
_PRUNE_EVERY = 500  # record writes between two size checks


class LearnedState(ABC):
    """Counters and entry records of one namespace (see the module docstring)."""

    @abstractmethod
    def read_counters(self) -> dict[str, float]:
        """Every counter field with its value."""

    @abstractmethod
    def add_counters(self, fields: Mapping[str, float]) -> None:
        """Atomically add ``fields`` to the counters."""

    @abstractmethod
    def get_record(self, key: str) -> dict[str, Any] | None:
        """The record of one entry (decoded JSON), or ``None``."""

    @abstractmethod
    def put_record(self, key: str, record: Mapping[str, Any]) -> None:
        """Write the record of one entry."""

    @abstractmethod
    def clear(self) -> None:
        """Forget everything learned in this namespace."""

    def close(self) -> None:
        """Release connections this object opened."""


def _decode(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None  # a corrupt record is no record
    return value if isinstance(value, dict) else None


class MemoryLearnedState(LearnedState):
    """State in process memory (for stores that cannot hold it)."""

    def __init__(self, max_records: int = DEFAULT_MAX_RECORDS) -> None:
        self._counters: dict[str, float] = {}
        self._records: dict[str, str] = {}
        self._max = max_records
        self._lock = threading.Lock()

    def read_counters(self) -> dict[str, float]:
        with self._lock:
            return dict(self._counters)

    def add_counters(self, fields: Mapping[str, float]) -> None:
        with self._lock:
            for name, value in fields.items():
                self._counters[name] = self._counters.get(name, 0.0) + float(value)

    def get_record(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return _decode(self._records.get(key))

    def put_record(self, key: str, record: Mapping[str, Any]) -> None:
        with self._lock:
            self._records.pop(key, None)
            self._records[key] = json.dumps(record)
            while len(self._records) > self._max:
                self._records.pop(next(iter(self._records)))

    def clear(self) -> None:
        with self._lock:
            self._counters.clear()
            self._records.clear()


_SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS semantic_learned_counts ("
    " namespace TEXT NOT NULL, field TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (namespace, field))",
    "CREATE TABLE IF NOT EXISTS semantic_learned_entries ("
    " namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_at REAL NOT NULL,"
    " PRIMARY KEY (namespace, key))",
    "CREATE INDEX IF NOT EXISTS semantic_learned_entries_age ON semantic_learned_entries (namespace, updated_at)",
)


class SQLiteLearnedState(LearnedState):
    """State in a SQLite file (the local store's ``semantic.db``)."""

    def __init__(self, path: str, namespace: str, max_records: int = DEFAULT_MAX_RECORDS, busy_timeout: float = 10.0) -> None:
        from .._sqlite import open_wal_connection

        self.namespace = namespace
        self._max = max_records
        self._conn = open_wal_connection(path, int(busy_timeout * 1000))
        self._lock = threading.Lock()
        self._writes = 0
        with self._lock:
            for statement in _SQLITE_SCHEMA:
                self._conn.execute(statement)

    def read_counters(self) -> dict[str, float]:
        with self._lock:
            rows = self._conn.execute("SELECT field, value FROM semantic_learned_counts WHERE namespace = ?", (self.namespace,)).fetchall()
        return {str(f): float(v) for f, v in rows}

    def add_counters(self, fields: Mapping[str, float]) -> None:
        rows = [(self.namespace, name, float(value)) for name, value in fields.items()]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO semantic_learned_counts (namespace, field, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (namespace, field) DO UPDATE SET value = value + excluded.value",
                    rows,
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def get_record(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM semantic_learned_entries WHERE namespace = ? AND key = ?", (self.namespace, key)
            ).fetchone()
        return None if row is None else _decode(row[0])

    def put_record(self, key: str, record: Mapping[str, Any]) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO semantic_learned_entries (namespace, key, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (self.namespace, key, json.dumps(record), time.time()),
            )
            self._writes += 1
            if self._writes % _PRUNE_EVERY == 0:
                self._conn.execute(
                    "DELETE FROM semantic_learned_entries WHERE namespace = ? AND key IN ("
                    " SELECT key FROM semantic_learned_entries WHERE namespace = ?"
                    " ORDER BY updated_at DESC LIMIT -1 OFFSET ?)",
                    (self.namespace, self.namespace, self._max),
                )

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM semantic_learned_counts WHERE namespace = ?", (self.namespace,))
            self._conn.execute("DELETE FROM semantic_learned_entries WHERE namespace = ?", (self.namespace,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class RedisLearnedState(LearnedState):
    """State in Redis beside the store's keys (``<namespace>:learned:...``)."""

    def __init__(self, client: Any, namespace: str, record_ttl: float = 30 * 86400) -> None:
        self._client = client
        self._counts_key = f"{namespace}:learned:counts"
        self._prefix = f"{namespace}:learned:e:"
        self._ttl_ms = int(record_ttl * 1000)

    def read_counters(self) -> dict[str, float]:
        raw = self._client.hgetall(self._counts_key) or {}
        out: dict[str, float] = {}
        for name, value in raw.items():
            try:
                out[name.decode() if isinstance(name, bytes) else str(name)] = float(value)
            except (TypeError, ValueError, UnicodeDecodeError):
                continue
        return out

    def add_counters(self, fields: Mapping[str, float]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for name, value in fields.items():
            if value:
                pipe.hincrbyfloat(self._counts_key, name, float(value))
            else:
                pipe.hincrbyfloat(self._counts_key, name, 0.0)
        pipe.execute()

    def get_record(self, key: str) -> dict[str, Any] | None:
        return _decode(self._client.get(self._prefix + key))

    def put_record(self, key: str, record: Mapping[str, Any]) -> None:
        self._client.set(self._prefix + key, json.dumps(record), px=self._ttl_ms)

    def clear(self) -> None:
        from .. import _redis_clients as rc

        self._client.delete(self._counts_key)
        rc.unlink_matching(self._client, rc.glob_escape(self._prefix) + "*")


class PGLearnedState(LearnedState):
    """State in two PostgreSQL tables beside the pgvector store's table."""

    def __init__(self, engine: Any, table: str, namespace: str, max_records: int = DEFAULT_MAX_RECORDS) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self._engine = engine
        self.namespace = namespace
        self._max = max_records
        self._writes = 0
        schema, _, name = table.rpartition(".")
        meta = sa.MetaData()
        self._counts = sa.Table(
            f"{name}_learned_counts", meta,
            sa.Column("namespace", sa.Text, primary_key=True), sa.Column("field", sa.Text, primary_key=True),
            sa.Column("value", sa.Double, nullable=False), schema=schema or None,
        )
        self._entries = sa.Table(
            f"{name}_learned_entries", meta,
            sa.Column("namespace", sa.Text, primary_key=True), sa.Column("key", sa.Text, primary_key=True),
            sa.Column("value", sa.Text, nullable=False), sa.Column("updated_at", sa.Double, nullable=False),
            schema=schema or None,
        )
        self._meta = meta
        self._ready = False
        try:
            self._ensure()
        except Exception as exc:  # noqa: BLE001 - database down: like the store, retry on first use
            logger.warning("llm-cache: the learned-state tables could not be created yet (%s: %s)", type(exc).__name__, exc)

    def _ensure(self) -> None:
        if not self._ready:
            self._meta.create_all(self._engine, checkfirst=True)
            self._ready = True

    def read_counters(self) -> dict[str, float]:
        self._ensure()
        t = self._counts
        with self._engine.connect() as conn:
            rows = conn.execute(self._sa.select(t.c.field, t.c.value).where(t.c.namespace == self.namespace)).fetchall()
        return {str(f): float(v) for f, v in rows}

    def add_counters(self, fields: Mapping[str, float]) -> None:
        self._ensure()
        from sqlalchemy.dialects.postgresql import insert

        t = self._counts
        rows = [{"namespace": self.namespace, "field": k, "value": float(v)} for k, v in sorted(fields.items())]
        statement = insert(t).values(rows)
        statement = statement.on_conflict_do_update(
            index_elements=[t.c.namespace, t.c.field], set_={"value": t.c.value + statement.excluded.value}
        )
        with self._engine.begin() as conn:
            conn.execute(statement)

    def get_record(self, key: str) -> dict[str, Any] | None:
        self._ensure()
        t = self._entries
        with self._engine.connect() as conn:
            raw = conn.execute(self._sa.select(t.c.value).where(t.c.namespace == self.namespace, t.c.key == key)).scalar()
        return _decode(raw)

    def put_record(self, key: str, record: Mapping[str, Any]) -> None:
        self._ensure()
        from sqlalchemy.dialects.postgresql import insert

        t = self._entries
        statement = insert(t).values(namespace=self.namespace, key=key, value=json.dumps(record), updated_at=time.time())
        statement = statement.on_conflict_do_update(
            index_elements=[t.c.namespace, t.c.key], set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at}
        )
        with self._engine.begin() as conn:
            conn.execute(statement)
            self._writes += 1
            if self._writes % _PRUNE_EVERY == 0:
                keep = (
                    self._sa.select(t.c.key).where(t.c.namespace == self.namespace)
                    .order_by(t.c.updated_at.desc()).limit(self._max)
                )
                conn.execute(t.delete().where(t.c.namespace == self.namespace, t.c.key.not_in(keep)))

    def clear(self) -> None:
        self._ensure()
        with self._engine.begin() as conn:
            conn.execute(self._counts.delete().where(self._counts.c.namespace == self.namespace))
            conn.execute(self._entries.delete().where(self._entries.c.namespace == self.namespace))


def learned_state_for(store: Any, max_records: int = DEFAULT_MAX_RECORDS) -> LearnedState:
    """The :class:`LearnedState` that lives in ``store`` (process memory for unknown stores)."""
    from .stores.local import LocalVectorStore

    namespace = str(getattr(store, "namespace", "default"))
    if isinstance(store, LocalVectorStore):
        return SQLiteLearnedState(os.path.join(store.path, "semantic.db"), namespace, max_records)
    kind = type(store).__name__
    if kind == "RedisVectorStore" and getattr(store, "_client", None) is not None:
        return RedisLearnedState(store._client, namespace)
    if kind == "PGVectorStore" and getattr(store, "engine", None) is not None:
        return PGLearnedState(store.engine, str(store.table_name), namespace, max_records)
    logger.warning(
        "llm-cache: %s cannot hold what an error-bounded cache learns; it is kept in this process only", kind
    )
    return MemoryLearnedState(max_records)
