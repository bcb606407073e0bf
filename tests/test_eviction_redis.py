"""RedisSemanticCache(max_entries=): the shared CapsContract on a real Redis 8."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llm_cache import Generation
from llm_cache.semantic.stores.redis import RedisSemanticCache
from llm_cache.testing.contract import LLM, CapsContract
from test_eviction import FakeClock, HashEmbeddings

pytest.importorskip("redis")
pytestmark = pytest.mark.redis


class TestRedisSemanticCaps(CapsContract):
    policies = ("lru",)
    supports_max_bytes = False

    def tick(self, cache: RedisSemanticCache) -> None:  # type: ignore[override]
        cache._clock.now += 1.0  # type: ignore[attr-defined]

    def flush(self, cache: RedisSemanticCache) -> None:  # type: ignore[override]
        cache.store.flush_hits()  # type: ignore[attr-defined]

    @pytest.fixture
    def capped_factory(self, redis_url: str) -> Iterator[Callable[..., RedisSemanticCache]]:
        made: list[RedisSemanticCache] = []

        def factory(max_entries: Any = None, max_bytes: Any = None, policy: str = "lru", evict_batch: Any = None) -> RedisSemanticCache:
            assert max_bytes is None and policy == "lru"
            cache = RedisSemanticCache(
                redis_url=redis_url, embedding=HashEmbeddings(), namespace=f"caps-{uuid.uuid4().hex[:8]}",
                clock=FakeClock(), max_entries=max_entries, evict_batch=evict_batch,
            )
            made.append(cache)
            return cache

        yield factory
        for cache in made:
            cache.clear()
            cache.close()


def test_prune_and_clear_take_the_lru_index(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    ns = f"caps-{uuid.uuid4().hex[:8]}"
    cache = RedisSemanticCache(redis_url=redis_url, embedding=HashEmbeddings(), namespace=ns, max_entries=50)
    for i in range(20):
        cache.update(f"q{i}", LLM, [Generation(f"a{i}")])
    report = cache.prune(max_entries=5)
    assert report.evicted == 15 and report.remaining == 5 and client.zcard(f"{ns}:lru") == 5
    assert cache.lookup("q19", LLM) is not None and cache.lookup("q0", LLM) is None
    cache.clear()
    assert not list(client.scan_iter(match=f"{ns}:*"))
    cache.close()
