"""SQLiteCache: a file-backed cache that many threads and processes can share.

Design choices, each for a reason:

* WAL journal + ``synchronous=NORMAL``: readers never block the writer and a write is
  one append, not an fsync of the whole database (a cache may lose its last writes on
  power loss, never its consistency).
* one connection per thread: sqlite3 connections are not safe to share, and opening
  one per call costs more than the lookup itself.
* a busy timeout (``timeout``, 0.5 s by default) and single-statement upserts (``INSERT ...
  ON CONFLICT DO UPDATE``): concurrent writers from other processes wait their turn (a write
  takes well under a millisecond) instead of failing, there is no read-then-write race, and a
  process that holds the write lock for long (a stuck transaction) costs a caller at most the
  timeout, then a dropped write (issue 12: it used to cost 10 s on every miss).
* all generations of an entry live in one JSON value, so replacing an entry that had
  more generations cannot leave stale rows behind.
* the row id *is* the key: 64 bits of the sha256 of (prompt, llm_string), mixed with the
  namespace. A lookup is then one B-tree descent (a separate unique index doubled the
  cost of a hit: measured 14 µs against 9 µs for the bare SELECT). The full texts and the
  namespace sit in the row and are compared on every hit, so a collision is a miss (and
  at worst one entry replaces another, a 2^-64 event); 200 kB prompts cost nothing in
  the B-tree.
* per-entry hit counts are buffered in memory and written in batches: writing on every
  hit would turn each read into a write transaction.
* the async methods run in worker threads (the base class's ``asyncio.to_thread``), reads
  included: a read is file I/O that can wait (a cold page, a busy disk, a WAL checkpoint),
  and nothing may block the event loop. Lookups once ran inline on the loop, which was
  faster (see BENCHMARKS.md for the measured cost) but blocked it, and under LangChain's
  test configuration (BlockBuster) every async lookup failed and became a miss.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import weakref
from typing import Callable, Iterator

from .._deadline import DEFAULT_TIMEOUT, validate_timeout
from .._sqlite import describe_open_error, open_read_only_connection, open_wal_connection
from .._ttl import expires_at, validate_ttl
from ..errors import ConfigurationError, CorruptEntryError
from ..generation import Generation, decode_generations, encode_generations
from ..keys import cache_key
from .base import BaseCache, CacheEntry, logger

__all__ = ["SQLiteCache"]

SCHEMA_VERSION = 1
# Buffered hit counts are written after this many hits or when the oldest is this old.
# A flush is a write transaction (~0.3 ms); every 64 hits it added ~8 µs to each lookup.
_HIT_FLUSH_COUNT = 1024
_HIT_FLUSH_SECONDS = 5.0
# Milliseconds the constructor waits for another process's writer while creating the schema.
_SCHEMA_WAIT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_cache_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS llm_cache (
    namespace   TEXT    NOT NULL,
    id          INTEGER PRIMARY KEY,  -- see _row_id
    prompt      TEXT    NOT NULL,
    llm_string  TEXT    NOT NULL,
    response    TEXT    NOT NULL,
    created_at  REAL    NOT NULL,
    expires_at  REAL,
    hit_count   INTEGER NOT NULL DEFAULT 0,
    last_hit_at REAL
);
CREATE INDEX IF NOT EXISTS llm_cache_namespace ON llm_cache (namespace);
CREATE INDEX IF NOT EXISTS llm_cache_expiry ON llm_cache (expires_at) WHERE expires_at IS NOT NULL;
"""

_COLUMNS = frozenset(
    {"namespace", "id", "prompt", "llm_string", "response", "created_at", "expires_at", "hit_count", "last_hit_at"}
)
_SELECT = "SELECT namespace, prompt, llm_string, response, expires_at FROM llm_cache WHERE id = ?"
_UPSERT = """
INSERT INTO llm_cache (id, namespace, prompt, llm_string, response, created_at, expires_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    namespace = excluded.namespace, prompt = excluded.prompt, llm_string = excluded.llm_string,
    response = excluded.response, created_at = excluded.created_at, expires_at = excluded.expires_at,
    hit_count = CASE WHEN llm_cache.prompt = excluded.prompt THEN llm_cache.hit_count ELSE 0 END
"""
_ADD_HITS = """
UPDATE llm_cache SET hit_count = hit_count + ?, last_hit_at = max(coalesce(last_hit_at, 0), ?)
WHERE id = ?
"""


class SQLiteCache(BaseCache):
    """Cache generations in an SQLite file.

    Args:
        database_path: the file (created if missing). ``":memory:"`` gives a private
            database in a temporary file, shared by this object's threads and deleted on close.
        ttl: seconds an entry lives; ``None`` keeps it until cleared.
        namespace: entries are partitioned by namespace; ``clear()`` removes only this one.
        timeout: seconds a call waits for another process's write lock (SQLite's busy
            timeout) before it counts as a store error; default 0.5.
        busy_timeout: the former name of ``timeout`` (wins when given).
        clock: wall-clock time source for TTL (entries outlive the process, so not monotonic).
        strict: raise store errors instead of treating them as misses.
        read_only: open the file read-only (``mode=ro``) for inspection: nothing is created
            or changed (no table, no hit count, no side file); the file must exist and hold
            an llm-cache table, and ``update``/``clear`` raise ConfigurationError.
    """

    def __init__(
        self,
        database_path: str | os.PathLike[str] = ".llm_cache.db",
        ttl: float | None = None,
        *,
        namespace: str = "default",
        timeout: float = DEFAULT_TIMEOUT,
        busy_timeout: float | None = None,
        clock: Callable[[], float] = time.time,
        strict: bool = False,
        read_only: bool = False,
    ) -> None:
        super().__init__(strict=strict)
        self.timeout = validate_timeout(busy_timeout if busy_timeout is not None else timeout)
        if not isinstance(namespace, str) or not namespace:
            raise ConfigurationError("namespace must be a non-empty string")
        self.database_path = os.fspath(database_path)
        self.read_only = bool(read_only)
        if self.read_only and self.database_path == ":memory:":
            raise ConfigurationError("a read-only SQLiteCache needs an existing file, not ':memory:'")
        self.ttl = validate_ttl(ttl)
        self.namespace = namespace
        self._salt = int.from_bytes(hashlib.sha256(namespace.encode()).digest()[:8], "big", signed=True)
        self._busy_ms = max(1, int(self.timeout * 1000))
        self._clock = clock
        self._tempdir: str | None = None
        if self.database_path == ":memory:":
            # SQLite's shared-cache memory databases lock whole tables between threads
            # (SQLITE_LOCKED, which busy_timeout does not cover), so a private temporary
            # file stands in for one: the same behaviour as a file, removed on close.
            self._tempdir = tempfile.mkdtemp(prefix="llm-cache-")
            self._path = os.path.join(self._tempdir, "cache.db")
        else:
            self._path = self.database_path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._pending_hits: dict[int, list[float]] = {}
        self._pending_count = 0
        self._pending_since = 0.0
        self._hits_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._flush_lock = threading.Lock()
        self._flush_conn: sqlite3.Connection | None = None
        self._closed = False
        # Creating the schema may wait for another process's writer longer than a call would.
        self._keepalive = self._connect(schema_wait_ms=max(self._busy_ms, _SCHEMA_WAIT_MS))
        self_ref = weakref.ref(self)
        atexit.register(_flush_at_exit, self_ref)

    def __repr__(self) -> str:
        return f"SQLiteCache(database_path={self.database_path!r}, namespace={self.namespace!r})"

    # -- connections ------------------------------------------------------------------
    def _open(self, schema_wait_ms: int | None = None) -> sqlite3.Connection:
        """A new configured connection (closed by :meth:`close`)."""
        if self._closed:
            raise ConfigurationError("this SQLiteCache was closed; create a new one")
        wait_ms = schema_wait_ms or self._busy_ms
        try:
            if self.read_only:
                conn = open_read_only_connection(self._path, wait_ms)
            else:
                conn = open_wal_connection(self._path, wait_ms)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(describe_open_error(self.database_path, exc)) from exc
        if schema_wait_ms:
            # Only the constructor's connection creates or checks the schema: that takes the
            # write lock, which a new thread's first lookup must not wait for (issue 12).
            try:
                if self.read_only:
                    self._check_schema(conn)
                else:
                    self._ensure_schema(conn)
            except BaseException:
                conn.close()
                raise
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _connect(self, schema_wait_ms: int | None = None) -> sqlite3.Connection:
        conn = self._open(schema_wait_ms)
        self._local.conn = conn
        return conn

    def _conn(self) -> sqlite3.Connection:
        try:
            return self._local.conn
        except AttributeError:
            return self._connect()

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        # BEGIN IMMEDIATE serialises schema creation between processes opening a new file.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM llm_cache_meta WHERE name = 'schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO llm_cache_meta (name, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise ConfigurationError(
                    f"{self.database_path} holds an llm-cache schema version {row[0]}, but this llm-cache "
                    f"uses version {SCHEMA_VERSION}: point SQLiteCache at a new file, or delete this one"
                )
            # CREATE TABLE IF NOT EXISTS keeps a table of another layout (a development build
            # wrote version 1 with a key column instead of id): every query would then fail.
            columns = {r[1] for r in conn.execute("PRAGMA table_info(llm_cache)")}
            if not _COLUMNS <= columns:
                raise ConfigurationError(
                    f"{self.database_path} has an llm_cache table without the columns "
                    f"{sorted(_COLUMNS - columns)} this llm-cache needs (written by another "
                    "version or program): point SQLiteCache at a new file, or delete this one"
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        """What :meth:`_ensure_schema` checks, without creating anything (read-only mode)."""
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ConfigurationError(f"{self.database_path} is not an SQLite database ({exc})") from exc
        columns = {r[1] for r in conn.execute("PRAGMA table_info(llm_cache)")}
        if "llm_cache" not in tables or not _COLUMNS <= columns:
            conn.close()
            what = "has no llm_cache table" if "llm_cache" not in tables else "has an llm_cache table of another layout"
            raise ConfigurationError(
                f"{self.database_path} is not an llm-cache SQLite database ({what}); "
                f"it was left unchanged. A semantic cache's directory is read with semantic:///DIR"
            )

    def _writable(self) -> None:
        if self.read_only:
            raise ConfigurationError(f"{self.database_path} was opened read-only")

    # -- the contract -------------------------------------------------------------------
    def _lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        row_id = self._row_id(prompt, llm_string)
        row = self._conn().execute(_SELECT, (row_id,)).fetchone()
        if row is None or row[1] != prompt or row[2] != llm_string or row[0] != self.namespace:
            return None
        if row[4] is not None and self._clock() >= row[4]:
            return None
        generations = decode_generations(row[3])
        self._record_hit(row_id)
        return generations

    def _row_id(self, prompt: str, llm_string: str) -> int:
        """The row id of an entry: 64 bits of its cache key, xor this namespace's salt."""
        return int.from_bytes(cache_key(prompt, llm_string)[:8], "big", signed=True) ^ self._salt

    def _update(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        self._writable()
        now = self._clock()
        self._conn().execute(
            _UPSERT,
            (
                self._row_id(prompt, llm_string),
                self.namespace,
                prompt,
                llm_string,
                encode_generations(generations),
                now,
                expires_at(now, self.ttl),
            ),
        )

    def _clear(self) -> None:
        self._writable()
        with self._hits_lock:
            self._pending_hits.clear()
            self._pending_count = 0
        self._conn().execute("DELETE FROM llm_cache WHERE namespace = ?", (self.namespace,))

    # -- hit statistics -----------------------------------------------------------------
    def _record_hit(self, key: int) -> None:
        if self.read_only:
            return  # a read-only cache writes nothing, not even statistics
        now = self._clock()
        with self._hits_lock:
            pending = self._pending_hits.get(key)
            if pending is None:
                self._pending_hits[key] = [1, now]
            else:
                pending[0] += 1
                pending[1] = now
            if not self._pending_count:
                self._pending_since = now
            self._pending_count += 1
            due = self._pending_count >= _HIT_FLUSH_COUNT or now - self._pending_since >= _HIT_FLUSH_SECONDS
            if due and (self._flusher is None or not self._flusher.is_alive()):
                # The write happens in a thread of its own: done inline it put a write
                # transaction (and now and then a WAL checkpoint, milliseconds) into one
                # unlucky lookup, which on an event loop stalls every other request.
                self._flusher = threading.Thread(target=self.flush_hits, name="llm-cache-sqlite-hits", daemon=True)
                self._flusher.start()

    def flush_hits(self) -> None:
        """Write buffered per-entry hit counts now (done automatically in batches and at exit)."""
        with self._hits_lock:
            pending, self._pending_hits = self._pending_hits, {}
            self._pending_count = 0
        if not pending:
            return
        rows = [(count, last, key) for key, (count, last) in pending.items()]
        try:
            # One connection of its own, whichever thread flushes (the background flusher
            # is a new thread each time; a per-thread connection would leak one per flush).
            with self._flush_lock:
                if self._flush_conn is None:
                    self._flush_conn = self._open()
                conn = self._flush_conn
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(_ADD_HITS, rows)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            # Statistics are best effort: losing a batch of hit counts must not fail a lookup.
            logger.debug("llm-cache: could not record hit counts: %s", exc)

    # -- inspection -----------------------------------------------------------------------
    def count(self) -> int:
        """Number of live (unexpired) entries in this namespace."""
        row = self._conn().execute(
            "SELECT count(*) FROM llm_cache WHERE namespace = ? AND (expires_at IS NULL OR expires_at > ?)",
            (self.namespace, self._clock()),
        ).fetchone()
        return int(row[0])

    def entries(self) -> Iterator[CacheEntry]:
        """Every live entry of this namespace, most hit first (hit counts flushed first)."""
        self.flush_hits()
        cursor = self._conn().execute(
            "SELECT prompt, llm_string, response, created_at, expires_at, hit_count, last_hit_at "
            "FROM llm_cache WHERE namespace = ? AND (expires_at IS NULL OR expires_at > ?) "
            "ORDER BY hit_count DESC, created_at DESC",
            (self.namespace, self._clock()),
        )
        for prompt, llm_string, response, created, expiry, hits, last_hit in cursor:
            try:
                generations = decode_generations(response)
            except CorruptEntryError as exc:
                # One bad row must not end an export: skipped, counted, logged.
                self.stats.corrupt += 1
                logger.warning("llm-cache: SQLiteCache: skipping a row that is not an llm-cache entry: %s", exc)
                continue
            yield CacheEntry(prompt, llm_string, generations, created, expiry, hits, last_hit)

    def namespaces(self) -> list[tuple[str, int, int]]:
        """``(namespace, live entries, bytes of their texts and answers)`` for every namespace
        in the file, largest first."""
        rows = self._conn().execute(
            "SELECT namespace, count(*), coalesce(sum(length(CAST(prompt AS BLOB)) + "
            "length(CAST(llm_string AS BLOB)) + length(CAST(response AS BLOB))), 0) "
            "FROM llm_cache WHERE expires_at IS NULL OR expires_at > ? GROUP BY namespace ORDER BY 2 DESC, 1",
            (self._clock(),),
        ).fetchall()
        return [(str(ns), int(n), int(size)) for ns, n, size in rows]

    def restore(self, entry: CacheEntry) -> None:
        """Write ``entry`` keeping its ``created_at``, ``expires_at``, ``hit_count`` and
        ``last_hit_at`` (what ``llm-cache import`` uses; ``update`` would start it afresh).
        Missing times are taken as now and this cache's TTL."""
        self._writable()
        now = self._clock()
        created = now if entry.created_at is None else entry.created_at
        expiry = expires_at(now, self.ttl) if entry.expires_at is None else entry.expires_at
        row_id = self._row_id(entry.prompt, entry.llm_string)
        self._conn().execute(
            "INSERT OR REPLACE INTO llm_cache (id, namespace, prompt, llm_string, response, created_at, "
            "expires_at, hit_count, last_hit_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row_id, self.namespace, entry.prompt, entry.llm_string, encode_generations(entry.generations),
                created, expiry, entry.hit_count or 0, entry.last_hit_at,
            ),
        )

    def purge_expired(self) -> int:
        """Delete expired entries of this namespace; returns how many were removed."""
        cursor = self._conn().execute(
            "DELETE FROM llm_cache WHERE namespace = ? AND expires_at <= ?", (self.namespace, self._clock())
        )
        return cursor.rowcount

    def close(self) -> None:
        if self._closed:
            return
        if self._flusher is not None:
            self._flusher.join()
        self.flush_hits()
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)


def _flush_at_exit(ref: "weakref.ref[SQLiteCache]") -> None:
    cache = ref()
    if cache is not None and not cache._closed:
        try:
            cache.flush_hits()
        except Exception:  # interpreter shutdown: nothing useful to do
            pass
