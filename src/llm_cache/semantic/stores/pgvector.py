"""Semantic cache entries in PostgreSQL with pgvector (an HNSW index on cosine distance).

One table (``llm_cache_semantic`` by default) holds every namespace::

    namespace text, key text, partition text, text text, prompt text, llm_string text,
    response text, created_at float8, expires_at float8 NULL, embedding vector(dim),
    PRIMARY KEY (namespace, key)

with three indexes: HNSW ``(embedding vector_cosine_ops)`` for large partitions, a btree on
``(namespace, partition)`` for small ones, and a partial btree on ``(namespace, expires_at)``
for purging expired rows. A search is::

    SELECT ... , embedding <=> :q FROM t
    WHERE namespace = :ns AND partition = :p AND (expires_at IS NULL OR expires_at > :now)
    ORDER BY embedding <=> :q LIMIT :k

and the similarity is ``1 - distance``. What EXPLAIN ANALYZE showed on PostgreSQL 18.6 +
pgvector 0.8.6 (20,000 rows of 384 dimensions, two namespaces):

* a partition of 20 or 600 rows: the planner uses the ``(namespace, partition)`` btree and a
  top-N sort, an exact search (0.03-0.8 ms in the server);
* a partition of 3,000 rows (15 % of the table) or 9,000: the HNSW index scan with the WHERE
  clause applied to what the index returns. Without iterative scans the index yields
  ``hnsw.ef_search`` (40) candidates and the filter keeps ~15 % of them, so some searches
  returned fewer than k rows (3.78-3.90 of 4 on average); with
  ``hnsw.iterative_scan = relaxed_order`` (pgvector >= 0.8) the scan continues until k rows
  pass the filter (4.00 of 4 every time). tests/test_semantic_pgvector.py repeats this on
  3,630 rows of 32 dimensions: k=10 in a 600-row partition returned 7.04 rows on average
  (3 at worst) without, always 10 with. ``relaxed_order`` may return rows slightly out of
  order, so the store sorts them again by similarity.

The store therefore gives its connections ``hnsw.ef_search``,
``hnsw.iterative_scan = relaxed_order`` and ``plan_cache_mode = force_custom_plan``: psycopg
prepares a statement after five executions, and a generic plan (made without knowing the
partition) could pick the HNSW scan for a 20-row partition, where the filter would have to
find 20 rows among all the others. These are session settings of a pool that belongs to the
store (``engine.pool.recreate()``: your engine's creator and connect arguments, none of its
connections), in autocommit, so that every operation is one statement and one round trip
(through ``engine.begin()`` a search was BEGIN, set_config, SELECT, COMMIT). Behind PgBouncer
in *transaction* pooling mode session settings do not stick to a client: searches then run
with the server's defaults (still correct, with fewer rows from a filtered HNSW scan).

Writes are ``INSERT ... ON CONFLICT (namespace, key) DO UPDATE``. Every statement is
parameterised (SQLAlchemy Core); identifiers (the table name) are validated and quoted by
SQLAlchemy. ``clear()`` is ``DELETE ... WHERE namespace = :ns`` (never TRUNCATE: the table is
shared by every namespace). Expired rows are never returned and are deleted, a bounded batch
at a time, by ``add()`` at most once a minute per store.

PostgreSQL text cannot hold NUL characters and psycopg refuses lone surrogates: strings that
contain either are stored JSON-escaped behind a private-use marker, reversibly.

Async methods run the sync ones in a worker thread (the :class:`VectorStore` default): the
engine's pool then serves every event loop, with no per-loop engine to create and dispose.
A native version (psycopg's async driver, an engine per event loop with the same session
settings) was built and measured against this, 2,000 rows of 384 dimensions, searches from
one loop: the same at one search at a time (p50 5.2 against 5.4 ms); with 16 at once,
2.6 times slower with SQLAlchemy's default pool (connections beyond its 5 were opened and
closed again every round, each paying a SCRAM login) and no faster with a fixed pool of 5
(396 against 343 searches/s, 405 against 396 with 64 at once). The worker thread stays.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..._deadline import DEFAULT_TIMEOUT, Workers, guard, run_with_deadline, socket_aborter, validate_timeout
from ..._imports import require
from ..._ttl import validate_ttl
from ...errors import CacheTimeoutError, ConfigurationError
from ..cache import SemanticCache
from .base import Neighbour, SemanticEntry, VectorStore, embedding_with_dimension, positive_int

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PGVectorSemanticCache", "PGVectorStore"]

logger = logging.getLogger("llm_cache.semantic.pgvector")

DEFAULT_TABLE = "llm_cache_semantic"
ITERATIVE_SCANS = ("relaxed_order", "strict_order", "off")

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_ESCAPED = "\ue000llmc:"  # marks a JSON-escaped string (private-use character, then a tag)
_PURGE_EVERY = 60.0  # seconds between two purges of expired rows by one store
_PURGE_BATCH = 1000
_LOCK_SALT = "llm_cache_semantic:"


class PGVectorStore(VectorStore):
    """A :class:`VectorStore` on PostgreSQL + pgvector.

    Args:
        engine_or_url: a SQLAlchemy :class:`~sqlalchemy.engine.Engine` on PostgreSQL (psycopg 3
            is tested), used as it is, or a URL (``postgresql://user:pw@host/db``; the store
            then makes and owns an engine with the psycopg driver).
        table: table name, optionally ``schema.table``. One table holds every namespace; all
            of them must use the same ``dimension``.
        namespace: entries of other namespaces are never returned, and :meth:`clear` deletes
            only this one.
        dimension: vector length; the table's column is ``vector(dimension)``.
        ttl: an upper bound, in seconds, on how long an entry lives (an entry's own
            ``expires_at`` applies when it is earlier).
        hnsw_m, hnsw_ef_construction: HNSW build parameters, used when the index is created.
        ef_search: candidates the HNSW scan keeps (``hnsw.ef_search``); higher finds the true
            nearest neighbours more often, at some cost in latency.
        iterative_scan: ``"relaxed_order"`` (default), ``"strict_order"`` or ``"off"``
            (``hnsw.iterative_scan``; ignored on pgvector < 0.8, which has none). This and
            ``ef_search`` are fixed when the store is made (they are session settings).
        clock: wall-clock source compared with ``expires_at``.
        create_extension: run ``CREATE EXTENSION IF NOT EXISTS vector`` when the extension is
            missing (needs the privilege to; otherwise a ConfigurationError says what to do).
        timeout: seconds ``add``, ``get``, ``search`` and ``delete`` may take, connecting
            included (default 0.5), enforced by the store itself as for
            :class:`~llm_cache.caches.sql.SQLAlchemyCache`: past it they raise
            :class:`~llm_cache.errors.CacheTimeoutError` (a store error: the cache misses).
    """

    def __init__(
        self,
        engine_or_url: Any,
        *,
        table: str = DEFAULT_TABLE,
        namespace: str = "default",
        dimension: int,
        ttl: float | None = None,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        ef_search: int = 40,
        iterative_scan: str = "relaxed_order",
        clock: Callable[[], float] = time.time,
        create_extension: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        sa = require("sqlalchemy", "pgvector", "PGVectorStore")
        self.timeout = validate_timeout(timeout)
        self._workers = Workers()
        require("pgvector.sqlalchemy", "pgvector", "PGVectorStore")
        self._np = require("numpy", "semantic", "PGVectorStore")
        self._sa = sa
        if not isinstance(namespace, str) or not namespace or "\x00" in namespace:
            raise ConfigurationError(
                f"namespace must be a non-empty string without NUL, not {namespace!r}"
            )
        self.namespace = namespace
        self.dimension = positive_int(dimension, "dimension")
        if self.dimension > 16000:
            raise ConfigurationError(
                f"pgvector's HNSW index takes at most 2,000 dimensions (16,000 stored), not {dimension}"
            )
        self.ttl = validate_ttl(ttl)
        self.hnsw_m = positive_int(hnsw_m, "hnsw_m")
        self.hnsw_ef_construction = positive_int(hnsw_ef_construction, "hnsw_ef_construction")
        self.ef_search = positive_int(ef_search, "ef_search")
        if iterative_scan not in ITERATIVE_SCANS:
            raise ConfigurationError(
                f"iterative_scan must be one of {ITERATIVE_SCANS}, not {iterative_scan!r}"
            )
        self.iterative_scan = iterative_scan
        self._clock = clock
        self._create_extension = create_extension
        schema, name = _split_table(table)
        self.table_name = table

        self._owns_engine = not isinstance(engine_or_url, sa.engine.Engine)
        self.engine = _make_engine(sa, engine_or_url) if self._owns_engine else engine_or_url
        if self.engine.dialect.name != "postgresql":
            raise ConfigurationError(
                f"PGVectorStore needs PostgreSQL with pgvector, not {self.engine.dialect.name!r}"
            )
        self.table = _table(
            sa, schema, name, self.dimension, self.hnsw_m, self.hnsw_ef_construction
        )
        self._statements = _Statements(sa, self.table)
        self._pgvector_version: tuple[int, ...] = ()
        self._fast: Any = None  # the hot path's engine, made once the schema is ready
        self._ready = False
        self._ready_lock = threading.Lock()
        self._last_purge = 0.0
        try:
            self._ensure_schema()
        except ConfigurationError:
            raise
        except Exception as exc:  # noqa: BLE001 - database down: fail open, retry on first use
            logger.warning(
                "llm-cache: PGVectorStore could not reach the database yet (%s: %s); "
                "it will create its table on first use",
                type(exc).__name__,
                exc,
            )

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"PGVectorStore(url={url!r}, table={self.table_name!r}, namespace={self.namespace!r}, dimension={self.dimension})"

    # -- schema -----------------------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            self._pgvector_version = self._ensure_extension()
            sa = self._sa
            qualified = self._qualified()
            with self.engine.begin() as conn:
                # Two processes creating the same table at once can both pass IF NOT EXISTS
                # and collide in the catalog; a transaction-scoped advisory lock serialises them.
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                    {"name": _LOCK_SALT + qualified},
                )
                self.table.metadata.create_all(conn, checkfirst=True)
                found = conn.execute(
                    sa.text(
                        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                        "WHERE a.attrelid = to_regclass(:t) AND a.attname = 'embedding' AND NOT a.attisdropped"
                    ),
                    {"t": qualified},
                ).scalar()
            expected = f"vector({self.dimension})"
            if found != expected:
                raise ConfigurationError(
                    f"table {self.table_name!r} has embedding column {found!r}, this store needs {expected!r} "
                    "(one table per embedding model: pass another table=...)"
                )
            self._fast = self._make_fast_engine()
            self._ready = True

    def _make_fast_engine(self) -> Any:
        """An autocommit engine on a pool of its own, with the search settings per session.

        Through ``engine.begin()`` with per-transaction ``set_config`` a search was four round
        trips (BEGIN, set_config, SELECT, COMMIT) and ``get`` two or three (plus a pre-ping);
        here every operation is one statement and one round trip. The pool is
        ``engine.pool.recreate()`` (same creator, connect arguments and pool events as the
        engine given, none of its connections); its connections run in autocommit and get
        ``hnsw.ef_search``, ``hnsw.iterative_scan`` and ``plan_cache_mode`` once, when they are
        opened, so the settings never touch the connections of the engine you passed.
        Measured with benchmarks/bench_semantic_stores.py (384 dimensions, 5,000 rows, a loaded
        2-core machine), p50: ``get`` 1.24 -> 0.47 ms, search in a 20-row partition
        2.42 -> 1.14 ms, in a 3,000-row partition 5.4 -> 3.8 ms (statements are also built
        once now, instead of per call).
        """
        sa = self._sa
        pool = self.engine.pool.recreate()
        params: list[Any] = [str(self.ef_search)]
        sql = "SELECT set_config('hnsw.ef_search', %s, false), set_config('plan_cache_mode', 'force_custom_plan', false)"
        if self._pgvector_version >= (0, 8):
            sql += ", set_config('hnsw.iterative_scan', %s, false)"
            params.append(self.iterative_scan)

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(sql, params)
            finally:
                cursor.close()
            if not getattr(dbapi_connection, "autocommit", False):
                dbapi_connection.commit()

        sa.event.listen(pool, "connect", on_connect)
        return sa.create_engine(self.engine.url, pool=pool, isolation_level="AUTOCOMMIT")

    def _qualified(self) -> str:
        preparer = self.engine.dialect.identifier_preparer
        return preparer.format_table(self.table)

    def _ensure_extension(self) -> tuple[int, ...]:
        sa = self._sa
        query = sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        with self.engine.connect() as conn:
            version = conn.execute(query).scalar()
        if version is None and self._create_extension:
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
                    version = conn.execute(query).scalar()
            except sa.exc.DBAPIError as exc:
                raise ConfigurationError(
                    "the pgvector extension is not installed in this database and this user cannot create it "
                    f"({_first_line(exc)}). Ask a superuser to run: CREATE EXTENSION vector; "
                    "(the pgvector package must be installed on the server)"
                ) from exc
        if version is None:
            raise ConfigurationError(
                "the pgvector extension is not installed in this database: run CREATE EXTENSION vector; "
                "as a superuser (or pass create_extension=True with a user allowed to)"
            )
        parsed = _version(version)
        if parsed < (0, 5):
            raise ConfigurationError(
                f"pgvector {version} has no HNSW index; upgrade to 0.5 or later (0.8+ recommended)"
            )
        return parsed

    # -- VectorStore ------------------------------------------------------------------------------
    def add(self, entry: SemanticEntry, vector: np.ndarray) -> None:
        """Insert or replace (by ``entry.key``) one entry with its vector."""
        self._ensure_schema()
        embedding = self._vector_param(vector)
        now = self._clock()
        expiry = entry.expires_at
        if self.ttl is not None:
            cap = now + self.ttl
            expiry = cap if expiry is None else min(expiry, cap)
        values = {
            "namespace": self.namespace,
            "key": _to_db(entry.key),
            "partition": _to_db(entry.partition),
            "text": _to_db(entry.text),
            "prompt": _to_db(entry.prompt),
            "llm_string": _to_db(entry.llm_string),
            "response": _to_db(entry.response),
            "created_at": entry.created_at,
            "expires_at": expiry,
            "embedding": embedding,
        }
        with self._connection() as conn:
            conn.execute(self._statements.upsert, values)
        if now - self._last_purge >= _PURGE_EVERY:
            self._last_purge = now
            self._purge(now)

    def get(self, key: str) -> SemanticEntry | None:
        """The live entry with this exact key, or ``None``."""
        self._ensure_schema()
        params = {"ns": self.namespace, "key": _to_db(key), "now": self._clock()}
        with self._connection() as conn:
            row = conn.execute(self._statements.get, params).first()
        return None if row is None else _entry(row)

    def search(self, partition: str, vector: np.ndarray, k: int = 4) -> list[Neighbour]:
        """Up to ``k`` live entries of ``partition`` nearest to ``vector``, most similar first."""
        if k <= 0:
            return []
        self._ensure_schema()
        params = self._search_params(partition, vector, k)
        with self._connection() as conn:
            rows = conn.execute(self._statements.search, params).all()
        found = [
            Neighbour(entry=_entry(row), similarity=max(-1.0, min(1.0, 1.0 - float(row.distance))))
            for row in rows
        ]
        # relaxed_order may return rows slightly out of order.
        found.sort(key=lambda n: n.similarity, reverse=True)
        return found

    def delete(self, keys: Sequence[str]) -> None:
        """Remove these entries (missing keys are ignored)."""
        keys = [_to_db(key) for key in dict.fromkeys(keys)]
        if not keys:
            return
        self._ensure_schema()
        with self._connection() as conn:
            conn.execute(self._statements.delete, {"ns": self.namespace, "keys": keys})

    def clear(self) -> None:
        """Delete every row of this namespace (other namespaces in the table stay)."""
        self._ensure_schema()
        with self._fast.connect() as conn:
            conn.execute(self._statements.clear, {"ns": self.namespace})

    def count(self) -> int:
        """Rows of this namespace, expired ones not yet purged included."""
        self._ensure_schema()
        with self._fast.connect() as conn:
            return int(conn.execute(self._statements.count, {"ns": self.namespace}).scalar())

    def close(self) -> None:
        """Close the store's own pool, and dispose of the engine it made (never one you passed)."""
        if self._fast is not None:
            self._fast.dispose()
        self._workers.close()
        if self._owns_engine:
            self.engine.dispose()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        """A hot-path connection, bounded by ``timeout`` (see ``llm_cache._deadline``): the
        checkout in a worker thread, the statements by the watchdog, which shuts the socket."""
        conn = run_with_deadline(
            self.timeout, self._fast.connect, discard=_close, what="a pgvector connection", workers=self._workers
        )
        try:
            with guard(self.timeout, socket_aborter(conn.connection.dbapi_connection), "a pgvector statement"):
                yield conn
        except CacheTimeoutError:
            with contextlib.suppress(Exception):
                conn.invalidate()
            raise
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def ping(self) -> None:
        """Raise when the database cannot be reached (a health check for circuit breakers)."""
        with (self._fast or self.engine).connect() as conn:
            conn.execute(self._sa.text("SELECT 1"))

    # -- helpers ----------------------------------------------------------------------------------
    def _search_params(self, partition: str, vector: Any, k: int) -> dict[str, Any]:
        return {
            "ns": self.namespace,
            "partition": _to_db(partition),
            "now": self._clock(),
            "q": self._vector_param(vector),
            "k": int(k),
        }

    def _vector_param(self, vector: Any) -> list[float]:
        array = self._np.asarray(vector, dtype="<f4").reshape(-1)
        if array.shape[0] != self.dimension:
            raise ConfigurationError(
                f"vector has dimension {array.shape[0]}, this store holds dimension {self.dimension}"
            )
        if not self._np.isfinite(array).all():
            raise ConfigurationError("vector contains NaN or infinity")
        return array.tolist()

    def _purge(self, now: float) -> None:
        """Delete up to a batch of this namespace's expired rows (a bounded statement)."""
        params = {"ns": self.namespace, "now": now, "batch": _PURGE_BATCH}
        with self._fast.connect() as conn:
            conn.execute(self._statements.purge, params)

    def explain(self, partition: str, vector: Any, k: int = 4) -> str:
        """``EXPLAIN ANALYZE`` of :meth:`search`, on the store's own connections (for tuning)."""
        self._ensure_schema()
        # Literal values (escaped by SQLAlchemy) so that the plan is the custom plan a search
        # gets under plan_cache_mode = force_custom_plan.
        stmt = self._statements.search.params(self._search_params(partition, vector, k))
        sql = str(stmt.compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True}))
        with self._fast.connect() as conn:
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF) " + sql).all()
        return "\n".join(row[0] for row in rows)


class _Statements:
    """The store's statements, built once (SQLAlchemy then reuses their compiled form)."""

    def __init__(self, sa: Any, t: Any) -> None:
        from pgvector.sqlalchemy import Vector

        bp = sa.bindparam
        columns = (
            t.c.key, t.c.partition, t.c.text, t.c.prompt, t.c.llm_string, t.c.response,
            t.c.created_at, t.c.expires_at,
        )  # fmt: skip
        live = sa.or_(t.c.expires_at.is_(None), t.c.expires_at > bp("now", type_=sa.Double))
        in_namespace = t.c.namespace == bp("ns", type_=sa.Text)
        self.get = sa.select(*columns).where(
            in_namespace, t.c.key == bp("key", type_=sa.Text), live
        )
        distance = t.c.embedding.cosine_distance(bp("q", type_=Vector(t.c.embedding.type.dim)))
        self.search = (
            sa.select(*columns, distance.label("distance"))
            .where(in_namespace, t.c.partition == bp("partition", type_=sa.Text), live)
            .order_by(distance)
            .limit(bp("k", type_=sa.Integer))
        )
        insert = sa.dialects.postgresql.insert(t)
        self.upsert = insert.on_conflict_do_update(
            index_elements=[t.c.namespace, t.c.key],
            set_={
                c.name: insert.excluded[c.name] for c in t.c if c.name not in ("namespace", "key")
            },
        )
        self.delete = t.delete().where(in_namespace, t.c.key.in_(bp("keys", expanding=True)))
        self.clear = t.delete().where(in_namespace)
        self.count = sa.select(sa.func.count()).select_from(t).where(in_namespace)
        doomed = (
            sa.select(t.c.key)
            .where(in_namespace, t.c.expires_at <= bp("now", type_=sa.Double))
            .limit(bp("batch", type_=sa.Integer))
            .scalar_subquery()
        )
        self.purge = t.delete().where(in_namespace, t.c.key.in_(doomed))


class PGVectorSemanticCache(SemanticCache):
    """A :class:`~llm_cache.semantic.cache.SemanticCache` whose entries live in PostgreSQL + pgvector.

    ``PGVectorSemanticCache("postgresql://user:pw@host/db", embedding=LocalEmbeddings())``

    Args:
        engine_or_url, table, hnsw_m, hnsw_ef_construction, ef_search, iterative_scan,
            create_extension: as for :class:`PGVectorStore`.
        embedding: the embedding model (default :class:`~llm_cache.embeddings.LocalEmbeddings`).
        namespace: rows of other namespaces in the table are never seen; ``clear()`` deletes
            only this one.
        ttl: seconds an entry lives.
        options: the other :class:`SemanticCache` options (``threshold``, ``guards``, ``k``,
            ``strict``, ``annotate``).
    """

    def __init__(
        self,
        engine_or_url: Any,
        embedding: Any = None,
        *,
        table: str = DEFAULT_TABLE,
        namespace: str = "default",
        ttl: float | None = None,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        ef_search: int = 40,
        iterative_scan: str = "relaxed_order",
        create_extension: bool = True,
        clock: Callable[[], float] = time.time,
        timeout: float = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> None:
        embedding, dimension = embedding_with_dimension(embedding)
        store = PGVectorStore(
            engine_or_url,
            table=table,
            namespace=namespace,
            dimension=dimension,
            hnsw_m=hnsw_m,
            hnsw_ef_construction=hnsw_ef_construction,
            ef_search=ef_search,
            iterative_scan=iterative_scan,
            create_extension=create_extension,
            clock=clock,
            timeout=timeout,
        )
        self._init_owning(store, embedding=embedding, ttl=ttl, namespace=namespace, clock=clock, **options)


def _close(conn: Any) -> None:
    conn.close()


# -- helpers (no I/O) --------------------------------------------------------------------------
def _split_table(table: Any) -> tuple[str | None, str]:
    if not isinstance(table, str):
        raise ConfigurationError(f"table must be a string, not {type(table).__name__}")
    parts = table.split(".")
    if len(parts) > 2 or not all(_IDENT.match(p) for p in parts):
        raise ConfigurationError(
            f"table must be a plain SQL identifier or schema.table (letters, digits, _), not {table!r}"
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def _make_engine(sa: Any, url: Any) -> Any:
    text = url.render_as_string(hide_password=False) if isinstance(url, sa.engine.URL) else url
    if not isinstance(text, str):
        raise ConfigurationError(
            f"engine_or_url must be a SQLAlchemy Engine or a postgresql:// URL, not {type(url).__name__}"
        )
    for prefix in ("postgresql://", "postgres://"):
        if text.startswith(prefix):
            text = "postgresql+psycopg://" + text[len(prefix) :]
    try:
        # No pool_pre_ping: it costs a round trip per call. A connection that died with the
        # server fails one call (a logged miss) and SQLAlchemy then replaces the whole pool.
        return sa.create_engine(text)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"invalid PostgreSQL URL: {exc}") from exc
    except ImportError as exc:
        raise ConfigurationError(
            f"the URL's driver is not installed ({exc}); pip install 'llm-cache[pgvector]'"
        ) from exc


def _table(
    sa: Any, schema: str | None, name: str, dimension: int, m: int, ef_construction: int
) -> Any:
    from pgvector.sqlalchemy import Vector

    metadata = sa.MetaData()
    table = sa.Table(
        name,
        metadata,
        sa.Column("namespace", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("partition", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("llm_string", sa.Text, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=True),
        sa.Column("embedding", Vector(dimension), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "key", name=_ident(name, "pkey")),
        schema=schema,
    )
    sa.Index(
        _ident(name, "embedding_hnsw"),
        table.c.embedding,
        postgresql_using="hnsw",
        postgresql_with={"m": m, "ef_construction": ef_construction},
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    sa.Index(_ident(name, "partition_idx"), table.c.namespace, table.c.partition)
    sa.Index(
        _ident(name, "expires_idx"),
        table.c.namespace,
        table.c.expires_at,
        postgresql_where=table.c.expires_at.isnot(None),
    )
    return table


def _ident(table: str, suffix: str) -> str:
    """An index name of at most 63 bytes (PostgreSQL truncates longer ones silently)."""
    return f"{table[: 62 - len(suffix)]}_{suffix}"


def _version(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("."):
        digits = re.match(r"\d+", part)
        out.append(int(digits.group()) if digits else 0)
    return tuple(out)


def _first_line(exc: Exception) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0]


def _to_db(value: str) -> str:
    """``value`` as PostgreSQL text can hold it: NUL and lone surrogates are JSON-escaped."""
    if (
        "\x00" in value
        or value.startswith(_ESCAPED)
        or not (value.isascii() or _utf8_encodable(value))
    ):
        return _ESCAPED + json.dumps(value)  # ensure_ascii: NUL -> \u0000, surrogates -> \udxxx
    return value


def _utf8_encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _from_db(value: str) -> str:
    return json.loads(value[len(_ESCAPED) :]) if value.startswith(_ESCAPED) else value


def _entry(row: Any) -> SemanticEntry:
    return SemanticEntry(
        key=_from_db(row.key),
        partition=_from_db(row.partition),
        text=_from_db(row.text),
        prompt=_from_db(row.prompt),
        llm_string=_from_db(row.llm_string),
        response=_from_db(row.response),
        created_at=float(row.created_at),
        expires_at=None if row.expires_at is None else float(row.expires_at),
    )
