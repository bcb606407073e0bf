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

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from blockbuster import BlockBuster, blockbuster_ctx
from langchain_tests.integration_tests.cache import AsyncCacheTestSuite, SyncCacheTestSuite

from langchain_backends import BACKENDS, BLOCKBUSTER_EXCLUDE, BLOCKBUSTER_SCAN
from langchain_backends import momento  # noqa: F401  (a fixture the Momento backend uses)

from llm_cache import BaseCache
from llm_cache.integrations.langchain import LangChainCache


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Blocking calls from llm-cache or langchain-core on an event loop raise BlockingError.

    The in-process test servers (llm_cache.testing: the Momento emulator) are not
    scanned: they stand in for remote services.
    """
    with blockbuster_ctx(BLOCKBUSTER_SCAN, excluded_modules=BLOCKBUSTER_EXCLUDE) as bb:
        yield bb


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
