"""Build a cache from a URL, for the CLI and the proxy (``--cache URL``).

====================================  =========================================
URL                                   cache
====================================  =========================================
``memory://``                         :class:`InMemoryCache`
``sqlite:///relative/path.db``        :class:`SQLiteCache` (``sqlite:////abs/path.db``)
``redis://host:port/db``              :class:`RedisCache` (``rediss://`` for TLS)
``postgresql://user:pw@host/db``      :class:`SQLAlchemyCache` (also ``mysql://``)
``semantic:///relative/dir``          :class:`SemanticCache` on a local ``data_dir``
                                      (``semantic:////abs/dir``)
``semantic+redis://host:port/db``     :class:`RedisSemanticCache` (``semantic+rediss://``)
``semantic+postgresql://u:pw@h/db``   :class:`PGVectorSemanticCache` (option ``table=``)
====================================  =========================================

Query parameters common to all: ``ttl`` (seconds), ``namespace`` and ``timeout`` (seconds any
one store call may take before it counts as a store error, a miss; default 0.5; see
docs/timeouts.md). For Redis ``timeout`` sets the clients' ``socket_timeout``; for SQL
databases it bounds every call (the cache enforces it) and the URL's engine also gets a
connect timeout, so that connections opened for calls that gave up do not wait forever.

``read_only=True`` (what the listing commands use) opens the store without creating or
changing anything: SQLite files with ``mode=ro``, SQL tables without ``CREATE``, and
semantic caches through the views of :mod:`llm_cache.semantic.listing` (no embedding model,
no directory or index created). A read-only URL that names nothing is an error naming it.

Size caps (see :mod:`llm_cache.eviction`): ``max_entries``, ``max_bytes`` (``64MB``, ``2GiB``...)
and ``policy`` (``lru``, ``lfu``, ``cost``) for memory and SQLite; ``max_entries`` for SQL
tables. Redis caps itself with ``maxmemory`` (docs/operations.md).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ._deadline import DEFAULT_TIMEOUT, validate_timeout
from .caches.base import BaseCache
from .errors import ConfigurationError

__all__ = ["cache_from_url", "redact_url", "SEMANTIC_SCHEMES"]

_EXAMPLES = (
    "memory://, sqlite:///llm_cache.db, redis://localhost:6379/0, postgresql://user:pass@localhost/db, "
    "semantic:///semantic_dir, semantic+redis://localhost:6379/0, semantic+postgresql://user:pass@localhost/db"
)
#: URL schemes of semantic caches (``semantic`` is a local data_dir).
SEMANTIC_SCHEMES = ("semantic", "semantic+redis", "semantic+rediss", "semantic+postgresql", "semantic+postgres")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def url_options(query: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The options of a cache URL's query string, parsed and validated (ConfigurationError
    naming the option otherwise)."""
    options: dict[str, Any] = {}
    for name, values in parse_qs(query).items():
        if name in extra:
            options[name] = values[-1]
            continue
        if name == "ttl":
            try:
                options["ttl"] = float(values[-1])
            except ValueError:
                raise ConfigurationError(f"ttl must be a number of seconds, got {values[-1]!r}") from None
        elif name == "namespace":
            options["namespace"] = values[-1]
        elif name == "timeout":
            try:
                options["timeout"] = validate_timeout(float(values[-1]))
            except ValueError:
                raise ConfigurationError(f"timeout must be a positive number of seconds, got {values[-1]!r}") from None
        elif name in _CAP_OPTIONS:
            options[name] = _CAP_OPTIONS[name](values[-1])
        else:
            allowed = ", ".join(f"{n}=" for n in ("ttl", "namespace", "timeout", *_CAP_OPTIONS, *extra))
            raise ConfigurationError(f"unknown cache URL option {name!r}: use {allowed}")
    return options


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigurationError(f"max_entries must be a whole number, got {text!r}") from None
    if value < 1:
        raise ConfigurationError(f"max_entries must be positive, got {text!r}")
    return value


def _size(text: str) -> int:
    from .eviction import parse_size

    return parse_size(text)


def _policy(text: str) -> str:
    from .eviction import POLICIES

    if text not in POLICIES:
        raise ConfigurationError(f"policy must be one of {', '.join(POLICIES)}, got {text!r}")
    return text


_CAP_OPTIONS = {"max_entries": _count, "max_bytes": _size, "policy": _policy}


def _only(options: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    """Refuse cap options ``what`` does not take, saying which it does."""
    refused = [name for name in _CAP_OPTIONS if name in options and name not in allowed]
    if refused:
        takes = f"only {', '.join(allowed)}" if allowed else "no size options (see docs/operations.md)"
        raise ConfigurationError(f"{what} takes {takes}, not {', '.join(refused)}")


# A bare scheme gets the driver llm-cache installs with its extra (SQLAlchemy's own default
# for postgresql:// is psycopg2, which no extra of ours brings).
_SQL_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


def _sql_cache(parts: Any, options: dict[str, Any], read_only: bool = False) -> BaseCache:
    from ._imports import require

    sqlalchemy = require("sqlalchemy", "sql", "SQLAlchemyCache")
    from .caches.sql import SQLAlchemyCache

    scheme = _SQL_DRIVERS.get(parts.scheme.lower(), parts.scheme)
    _only(options, ("max_entries",), "an SQL cache URL")
    timeout = options.get("timeout", DEFAULT_TIMEOUT)
    engine = sqlalchemy.create_engine(
        urlunsplit(parts._replace(scheme=scheme)),
        pool_pre_ping=True,
        pool_timeout=timeout,
        connect_args=_connect_args(scheme),
    )
    try:
        if read_only:
            return SQLAlchemyCache(engine, read_only=True, **options)
        return SQLAlchemyCache(engine, **options)
    except BaseException:
        engine.dispose()  # no cache owns it yet: its connections would stay open
        raise


# The cache bounds each call itself (SQLAlchemyCache(timeout=)); these bound the driver's own
# waits, so that a connect or read the caller stopped waiting for does not hold its worker
# thread and socket forever. libpq's connect_timeout has a floor of 2 s.
_CONNECT_SECONDS = 2
_DRIVER_READ_SECONDS = 10


def _connect_args(scheme: str) -> dict[str, Any]:
    if scheme.endswith("+psycopg"):
        return {"connect_timeout": _CONNECT_SECONDS}
    if scheme.endswith("+pymysql"):
        return {
            "connect_timeout": _CONNECT_SECONDS,
            "read_timeout": _DRIVER_READ_SECONDS,
            "write_timeout": _DRIVER_READ_SECONDS,
        }
    return {}


def _local_dir(parts: Any) -> str:
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc or not path:
        raise ConfigurationError(
            "a local semantic cache URL names a directory: semantic:///relative/dir or semantic:////abs/dir"
        )
    return path


def _semantic_cache(parts: Any, options: dict[str, Any], read_only: bool) -> BaseCache:
    """A semantic cache (writable) or a read-only view of one (no embedding model loaded)."""
    scheme = parts.scheme.lower()
    namespace = options.get("namespace")
    table = options.pop("table", None)
    if table is not None and not scheme.startswith("semantic+postgres"):
        raise ConfigurationError("table= is an option of semantic+postgresql:// URLs only")
    timeout = options.pop("timeout", None)
    if scheme == "semantic":
        path = _local_dir(parts)
        if read_only:
            from .semantic.listing import LocalSemanticView

            return LocalSemanticView(path, namespace=namespace or "default")
        from .semantic.cache import SemanticCache

        if timeout is not None:
            raise ConfigurationError("timeout= is not an option of semantic:/// URLs (a local store waits for no server)")
        return SemanticCache(data_dir=path, **options)
    target = urlunsplit(parts._replace(scheme=scheme.split("+", 1)[1], query=""))
    if scheme.startswith("semantic+redis"):
        if read_only:
            from .semantic.listing import RedisSemanticView

            return RedisSemanticView(target, namespace=namespace)
        from .semantic.stores.redis import RedisSemanticCache

        if timeout is not None:
            options["socket_timeout"] = timeout
        _only(options, ("max_entries",), "a semantic+redis URL")
        return RedisSemanticCache(redis_url=target, **options)
    if read_only:
        from .semantic.listing import PGVectorSemanticView

        return PGVectorSemanticView(target, table=table, namespace=namespace or "default")
    from .semantic.stores.pgvector import PGVectorSemanticCache

    if timeout is not None:
        options["timeout"] = timeout
    _only(options, ("max_entries",), "a semantic+postgresql URL")
    return PGVectorSemanticCache(target, **({} if table is None else {"table": table}), **options)


def cache_from_url(
    url: str, *, namespace: str | None = None, ttl: float | None = None, read_only: bool = False
) -> BaseCache:
    """Create the cache a URL names. ``namespace``/``ttl`` arguments override the URL's.

    ``read_only``: open it for listing only; nothing is created or changed (see the module
    docstring), and a store that does not exist is a ConfigurationError naming it.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"not a cache URL: {url!r}; examples: {_EXAMPLES}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = url_options(parts.query, ("table",) if scheme in SEMANTIC_SCHEMES else ())
    if namespace is not None:
        options["namespace"] = namespace
    if ttl is not None:
        options["ttl"] = ttl
    bare = urlunsplit(parts._replace(query=""))
    if scheme in SEMANTIC_SCHEMES:
        return _semantic_cache(parts, options, read_only)

    if scheme == "memory":
        options.pop("namespace", None)  # one process, one dict: nothing to separate
        options.pop("timeout", None)  # nothing to wait for
        from .caches.memory import InMemoryCache

        if "max_entries" in options:
            options["maxsize"] = options.pop("max_entries")
        return InMemoryCache(**options)
    if scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ConfigurationError("sqlite URL without a file: use sqlite:///llm_cache.db")
        from .caches.sqlite import SQLiteCache

        if read_only:
            return SQLiteCache(path, read_only=True, **options)
        return SQLiteCache(path, **options)
    if scheme in ("redis", "rediss", "unix"):
        from .caches.redis import RedisCache

        _only(options, (), "a Redis cache URL (Redis evicts by its maxmemory policy)")
        if "timeout" in options:
            options["socket_timeout"] = options.pop("timeout")
        return RedisCache(redis_url=bare, **options)
    if scheme.startswith(("postgresql", "postgres", "mysql", "mariadb")):
        return _sql_cache(parts._replace(query=""), options, read_only)
    raise ConfigurationError(f"unknown cache URL scheme {parts.scheme!r} in {redact_url(url)!r}; examples: {_EXAMPLES}")
