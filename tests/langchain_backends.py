"""The llm-cache backends that LangChain's own test suites run against (shared by
test_langchain_standard_suites.py and langchain_core_cache_tests/).

Each maker takes the pytest ``request`` and a temporary directory and returns an empty,
``strict`` llm-cache cache (strict: a store failure, such as a BlockBuster ``BlockingError``,
fails the test instead of becoming a logged miss). Server-backed makers ask for the
session's server fixtures through ``request.getfixturevalue``, so a run that selects no
Redis test starts no Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_cache import BaseCache, InMemoryCache, SQLiteCache
from llm_cache.testing.semantic_contract import shared_embeddings

__all__ = ["BACKENDS", "BLOCKBUSTER_SCAN", "BLOCKBUSTER_EXCLUDE", "Maker", "momento"]

# BlockBuster watches blocking calls made from these packages' code on an event loop; the
# in-process test servers (llm_cache.testing: the Momento emulator) stand in for remote
# services and are not watched.
BLOCKBUSTER_SCAN = ["llm_cache", "langchain_core"]
BLOCKBUSTER_EXCLUDE = ["llm_cache.testing"]

Maker = Callable[[pytest.FixtureRequest, Path], BaseCache]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- one maker per backend: (request, tmp_path) -> an empty, strict llm-cache cache --------------
def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> BaseCache:
    return InMemoryCache(strict=True)


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> BaseCache:
    return SQLiteCache(tmp_path / f"{unique('langchain')}.db", strict=True)


def _sqlalchemy(url_fixture: str) -> Callable[[pytest.FixtureRequest, Path], BaseCache]:
    def make(request: pytest.FixtureRequest, tmp_path: Path) -> BaseCache:
        from sqlalchemy import create_engine

        from llm_cache import SQLAlchemyCache

        engine = create_engine(request.getfixturevalue(url_fixture))
        request.addfinalizer(engine.dispose)
        return SQLAlchemyCache(engine, namespace=unique("lc-suite"), strict=True)

    return make


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> BaseCache:
    from llm_cache import RedisCache

    return RedisCache(redis_url=request.getfixturevalue("redis_url"), namespace=unique("lc-suite"), strict=True)


@pytest.fixture(scope="session")
def momento() -> Iterator[tuple[Any, Any]]:
    """The in-process Momento emulator and a CacheClient of the real SDK talking to it."""
    from datetime import timedelta

    from momento import CacheClient

    from llm_cache.testing.momento_emulator import MomentoEmulator

    with MomentoEmulator() as emulator:
        with CacheClient(emulator.configuration(), emulator.credential_provider(), timedelta(seconds=60)) as client:
            yield emulator, client


def _momento(request: pytest.FixtureRequest, tmp_path: Path) -> BaseCache:
    from llm_cache import MomentoCache

    emulator, client = request.getfixturevalue("momento")
    return MomentoCache(
        client,
        unique("lc-suite"),
        namespace="suite",
        configuration=emulator.configuration(),
        credential_provider=emulator.credential_provider(),
        strict=True,
    )


def _semantic_local(request: pytest.FixtureRequest, tmp_path: Path) -> BaseCache:
    from llm_cache import SemanticCache

    return SemanticCache(shared_embeddings(), data_dir=tmp_path / unique("semantic"), strict=True)


def _semantic_redis(request: pytest.FixtureRequest, tmp_path: Path) -> BaseCache:
    from llm_cache import RedisSemanticCache

    return RedisSemanticCache(
        redis_url=request.getfixturevalue("redis_url"),
        namespace=unique("lc-suite"),
        embedding=shared_embeddings(),
        strict=True,
    )


def _semantic_pgvector(request: pytest.FixtureRequest, tmp_path: Path) -> BaseCache:
    from llm_cache import PGVectorSemanticCache

    return PGVectorSemanticCache(
        request.getfixturevalue("postgres_url"),
        namespace=unique("ns"),
        table="t_lc_suite",
        embedding=shared_embeddings(),
        strict=True,
    )


BACKENDS = [
    pytest.param(_memory, id="memory"),
    pytest.param(_sqlite, id="sqlite"),
    pytest.param(_sqlalchemy("postgres_url"), id="sqlalchemy-postgres", marks=pytest.mark.postgres),
    pytest.param(_sqlalchemy("mysql_url"), id="sqlalchemy-mariadb", marks=pytest.mark.mysql),
    pytest.param(_redis, id="redis", marks=pytest.mark.redis),
    pytest.param(_momento, id="momento"),
    pytest.param(_semantic_local, id="semantic-local"),
    pytest.param(_semantic_redis, id="semantic-redis", marks=pytest.mark.redis),
    pytest.param(_semantic_pgvector, id="semantic-pgvector", marks=pytest.mark.postgres),
]


