"""The vector-store contract on every store: Redis 8 vector sets, pgvector, and the local one.

Redis and PostgreSQL are the real servers of the session (tests/servers_fixtures.py).
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.register_assert_rewrite("llm_cache.testing.vector_store_contract")

from llm_cache.semantic.stores.base import VectorStore
from llm_cache.testing.vector_store_contract import VectorStoreContract


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.redis
class TestRedisVectorStore(VectorStoreContract):
    # Q8 (the default quantization) stores each component in 8 bits: similarities are within
    # about 0.005 of the exact cosine on these vectors; allow some margin.
    similarity_tolerance = 0.02
    quantization = "Q8"

    @pytest.fixture
    def store_factory(self, redis_url: str) -> Iterator[Callable[..., VectorStore]]:
        from llm_cache.semantic.stores.redis import RedisVectorStore

        made: list[RedisVectorStore] = []

        def factory(namespace: str | None = None, ttl: float | None = None) -> RedisVectorStore:
            store = RedisVectorStore(
                redis_url=redis_url,
                namespace=namespace or f"test-vs-{self.quantization}:{uuid.uuid4().hex[:12]}",
                dimension=self.dimension,
                ttl=ttl,
                quantization=self.quantization,
                socket_timeout=5,
            )
            made.append(store)
            return store

        yield factory
        for store in made:
            store.clear()
            store.close()


@pytest.mark.redis
class TestRedisVectorStoreNoQuant(TestRedisVectorStore):
    similarity_tolerance = 1e-5
    quantization = "NOQUANT"


@pytest.mark.postgres
class TestPGVectorStore(VectorStoreContract):
    similarity_tolerance = 1e-5

    @pytest.fixture
    def store_factory(self, postgres_url: str) -> Iterator[Callable[..., VectorStore]]:
        from llm_cache.semantic.stores.pgvector import PGVectorStore

        made: list[PGVectorStore] = []
        clock = FakeClock()

        def factory(namespace: str | None = None, ttl: float | None = None) -> PGVectorStore:
            store = PGVectorStore(
                postgres_url,
                table="llm_cache_semantic_contract",
                namespace=namespace or f"test-{uuid.uuid4().hex[:12]}",
                dimension=self.dimension,
                ttl=ttl,
                clock=clock,
            )
            made.append(store)
            return store

        yield factory
        for store in made:
            store.clear()
            store.close()

    def now(self, store: Any) -> float:
        return store._clock()

    def advance(self, store: Any, seconds: float) -> None:
        store._clock.now += seconds


_HAS_LOCAL = importlib.util.find_spec("llm_cache.semantic.stores.local") is not None


@pytest.mark.skipif(not _HAS_LOCAL, reason="llm_cache.semantic.stores.local does not exist yet")
class TestLocalVectorStore(VectorStoreContract):
    similarity_tolerance = 0.02  # i8 index by default, like Redis's Q8
    supports_store_ttl = False

    @pytest.fixture
    def store_factory(self, tmp_path: Any) -> Iterator[Callable[..., VectorStore]]:
        from llm_cache.semantic.stores.local import LocalVectorStore

        made: list[VectorStore] = []
        clock = FakeClock()

        def factory(namespace: str | None = None, ttl: float | None = None) -> VectorStore:
            assert ttl is None
            store = LocalVectorStore(
                tmp_path / "semantic",
                namespace=namespace or f"test-{uuid.uuid4().hex[:12]}",
                dimension=self.dimension,
                clock=clock,
            )
            made.append(store)
            return store

        yield factory
        for store in made:
            store.close()

    def now(self, store: Any) -> float:
        return store._clock()

    def advance(self, store: Any, seconds: float) -> None:
        store._clock.now += seconds
