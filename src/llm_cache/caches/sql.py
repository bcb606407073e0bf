"""SQLAlchemyCache: exact LLM caching in any SQLAlchemy 2 database (SQLite, PostgreSQL, MariaDB/MySQL).

Usage, as in LangChain's notebook::

    from sqlalchemy import create_engine
    from llm_cache import set_llm_cache
    from llm_cache.caches.sql import SQLAlchemyCache

    engine = create_engine("postgresql+psycopg://user:password@localhost:5432/db")
    set_llm_cache(SQLAlchemyCache(engine))                    # our FullLLMCache table
    set_llm_cache(SQLAlchemyCache(engine, FulltextLLMCache))  # or your own declarative model

Any model with LangChain's columns ``prompt``, ``llm``, ``idx``, ``response`` works as
``cache_schema`` (see :mod:`llm_cache.caches.sql_schema` for how each kind is used).

Searching cached prompts by full text (PostgreSQL, a schema with a tsvector column such as the
notebook's ``FulltextLLMCache``): :meth:`SQLAlchemyCache.search`, or the query it runs::

    from sqlalchemy import cast, desc, func, select
    from sqlalchemy.dialects.postgresql import REGCONFIG

    q = func.websearch_to_tsquery(cast("english", REGCONFIG), "weather forecast")
    stmt = (
        select(FulltextLLMCache.prompt, FulltextLLMCache.llm, func.ts_rank(FulltextLLMCache.prompt_llm_idx, q))
        .where(FulltextLLMCache.prompt_llm_idx.op("@@")(q), FulltextLLMCache.idx == 0)
        .order_by(desc(func.ts_rank(FulltextLLMCache.prompt_llm_idx, q)))
        .limit(10)
    )

The GIN index on the tsvector column serves the ``@@`` match.

Why it is fast (profiled and measured in benchmarks/bench_sql.py): on our own table the hit
path does not go through a SQLAlchemy ``Connection``, whose per-call overhead about doubled a
point query's time, and whose implicit BEGIN/ROLLBACK add two round trips. It runs one
statement, compiled once by SQLAlchemy for the engine's dialect, on an autocommit driver
connection from a pool of the cache's own, cloned from the engine's (``pool.recreate()``: same
connect arguments and pool events), kept checked out between calls (see ``_RawConnections``).
Consequences: engine-level events such as ``before_cursor_execute`` do not see these
statements, and the cache holds up to one connection per thread using it at once, beside
the application's. User schemas go through SQLAlchemy Core on the engine itself, so their
column defaults, sequences and types behave as they do in the application.

Concurrency: an update replaces all rows of one entry in one transaction and is race-free:

* our table: a dialect-native upsert of rows ``0..n-1`` (``INSERT ... ON CONFLICT DO UPDATE``
  on PostgreSQL and SQLite, ``ON DUPLICATE KEY UPDATE`` on MySQL), then ``DELETE ... idx >= n``
  for the rows an older, longer entry left. Every writer of an entry locks its row 0 first,
  so concurrent writers of one entry take turns (PostgreSQL, READ COMMITTED: the DELETE runs
  after the lock is held and sees everything committed before it); a deadlock or
  serialisation failure (MySQL gap locks, REPEATABLE READ) is retried.
* user schemas (no key column to conflict on): a lock per entry, then DELETE and INSERT:
  ``pg_advisory_xact_lock`` on PostgreSQL (released at commit), ``GET_LOCK`` on MySQL
  (released after commit), SQLite's single writer lock.

PostgreSQL cannot store NUL characters in text: a prompt or llm_string containing one is
stored escaped (prefixed with U+E000 ``llmc:``), reversibly, and compared in that form.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Iterator, Sequence, TypeVar

from .._deadline import DEFAULT_TIMEOUT, Workers, guard, run_with_deadline, socket_aborter, validate_timeout
from .._imports import require
from .._ttl import expires_at, validate_ttl
from ..errors import CacheBackendError, CacheTimeoutError, ConfigurationError, CorruptEntryError
from ..generation import Generation
from ..keys import cache_key
from .base import BaseCache, CacheEntry, logger
from .sql_schema import FullLLMCache, SchemaInfo, ensure_schema, inspect_schema, lock_ids

require("sqlalchemy", "sql", "SQLAlchemyCache")

from sqlalchemy import bindparam, case, cast, delete, desc, func, insert, literal_column, select, text
from sqlalchemy.engine import Connection, Engine

__all__ = ["FullLLMCache", "SQLAlchemyCache", "SearchHit"]

T = TypeVar("T")

# Seconds the constructor waits for the table to be checked or created.
_SCHEMA_SECONDS = 10.0
_RETRIES = 3  # attempts of a write that hit a deadlock or a serialisation failure
# Seconds a writer of a user schema (MySQL) waits for another writer of the same entry.
_MYSQL_LOCK_TIMEOUT = 10
# PostgreSQL: 40001 serialization_failure, 40P01 deadlock_detected; MySQL: 1213 deadlock, 1205 lock wait.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})
_TRANSIENT_MYSQL = frozenset({1213, 1205})

_NUL_MARK = "\ue000llmc:"
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _pg_text(value: str) -> str:
    """PostgreSQL text cannot hold NUL: escape such a value (and any that looks escaped)."""
    if "\x00" not in value and not value.startswith(_NUL_MARK):
        return value
    return _NUL_MARK + value.replace("\\", "\\\\").replace("\x00", "\\0")


def _pg_untext(value: str) -> str:
    if not value.startswith(_NUL_MARK):
        return value
    return _UNESCAPE.sub(
        lambda m: "\x00" if m.group(1) == "0" else m.group(1), value[len(_NUL_MARK) :]
    )


def _same(value: str) -> str:
    return value


def _decode_generation(raw: Any) -> Generation:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw).decode("utf-8", "replace")
    try:
        data = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise CorruptEntryError(f"stored response is not JSON: {exc}") from exc
    return Generation.from_dict(data)


def _entry_generations(
    rows: Sequence[Any], prompt: str, llm_string: str, now: float
) -> list[Generation] | None:
    """The generations of one entry's rows ``(idx, prompt, llm, response, expires_at)``,
    ordered by ``idx``; ``None`` (a miss) when a row is for another prompt or llm_string
    (both as stored) or has expired. Rows that are not exactly ``0..n-1`` are corrupt."""
    generations = []
    for position, (idx, row_prompt, row_llm, response, expiry) in enumerate(rows):
        if row_prompt != prompt or row_llm != llm_string:
            return None  # never another prompt's answer
        if expiry is not None and now >= expiry:
            return None
        if idx != position:
            raise CorruptEntryError(
                f"entry has rows {[r[0] for r in rows]}, not 0..{len(rows) - 1}"
            )
        generations.append(_decode_generation(response))
    return generations


def _encode_generation(generation: Generation) -> str:
    return json.dumps(generation.to_dict(), separators=(",", ":"), ensure_ascii=False)


def _is_transient(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] in _TRANSIENT_MYSQL


@dataclass(frozen=True)
class SearchHit:
    """One cached entry found by :meth:`SQLAlchemyCache.search`."""

    prompt: str
    llm_string: str
    rank: float
    generations: list[Generation] | None  # None if it expired or vanished since the match


class _Sql:
    """One statement compiled for one dialect: SQL text plus how to lay out its parameters."""

    __slots__ = ("order", "sql")

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.order = tuple(compiled.positiontup) if compiled.positional else None

    def params(self, values: dict[str, Any]) -> Any:
        return values if self.order is None else tuple(values[name] for name in self.order)


class _KeyedStatements:
    """The statements of the keyed path (our FullLLMCache), compiled once per dialect."""

    _UPDATED = ("prompt", "llm", "response", "created_at", "expires_at")

    def __init__(self, table: Any, dialect: Any) -> None:
        t = table
        self.table = table
        self.dialect = dialect
        where = (t.c.namespace == bindparam("ns"), t.c.key_hash == bindparam("kh"))
        self.select = _Sql(
            select(t.c.idx, t.c.prompt, t.c.llm, t.c.response, t.c.expires_at)
            .where(*where)
            .order_by(t.c.idx),
            dialect,
        )
        self.delete_from = _Sql(delete(t).where(*where, t.c.idx >= bindparam("n")), dialect)
        self.clear = _Sql(delete(t).where(t.c.namespace == bindparam("ns")), dialect)
        self.native_upsert = dialect.name in ("postgresql", "sqlite", "mysql", "mariadb")
        # SQLite: take the write lock up front, so two writers never deadlock upgrading read locks.
        self.begin = "BEGIN IMMEDIATE" if dialect.name == "sqlite" else "BEGIN"
        self._upserts: dict[int, _Sql] = {}

    def upsert(self, n: int) -> _Sql:
        """INSERT of rows 0..n-1 that replaces existing ones (plain INSERT without native upsert)."""
        found = self._upserts.get(n)
        if found is None:
            found = self._upserts[n] = _Sql(self._build_upsert(n), self.dialect)
        return found

    def _build_upsert(self, n: int) -> Any:
        t = self.table
        shared: dict[str, Any] = {
            "namespace": bindparam("ns"),
            "key_hash": bindparam("kh"),
            "prompt": bindparam("prompt"),
            "llm": bindparam("llm"),
            "created_at": bindparam("created_at"),
            "expires_at": bindparam("expires_at"),
        }
        # Rows in idx order: every writer locks row 0 first, which is what serialises them.
        rows = [
            {**shared, "idx": literal_column(str(i)), "response": bindparam(f"r{i}")}
            for i in range(n)
        ]
        name = self.dialect.name
        if name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            pg_stmt = pg_insert(t).values(rows)
            return pg_stmt.on_conflict_do_update(
                index_elements=[t.c.namespace, t.c.key_hash, t.c.idx],
                set_={c: pg_stmt.excluded[c] for c in self._UPDATED},
            )
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            sqlite_stmt = sqlite_insert(t).values(rows)
            return sqlite_stmt.on_conflict_do_update(
                index_elements=[t.c.namespace, t.c.key_hash, t.c.idx],
                set_={c: sqlite_stmt.excluded[c] for c in self._UPDATED},
            )
        if name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert as mysql_insert

            mysql_stmt = mysql_insert(t).values(rows)
            return mysql_stmt.on_duplicate_key_update(
                {c: mysql_stmt.inserted[c] for c in self._UPDATED}
            )
        return insert(t).values(rows)


class _RawConnections:
    """Autocommit driver connections for the keyed hot path, reused without a pool checkout per call.

    Measured on PostgreSQL (benchmarks/bench_sql.py): a point SELECT through a SQLAlchemy
    ``Connection`` costs about twice the raw driver's time, and even ``engine.raw_connection()``
    per call adds 40-60 µs (checkout, reset-on-return, autocommit switches). So the cache has a
    pool of its own, ``engine.pool.recreate()`` (same creator, settings and pool events as the
    user's engine, none of its connections), whose connections are put in autocommit mode once
    and kept checked out in a LIFO list between calls. The list never grows past the number of
    threads using the cache at once, which the pool's own size limits.

    A connection that fails is invalidated; if it had been idle in the list and the failure is a
    disconnect (a database restart, MySQL's wait_timeout), the call is retried once on a fresh one.
    Pools that must not be duplicated or held are used as they are, one checkout per call:
    SQLite in-memory databases (``StaticPool``, ``SingletonThreadPool``: a new pool would open a
    new, empty database) and ``NullPool`` (the user asked for no pooling, e.g. behind PgBouncer).
    """

    def __init__(self, engine: Engine, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.dialect: Any = engine.dialect  # DBAPI-level calls: typed loosely on purpose
        # Every call is bounded (issue 12): a statement by the watchdog, which shuts the
        # connection's socket at the deadline (see _deadline: a stopped server never answers
        # and never closes), a checkout (which may have to connect) by a worker thread.
        # SQLite has no server to hang: its lock waits are bounded by the driver's own busy
        # timeout (sqlite3's ``timeout``), which the engine's owner sets.
        self.timeout = timeout
        self.workers = Workers()
        self._guarded = engine.dialect.name != "sqlite"
        pool_kind = type(engine.pool).__name__
        self._shared = pool_kind in (
            "StaticPool",
            "SingletonThreadPool",
            "AssertionPool",
            "NullPool",
        )
        self._source = engine.pool
        self._pool = engine.pool if self._shared else engine.pool.recreate()
        self._idle: deque[Any] = deque()
        self._pid = os.getpid()

    def run(self, op: Callable[..., T], *args: Any, bounded: bool = True) -> T:
        """``op(dbapi_connection, *args)``, its statements within the timeout unless ``bounded``
        is False (``clear``, whose time grows with the data)."""
        limit = self.timeout if bounded and self._guarded else None
        if self._shared:
            return self._run_shared(limit, op, *args)
        if self._pid != os.getpid():
            self._after_fork()
        try:
            fairy, reused = self._idle.pop(), True
        except IndexError:
            fairy = run_with_deadline(
                self.timeout,
                self._checkout,
                discard=_close_fairy,
                what="opening a database connection",
                workers=self.workers,
            )
            reused = False
        try:
            with _maybe_guard(limit, fairy.dbapi_connection):
                result = op(fairy.dbapi_connection, *args)
        except CorruptEntryError:
            self._idle.append(fairy)
            raise
        except Exception as exc:
            stale = reused and self.dialect.is_disconnect(exc, fairy.dbapi_connection, None)
            fairy.invalidate(exc)
            fairy.close()
            if not stale:
                raise
            return self.run(op, *args, bounded=bounded)  # the list may hold more dead ones: each is dropped in turn
        self._idle.append(fairy)
        return result

    def _checkout(self) -> Any:
        fairy = self._pool.connect()
        try:
            self.dialect.set_isolation_level(fairy.dbapi_connection, "AUTOCOMMIT")
        except BaseException:
            fairy.invalidate()
            fairy.close()
            raise
        return fairy

    def _run_shared(self, limit: float | None, op: Callable[..., T], *args: Any) -> T:
        fairy = run_with_deadline(
            self.timeout, self._pool.connect, discard=_close_fairy, what="a pool checkout", workers=self.workers
        )
        try:
            self.dialect.set_isolation_level(fairy.dbapi_connection, "AUTOCOMMIT")
            with _maybe_guard(limit, fairy.dbapi_connection):
                result = op(fairy.dbapi_connection, *args)
            self.dialect.reset_isolation_level(fairy.dbapi_connection)
            return result
        except CorruptEntryError:
            self.dialect.reset_isolation_level(fairy.dbapi_connection)
            raise
        except BaseException as exc:
            fairy.invalidate(exc if isinstance(exc, Exception) else None)
            raise
        finally:
            fairy.close()

    def _after_fork(self) -> None:
        # The parent's sockets must not be used (nor closed) by the child.
        self._idle = deque()
        self._pool = self._source.recreate()
        self._pid = os.getpid()

    def close(self) -> None:
        while True:
            try:
                fairy = self._idle.pop()
            except IndexError:
                break
            fairy.close()
        if not self._shared:
            self._pool.dispose()
        self.workers.close()


class SQLAlchemyCache(BaseCache):
    """Cache generations in a SQL database through a SQLAlchemy 2 engine.

    Args:
        engine: a sync :class:`sqlalchemy.engine.Engine` (SQLite, PostgreSQL with psycopg 3,
            MariaDB/MySQL with pymysql are tested). User schemas run on it as is; our
            FullLLMCache runs on a clone of its pool (same settings, separate connections,
            see ``_RawConnections``), closed by :meth:`close`.
        cache_schema: a declarative model with at least ``prompt``, ``llm``, ``idx``,
            ``response`` (LangChain's ``FullLLMCache`` shape); default :class:`FullLLMCache`.
            Its table is created if missing (``create_all(checkfirst=True)``, this table only).
        ttl: seconds an entry lives (``None``: until cleared). Needs an ``expires_at`` column.
        namespace: entries are partitioned by namespace and ``clear()`` deletes only this one;
            default ``"default"``. Needs a ``namespace`` column (a user schema without one
            must leave it ``None``; ``clear()`` then empties that table).
        async_engine: a :class:`sqlalchemy.ext.asyncio.AsyncEngine` for ``alookup`` & co.,
            used as given (its connections belong to the event loop that opened them). When
            omitted, async calls run the sync ones in a worker thread, which measured faster
            than async drivers on all three databases (see ``_araw``).
        timeout: seconds any one call may spend on the database, connecting included (default
            0.5); past it the call is a store error (a miss, or ``CacheTimeoutError`` when
            strict). Enforced by the cache itself, because a stopped server never answers and
            never closes its connections (see ``llm_cache._deadline``). Creating the table at
            construction waits up to 10 s (then the cache starts failing open); ``clear`` and
            the inspection methods are not bounded by it. On SQLite the driver's own busy
            timeout (the engine's ``connect_args={"timeout": s}``) bounds lock waits instead.
        strict: raise store errors instead of treating them as misses.
        clock: wall-clock source for TTL (entries outlive the process, so not monotonic).
        read_only: for inspection: never create the table (a missing one is a
            ConfigurationError naming it) and refuse ``update``/``clear``.
    """

    def __init__(
        self,
        engine: Engine,
        cache_schema: Any = FullLLMCache,
        *,
        ttl: float | None = None,
        namespace: str | None = None,
        async_engine: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        strict: bool = False,
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
    ) -> None:
        super().__init__(strict=strict)
        self.timeout = validate_timeout(timeout)
        self.read_only = bool(read_only)
        if not isinstance(engine, Engine):
            hint = (
                " (pass it as async_engine=, with a sync engine first)"
                if hasattr(engine, "sync_engine")
                else ""
            )
            raise ConfigurationError(
                f"engine must be a sqlalchemy Engine, not {type(engine).__name__}{hint}"
            )
        if async_engine is not None and not hasattr(async_engine, "sync_engine"):
            raise ConfigurationError("async_engine must be a sqlalchemy.ext.asyncio.AsyncEngine")
        self.engine = engine
        self.info: SchemaInfo = inspect_schema(cache_schema)
        self.cache_schema = cache_schema
        self.ttl = validate_ttl(ttl)
        if self.ttl is not None and not self.info.has_expiry:
            raise ConfigurationError(
                f"ttl needs an expires_at column and {self.info.name!r} has none: add "
                "`expires_at = Column(Double, nullable=True)` to the model, or use the default FullLLMCache"
            )
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ConfigurationError("namespace must be a non-empty string or None")
        if namespace is not None and not self.info.has_namespace:
            raise ConfigurationError(
                f"namespace={namespace!r} needs a namespace column and {self.info.name!r} has none: add "
                "`namespace = Column(String(128), nullable=False)` to the model, or use one table per cache"
            )
        self.namespace = (
            namespace if namespace is not None else ("default" if self.info.has_namespace else None)
        )
        self._clock = clock
        self._dialect = engine.dialect.name
        is_pg = self._dialect == "postgresql"
        self._to_db = _pg_text if is_pg else _same
        self._from_db = _pg_untext if is_pg else _same
        # psycopg: reads run in autocommit (a client-side flag, no round trip) instead of
        # paying BEGIN and ROLLBACK round trips around every SELECT.
        self._read_engine = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.driver == "psycopg"
            else engine
        )
        self.async_engine = async_engine
        self._statements: dict[tuple[Any, ...], _KeyedStatements] = {}
        self._connections = _RawConnections(engine, self.timeout)
        self._md5_index = False
        self._schema_ready = False
        if self.read_only:
            self._check_table_exists()
            self._schema_ready = True  # nothing to create: reads only
        try:
            # Bounded too (a hung server must not hang the application's start), but longer
            # than a call: creating a table and its indexes takes more than a lookup.
            run_with_deadline(
                max(self.timeout, _SCHEMA_SECONDS),
                self._ensure_schema,
                what="preparing the cache table",
                workers=self._connections.workers,
            )
        except ConfigurationError:
            raise
        except Exception as exc:
            if strict:
                raise CacheBackendError(
                    f"SQLAlchemyCache could not prepare {self.info.name!r}: {exc}"
                ) from exc
            # Fail open from the start: the cache works (by missing) while the database is down,
            # and creates its table on the first call that reaches the database.
            logger.warning(
                "llm-cache: SQLAlchemyCache could not reach the database yet: %s: %s",
                type(exc).__name__,
                exc,
            )

    def __repr__(self) -> str:
        return (
            f"SQLAlchemyCache(url={self.engine.url.render_as_string(hide_password=True)!r}, "
            f"table={self.info.name!r}, namespace={self.namespace!r})"
        )

    # -- schema and statements ------------------------------------------------------------------
    def _check_table_exists(self) -> None:
        from sqlalchemy import inspect as sa_inspect

        table = self.info.table
        if not sa_inspect(self.engine).has_table(table.name, schema=table.schema):
            where = self.engine.url.render_as_string(hide_password=True)
            raise ConfigurationError(
                f"{where} has no table {self.info.name!r}: not an llm-cache database (nothing was created)"
            )

    def _writable(self) -> None:
        if self.read_only:
            raise ConfigurationError(f"SQLAlchemyCache on {self.info.name!r} was opened read-only")

    def _ensure_schema(self) -> None:
        if not self._schema_ready:
            self._md5_index = ensure_schema(self.engine, self.info)
            self._schema_ready = True

    def _keyed(self, dialect: Any) -> _KeyedStatements:
        # Keyed by what decides the compiled text: the sync engine and an async_engine you pass
        # may have different drivers (paramstyles).
        key = (type(dialect), dialect.paramstyle, dialect.server_version_info)
        found = self._statements.get(key)
        if found is None:
            found = self._statements[key] = _KeyedStatements(self.info.table, dialect)
        return found

    # -- running operations: sync ------------------------------------------------------------------
    def _raw(self, op: Callable[..., T], *args: Any, bounded: bool = True) -> T:
        """Run ``op(dbapi_connection, statements, *args)`` on an autocommit driver connection."""
        if not self._schema_ready:
            run_with_deadline(
                self.timeout, self._ensure_schema, what="creating the cache table", workers=self._connections.workers
            )
        statements = self._keyed(self.engine.dialect)
        return self._connections.run(op, statements, *args, bounded=bounded)

    def _core(self, op: Callable[..., T], *args: Any, read: bool = False, bounded: bool = True) -> T:
        """Run ``op(connection, *args)`` through SQLAlchemy Core (user schemas).

        ``bounded``: within the timeout. The call then runs in a worker thread that the caller
        stops waiting for at the deadline (these paths hold a SQLAlchemy ``Connection``, whose
        socket is not ours to shut). Inspection, export and ``clear`` are not bounded: their
        time grows with the data.
        """
        call = functools.partial(self._core_now, op, *args, read=read)
        if not bounded or self._dialect == "sqlite":  # see _RawConnections: the driver bounds it
            return call()
        return run_with_deadline(self.timeout, call, what="a database call", workers=self._connections.workers)

    def _core_now(self, op: Callable[..., T], *args: Any, read: bool) -> T:
        if not self._schema_ready:
            self._ensure_schema()
        engine = self._read_engine if read else self.engine
        with engine.connect() as conn:
            return op(conn, *args)

    # -- running operations: async ---------------------------------------------------------------
    async def _araw(self, op: Callable[..., T], *args: Any) -> T:
        # Without an async engine of the user's, the sync path runs in a worker thread. Async
        # drivers were measured slower (benchmarks/bench_sql_async.py, BENCHMARKS.md): through
        # SQLAlchemy's greenlet bridge they gave 1.5-9x fewer hit lookups per second than
        # threads on SQLite (aiosqlite), MariaDB (aiomysql) and PostgreSQL (psycopg), and 11x
        # fewer with 16 lookups at once on PostgreSQL with the default pool, which opened and
        # closed its overflow connections (a SCRAM login each) again and again.
        engine = self.async_engine
        if engine is None:
            return await asyncio.to_thread(self._raw, op, *args)
        if not self._schema_ready:
            await asyncio.to_thread(self._ensure_schema)
        statements = self._keyed(engine.sync_engine.dialect)
        # The keyed operations expect an autocommit connection (they BEGIN/COMMIT themselves);
        # SQLAlchemy switches it on at checkout and back at return.
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")

        def run(sync_conn: Connection) -> T:
            # run_sync: the sync-style DBAPI adapter works here (SQLAlchemy's greenlet bridge).
            try:
                return op(sync_conn.connection.dbapi_connection, statements, *args)
            except CorruptEntryError:
                raise
            except Exception as exc:
                sync_conn.invalidate(exc)
                raise

        async def call() -> T:
            async with engine.connect() as conn:
                return await conn.run_sync(run)

        return await self._bounded(call())

    async def _acore(self, op: Callable[..., T], *args: Any, read: bool = False) -> T:
        engine = self.async_engine
        if engine is None:
            return await asyncio.to_thread(self._core, op, *args, read=read)
        if not self._schema_ready:
            await asyncio.to_thread(self._ensure_schema)
        if read and engine.sync_engine.dialect.driver == "psycopg":  # see _read_engine
            engine = engine.execution_options(isolation_level="AUTOCOMMIT")

        async def call() -> T:
            async with engine.connect() as conn:
                return await conn.run_sync(op, *args)

        return await self._bounded(call())

    async def _bounded(self, call: Any) -> Any:
        # Not asyncio.wait_for: it waits for the cancelled call to finish, and closing a
        # connection to a hung server hung with it (measured: 10 s instead of 0.3). The call is
        # cancelled and left to end in the background; its connection is then discarded.
        task = asyncio.ensure_future(call)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done:
            return task.result()
        task.cancel()
        task.add_done_callback(_retrieve)
        raise CacheTimeoutError(f"a database call did not finish within {self.timeout:g}s")

    # -- the contract ---------------------------------------------------------------------------------
    def _lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        if self.info.keyed:
            return self._raw(self._keyed_lookup, prompt, llm_string)
        return self._core(self._plain_lookup, prompt, llm_string, read=True)

    async def _alookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        if self.info.keyed:
            return await self._araw(self._keyed_lookup, prompt, llm_string)
        return await self._acore(self._plain_lookup, prompt, llm_string, read=True)

    def _update(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        self._writable()
        if self.info.keyed:
            self._raw(self._keyed_update, prompt, llm_string, generations)
        else:
            self._core(self._plain_update, prompt, llm_string, generations)

    async def _aupdate(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        self._writable()
        if self.info.keyed:
            await self._araw(self._keyed_update, prompt, llm_string, generations)
        else:
            await self._acore(self._plain_update, prompt, llm_string, generations)

    def _clear(self) -> None:
        self._writable()
        if self.info.keyed:
            self._raw(self._keyed_clear, bounded=False)
        else:
            self._core(self._plain_clear, bounded=False)

    async def _aclear(self) -> None:
        self._writable()
        if self.async_engine is None:
            await asyncio.to_thread(self._clear)  # unbounded, as _clear is
        elif self.info.keyed:
            await self._araw(self._keyed_clear)
        else:
            await self._acore(self._plain_clear)

    # -- the keyed path (FullLLMCache): raw DBAPI on pooled connections --------------------------------
    def _keyed_lookup(
        self, dbapi: Any, st: _KeyedStatements, prompt: str, llm_string: str
    ) -> list[Generation] | None:
        values = {"ns": self.namespace, "kh": cache_key(prompt, llm_string).hex()}
        cursor = (
            dbapi.cursor()
        )  # an autocommit connection: one statement, no BEGIN/ROLLBACK round trips
        try:
            cursor.execute(st.select.sql, st.select.params(values))
            rows = cursor.fetchall()
        finally:
            cursor.close()
        if not rows:
            return None
        # Compared again: a different prompt here is a hash collision, a miss.
        return _entry_generations(rows, self._to_db(prompt), self._to_db(llm_string), self._clock())

    def _keyed_update(
        self,
        dbapi: Any,
        st: _KeyedStatements,
        prompt: str,
        llm_string: str,
        generations: list[Generation],
    ) -> None:
        now = self._clock()
        values: dict[str, Any] = {
            "ns": self.namespace,
            "kh": cache_key(prompt, llm_string).hex(),
            "prompt": self._to_db(prompt),
            "llm": self._to_db(llm_string),
            "created_at": now,
            "expires_at": expires_at(now, self.ttl),
            "n": len(generations),
        }
        for i, generation in enumerate(generations):
            values[f"r{i}"] = _encode_generation(generation)
        upsert = st.upsert(len(generations))
        for attempt in range(1, _RETRIES + 1):
            cursor = dbapi.cursor()
            try:
                cursor.execute(st.begin)
                if (
                    not st.native_upsert
                ):  # no native upsert: delete, then insert (IntegrityError retried)
                    cursor.execute(st.delete_from.sql, st.delete_from.params({**values, "n": 0}))
                cursor.execute(upsert.sql, upsert.params(values))
                cursor.execute(st.delete_from.sql, st.delete_from.params(values))
                cursor.execute("COMMIT")
                return
            except Exception as exc:
                _rollback(cursor)
                transient = _is_transient(exc) or (
                    not st.native_upsert and "integrity" in type(exc).__name__.lower()
                )
                if attempt == _RETRIES or not transient:
                    raise
            finally:
                cursor.close()

    def _keyed_clear(self, dbapi: Any, st: _KeyedStatements) -> None:
        cursor = dbapi.cursor()
        try:
            cursor.execute(
                st.clear.sql, st.clear.params({"ns": self.namespace})
            )  # autocommit: atomic alone
        finally:
            cursor.close()

    # -- the plain path (user schemas): SQLAlchemy Core --------------------------------------------------
    def _where_entry(self, prompt: str, llm_string: str) -> tuple[list[Any], dict[str, Any]]:
        t = self.info.table
        clauses = [
            t.c.prompt == bindparam("p", type_=t.c.prompt.type),
            t.c.llm == bindparam("l", type_=t.c.llm.type),
        ]
        values: dict[str, Any] = {"p": self._to_db(prompt), "l": self._to_db(llm_string)}
        if self._md5_index:
            # The same expression as the index, so PostgreSQL uses it; md5 of the parameter is
            # computed by the server, in the database's encoding, once per statement.
            clauses.append(func.md5(t.c.prompt) == func.md5(bindparam("p", type_=t.c.prompt.type)))
        if self.info.has_namespace:
            clauses.append(t.c.namespace == bindparam("ns"))
            values["ns"] = self.namespace
        return clauses, values

    def _plain_lookup(
        self, conn: Connection, prompt: str, llm_string: str
    ) -> list[Generation] | None:
        t = self.info.table
        clauses, values = self._where_entry(prompt, llm_string)
        expiry = t.c.expires_at if self.info.has_expiry else literal_column("NULL")
        stmt = (
            select(t.c.idx, t.c.prompt, t.c.llm, t.c.response, expiry)
            .where(*clauses)
            .order_by(t.c.idx)
        )
        rows = conn.execute(stmt, values).all()
        if not rows:
            return None
        # Compared again: a case-insensitive or space-padding collation may match more.
        return _entry_generations(rows, values["p"], values["l"], self._clock())

    def _plain_update(
        self, conn: Connection, prompt: str, llm_string: str, generations: list[Generation]
    ) -> None:
        t = self.info.table
        clauses, values = self._where_entry(prompt, llm_string)
        now = self._clock()
        base: dict[str, Any] = {"prompt": values["p"], "llm": values["l"]}
        if self.info.has_namespace:
            base["namespace"] = self.namespace
        if self.info.has_expiry:
            base["expires_at"] = expires_at(now, self.ttl)
        if self.info.has_created_at:
            base["created_at"] = now
        rows = [
            {**base, "idx": i, "response": _encode_generation(g)} for i, g in enumerate(generations)
        ]
        pg_lock_class, pg_lock_id, mysql_lock = lock_ids(
            self.info.name, cache_key(prompt, llm_string)
        )
        dialect = conn.dialect.name
        for attempt in range(1, _RETRIES + 1):
            mysql_locked = False
            failed = True
            try:
                with conn.begin():
                    if dialect == "postgresql":
                        conn.execute(select(func.pg_advisory_xact_lock(pg_lock_class, pg_lock_id)))
                    elif dialect in ("mysql", "mariadb"):
                        got = conn.execute(
                            text("SELECT GET_LOCK(:name, :timeout)"),
                            {"name": mysql_lock, "timeout": _MYSQL_LOCK_TIMEOUT},
                        ).scalar()
                        if got != 1:
                            raise CacheBackendError(
                                f"another writer held this entry's lock for {_MYSQL_LOCK_TIMEOUT}s"
                            )
                        mysql_locked = True
                    # SQLite: the DELETE takes the database's single write lock for the transaction.
                    conn.execute(delete(t).where(*clauses), values)
                    conn.execute(insert(t), rows)
                failed = False
                return
            except Exception as exc:
                if attempt == _RETRIES or not _is_transient(exc):
                    raise
            finally:
                if mysql_locked:
                    # GET_LOCK outlives transactions: release it after the commit (or rollback).
                    # After a failure the connection may be gone, and the lock with it: the
                    # original error is the one to report.
                    try:
                        conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": mysql_lock})
                        conn.commit()
                    except Exception:
                        if not failed:
                            raise

    def _plain_clear(self, conn: Connection) -> None:
        t = self.info.table
        stmt = delete(t)
        if self.info.has_namespace:
            stmt = stmt.where(t.c.namespace == self.namespace)
        with conn.begin():
            conn.execute(stmt)

    # -- inspection and search --------------------------------------------------------------------------
    def entries(self) -> Iterator[CacheEntry]:
        """Every live entry of this cache (for ``llm-cache inspect/export``), read in one query.

        Rows of one entry are adjacent (ordered by key hash on our table, by the texts on a
        user schema) and are folded into one :class:`CacheEntry`; a row whose response is
        not one of our generations is logged and skipped.
        """
        t = self.info.table
        columns = [t.c.prompt, t.c.llm, t.c.response]
        if self.info.has_created_at:
            columns.append(t.c.created_at)
        if self.info.has_expiry:
            columns.append(t.c.expires_at)
        stmt = select(*columns)
        if self.info.has_namespace:
            stmt = stmt.where(t.c.namespace == self.namespace)
        if self.info.has_expiry:
            stmt = stmt.where(t.c.expires_at.is_(None) | (t.c.expires_at > self._clock()))
        order = [t.c.key_hash] if self.info.keyed else [t.c.prompt, t.c.llm]
        rows = self._core(
            lambda conn: conn.execute(stmt.order_by(*order, t.c.idx)).all(), read=True, bounded=False
        )
        current: tuple[Any, Any] | None = None
        generations: list[Generation] = []
        times: tuple[float | None, float | None] = (None, None)
        for row in rows:
            prompt, llm, response, *rest = row
            created = _epoch(rest.pop(0)) if self.info.has_created_at else None
            expiry = _epoch(rest.pop(0)) if self.info.has_expiry else None
            if current != (prompt, llm):
                if current is not None and generations:
                    yield CacheEntry(self._from_db(current[0]), self._from_db(current[1]), generations, *times)
                current, generations, times = (prompt, llm), [], (created, expiry)
            try:
                raw = bytes(response).decode() if isinstance(response, (bytes, bytearray, memoryview)) else response
                generations.append(Generation.from_dict(json.loads(raw)))
            except (ValueError, TypeError, CorruptEntryError) as exc:
                self.stats.corrupt += 1
                logger.warning("llm-cache: skipping an SQL cache row that is not an llm-cache generation: %s", exc)
        if current is not None and generations:
            yield CacheEntry(self._from_db(current[0]), self._from_db(current[1]), generations, *times)

    def count(self) -> int:
        """Number of live (unexpired) entries of this cache."""
        t = self.info.table
        stmt = select(func.count()).select_from(t).where(t.c.idx == 0)
        if self.info.has_namespace:
            stmt = stmt.where(t.c.namespace == self.namespace)
        if self.info.has_expiry:
            stmt = stmt.where((t.c.expires_at.is_(None)) | (t.c.expires_at > self._clock()))
        return int(self._core(lambda conn: conn.execute(stmt).scalar_one(), read=True, bounded=False))

    def namespaces(self) -> list[tuple[str, int, int]]:
        """``(namespace, live entries, bytes of their texts and answers)`` per namespace of the
        table, largest first (one namespace, ``""``, for a table without a namespace column)."""
        t = self.info.table
        size = func.coalesce(
            func.sum(func.length(t.c.prompt) + func.length(t.c.llm) + func.length(t.c.response)), 0
        )
        first = t.c.idx == 0
        namespace = t.c.namespace if self.info.has_namespace else literal_column("''")
        stmt = select(namespace, func.sum(case((first, 1), else_=0)), size)
        if self.info.has_expiry:
            stmt = stmt.where(t.c.expires_at.is_(None) | (t.c.expires_at > self._clock()))
        if self.info.has_namespace:
            stmt = stmt.group_by(t.c.namespace)
        rows = self._core(lambda conn: conn.execute(stmt).all(), read=True, bounded=False)
        return sorted(((str(ns), int(n or 0), int(b)) for ns, n, b in rows if n), key=lambda r: (-r[1], r[0]))

    def purge_expired(self) -> int:
        """Delete this cache's expired rows; returns how many rows were removed (0 without TTL)."""
        if not self.info.has_expiry:
            return 0
        t = self.info.table
        stmt = delete(t).where(t.c.expires_at <= self._clock())
        if self.info.has_namespace:
            stmt = stmt.where(t.c.namespace == self.namespace)

        def run(conn: Connection) -> int:
            with conn.begin():
                return int(conn.execute(stmt).rowcount)

        return self._core(run, bounded=False)

    def search(self, query: str, *, limit: int = 10, config: str = "english") -> list[SearchHit]:
        """Cached entries whose text matches ``query``, best first (PostgreSQL full-text search).

        Needs a tsvector column in the schema (like the notebook's ``FulltextLLMCache``:
        ``to_tsvector('english', llm || ' ' || prompt)`` with a GIN index). ``query`` uses
        ``websearch_to_tsquery`` syntax: words, ``"quoted phrases"``, ``or``, ``-excluded``.
        ``config`` must be the text search configuration the column was built with.
        """
        stmt = self._search_statement(query, limit, config)
        rows = self._core(lambda conn: conn.execute(stmt).all(), read=True, bounded=False)
        hits = []
        for prompt, llm_string, rank in self._search_rows(rows):
            hits.append(SearchHit(prompt, llm_string, rank, self._lookup(prompt, llm_string)))
        return hits

    async def asearch(
        self, query: str, *, limit: int = 10, config: str = "english"
    ) -> list[SearchHit]:
        """Async :meth:`search` (in a worker thread, or on the ``async_engine`` you passed)."""
        stmt = self._search_statement(query, limit, config)
        rows = await self._acore(lambda conn: conn.execute(stmt).all(), read=True)
        hits = []
        for prompt, llm_string, rank in self._search_rows(rows):
            generations = await self._alookup(prompt, llm_string)
            hits.append(SearchHit(prompt, llm_string, rank, generations))
        return hits

    def _search_statement(self, query: str, limit: int, config: str) -> Any:
        if self._dialect != "postgresql" or self.info.tsvector_column is None:
            raise ConfigurationError(
                "search() needs PostgreSQL and a cache_schema with a tsvector column, e.g. "
                "Column(TSVectorType(), Computed(\"to_tsvector('english', llm || ' ' || prompt)\", persisted=True)) "
                "with a GIN index"
            )
        from sqlalchemy.dialects.postgresql import REGCONFIG

        t = self.info.table
        vector = t.c[self.info.tsvector_column]
        tsquery = func.websearch_to_tsquery(cast(config, REGCONFIG), query)
        rank = func.ts_rank(vector, tsquery).label("rank")
        stmt = select(t.c.prompt, t.c.llm, rank).where(vector.op("@@")(tsquery), t.c.idx == 0)
        if self.info.has_namespace:
            stmt = stmt.where(t.c.namespace == self.namespace)
        return stmt.order_by(desc("rank")).limit(limit)

    def _search_rows(self, rows: Any) -> list[tuple[str, str, float]]:
        return [(self._from_db(p), self._from_db(llm), float(rank)) for p, llm, rank in rows]

    # -- lifecycle -----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close this cache's own connections.

        The ``engine`` (and an ``async_engine`` you passed) are yours: they are not disposed.
        """
        self._connections.close()


def _retrieve(task: "asyncio.Future[Any]") -> None:
    # Fetch the abandoned call's outcome, so that asyncio does not log it as never retrieved.
    if not task.cancelled():
        task.exception()


def _maybe_guard(limit: float | None, dbapi_connection: Any) -> Any:
    if limit is None:
        return contextlib.nullcontext()
    return guard(limit, socket_aborter(dbapi_connection), "a database statement")


def _close_fairy(fairy: Any) -> None:
    # A connection that arrived after its caller gave up: back to the pool.
    fairy.close()


def _rollback(cursor: Any) -> None:
    # The original error is the one to report; a connection too broken to roll back is dropped.
    with contextlib.suppress(Exception):
        cursor.execute("ROLLBACK")


def _epoch(value: Any) -> float | None:
    """Epoch seconds of a stored time (our REAL column, or a user schema's DateTime)."""
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)
