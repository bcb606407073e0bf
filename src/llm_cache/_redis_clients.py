"""Redis client handling shared by :class:`~llm_cache.caches.redis.RedisCache` and
:class:`~llm_cache.semantic.stores.redis.RedisVectorStore` (private).

* Clients built from a URL fail fast: ``socket_timeout`` for connect and for each reply, and one
  immediate retry on a connection error only (it absorbs a pooled connection that went stale
  without turning an outage or a timeout into a longer wait; redis-py's default is a 5 s
  timeout and retries with backoff, which makes a cache that is down cost seconds per call).
* The twin of a client (sync <-> asyncio) is built from the connection settings that mean the
  same to both kinds (address, database, credentials, TLS, Unix socket, timeouts); pools,
  parsers and retry objects are specific to one side and are not copied.
* A redis.asyncio client belongs to the event loop it first ran on, so a cache keeps one async
  client per running loop (a ``{loop: (client, closer)}`` registry) and the loop itself closes it
  at shutdown (``asyncio.run`` and pytest-asyncio call ``loop.shutdown_asyncgens()``).
* ``clear()`` never uses ``FLUSHDB``: it walks a ``SCAN MATCH`` pattern made of the escaped
  namespace and ``UNLINK``-s in bounded batches (freed by a background thread of the server).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ._imports import require
from .errors import ConfigurationError

# SCAN's COUNT is a hint of how many slots to visit per call; UNLINK gets at most this many
# keys per command so that one command never carries an unbounded argument list.
SCAN_COUNT = 1000
UNLINK_BATCH = 500

# Exactly 64 lowercase hex digits: the sha256 part of every key the caches write.
HEX_GLOB = "[0-9a-f]" * 64
# Redis glob metacharacters (``\`` first, so that the escapes we add are not escaped again).
_GLOB_SPECIAL = ("\\", "*", "?", "[", "]")

# Connection settings that mean the same to redis-py's sync and asyncio clients.
_PORTABLE_SETTINGS = (
    "host",
    "port",
    "db",
    "username",
    "password",
    "credential_provider",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "encoding",
    "encoding_errors",
    "decode_responses",
    "client_name",
    "health_check_interval",
    "protocol",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_ca_path",
    "ssl_check_hostname",
    "ssl_min_version",
    "ssl_ciphers",
    "ssl_password",
)
_PLAIN_POOLS = ("ConnectionPool", "BlockingConnectionPool")

LoopRegistry = dict[asyncio.AbstractEventLoop, tuple[Any, Any]]


# -- configuration (no I/O) ----------------------------------------------------------------------
def redis_modules(feature: str) -> Any:
    """redis-py, with every submodule used here imported (or the pip line to get it)."""
    redis = require("redis", "redis", feature)
    submodules = (
        "asyncio",
        "asyncio.cluster",
        "asyncio.retry",
        "cluster",
        "retry",
        "backoff",
        "exceptions",
    )
    for sub in submodules:
        require(f"redis.{sub}", "redis", feature)
    return redis


def validate_namespace(namespace: Any) -> str:
    """A non-empty key prefix without whitespace (glob characters are fine: they are escaped)."""
    if not isinstance(namespace, str):
        raise ConfigurationError(f"namespace must be a string, not {type(namespace).__name__}")
    if not namespace:
        raise ConfigurationError(
            "namespace must not be empty: it is the prefix that keeps this cache's keys apart"
        )
    if any(ch.isspace() for ch in namespace):
        raise ConfigurationError(
            f"namespace must not contain whitespace (got {namespace!r}); use e.g. 'myapp:llm'"
        )
    return namespace


def validate_socket_timeout(timeout: Any) -> float | None:
    """``None`` or a positive number of seconds, as a float."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigurationError(
            f"socket_timeout must be a positive number of seconds or None, not {timeout!r}"
        )
    return float(timeout)


def validate_redis_url(redis_url: Any) -> str:
    if not isinstance(redis_url, str):
        raise ConfigurationError(
            # The type, not the value: a URL may carry a password.
            f"redis_url must be a string like 'redis://host:6379/0', not {type(redis_url).__name__}"
        )
    return redis_url


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis ``SCAN MATCH`` pattern."""
    for ch in _GLOB_SPECIAL:
        text = text.replace(ch, "\\" + ch)
    return text


def describe_url(url: str) -> str:
    """Scheme, host, port and path of a URL: never its password (this reaches logs)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
    except ValueError:
        return "<unparsable URL>"


def describe_client(client: Any) -> str:
    """Where a client connects (address and database), without credentials."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if kwargs:
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        return f"{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
    return type(client).__name__


# -- clients -------------------------------------------------------------------------------------
def client_kind(redis: Any, client: Any) -> str:
    """``standalone``, ``cluster``, ``async``, ``async-cluster`` or ``unknown``."""
    if isinstance(client, redis.cluster.RedisCluster):
        return "cluster"
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        return "async-cluster"
    if isinstance(client, redis.asyncio.Redis):
        return "async"
    if isinstance(client, redis.Redis):
        return "standalone"
    return "unknown"


def fail_fast_retry(redis: Any, asynchronous: bool) -> Any:
    """One immediate retry, on connection errors only (everything else is the breaker's job)."""
    retry_cls = redis.asyncio.retry.Retry if asynchronous else redis.retry.Retry
    return retry_cls(
        redis.backoff.NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)
    )


def client_from_url(
    redis: Any, url: str, *, asynchronous: bool, socket_timeout: float | None
) -> Any:
    """A sync or asyncio client for ``url`` with fail-fast timeouts (the URL's query wins)."""
    cls = redis.asyncio.Redis if asynchronous else redis.Redis
    try:
        return cls.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=fail_fast_retry(redis, asynchronous),
        )
    except ValueError as exc:
        raise ConfigurationError(f"invalid redis_url {describe_url(url)}: {exc}") from exc


def twin_factory(redis: Any, client: Any, kind: str, *, asynchronous: bool) -> Callable[[], Any]:
    """A factory of the other kind (sync <-> async) of ``client``, on the same server.

    ``kind`` is :func:`client_kind` of ``client``. Raises ConfigurationError, without I/O, when
    the settings cannot be carried over (a Sentinel pool, an unknown connection class).
    """
    if kind in ("standalone", "async"):
        pool = client.connection_pool
        if type(pool).__name__ not in _PLAIN_POOLS:
            raise ConfigurationError(
                f"cannot build the {'async' if asynchronous else 'sync'} twin of a client whose "
                f"pool is {type(pool).__name__} (e.g. Sentinel); pass both redis_= and async_redis="
            )
        conn_name = pool.connection_class.__name__
        settings = _portable(pool.connection_kwargs)
        if conn_name == "SSLConnection":
            settings["ssl"] = True
        elif conn_name == "UnixDomainSocketConnection":
            settings["unix_socket_path"] = pool.connection_kwargs["path"]
            settings.pop("host", None)
            settings.pop("port", None)
        elif conn_name != "Connection":
            raise ConfigurationError(
                f"cannot build the {'async' if asynchronous else 'sync'} twin of a client with "
                f"connection class {conn_name}; pass both redis_= and async_redis="
            )
        target = redis.asyncio.Redis if asynchronous else redis.Redis
        settings = _accepted_by(target, settings)
        return lambda: target(**settings, retry=fail_fast_retry(redis, asynchronous))

    # Redis Cluster: the nodes we know, and the connection settings of the nodes.
    if kind == "cluster":
        nodes = [(n.host, n.port) for n in client.get_nodes()]
        first = client.get_nodes()[0].redis_connection.connection_pool
        conn_kwargs = dict(first.connection_kwargs)
        ssl = first.connection_class.__name__ == "SSLConnection"
    else:
        nodes = [(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()]
        conn_kwargs = dict(client.connection_kwargs)
        ssl = getattr(conn_kwargs.get("connection_class"), "__name__", "") == "SSLConnection"
    settings = _portable(conn_kwargs)
    settings.pop("host", None)
    settings.pop("port", None)
    settings.pop("db", None)  # a cluster has only database 0
    if ssl:
        settings["ssl"] = True
    if asynchronous:
        target = redis.asyncio.cluster.RedisCluster
        node_cls = redis.asyncio.cluster.ClusterNode
    else:
        target = redis.cluster.RedisCluster
        node_cls = redis.cluster.ClusterNode
    settings = _accepted_by(target, settings)
    return lambda: target(
        startup_nodes=[node_cls(host, port) for host, port in nodes],
        retry=fail_fast_retry(redis, asynchronous),
        **settings,
    )


def _portable(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {name: kwargs[name] for name in _PORTABLE_SETTINGS if name in kwargs}


def _accepted_by(target: type, settings: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(target).parameters  # a class's signature is its __init__'s
    return {name: value for name, value in settings.items() if name in params}


# -- one async client per event loop -------------------------------------------------------------
_driver_ready = False


def _read_driver_version() -> None:
    """redis-py reads its own version from the installed package metadata (a scan of
    sys.path: file I/O) the first time any connection is made, then caches it."""
    try:
        from redis.utils import get_lib_version
    except ImportError:  # a redis-py without it reads nothing at connect time
        return
    get_lib_version()


async def loop_client(registry: LoopRegistry, make: Callable[[], Any]) -> Any:
    """The async client of the running loop in ``registry``, made with ``make()`` on first use."""
    global _driver_ready
    if not _driver_ready:
        # The first async connection of the process would do that file I/O on the event
        # loop (found by BlockBuster): do it once in a worker thread instead.
        await asyncio.to_thread(_read_driver_version)
        _driver_ready = True
    loop = asyncio.get_running_loop()
    entry = registry.get(loop)
    if entry is not None:
        return entry[0]
    # Forget clients of loops that are gone (a loop closed without shutdown_asyncgens()).
    # list() takes the keys in one step: other threads' loops may add theirs meanwhile.
    for old in list(registry):
        if old.is_closed():
            registry.pop(old, None)
    client = make()
    closer = _close_at_loop_shutdown(client, registry, loop)
    # Starting the generator registers it with the running loop; when the loop shuts down it
    # is finalised inside the loop, which closes the client while its connections can still be
    # closed properly. No suspension happens here, so no other task of this loop can bind a
    # second client meanwhile.
    await closer.__anext__()
    registry[loop] = (client, closer)
    return client


async def aclose_loop_client(registry: LoopRegistry) -> None:
    """Close and forget the running loop's client in ``registry``, if it has one."""
    entry = registry.pop(asyncio.get_running_loop(), None)
    if entry is not None:
        await entry[1].aclose()


async def _close_at_loop_shutdown(
    client: Any, registry: LoopRegistry, loop: asyncio.AbstractEventLoop
) -> AsyncIterator[None]:
    try:
        yield
    finally:
        entry = registry.get(loop)
        if entry is not None and entry[0] is client:
            registry.pop(loop, None)
        await client.aclose()


# -- SCAN-based namespace operations -------------------------------------------------------------
def scan_batches(client: Any, match: str, size: int = UNLINK_BATCH) -> Iterator[list[Any]]:
    """The keys matching ``match`` (a ``SCAN MATCH`` walk; on a cluster, of every primary), in lists of at most ``size``."""
    batch: list[Any] = []
    for key in client.scan_iter(match=match, count=SCAN_COUNT):
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def ascan_batches(
    client: Any, match: str, size: int = UNLINK_BATCH
) -> AsyncIterator[list[Any]]:
    """:func:`scan_batches` for an asyncio client."""
    batch: list[Any] = []
    keys: AsyncIterator[Any] = client.scan_iter(match=match, count=SCAN_COUNT)
    async for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def unlink_matching(client: Any, match: str) -> None:
    """``UNLINK`` every key matching ``match``, in batches (never ``FLUSHDB``)."""
    for batch in scan_batches(client, match):
        client.unlink(*batch)


async def aunlink_matching(client: Any, match: str) -> None:
    """:func:`unlink_matching` for an asyncio client."""
    async for batch in ascan_batches(client, match):
        await client.unlink(*batch)


def count_matching(client: Any, match: str) -> int:
    """Number of keys matching ``match`` (one SCAN walk; no value is read)."""
    return sum(1 for _ in client.scan_iter(match=match, count=SCAN_COUNT))


async def acount_matching(client: Any, match: str) -> int:
    """:func:`count_matching` for an asyncio client."""
    n = 0
    async for _ in client.scan_iter(match=match, count=SCAN_COUNT):
        n += 1
    return n
