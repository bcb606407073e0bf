"""The backend contract on the embedded stores: memory and SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable

import pytest

from llm_cache import InMemoryCache, SQLiteCache
from llm_cache.testing.contract import CacheContract, tracked_factory


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class TestInMemoryContract(CacheContract):
    shares_namespaces = False

    @pytest.fixture
    def cache_factory(self) -> Callable[..., InMemoryCache]:
        def factory(namespace: str = "default", ttl: float | None = None) -> InMemoryCache:
            return InMemoryCache(ttl=ttl, clock=FakeClock())

        return factory

    def advance(self, cache: InMemoryCache, seconds: float) -> None:  # type: ignore[override]
        cache._clock.now += seconds  # type: ignore[attr-defined]


class TestSQLiteContract(CacheContract):
    @pytest.fixture
    def cache_factory(self, tmp_path: Path) -> Callable[..., SQLiteCache]:
        clock = FakeClock()
        with tracked_factory(
            lambda ns, ttl: SQLiteCache(tmp_path / "cache.db", ttl=ttl, namespace=ns, clock=clock),
            clear=False,  # the file goes with tmp_path
        ) as factory:
            yield factory  # type: ignore[misc]

    def advance(self, cache: SQLiteCache, seconds: float) -> None:  # type: ignore[override]
        cache._clock.now += seconds  # type: ignore[attr-defined]

    def corrupt(self, cache: SQLiteCache, prompt: str, llm_string: str) -> None:  # type: ignore[override]
        with sqlite3.connect(cache.database_path) as conn:
            conn.execute(
                "UPDATE llm_cache SET response = ? WHERE id = ?", ("{not json", cache._row_id(prompt, llm_string))
            )


class TestSQLiteInMemoryDatabaseContract(TestSQLiteContract):
    """``database_path=":memory:"`` must behave like a file, threads included."""

    @pytest.fixture
    def cache_factory(self) -> Callable[..., SQLiteCache]:
        clock = FakeClock()

        def factory(namespace: str = "default", ttl: float | None = None) -> SQLiteCache:
            return SQLiteCache(":memory:", ttl=ttl, namespace=namespace, clock=clock)

        return factory

    def test_clear_leaves_other_namespaces_alone(self) -> None:  # type: ignore[override]
        pytest.skip("two ':memory:' caches are two databases")

    def corrupt(self, cache: SQLiteCache, prompt: str, llm_string: str) -> None:  # type: ignore[override]
        cache._conn().execute(
            "UPDATE llm_cache SET response = ? WHERE id = ?", ('{"v":1,"g":[{"text":5}]}', cache._row_id(prompt, llm_string))
        )


# -- size caps and eviction ----------------------------------------------------------------
from llm_cache.testing.contract import CapsContract  # noqa: E402


class _TickingCaps(CapsContract):
    def tick(self, cache) -> None:  # type: ignore[no-untyped-def]
        cache._clock.now += 1.0


class TestInMemoryCaps(_TickingCaps):
    @pytest.fixture
    def capped_factory(self) -> Callable[..., InMemoryCache]:
        def factory(max_entries=None, max_bytes=None, policy="lru", evict_batch=None):  # type: ignore[no-untyped-def]
            return InMemoryCache(maxsize=max_entries, max_bytes=max_bytes, policy=policy, evict_batch=evict_batch, clock=FakeClock())

        return factory


class TestSQLiteCaps(_TickingCaps):
    @pytest.fixture
    def capped_factory(self, tmp_path: Path) -> Callable[..., SQLiteCache]:
        made = iter(range(1000))
        with tracked_factory(
            lambda ns, ttl, **caps: SQLiteCache(tmp_path / f"c{next(made)}.db", clock=FakeClock(), **caps), clear=False
        ) as factory:
            yield lambda **caps: factory(**caps)  # type: ignore[misc]

    def stored(self, cache: SQLiteCache) -> int:  # type: ignore[override]
        return cache.usage()[0]
