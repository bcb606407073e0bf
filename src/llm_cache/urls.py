"""Build a cache from a URL, for the CLI and the proxy (``--cache URL``).

====================================  =========================================
URL                                   cache
====================================  =========================================
``memory://``                         :class:`InMemoryCache`
``sqlite:///relative/path.db``        :class:`SQLiteCache` (``sqlite:////abs/path.db``)
``redis://host:port/db``              :class:`RedisCache` (``rediss://`` for TLS)
``postgresql://user:pw@host/db``      :class:`SQLAlchemyCache` (also ``mysql://``)
====================================  =========================================

Query parameters common to all: ``ttl`` (seconds), ``namespace`` and ``timeout`` (seconds any
one store call may take before it counts as a store error, a miss; default 0.5; see
docs/timeouts.md). For Redis ``timeout`` sets the clients' ``socket_timeout``; for SQL
databases it bounds every call (the cache enforces it) and the URL's engine also gets a
connect timeout, so that connections opened for calls that gave up do not wait forever.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ._deadline import DEFAULT_TIMEOUT, validate_timeout
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
        elif name == "timeout":
            try:
                options["timeout"] = validate_timeout(float(values[-1]))
            except ValueError:
                raise ConfigurationError(f"timeout must be a positive number of seconds, got {values[-1]!r}") from None
        else:
            raise ConfigurationError(f"unknown cache URL option {name!r}: use ttl=, namespace= and timeout=")
    return options


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
    timeout = options.get("timeout", DEFAULT_TIMEOUT)
    engine = sqlalchemy.create_engine(
        urlunsplit(parts._replace(scheme=scheme)),
        pool_pre_ping=True,
        pool_timeout=timeout,
        connect_args=_connect_args(scheme),
    )
    return SQLAlchemyCache(engine, **options)


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
        options.pop("timeout", None)  # nothing to wait for
        from .caches.memory import InMemoryCache

        return InMemoryCache(**options)
    if scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ConfigurationError("sqlite URL without a file: use sqlite:///llm_cache.db")
        from .caches.sqlite import SQLiteCache

        return SQLiteCache(path, **options)
    if scheme in ("redis", "rediss", "unix"):
        from .caches.redis import RedisCache

        if "timeout" in options:
            options["socket_timeout"] = options.pop("timeout")
        return RedisCache(redis_url=bare, **options)
    if scheme.startswith(("postgresql", "postgres", "mysql", "mariadb")):
        return _sql_cache(parts._replace(query=""), options)
    raise ConfigurationError(f"unknown cache URL scheme {parts.scheme!r} in {redact_url(url)!r}; examples: {_EXAMPLES}")
