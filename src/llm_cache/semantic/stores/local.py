"""LocalVectorStore: payloads in SQLite, vectors in usearch HNSW indexes, in one directory.

This is what ``SemanticCache(data_dir="...")`` uses (and, with ``path=None``, a private
temporary directory for an in-memory cache). Design, each point for a reason:

* **SQLite is the source of truth.** Every entry row holds the payload *and* its vector
  (float16, 768 bytes for 384 dimensions). Writers from any number of threads and
  processes go through SQLite transactions (WAL, ``busy_timeout``), so two processes can
  write to one directory at once; nothing is lost and nothing is half-written.
* **The ANN index is a per-process cache of SQLite.** Entry ids only grow (a replaced
  entry gets a new id) and removals are logged in a ``removed`` table, so before each
  search a process compares three counters with its own (one ~10 µs query) and applies
  only what changed since: new rows are added to its index, logged removals taken out.
  ``clear()`` bumps a per-namespace epoch, which makes every process drop its indexes.
* **One index per large partition; exact search for small ones.** usearch's Python API
  has no per-query filter, and a global index searched for k*m neighbours then filtered
  misses a rare partition entirely. A partition (model settings + conversation) with at
  most ``exact_limit`` entries is searched exactly from its SQLite rows (a few hundred
  768-byte vectors: well under a millisecond); a larger one gets its own HNSW index.
  Typical traffic has one large partition (single-turn questions to one model) and many
  tiny ones (follow-up turns), so this costs memory only where search needs it.
* **Quantised index, exact scores.** Indexes store int8 vectors (384 bytes each, not
  1,536 for float32): under 1 KB per entry with the graph. The index only proposes
  candidates; their similarity is recomputed from the float16 vectors in SQLite, so the
  similarity the cache compares with its threshold is exact to ~1e-3 whatever the index.
* **Snapshots.** ``save()`` (called by ``close()``) writes each index to a file and
  records, in SQLite, the counters it reflects. A process that opens the directory later
  loads the snapshot and replays only the changes made after it, instead of re-indexing
  every vector. A stale or missing snapshot is never trusted: the index is rebuilt.

Supported: many threads; many processes reading and writing one directory (each keeps
its own index in memory; memory is per process). Not supported: network filesystems
(SQLite's locking is unreliable there).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
from typing import Any, Callable, Iterable, Sequence

from ..._imports import require
from ..._sqlite import open_wal_connection
from ..._deadline import DEFAULT_TIMEOUT, validate_timeout
from ...errors import ConfigurationError
from .base import Neighbour, SemanticEntry, VectorStore

__all__ = ["LocalVectorStore"]

logger = logging.getLogger("llm_cache")

SCHEMA_VERSION = 1
DB_NAME = "semantic.db"
INDEX_DIR = "indexes"

# Removal log rows kept per namespace; a process that fell further behind rebuilds.
_REMOVED_KEEP = 50_000
_REMOVED_PRUNE_EVERY = 1_000
# Index batches smaller than this are inserted on one thread (see _index_rows).
_PARALLEL_ADD_MIN = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS semantic_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS semantic_entries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace   TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    partition   TEXT    NOT NULL,
    text        TEXT    NOT NULL,
    prompt      TEXT    NOT NULL,
    llm_string  TEXT    NOT NULL,
    response    TEXT    NOT NULL,
    created_at  REAL    NOT NULL,
    expires_at  REAL,
    vector      BLOB    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS semantic_entries_key ON semantic_entries (namespace, key);
CREATE INDEX IF NOT EXISTS semantic_entries_partition ON semantic_entries (namespace, partition, id);
CREATE INDEX IF NOT EXISTS semantic_entries_expiry ON semantic_entries (namespace, expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS semantic_removed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    partition TEXT NOT NULL,
    entry_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS semantic_removed_ns ON semantic_removed (namespace, seq);
CREATE TABLE IF NOT EXISTS semantic_epochs (
    namespace TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL DEFAULT 0,       -- bumped by clear(): every process drops its indexes
    pruned_upto INTEGER NOT NULL DEFAULT 0  -- removal log rows up to this seq were deleted
);
CREATE TABLE IF NOT EXISTS semantic_snapshots (
    namespace TEXT NOT NULL,
    partition TEXT NOT NULL,
    file TEXT NOT NULL,
    last_id INTEGER NOT NULL,
    last_removed INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    PRIMARY KEY (namespace, partition)
);
"""

_ENTRY_COLUMNS = "key, partition, text, prompt, llm_string, response, created_at, expires_at"
_INSERT = (
    "INSERT INTO semantic_entries (namespace, key, partition, text, prompt, llm_string, response, "
    "created_at, expires_at, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class _Index:
    """One partition's HNSW index and the ids it holds."""

    __slots__ = ("index",)

    def __init__(self, index: Any) -> None:
        self.index = index


class LocalVectorStore(VectorStore):
    """A :class:`VectorStore` in a directory: SQLite payloads, usearch HNSW indexes.

    Args:
        path: the directory (created if missing). ``None``: a private temporary directory,
            removed by :meth:`close` (an in-memory cache).
        dimension: vector size; fixed when the directory is first used.
        namespace: entries of other namespaces in the same directory are never seen.
        index_dtype: ``"i8"`` (default, 1 byte a dimension), ``"f16"`` or ``"f32"``.
        exact_limit: partitions up to this size are searched exactly, without an index.
        connectivity, expansion_add, expansion_search: HNSW parameters (usearch's M,
            efConstruction, ef).
        clock: wall-clock time for TTL checks (tests pass a fake one).
        timeout: seconds a call waits for another process's write lock (SQLite's busy
            timeout) before it fails (a store error: a miss); default 0.5.
        busy_timeout: the former name of ``timeout`` (wins when given).

    A stored row whose vector is not ``dimension`` float16 values (a damaged file, another
    program's write) is skipped and counted in ``malformed_rows``: the rest of its partition
    is still searched.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        dimension: int,
        namespace: str = "default",
        index_dtype: str = "i8",
        exact_limit: int = 256,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 128,
        clock: Callable[[], float] = time.time,
        timeout: float = DEFAULT_TIMEOUT,
        busy_timeout: float | None = None,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ConfigurationError("namespace must be a non-empty string")
        if not isinstance(dimension, int) or dimension < 1:
            raise ConfigurationError(f"dimension must be a positive integer, not {dimension!r}")
        if index_dtype not in ("i8", "f16", "f32"):
            raise ConfigurationError("index_dtype must be 'i8', 'f16' or 'f32'")
        self._np = require("numpy", extra="semantic", feature="the local semantic store")
        _guard_usearch_import_order()
        self._usearch = require("usearch.index", extra="semantic", feature="the local semantic store")
        self.dimension = dimension
        self.namespace = namespace
        self.index_dtype = index_dtype
        self.exact_limit = exact_limit
        self.connectivity = connectivity
        self.expansion_add = expansion_add
        self.expansion_search = expansion_search
        self._clock = clock
        self.timeout = validate_timeout(busy_timeout if busy_timeout is not None else timeout)
        self._busy_ms = max(1, int(self.timeout * 1000))
        self.malformed_rows = 0  # stored rows skipped because their vector is unreadable
        self._tempdir: str | None = None
        if path is None:
            self._tempdir = tempfile.mkdtemp(prefix="llm-cache-semantic-")
            self.path = self._tempdir
        else:
            self.path = os.fspath(path)
            os.makedirs(self.path, exist_ok=True)
        self._db_path = os.path.join(self.path, DB_NAME)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        # In-memory view of SQLite: guarded by _lock.
        self._lock = threading.RLock()
        self._indexes: dict[str, _Index] = {}
        self._epoch = -1
        self._last_id = 0
        self._last_removed = 0
        self._pruned_upto = 0
        self._removals_since_prune = 0
        self._conn()  # creates or checks the schema now, so errors surface at construction

    def __repr__(self) -> str:
        where = "<temporary>" if self._tempdir else self.path
        return f"LocalVectorStore({where!r}, namespace={self.namespace!r}, dimension={self.dimension})"

    # ------------------------------------------------------------------ connections
    def _conn(self) -> sqlite3.Connection:
        try:
            return self._local.conn
        except AttributeError:
            pass
        if self._closed:
            raise ConfigurationError("this LocalVectorStore was closed; create a new one")
        conn = open_wal_connection(self._db_path, self._busy_ms)
        self._ensure_schema(conn)
        with self._connections_lock:
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # serialises schema creation between processes
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            meta = dict(conn.execute("SELECT name, value FROM semantic_meta").fetchall())
            if not meta:
                conn.executemany(
                    "INSERT INTO semantic_meta (name, value) VALUES (?, ?)",
                    [("schema_version", str(SCHEMA_VERSION)), ("dimension", str(self.dimension))],
                )
            else:
                if meta.get("schema_version") != str(SCHEMA_VERSION):
                    raise ConfigurationError(
                        f"{self.path} holds a semantic cache of schema version {meta.get('schema_version')}, "
                        f"this llm-cache uses {SCHEMA_VERSION}: use a new directory"
                    )
                if meta.get("dimension") != str(self.dimension):
                    raise ConfigurationError(
                        f"{self.path} holds {meta.get('dimension')}-dimensional vectors but the embedding "
                        f"model gives {self.dimension}: use the same model, or a new directory"
                    )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn`` in one IMMEDIATE transaction (the write lock is taken up front, so
        a concurrent writer waits in busy_timeout instead of failing mid-transaction)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result

    # ------------------------------------------------------------------ vectors
    def _blob(self, vector: Any) -> bytes:
        array = self._np.asarray(vector, dtype=self._np.float32).reshape(-1)
        if array.shape[0] != self.dimension:
            raise ConfigurationError(f"expected a {self.dimension}-float vector, got {array.shape[0]}")
        return array.astype(self._np.float16).tobytes()

    def _vectors(self, blobs: Sequence[bytes]) -> Any:
        np = self._np
        return np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), self.dimension).astype(np.float32)

    def _well_formed(self, rows: Sequence[Any], column: int) -> list[Any]:
        """The rows whose ``column`` holds a vector of this store's dimension; the others are
        skipped, counted and logged (one bad row must not make its whole partition fail)."""
        size = 2 * self.dimension
        good = [r for r in rows if isinstance(r[column], bytes) and len(r[column]) == size]
        if len(good) != len(rows):
            skipped = len(rows) - len(good)
            # Warned once per store (a small partition is re-read on every search).
            log = logger.warning if not self.malformed_rows else logger.debug
            self.malformed_rows += skipped
            log(
                "llm-cache: %s: skipped %d stored row(s) whose vector is not %d float16 values "
                "(counted in malformed_rows)", self, skipped, self.dimension,
            )
        return good

    def _for_index(self, matrix: Any) -> Any:
        """Rows scaled so their largest component is ±1. Cosine ignores a vector's scale,
        but usearch's int8 maps [-1, 1] to [-127, 127]: a unit 384-float vector (largest
        component ~0.17) would use a sixth of that range. Measured on 50k vectors: the true
        neighbour in the top 8 for 146 of 150 queries scaled, 142 unscaled, 145 in float16."""
        if self.index_dtype != "i8":
            return matrix
        peak = self._np.abs(matrix).max(axis=1, keepdims=True)
        return matrix / self._np.maximum(peak, 1e-12)

    def _new_index(self) -> Any:
        return self._usearch.Index(
            ndim=self.dimension,
            metric="cos",
            dtype=self.index_dtype,
            connectivity=self.connectivity,
            expansion_add=self.expansion_add,
            expansion_search=self.expansion_search,
        )

    def _index_rows(self, index: Any, rows: Sequence[tuple[int, bytes]]) -> None:
        """Add ``(id, vector blob)`` rows to a usearch index. Batches below
        ``_PARALLEL_ADD_MIN`` are inserted on one thread: usearch's parallel insertion
        builds a different graph on every run and, on a loaded machine, once left a true
        nearest neighbour unreachable in a 300-vector index (seen with usearch 2.26.1,
        about 1 build in 300); one thread gives the same graph every time. Large bulk
        loads keep all cores (single-threaded is 1.75x slower at 50k vectors)."""
        np = self._np
        rows = self._well_formed(rows, 1)
        if not rows:
            return
        keys = np.array([r[0] for r in rows], dtype=np.uint64)
        vectors = self._for_index(self._vectors([r[1] for r in rows]))
        index.add(keys, vectors, threads=1 if len(rows) < _PARALLEL_ADD_MIN else 0)

    # ------------------------------------------------------------------ writes
    def add(self, entry: SemanticEntry, vector: Any) -> None:
        """Insert or replace (by key) one entry."""
        self.add_many([entry], [vector])

    def add_many(self, entries: Sequence[SemanticEntry], vectors: Any) -> None:
        """Insert or replace many entries in one transaction (bulk loading)."""
        if len(entries) != len(vectors):
            raise ConfigurationError("add_many needs one vector per entry")
        rows = [
            (
                self.namespace, e.key, e.partition, e.text, e.prompt, e.llm_string, e.response,
                e.created_at, e.expires_at, self._blob(v),
            )
            for e, v in zip(entries, vectors)
        ]

        def write(conn: sqlite3.Connection) -> int:
            removed = 0
            for row in rows:
                old = conn.execute(
                    "SELECT id, partition FROM semantic_entries WHERE namespace = ? AND key = ?",
                    (self.namespace, row[1]),
                ).fetchone()
                if old is not None:
                    removed += self._remove_rows(conn, [old])
                conn.execute(_INSERT, row)
            return removed

        self._after_removals(self._write(write))

    def _remove_rows(self, conn: sqlite3.Connection, rows: Iterable[tuple[int, str]]) -> int:
        rows = list(rows)
        conn.executemany("DELETE FROM semantic_entries WHERE id = ?", [(r[0],) for r in rows])
        conn.executemany(
            "INSERT INTO semantic_removed (namespace, partition, entry_id) VALUES (?, ?, ?)",
            [(self.namespace, r[1], r[0]) for r in rows],
        )
        return len(rows)

    def _after_removals(self, count: int) -> None:
        self._removals_since_prune += count
        if self._removals_since_prune >= _REMOVED_PRUNE_EVERY:
            self._removals_since_prune = 0
            self._write(self._prune_removed)

    def _prune_removed(self, conn: sqlite3.Connection) -> None:
        """Keep the removal log bounded. A process whose mark is older than what was
        pruned cannot replay the removals it missed; it sees ``pruned_upto`` pass its
        mark and rebuilds its indexes from the entries instead."""
        row = conn.execute(
            "SELECT seq FROM semantic_removed WHERE namespace = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
            (self.namespace, _REMOVED_KEEP),
        ).fetchone()
        if row is None:
            return
        conn.execute("DELETE FROM semantic_removed WHERE namespace = ? AND seq <= ?", (self.namespace, row[0]))
        conn.execute(
            "INSERT INTO semantic_epochs (namespace, pruned_upto) VALUES (?, ?) "
            "ON CONFLICT (namespace) DO UPDATE SET pruned_upto = excluded.pruned_upto",
            (self.namespace, row[0]),
        )

    def delete(self, keys: Sequence[str]) -> None:
        """Remove these entries (missing keys are ignored)."""
        keys = list(keys)
        if not keys:
            return

        def write(conn: sqlite3.Connection) -> int:
            found = []
            for key in keys:
                row = conn.execute(
                    "SELECT id, partition FROM semantic_entries WHERE namespace = ? AND key = ?",
                    (self.namespace, key),
                ).fetchone()
                if row is not None:
                    found.append(row)
            return self._remove_rows(conn, found)

        self._after_removals(self._write(write))

    def purge_expired(self, limit: int = 10_000) -> int:
        """Delete up to ``limit`` expired entries of this namespace; returns how many."""

        def write(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT id, partition FROM semantic_entries WHERE namespace = ? AND expires_at <= ? LIMIT ?",
                (self.namespace, self._clock(), limit),
            ).fetchall()
            return self._remove_rows(conn, rows)

        count = self._write(write)
        self._after_removals(count)
        return count

    def clear(self) -> None:
        """Remove every entry of this namespace (other namespaces in the directory stay)."""

        def write(conn: sqlite3.Connection) -> list[str]:
            conn.execute("DELETE FROM semantic_entries WHERE namespace = ?", (self.namespace,))
            conn.execute("DELETE FROM semantic_removed WHERE namespace = ?", (self.namespace,))
            conn.execute(
                "INSERT INTO semantic_epochs (namespace, epoch, pruned_upto) VALUES (?, 1, 0) "
                "ON CONFLICT (namespace) DO UPDATE SET epoch = epoch + 1, pruned_upto = 0",
                (self.namespace,),
            )
            files = [r[0] for r in conn.execute("SELECT file FROM semantic_snapshots WHERE namespace = ?", (self.namespace,))]
            conn.execute("DELETE FROM semantic_snapshots WHERE namespace = ?", (self.namespace,))
            return files

        files = self._write(write)
        with self._lock:
            self._indexes.clear()
        for name in files:
            _unlink_quietly(os.path.join(self.path, INDEX_DIR, name))

    # ------------------------------------------------------------------ reads
    def get(self, key: str) -> SemanticEntry | None:
        """The live entry with this key, or ``None``."""
        row = self._conn().execute(
            f"SELECT {_ENTRY_COLUMNS} FROM semantic_entries WHERE namespace = ? AND key = ?",
            (self.namespace, key),
        ).fetchone()
        if row is None:
            return None
        entry = SemanticEntry(*row)
        if entry.expires_at is not None and self._clock() >= entry.expires_at:
            return None
        return entry

    def count(self) -> int:
        """Entries in this namespace (expired ones not yet purged included)."""
        row = self._conn().execute(
            "SELECT count(*) FROM semantic_entries WHERE namespace = ?", (self.namespace,)
        ).fetchone()
        return int(row[0])

    def search(self, partition: str, vector: Any, k: int = 4) -> list[Neighbour]:
        """Up to ``k`` live entries of ``partition`` nearest to ``vector``, most similar first."""
        np = self._np
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dimension:
            raise ConfigurationError(f"expected a {self.dimension}-float query vector, got {query.shape[0]}")
        if k < 1:
            return []
        conn = self._conn()
        with self._lock:
            self._sync(conn)
            index = self._indexes.get(partition)
            if index is None:
                rows = conn.execute(
                    "SELECT id, vector FROM semantic_entries WHERE namespace = ? AND partition = ? "
                    "AND id <= ? LIMIT ?",
                    (self.namespace, partition, self._last_id, self.exact_limit + 1),
                ).fetchall()
                if len(rows) <= self.exact_limit:
                    rows = self._well_formed(rows, 1)
                    if not rows:
                        return []
                    # Small partition: exact search over its vectors, no index needed.
                    scores = self._vectors([r[1] for r in rows]) @ query
                    order = np.argsort(-scores)[: k + 4]
                    ids = [int(rows[i][0]) for i in order]
                else:
                    index = self._load_index(conn, partition)
            if index is not None:
                # A few more than k: some proposals may have expired or been replaced.
                matches = index.index.search(self._for_index(query[None, :])[0], count=k + 4)
                ids = [int(i) for i in matches.keys]
        return self._fetch_neighbours(conn, ids, partition, query, k)

    def _fetch_neighbours(self, conn: sqlite3.Connection, ids: list[int], partition: str, query: Any, k: int) -> list[Neighbour]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT {_ENTRY_COLUMNS}, vector FROM semantic_entries WHERE id IN ({marks}) "
            "AND namespace = ? AND partition = ?",
            (*ids, self.namespace, partition),
        ).fetchall()
        now = self._clock()
        live = [r for r in self._well_formed(rows, 8) if r[7] is None or now < r[7]]
        if not live:
            return []
        scores = self._vectors([r[8] for r in live]) @ query  # exact (float16) similarity
        ranked = sorted(zip(scores.tolist(), live), key=lambda pair: -pair[0])[:k]
        return [Neighbour(entry=SemanticEntry(*row[:8]), similarity=min(1.0, float(score))) for score, row in ranked]

    # ------------------------------------------------------------------ index maintenance
    def _sync(self, conn: sqlite3.Connection) -> None:
        """Bring the in-memory indexes up to date with SQLite (caller holds ``_lock``)."""
        last_id, last_removed, state = conn.execute(
            "SELECT (SELECT coalesce(max(id), 0) FROM semantic_entries), "
            "(SELECT coalesce(max(seq), 0) FROM semantic_removed), "
            "(SELECT epoch || ':' || pruned_upto FROM semantic_epochs WHERE namespace = ?)",
            (self.namespace,),
        ).fetchone()
        epoch, pruned_upto = (int(x) for x in (state or "0:0").split(":"))
        if epoch != self._epoch or pruned_upto > self._last_removed:
            # Cleared by someone, or we fell behind the pruned removal log: start over.
            # Indexes are rebuilt lazily, per partition, from the entries.
            self._indexes.clear()
            self._epoch, self._last_id, self._last_removed = epoch, last_id, last_removed
            self._pruned_upto = pruned_upto
            return
        self._pruned_upto = pruned_upto
        if last_id == self._last_id and last_removed == self._last_removed:
            return
        if self._indexes and last_id > self._last_id:
            marks = ",".join("?" * len(self._indexes))
            rows = conn.execute(
                f"SELECT id, partition, vector FROM semantic_entries WHERE namespace = ? AND id > ? AND id <= ? "
                f"AND partition IN ({marks}) ORDER BY id",
                (self.namespace, self._last_id, last_id, *self._indexes),
            ).fetchall()
            for partition in {r[1] for r in rows}:
                batch = [r for r in rows if r[1] == partition]
                self._index_rows(self._indexes[partition].index, [(r[0], r[2]) for r in batch])
        if self._indexes and last_removed > self._last_removed:
            removed = conn.execute(
                "SELECT partition, entry_id FROM semantic_removed WHERE namespace = ? AND seq > ? AND seq <= ?",
                (self.namespace, self._last_removed, last_removed),
            ).fetchall()
            for partition, entry_id in removed:
                index = self._indexes.get(partition)
                if index is not None:
                    index.index.remove(int(entry_id))
        self._last_id, self._last_removed = last_id, last_removed

    def _load_index(self, conn: sqlite3.Connection, partition: str) -> _Index:
        """The partition's index, from its snapshot plus later changes, or built anew."""
        index = self._from_snapshot(conn, partition)
        if index is None:
            index = self._new_index()
            after = 0
            started = time.monotonic()
            while True:  # in chunks, so memory stays flat while indexing millions
                rows = conn.execute(
                    "SELECT id, vector FROM semantic_entries WHERE namespace = ? AND partition = ? "
                    "AND id > ? AND id <= ? ORDER BY id LIMIT 20000",
                    (self.namespace, partition, after, self._last_id),
                ).fetchall()
                if not rows:
                    break
                self._index_rows(index, rows)
                after = rows[-1][0]
                if len(index) >= 100_000 and len(index) % 100_000 < len(rows):
                    logger.info("llm-cache: indexing partition %s…: %d vectors, %.0fs", partition[:12], len(index), time.monotonic() - started)
        wrapped = _Index(index)
        self._indexes[partition] = wrapped
        return wrapped

    def _from_snapshot(self, conn: sqlite3.Connection, partition: str) -> Any | None:
        snap = conn.execute(
            "SELECT file, last_id, last_removed, epoch FROM semantic_snapshots WHERE namespace = ? AND partition = ?",
            (self.namespace, partition),
        ).fetchone()
        if snap is None or snap[3] != self._epoch or snap[1] > self._last_id or snap[2] > self._last_removed:
            return None
        file, snap_id, snap_removed, _ = snap
        if self._pruned_upto > snap_removed:
            return None  # the log was pruned past the snapshot: its later removals are unknown
        index = self._new_index()
        try:
            index.load(os.path.join(self.path, INDEX_DIR, file))
        except Exception:  # missing or unreadable file (another process replaced it): rebuild
            return None
        index.expansion_search = self.expansion_search  # a search-time setting, not the file's
        rows = conn.execute(
            "SELECT id, vector FROM semantic_entries WHERE namespace = ? AND partition = ? AND id > ? AND id <= ?",
            (self.namespace, partition, snap_id, self._last_id),
        ).fetchall()
        if rows:
            self._index_rows(index, rows)
        for (entry_id,) in conn.execute(
            "SELECT entry_id FROM semantic_removed WHERE namespace = ? AND partition = ? AND seq > ? AND seq <= ?",
            (self.namespace, partition, snap_removed, self._last_removed),
        ):
            index.remove(int(entry_id))
        return index

    def save(self) -> None:
        """Write each in-memory index to a snapshot file so the next process loads it
        instead of re-indexing (done by :meth:`close`; safe to call at any time)."""
        if self._tempdir is not None:
            return  # a temporary store is gone after close: nothing to reopen
        conn = self._conn()
        with self._lock:
            self._sync(conn)
            if not self._indexes:
                return
            os.makedirs(os.path.join(self.path, INDEX_DIR), exist_ok=True)
            written = []
            for partition, index in self._indexes.items():
                name = f"{_safe(self.namespace)}-{partition[:16]}-{secrets.token_hex(4)}.usearch"
                index.index.save(os.path.join(self.path, INDEX_DIR, name))
                written.append((partition, name))
            epoch, last_id, last_removed = self._epoch, self._last_id, self._last_removed

        def record(conn: sqlite3.Connection) -> list[str]:
            if conn.execute(
                "SELECT coalesce(max(epoch), 0) FROM semantic_epochs WHERE namespace = ?", (self.namespace,)
            ).fetchone()[0] != epoch:
                return [name for _, name in written]  # cleared meanwhile: drop what we wrote
            stale = []
            for partition, name in written:
                old = conn.execute(
                    "SELECT file, last_id FROM semantic_snapshots WHERE namespace = ? AND partition = ?",
                    (self.namespace, partition),
                ).fetchone()
                if old is not None and old[1] > last_id:
                    stale.append(name)  # another process saved a newer snapshot: keep it
                    continue
                conn.execute(
                    "INSERT INTO semantic_snapshots (namespace, partition, file, last_id, last_removed, epoch) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, partition) DO UPDATE SET "
                    "file = excluded.file, last_id = excluded.last_id, last_removed = excluded.last_removed, "
                    "epoch = excluded.epoch",
                    (self.namespace, partition, name, last_id, last_removed, epoch),
                )
                if old is not None:
                    stale.append(old[0])
            return stale

        for name in self._write(record):
            _unlink_quietly(os.path.join(self.path, INDEX_DIR, name))

    def memory_bytes(self) -> int:
        """Bytes held by this process's in-memory indexes (usearch's own accounting)."""
        with self._lock:
            return sum(int(i.index.memory_usage) for i in self._indexes.values())

    def close(self) -> None:
        """Save index snapshots (directory stores), close connections, remove a temporary directory."""
        if self._closed:
            return
        try:
            self.save()
        finally:
            self._closed = True
            with self._connections_lock:
                connections, self._connections = self._connections, []
            for conn in connections:
                conn.close()
            self._local = threading.local()
            with self._lock:
                self._indexes.clear()
            if self._tempdir is not None:
                shutil.rmtree(self._tempdir, ignore_errors=True)


def _guard_usearch_import_order() -> None:
    """usearch 2.26.2 to 2.26.6 (at least) make a later ``import onnxruntime`` segfault
    (measured with onnxruntime 1.32; 2.26.1 and earlier are fine, and onnxruntime imported
    first is fine). The semantic extra pins ``usearch<2.26.2``; if a newer one is
    installed anyway, import onnxruntime first when it is installed."""
    import importlib.util
    import sys

    if "usearch" in sys.modules or "onnxruntime" in sys.modules:
        return
    try:
        from importlib.metadata import version

        parts = tuple(int(p) for p in version("usearch").split(".")[:3])
    except Exception:
        return
    if parts >= (2, 26, 2) and importlib.util.find_spec("onnxruntime") is not None:
        from .._onnxruntime import import_onnxruntime

        import_onnxruntime("LocalVectorStore")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:32]


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
