"""Size caps of SQLAlchemyCache (max_entries, oldest written first) on SQLite, PostgreSQL and
MariaDB, through the shared CapsContract; expiry sweeps and prune on the SQL table."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from llm_cache import Generation
from llm_cache.caches.sql import SQLAlchemyCache
from llm_cache.errors import ConfigurationError
from llm_cache.testing.contract import LLM, CapsContract


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class _SQLCaps(CapsContract):
    policies = ("lru",)  # by write time: the table keeps no hit statistics
    supports_max_bytes = False
    tracks_hits = False

    def tick(self, cache: SQLAlchemyCache) -> None:  # type: ignore[override]
        cache._clock.now += 1.0  # type: ignore[attr-defined]

    @staticmethod
    def factory_on(url: str) -> Iterator[Callable[..., SQLAlchemyCache]]:
        engine = create_engine(url)
        made: list[SQLAlchemyCache] = []

        def factory(max_entries=None, max_bytes=None, policy="lru", evict_batch=None):  # type: ignore[no-untyped-def]
            assert max_bytes is None and policy == "lru"
            cache = SQLAlchemyCache(
                engine, namespace=f"caps-{uuid.uuid4().hex[:10]}", clock=FakeClock(),
                max_entries=max_entries, evict_batch=evict_batch, ttl=3600,
            )
            made.append(cache)
            return cache

        yield factory
        for cache in made:
            cache.clear()
            cache.close()
        engine.dispose()


class TestSQLiteFileCaps(_SQLCaps):
    @pytest.fixture
    def capped_factory(self, tmp_path: Path) -> Iterator[Callable[..., SQLAlchemyCache]]:
        yield from self.factory_on(f"sqlite:///{tmp_path / 'cache.db'}")


@pytest.mark.postgres
class TestPostgresCaps(_SQLCaps):
    @pytest.fixture
    def capped_factory(self, postgres_url: str) -> Iterator[Callable[..., SQLAlchemyCache]]:
        yield from self.factory_on(postgres_url)


@pytest.mark.mysql
class TestMariaDBCaps(_SQLCaps):
    @pytest.fixture
    def capped_factory(self, mysql_url: str) -> Iterator[Callable[..., SQLAlchemyCache]]:
        yield from self.factory_on(mysql_url)


def test_expired_rows_are_swept_on_write_and_pruned(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    cache = SQLAlchemyCache(engine, ttl=10, clock=clock)
    for i in range(300):
        cache.update(f"old{i}", LLM, [Generation("x")])
    clock.now += 11
    # 256 writes of this object later, a bounded sweep removes the expired rows.
    for i in range(256 - 300 % 256):
        cache.update(f"new{i}", LLM, [Generation("y")])
    with engine.connect() as conn:
        left = conn.exec_driver_sql("SELECT count(*) FROM llm_cache_full WHERE prompt LIKE 'old%'").scalar_one()
    assert left == 0
    cache.update("soon", LLM, [Generation("z")])
    clock.now += 11
    assert cache.prune(dry_run=True).expired == 1 + (256 - 300 % 256)
    report = cache.prune(older_than=5)
    assert report.expired == 1 + (256 - 300 % 256) and report.remaining == 0


def test_caps_need_our_own_table(tmp_path: Path) -> None:
    from sqlalchemy import Column, Integer, String
    from sqlalchemy.orm import declarative_base

    Base = declarative_base()

    class Mine(Base):  # type: ignore[misc, valid-type]
        __tablename__ = "mine"
        id = Column(Integer, primary_key=True)
        prompt = Column(String)
        llm = Column(String)
        idx = Column(Integer)
        response = Column(String)

    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(ConfigurationError, match="own table"):
        SQLAlchemyCache(engine, Mine, max_entries=10)


# -- the pgvector semantic store ----------------------------------------------------------------
@pytest.mark.postgres
class TestPGVectorSemanticCaps(CapsContract):
    policies = ("lru",)
    supports_max_bytes = False
    tracks_hits = False  # oldest written first

    def tick(self, cache) -> None:  # type: ignore[no-untyped-def]
        cache._clock.now += 1.0

    @pytest.fixture
    def capped_factory(self, postgres_url: str) -> Iterator[Callable[..., object]]:
        pytest.importorskip("pgvector")
        from llm_cache.semantic.stores.pgvector import PGVectorSemanticCache
        from test_eviction import HashEmbeddings

        made: list[PGVectorSemanticCache] = []

        def factory(max_entries=None, max_bytes=None, policy="lru", evict_batch=None):  # type: ignore[no-untyped-def]
            assert max_bytes is None and policy == "lru"
            cache = PGVectorSemanticCache(
                postgres_url, HashEmbeddings(), table="llm_cache_semantic_caps",
                namespace=f"caps-{uuid.uuid4().hex[:10]}", clock=FakeClock(),
                max_entries=max_entries, evict_batch=evict_batch,
            )
            made.append(cache)
            return cache

        yield factory
        for cache in made:
            cache.clear()
            cache.close()
