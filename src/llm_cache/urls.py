"""Build a cache from a URL, for the CLI and the proxy (``--cache URL``).

====================================  =========================================
URL                                   cache
====================================  =========================================
``memory://``                         :class:`InMemoryCache`
``sqlite:///relative/path.db``        :class:`SQLiteCache` (``sqlite:////abs/path.db``)
``redis://host:port/db``              :class:`RedisCache` (``rediss://`` for TLS)
``postgresql://user:pw@host/db``      :class:`SQLAlchemyCache` (also ``mysql://``)
====================================  =========================================

Query parameters common to all: ``ttl`` (seconds) and ``namespace``. Size caps (see
:mod:`llm_cache.eviction`): ``max_entries``, ``max_bytes`` (``64MB``, ``2GiB``...) and
``policy`` (``lru``, ``lfu``, ``cost``) for memory and SQLite; ``max_entries`` for SQL
tables. Redis caps itself with ``maxmemory`` (docs/operations.md).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .caches.base import BaseCache
from .errors import ConfigurationError

__all__ = ["cache_from_url", "redact_url"]

_EXAMPLES = "memory://, sqlite:///llm_cache.db, redis://localhost:6379/0, postgresql://user:pass@localhost/db"


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _options(query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, values in parse_qs(query).items():
        if name == "ttl":
            try:
                options["ttl"] = float(values[-1])
            except ValueError:
                raise ConfigurationError(f"ttl must be a number of seconds, got {values[-1]!r}") from None
        elif name == "namespace":
            options["namespace"] = values[-1]
        elif name in _CAP_OPTIONS:
            options[name] = _CAP_OPTIONS[name](values[-1])
        else:
            raise ConfigurationError(
                f"unknown cache URL option {name!r}: use ttl=, namespace=, max_entries=, max_bytes=, policy="
            )
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


def _sql_cache(parts: Any, options: dict[str, Any]) -> BaseCache:
    from ._imports import require

    sqlalchemy = require("sqlalchemy", "sql", "SQLAlchemyCache")
    from .caches.sql import SQLAlchemyCache

    scheme = _SQL_DRIVERS.get(parts.scheme.lower(), parts.scheme)
    _only(options, ("max_entries",), "an SQL cache URL")
    engine = sqlalchemy.create_engine(urlunsplit(parts._replace(scheme=scheme)), pool_pre_ping=True)
    return SQLAlchemyCache(engine, **options)


def cache_from_url(url: str, *, namespace: str | None = None, ttl: float | None = None) -> BaseCache:
    """Create the cache a URL names. ``namespace``/``ttl`` arguments override the URL's."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"not a cache URL: {url!r}; examples: {_EXAMPLES}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = _options(parts.query)
    if namespace is not None:
        options["namespace"] = namespace
    if ttl is not None:
        options["ttl"] = ttl
    bare = urlunsplit(parts._replace(query=""))

    if scheme == "memory":
        options.pop("namespace", None)  # one process, one dict: nothing to separate
        from .caches.memory import InMemoryCache

        if "max_entries" in options:
            options["maxsize"] = options.pop("max_entries")
        return InMemoryCache(**options)
    if scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ConfigurationError("sqlite URL without a file: use sqlite:///llm_cache.db")
        from .caches.sqlite import SQLiteCache

        return SQLiteCache(path, **options)
    if scheme in ("redis", "rediss", "unix"):
        from .caches.redis import RedisCache

        _only(options, (), "a Redis cache URL (Redis evicts by its maxmemory policy)")
        return RedisCache(redis_url=bare, **options)
    if scheme.startswith(("postgresql", "postgres", "mysql", "mariadb")):
        return _sql_cache(parts._replace(query=""), options)
    raise ConfigurationError(f"unknown cache URL scheme {parts.scheme!r} in {redact_url(url)!r}; examples: {_EXAMPLES}")
