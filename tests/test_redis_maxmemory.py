"""The Redis caches under ``maxmemory``: Redis evicts, llm-cache sees misses, never errors.

Each test starts a private Redis with a small ``maxmemory`` (the session's shared server is
never reconfigured). ``allkeys-lru`` evicts any key, ``volatile-ttl`` only keys with a TTL
(the cache needs ``ttl=`` then: without one, a full server refuses writes with OOM, which the
cache logs and counts as store errors while lookups keep working).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from llm_cache import Generation
from llm_cache.caches.redis import RedisCache
from llm_cache.semantic.stores.redis import RedisSemanticCache
from llm_cache.testing.contract import LLM
from llm_cache.testing.servers import RedisServer
from test_eviction import HashEmbeddings

pytest.importorskip("redis")
pytestmark = pytest.mark.redis

ANSWER = "an answer of some length " * 20  # ~500 bytes a value


@pytest.fixture
def small_redis(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    policy = request.param
    server = RedisServer(extra_args=["--maxmemory", "3mb", "--maxmemory-policy", policy])
    server.start()
    try:
        yield server
    finally:
        server.close()


def _fill(cache: RedisCache, n: int, tag: str = "p") -> None:
    for i in range(n):
        cache.update(f"{tag}{i}", LLM, [Generation(f"{ANSWER} {i}")])


@pytest.mark.parametrize("small_redis", ["allkeys-lru"], indirect=True)
def test_allkeys_lru_evicts_old_entries_as_misses(small_redis: RedisServer) -> None:
    cache = RedisCache(redis_url=small_redis.url, strict=True, socket_timeout=10)  # strict: any store error raises
    # Redis's LRU clock ticks once a second and eviction samples a few keys: on a fast
    # machine 8,000 writes share one tick and are evicted in no order. So the old entries
    # are written, then the clock is let tick (Redis's resolution, not this machine's
    # speed), then the new ones push them out.
    for i in range(3000):
        cache.update(f"p{i}", LLM, [Generation(f"{ANSWER} {i}")])
    time.sleep(1.5)
    for i in range(3000, 8000):  # ~5 MB of values in all, into 3 MB
        cache.update(f"p{i}", LLM, [Generation(f"{ANSWER} {i}")])
    info = small_redis.client().info("stats")
    assert info["evicted_keys"] > 0
    kept = [cache.lookup(f"p{i}", LLM) is not None for i in range(8000)]
    assert 0 < sum(kept) < 8000
    assert sum(kept[:3000]) / 3000 < sum(kept[3000:]) / 5000  # the least recently used went first
    assert kept[-1]  # the last written is never the one evicted
    assert cache.stats.errors == 0
    cache.close()


@pytest.mark.parametrize("small_redis", ["volatile-ttl"], indirect=True)
def test_volatile_ttl_evicts_entries_with_a_ttl(small_redis: RedisServer) -> None:
    cache = RedisCache(redis_url=small_redis.url, ttl=3600, strict=True, socket_timeout=10)
    _fill(cache, 8000)
    assert small_redis.client().info("stats")["evicted_keys"] > 0
    assert cache.lookup("p7999", LLM) is not None
    assert cache.stats.errors == 0
    cache.close()


@pytest.mark.parametrize("small_redis", ["volatile-ttl"], indirect=True)
def test_volatile_ttl_without_ttl_fails_writes_open(small_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """No TTL: nothing is evictable, a full server answers OOM. Writes are logged misses,
    lookups go on answering (the breaker may skip the store for a moment)."""
    cache = RedisCache(redis_url=small_redis.url, socket_timeout=10)
    with caplog.at_level(logging.WARNING, logger="llm_cache"):
        _fill(cache, 8000)
    assert cache.stats.errors > 0
    assert any("OOM" in r.getMessage() or "maxmemory" in r.getMessage() for r in caplog.records)
    cache.breaker.reset()
    assert cache.lookup("p0", LLM) is not None  # what was stored before the server filled up
    cache.close()


@pytest.mark.parametrize("small_redis", ["volatile-ttl", "allkeys-lru"], indirect=True)
def test_semantic_vector_sets_whose_payloads_were_evicted(small_redis: RedisServer) -> None:
    """Redis evicts payload keys (under allkeys-lru, now and then a whole vector set too):
    searches skip elements whose payload is gone and VREM them; every answer is a miss or
    the real entry, never an error. Under volatile-ttl only payloads (which carry the TTL)
    are evicted, so elements without payload are certain to be there before the searches."""
    # A generous socket timeout: this checks eviction, not latency (a loaded machine and a
    # full server make calls slow; a timeout would be a store error, tested elsewhere).
    cache = RedisSemanticCache(redis_url=small_redis.url, embedding=HashEmbeddings(), ttl=3600, socket_timeout=10)
    volatile = small_redis.client().config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-ttl"
    client = small_redis.client()
    # 2,000 entries: payloads past 3 MB, while the vector set (~1.2 kB an element, no TTL,
    # so never evicted under volatile-ttl) still fits; beyond ~2,400 it alone fills the
    # server and every write meets OOM (see docs/operations.md).
    for i in range(2000):
        cache.update(f"question {i}", LLM, [Generation(f"{ANSWER} {i}")])
    assert client.info("stats")["evicted_keys"] > 0
    ns = cache.store.namespace

    def orphans() -> int:
        """Vector-set elements whose payload key is gone."""
        count = 0
        for s in client.scan_iter(match=f"{ns}:v:*"):
            members = client.execute_command("VRANDMEMBER", s, client.execute_command("VCARD", s)) or []
            for m in members:
                m = m.decode() if isinstance(m, bytes) else m
                count += not client.exists(f"{ns}:e:{m}")
        return count

    # A write can still meet OOM when Redis cannot free enough in time (its eviction work per
    # command is bounded): a logged, dropped write. Lookups must never fail.
    cache.strict = True
    cache.breaker.reset()
    errors = cache.stats.errors
    before = orphans()
    assert before > 0 or not volatile  # elements whose payload Redis evicted are still in a set
    answered = 0
    for i in range(0, 2000, 2):
        generations = cache.lookup(f"question {i}", LLM)
        if generations is not None:
            assert generations[0].text == f"{ANSWER} {i}"
            answered += 1
    assert orphans() < before or before == 0  # the searches VREM-ed elements without payload
    assert 0 < answered < 1000 and cache.stats.errors == errors
    cache.close()
