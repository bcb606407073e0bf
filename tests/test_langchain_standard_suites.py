"""LangChain's standard cache test suites (package ``langchain-tests``) against
:class:`~llm_cache.integrations.langchain.LangChainCache` over every llm-cache backend.

``SyncCacheTestSuite`` and ``AsyncCacheTestSuite`` are LangChain's own acceptance tests
for a ``BaseCache``; they run here unchanged, each against an empty cache of one backend:
memory, SQLite, SQLAlchemy on PostgreSQL and on MariaDB, Redis, Momento (the in-process
emulator, through the real SDK), and the semantic caches (local store, Redis, pgvector).

As in LangChain's own test configuration, BlockBuster is active in every test: a blocking
call (file, socket, sqlite3, lock, sleep) made from llm-cache or langchain-core code on a
running event loop raises ``BlockingError``. The fail-open policy would turn that error
into a logged miss, so each cache here is ``strict=True``: a blocking call fails the test
instead of hiding as a miss.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from blockbuster import BlockBuster, blockbuster_ctx
from langchain_tests.integration_tests.cache import AsyncCacheTestSuite, SyncCacheTestSuite

from llm_cache import BaseCache, InMemoryCache, SQLiteCache
from llm_cache.integrations.langchain import LangChainCache
from llm_cache.testing.semantic_contract import shared_embeddings


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Blocking calls from llm-cache or langchain-core on an event loop raise BlockingError.

    The in-process test servers (llm_cache.testing: the Momento emulator) are not
    scanned: they stand in for remote services.
    """
    with blockbuster_ctx(["llm_cache", "langchain_core"], excluded_modules=["llm_cache.testing"]) as bb:
        yield bb


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- one maker per backend: (request, tmp_path) -> an empty, strict llm-cache cache --------------
def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> BaseCache:
    return InMemoryCache(strict=True)


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> BaseCache:
    return SQLiteCache(tmp_path / "langchain.db", strict=True)


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


@pytest.fixture(scope="module")
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

    return SemanticCache(shared_embeddings(), data_dir=tmp_path / "semantic", strict=True)


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


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCache]:
    """An empty llm-cache cache of one backend, made (and cleared, closed) off the event loop."""
    cache = request.param(request, tmp_path)
    try:
        yield cache
    finally:
        cache.clear()
        cache.close()


class TestLangChainSyncCacheSuite(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, backend: BaseCache) -> LangChainCache:
        return LangChainCache(backend)


class TestLangChainAsyncCacheSuite(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, backend: BaseCache) -> Any:
        cache = LangChainCache(backend)
        yield cache
        # Async clients belong to this test's loop (Redis, Momento): released before it ends.
        await backend.aclose()


async def test_async_calls_on_a_watched_loop_are_hits_not_silent_misses(backend: BaseCache) -> None:
    """With the default fail-open policy, a blocking call in an async path used to become a
    logged miss (every SQLite alookup under BlockBuster): count hits and errors directly."""
    from llm_cache import Generation

    backend.strict = False
    try:
        await backend.aupdate("Tell me a joke", "llm", [Generation(text="A joke.")])
        assert await backend.alookup("Tell me a joke", "llm") == [Generation(text="A joke.")]
        assert backend.stats.hits == 1 and backend.stats.errors == 0
    finally:
        await backend.aclose()


@pytest.fixture
def fresh_local_embeddings() -> Any:
    """A LocalEmbeddings whose model is not loaded yet (made off the loop, as a user would)."""
    from llm_cache.embeddings import LocalEmbeddings

    return LocalEmbeddings()


async def test_local_embeddings_load_and_run_off_the_loop(fresh_local_embeddings: Any) -> None:
    vector = await fresh_local_embeddings.aembed_query("Is it raining?")
    assert len(vector) == 384
    assert len(await fresh_local_embeddings.aembed_documents(["a", "b"])) == 2
