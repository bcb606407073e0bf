"""Tables of :class:`~llm_cache.caches.sql.SQLAlchemyCache`: our ``FullLLMCache`` and user schemas.

Two kinds of ``cache_schema`` are accepted, told apart by one column:

* **keyed** (our :class:`FullLLMCache`, or any model with a ``key_hash`` column and our full
  column set): rows are found by a point query on ``(namespace, key_hash, idx)``, the primary
  key. The hash is indexed, never the text, so prompts of any size cost 65 bytes in the index
  (a PostgreSQL B-tree rejects entries over ~2.7 kB; MySQL cannot index TEXT at all).
* **plain** (LangChain's shape: ``prompt``, ``llm``, ``idx``, ``response`` and anything else,
  e.g. the notebook's ``FulltextLLMCache`` with a tsvector column and a GIN index): rows are
  found by ``prompt = ? AND llm = ?``. On PostgreSQL, when nothing indexes ``prompt`` yet,
  an expression index on ``md5(prompt)`` is added (the hash again, not the text), so a lookup
  is an index scan instead of a sequential scan.

Both store one row per generation, ``response`` holding that generation's JSON
(:meth:`~llm_cache.generation.Generation.to_dict`): the table reads the same as LangChain's.

Schema creation is ``create_all(checkfirst=True)`` for this one table, under a lock so that
two processes starting at once do not both try to create it (a transaction-scoped advisory
lock on PostgreSQL, ``GET_LOCK`` on MySQL/MariaDB, a second attempt on SQLite).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from .._imports import require
from ..errors import ConfigurationError

require("sqlalchemy", "sql", "SQLAlchemyCache")

from sqlalchemy import (
    Column,
    Double,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase

__all__ = ["LONG_TEXT", "FullLLMCache", "SchemaInfo", "ensure_schema", "inspect_schema", "lock_ids"]

logger = logging.getLogger("llm_cache")

#: Text of any length on every dialect: MySQL's TEXT stops at 64 kB, so LONGTEXT there, with a
#: binary collation so that comparisons are exact (the default ``_ci`` collations would make
#: 'A' equal 'a' and ignore trailing spaces).
LONG_TEXT = Text().with_variant(
    mysql.LONGTEXT(charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)
_NAMESPACE = String(128).with_variant(
    mysql.VARCHAR(128, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)
_KEY_HASH = String(64).with_variant(
    mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)

# First half of every PostgreSQL advisory lock we take (pg_advisory_xact_lock(int4, int4)):
# b"llmc" as a big-endian int4, so our locks do not collide with an application's own.
PG_LOCK_CLASS = int.from_bytes(b"llmc", "big")
_SCHEMA_LOCK_TIMEOUT = 30  # seconds a process waits for another one to finish creating the table


class _Base(DeclarativeBase):
    metadata = MetaData()


class FullLLMCache(_Base):
    """The default table: LangChain's ``FullLLMCache`` columns plus what exact, fast lookups need.

    ``prompt``, ``llm``, ``idx``, ``response`` are LangChain's columns (one row per generation,
    ``response`` is that generation's JSON). Added: ``namespace`` (``clear()`` deletes only its
    own), ``key_hash`` (sha256 of prompt and llm: the indexed key, so the text never is),
    ``created_at`` and ``expires_at`` (epoch seconds, for TTL). Primary key:
    ``(namespace, key_hash, idx)``, which also makes dialect-native upserts possible.
    """

    __tablename__ = "llm_cache_full"
    __table_args__ = ({"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"},)

    namespace = Column(_NAMESPACE, primary_key=True)
    key_hash = Column(_KEY_HASH, primary_key=True)
    idx = Column(Integer, primary_key=True, autoincrement=False)
    prompt = Column(LONG_TEXT, nullable=False)
    llm = Column(LONG_TEXT, nullable=False)
    response = Column(LONG_TEXT, nullable=False)
    created_at = Column(Double, nullable=False)
    expires_at = Column(Double, nullable=True)


_REQUIRED = ("prompt", "llm", "idx", "response")
_KEYED = ("namespace", "key_hash", "idx", "prompt", "llm", "response", "created_at", "expires_at")


@dataclass(frozen=True)
class SchemaInfo:
    """What :class:`SQLAlchemyCache` learned about a ``cache_schema``."""

    table: Table
    keyed: bool
    has_namespace: bool
    has_expiry: bool
    has_created_at: bool
    #: a column of type TSVECTOR (the notebook's ``prompt_llm_idx``), for ``search()``
    tsvector_column: str | None

    @property
    def name(self) -> str:
        return self.table.fullname


def inspect_schema(cache_schema: Any) -> SchemaInfo:
    """Check that ``cache_schema`` has the columns we need and classify it (no I/O)."""
    table = getattr(cache_schema, "__table__", None)
    if isinstance(cache_schema, Table):
        table = cache_schema
    if not isinstance(table, Table):
        raise ConfigurationError(
            f"cache_schema must be a SQLAlchemy declarative model (or Table), not {cache_schema!r}; "
            "see llm_cache.caches.sql.FullLLMCache for the expected columns"
        )
    columns = set(table.c.keys())
    missing = [name for name in _REQUIRED if name not in columns]
    if missing:
        raise ConfigurationError(
            f"cache_schema {table.name!r} lacks the column(s) {', '.join(missing)}: a cache table needs "
            "prompt (text), llm (text), idx (integer) and response (text), as LangChain's FullLLMCache"
        )
    keyed = "key_hash" in columns
    if keyed:
        absent = [name for name in _KEYED if name not in columns]
        pk = {c.name for c in table.primary_key.columns}
        if absent or pk != {"namespace", "key_hash", "idx"}:
            raise ConfigurationError(
                f"cache_schema {table.name!r} has a key_hash column, so it must be shaped like FullLLMCache: "
                f"columns {', '.join(_KEYED)} and primary key (namespace, key_hash, idx)"
                + (f"; missing: {', '.join(absent)}" if absent else "")
            )
    tsvector = None
    for column in table.columns:
        type_ = column.type
        impl = getattr(type_, "impl", type_)
        if type(impl).__name__ == "TSVECTOR" or type(type_).__name__ in (
            "TSVECTOR",
            "TSVectorType",
        ):
            tsvector = column.name
            break
    return SchemaInfo(
        table=table,
        keyed=keyed,
        has_namespace="namespace" in columns,
        has_expiry="expires_at" in columns,
        has_created_at="created_at" in columns,
        tsvector_column=tsvector,
    )


def lock_ids(table_name: str, key: bytes) -> tuple[int, int, str]:
    """Lock identities of one entry: the two int4 of a PostgreSQL advisory lock, a MySQL lock name.

    Only the objid is derived from the key (32 bits): two entries sharing it merely take turns.
    """
    digest = hashlib.sha256(table_name.encode() + b"\x00" + key).digest()
    objid = int.from_bytes(digest[:4], "big", signed=True)
    return PG_LOCK_CLASS, objid, "llmc:" + digest[:24].hex()  # MySQL lock names stop at 64 chars


def ensure_schema(engine: Engine, info: SchemaInfo) -> bool:
    """Create the table if it is missing and check its columns; return whether ``md5(prompt)`` is indexed.

    Safe when several processes run it at once: see the module docstring.
    """
    dialect = engine.dialect.name
    if dialect == "postgresql":
        with engine.begin() as conn:
            # Transaction-scoped: released at commit, even if this process dies mid-way.
            conn.execute(
                select(func.pg_advisory_xact_lock(PG_LOCK_CLASS, lock_ids(info.name, b"schema")[1]))
            )
            _create(conn, info)
            return _pg_md5_index(conn, info)
    if dialect in ("mysql", "mariadb"):
        name = lock_ids(info.name, b"schema")[2]
        with engine.connect() as conn:
            got = conn.execute(
                text("SELECT GET_LOCK(:name, :timeout)"),
                {"name": name, "timeout": _SCHEMA_LOCK_TIMEOUT},
            )
            if got.scalar() != 1:
                raise ConfigurationError(
                    f"could not get the schema lock {name!r} within {_SCHEMA_LOCK_TIMEOUT}s"
                )
            try:
                _create(conn, info)
                conn.commit()
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
                conn.commit()
        return False
    # SQLite and others: no lock to take. Two processes may both see no table and both issue
    # CREATE TABLE; the loser fails with "already exists", and a second pass finds the table.
    try:
        with engine.begin() as conn:
            _create(conn, info)
    except DBAPIError:
        with engine.begin() as conn:
            _create(conn, info)
    return False


def _create(conn: Connection, info: SchemaInfo) -> None:
    info.table.metadata.create_all(conn, tables=[info.table], checkfirst=True)
    found = {
        c["name"] for c in inspect(conn).get_columns(info.table.name, schema=info.table.schema)
    }
    expected = set(_KEYED) if info.keyed else set(_REQUIRED)
    missing = sorted(expected - found)
    if missing:
        raise ConfigurationError(
            f"the existing table {info.name!r} lacks the column(s) {', '.join(missing)} that its cache_schema "
            "declares: it was created by something else (LangChain's full_llm_cache? an older llm-cache?). "
            "Use another __tablename__, or migrate the table"
        )


def _pg_md5_index(conn: Connection, info: SchemaInfo) -> bool:
    """On a plain schema, index ``md5(prompt)`` unless something indexes ``prompt`` already."""
    if info.keyed:
        return False
    table = info.table
    leading = [list(index.columns)[:1] for index in table.indexes] + [
        list(table.primary_key.columns)[:1]
    ]
    if any(cols and cols[0].name == "prompt" for cols in leading):
        return False  # e.g. LangChain's own shape: PRIMARY KEY (prompt, llm, idx) serves lookups
    preparer = conn.dialect.identifier_preparer
    index_name = f"ix_{table.name}_llm_cache_md5"[:63]
    try:
        # A savepoint: without the privilege to index the table, lookups still work (slower).
        with conn.begin_nested():
            conn.exec_driver_sql(
                f"CREATE INDEX IF NOT EXISTS {preparer.quote(index_name)} "
                f"ON {preparer.format_table(table)} (md5({preparer.quote(table.c.prompt.name)}))"
            )
    except Exception as exc:  # noqa: BLE001 - an optimisation we can live without; said in the log
        logger.warning(
            "llm-cache: could not index md5(prompt) on %s (%s); lookups will scan the table",
            info.name,
            exc,
        )
        return False
    return True
