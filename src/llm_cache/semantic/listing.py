"""Read-only views of semantic caches, for ``llm-cache stats | inspect | search | export |
namespaces``.

A :class:`~llm_cache.semantic.cache.SemanticCache` needs an embedding model and its store
creates tables, directories and indexes when it opens; listing what a cache holds needs
none of that, and must change nothing. A view reads the store's rows directly:

* :class:`LocalSemanticView`: ``DIR/semantic.db`` of a local store, opened with SQLite's
  ``mode=ro`` (see :func:`llm_cache._sqlite.open_read_only_connection`); the ``indexes/``
  directory is never touched.
* :class:`RedisSemanticView`: the payload keys ``{ns}:e:{key}`` of a
  :class:`~llm_cache.semantic.stores.redis.RedisVectorStore` (``SCAN`` and ``GET`` only).
* :class:`PGVectorSemanticView`: ``SELECT`` on a pgvector store's table, in a read-only
  transaction; a missing table is an error, never created.

A view is a :class:`~llm_cache.caches.base.BaseCache` whose ``lookup`` answers exact
matches only (no embedding) and whose ``update``/``clear`` raise ConfigurationError.
Columns other stores add later (hit counts) are read when present.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from typing import Any, Callable, Iterator

from .._sqlite import describe_open_error, open_read_only_connection
from ..caches.base import BaseCache, CacheEntry
from ..errors import ConfigurationError, CorruptEntryError
from ..generation import Generation, decode_generations
from .partition import split_prompt

__all__ = ["SemanticView", "LocalSemanticView", "RedisSemanticView", "PGVectorSemanticView"]

logger = logging.getLogger("llm_cache")

_BASE_COLUMNS = ("prompt", "llm_string", "response", "created_at", "expires_at")
_OPTIONAL_COLUMNS = ("hit_count", "last_hit_at")


def _entry(row: dict[str, Any]) -> CacheEntry | None:
    """A :class:`CacheEntry` from a stored row's fields, or None (logged) if its answer is unreadable."""
    try:
        generations = decode_generations(row["response"])
    except CorruptEntryError as exc:
        logger.warning("llm-cache: skipping a semantic entry that cannot be decoded: %s", exc)
        return None
    hits = row.get("hit_count")
    return CacheEntry(
        row["prompt"],
        row["llm_string"],
        generations,
        row.get("created_at"),
        row.get("expires_at"),
        None if hits is None else int(hits),
        row.get("last_hit_at"),
    )


class SemanticView(BaseCache):
    """A read-only view of one namespace of a semantic cache's store."""

    kind = "semantic"
    namespace: str
    where: str

    def _update(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        raise ConfigurationError(f"{self.where} was opened read-only")

    def _clear(self) -> None:
        raise ConfigurationError(f"{self.where} was opened read-only")

    def _lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        row = self._row(split_prompt(prompt, llm_string).key)
        if row is None or row["prompt"] != prompt or row["llm_string"] != llm_string:
            return None
        expiry = row.get("expires_at")
        if expiry is not None and time.time() >= expiry:
            return None
        return decode_generations(row["response"])

    def _row(self, key: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def entries(self) -> Iterator[CacheEntry]:
        """Every live entry of this namespace."""
        raise NotImplementedError

    def count(self) -> int:
        """Live entries of this namespace."""
        return sum(1 for _ in self.entries())

    def namespaces(self) -> list[tuple[str, int, int]]:
        """``(namespace, live entries, bytes)`` for every namespace of the store, largest first."""
        raise NotImplementedError


# -- local store (SQLite + usearch in a directory) ------------------------------------------------
class LocalSemanticView(SemanticView):
    """``DIR/semantic.db`` of a local semantic store, read-only."""

    def __init__(self, data_dir: str | os.PathLike[str], *, namespace: str = "default", clock: Callable[[], float] = time.time) -> None:
        super().__init__(strict=True)
        from .stores.local import DB_NAME

        self.data_dir = os.fspath(data_dir)
        self.namespace = namespace
        self.where = f"semantic cache {self.data_dir!r}"
        self._clock = clock
        if not os.path.isdir(self.data_dir):
            raise ConfigurationError(f"no semantic cache directory at {self.data_dir!r}: check the path")
        self.database_path = os.path.join(self.data_dir, DB_NAME)
        if not os.path.isfile(self.database_path):
            raise ConfigurationError(
                f"{self.data_dir!r} is not a semantic cache directory (it has no {DB_NAME}); it was left unchanged"
            )
        try:
            self._conn = open_read_only_connection(self.database_path, 10_000)
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(semantic_entries)")}
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(describe_open_error(self.database_path, exc)) from exc
        if not set(_BASE_COLUMNS) | {"namespace", "key"} <= columns:
            self._conn.close()
            raise ConfigurationError(f"{self.database_path} has no semantic cache table of a known layout")
        self._columns = ["key", *_BASE_COLUMNS, *(c for c in _OPTIONAL_COLUMNS if c in columns)]

    def _rows(self, where: str, args: tuple[Any, ...]) -> Iterator[dict[str, Any]]:
        cursor = self._conn.execute(
            f"SELECT {', '.join(self._columns)} FROM semantic_entries WHERE {where}", args
        )
        for values in cursor:
            yield dict(zip(self._columns, values))

    def _row(self, key: str) -> dict[str, Any] | None:
        return next(self._rows("namespace = ? AND key = ?", (self.namespace, key)), None)

    def entries(self) -> Iterator[CacheEntry]:
        order = "hit_count DESC, " if "hit_count" in self._columns else ""
        for row in self._rows(
            f"namespace = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY {order}created_at DESC",
            (self.namespace, self._clock()),
        ):
            entry = _entry(row)
            if entry is not None:
                yield entry

    def count(self) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM semantic_entries WHERE namespace = ? AND (expires_at IS NULL OR expires_at > ?)",
            (self.namespace, self._clock()),
        ).fetchone()
        return int(row[0])

    def namespaces(self) -> list[tuple[str, int, int]]:
        rows = self._conn.execute(
            "SELECT namespace, count(*), coalesce(sum(length(CAST(prompt AS BLOB)) + length(CAST(llm_string AS BLOB)) "
            "+ length(CAST(response AS BLOB)) + length(vector)), 0) FROM semantic_entries "
            "WHERE expires_at IS NULL OR expires_at > ? GROUP BY namespace ORDER BY 2 DESC, 1",
            (self._clock(),),
        ).fetchall()
        return [(str(ns), int(n), int(size)) for ns, n, size in rows]

    def size_on_disk(self) -> int:
        """Bytes of the directory's files (the SQLite file with its WAL, and index snapshots)."""
        total = 0
        for root, _, files in os.walk(self.data_dir):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(root, name))
                except OSError:
                    continue
        return total

    def close(self) -> None:
        self._conn.close()


# -- Redis vector sets ----------------------------------------------------------------------------
class RedisSemanticView(SemanticView):
    """The payload keys of a Redis semantic store, read with ``SCAN`` and ``GET`` only."""

    def __init__(self, redis_url: str, *, namespace: str | None = None, socket_timeout: float | None = 5.0) -> None:
        super().__init__(strict=True)
        from .. import _redis_clients as rc
        from .stores.redis import DEFAULT_NAMESPACE

        self._rc = rc
        redis = rc.redis_modules("reading a Redis semantic cache")
        self.namespace = rc.validate_namespace(namespace or DEFAULT_NAMESPACE)
        self.where = f"semantic cache {rc.describe_url(redis_url)}"
        rc.validate_redis_url(redis_url)
        self._client = rc.client_from_url(redis, redis_url, asynchronous=False, socket_timeout=socket_timeout)
        self._prefix = self.namespace + ":e:"

    def _decode(self, key: Any, raw: Any) -> dict[str, Any] | None:
        from .stores.redis import _decode

        name = key.decode() if isinstance(key, bytes) else str(key)
        try:
            entry = _decode(raw, name.rsplit(":", 1)[-1])
        except CorruptEntryError as exc:
            logger.warning("llm-cache: skipping %r, not a semantic entry: %s", name, exc)
            return None
        return {field: getattr(entry, field) for field in ("key", *_BASE_COLUMNS)}

    def _row(self, key: str) -> dict[str, Any] | None:
        raw = self._client.get(self._prefix + key)
        return None if raw is None else self._decode(self._prefix + key, raw)

    def _scan(self, match: str) -> Iterator[tuple[Any, Any]]:
        for batch in self._rc.scan_batches(self._client, match):
            pipe = self._client.pipeline(transaction=False)
            for key in batch:
                pipe.get(key)
            for key, raw in zip(batch, pipe.execute(raise_on_error=False)):
                if isinstance(raw, (bytes, str)):
                    yield key, raw

    def entries(self) -> Iterator[CacheEntry]:
        now = time.time()
        for key, raw in self._scan(self._rc.glob_escape(self._prefix) + self._rc.HEX_GLOB):
            row = self._decode(key, raw)
            if row is None or (row["expires_at"] is not None and row["expires_at"] <= now):
                continue
            entry = _entry(row)
            if entry is not None:
                yield entry

    def namespaces(self) -> list[tuple[str, int, int]]:
        found: dict[str, list[int]] = {}
        for key, raw in self._scan("*:e:" + self._rc.HEX_GLOB):
            name = key.decode() if isinstance(key, bytes) else str(key)
            if self._decode(key, raw) is None:
                continue
            stats = found.setdefault(name[: -len(":e:") - 64], [0, 0])
            stats[0] += 1
            stats[1] += len(raw)
        return sorted(((ns, n, size) for ns, (n, size) in found.items()), key=lambda r: (-r[1], r[0]))

    def close(self) -> None:
        self._client.close()


# -- pgvector ---------------------------------------------------------------------------------------
class PGVectorSemanticView(SemanticView):
    """A pgvector store's table, read in read-only transactions."""

    def __init__(self, url: str, *, table: str | None = None, namespace: str = "default") -> None:
        super().__init__(strict=True)
        from .._imports import require
        from .stores.pgvector import DEFAULT_TABLE, _make_engine, _split_table

        sa = require("sqlalchemy", "pgvector", "reading a pgvector semantic cache")
        self._sa = sa
        self.namespace = namespace
        schema, name = _split_table(table or DEFAULT_TABLE)
        self.engine = _make_engine(sa, url)
        self.where = f"semantic cache {self.engine.url.render_as_string(hide_password=True)} table {name!r}"
        if not sa.inspect(self.engine).has_table(name, schema=schema):
            self.engine.dispose()
            raise ConfigurationError(f"{self.where} does not exist; nothing was created")
        self._table = sa.table(
            name, *(sa.column(c) for c in ("namespace", "key", *_BASE_COLUMNS, "embedding")), schema=schema
        )
        columns = {c["name"] for c in sa.inspect(self.engine).get_columns(name, schema=schema)}
        self._columns = ["key", *_BASE_COLUMNS, *(c for c in _OPTIONAL_COLUMNS if c in columns)]
        self._selected = [sa.column(c) for c in self._columns]

    def _query(self, statement: Any) -> list[Any]:
        with self.engine.connect() as conn:
            conn.execute(self._sa.text("SET TRANSACTION READ ONLY"))
            rows = conn.execute(statement).all()
            conn.rollback()
        return rows

    def _live(self) -> Any:
        t = self._table
        return (t.c.namespace == self.namespace) & (t.c.expires_at.is_(None) | (t.c.expires_at > time.time()))

    def _row(self, key: str) -> dict[str, Any] | None:
        t = self._table
        rows = self._query(self._sa.select(*self._selected).select_from(t).where(t.c.namespace == self.namespace, t.c.key == key))
        return dict(zip(self._columns, rows[0])) if rows else None

    def entries(self) -> Iterator[CacheEntry]:
        t = self._table
        for values in self._query(self._sa.select(*self._selected).select_from(t).where(self._live())):
            entry = _entry(dict(zip(self._columns, values)))
            if entry is not None:
                yield entry

    def count(self) -> int:
        sa, t = self._sa, self._table
        return int(self._query(sa.select(sa.func.count()).select_from(t).where(self._live()))[0][0])

    def namespaces(self) -> list[tuple[str, int, int]]:
        sa, t = self._sa, self._table
        live = t.c.expires_at.is_(None) | (t.c.expires_at > time.time())
        size = sa.func.coalesce(
            sa.func.sum(
                sa.func.octet_length(t.c.prompt) + sa.func.octet_length(t.c.llm_string)
                + sa.func.octet_length(t.c.response) + sa.func.pg_column_size(t.c.embedding)
            ),
            0,
        )
        rows = self._query(sa.select(t.c.namespace, sa.func.count(), size).where(live).group_by(t.c.namespace))
        return sorted(((str(ns), int(n), int(b)) for ns, n, b in rows), key=lambda r: (-r[1], r[0]))

    def close(self) -> None:
        self.engine.dispose()
