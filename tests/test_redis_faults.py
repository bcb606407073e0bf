"""RedisCache when Redis goes away: every model call still answers, and hits come back.

The issue's scenario: an OpenAI model (against the built-in fake server) with a RedisCache,
1,000 calls over a rotating set of prompts; Redis is stopped in the middle and started again.
These tests use a Redis server of their own, so stopping it disturbs no other test.

Timings are printed, never asserted. Run with:
    PYTHONPATH=src:tests pytest -p servers_fixtures tests/test_redis_faults.py
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from typing import Any, Iterator

import pytest
import redis

from llm_cache.caches.redis import RedisCache
from llm_cache.errors import CacheBackendError
from llm_cache.llms import OpenAI
from llm_cache.testing.contract import LLM, sample_generations
from llm_cache.testing.servers import RedisServer
from servers_fixtures import private_server

pytestmark = pytest.mark.redis

PROMPTS = [f"Question {i}: what is {i} squared?" for i in range(50)]
CALLS, STOP_AT, START_AT = 1_000, 300, 700
BREAKER_WAIT = 15.0  # seconds we allow the background probe to notice the server is back


@pytest.fixture(scope="module")
def fault_server() -> Iterator[RedisServer]:
    """A managed Redis of this module's own (the session's server must stay up)."""
    yield from private_server(RedisServer())


def make_llm(upstream: Any, cache: Any) -> OpenAI:
    return OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0, cache=cache)


def wait_for_breaker_to_close(cache: RedisCache) -> float:
    began = time.monotonic()
    while cache.breaker.is_open and time.monotonic() - began < BREAKER_WAIT:
        time.sleep(0.02)
    assert not cache.breaker.is_open, f"the breaker did not close within {BREAKER_WAIT}s of Redis coming back"
    return time.monotonic() - began


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1e3:7.3f} ms, mean {statistics.fmean(values) * 1e3:7.3f} ms"


def test_redis_stopped_in_the_middle_of_1000_calls(fault_server: RedisServer, upstream: Any, capsys: Any) -> None:
    cache = RedisCache(redis_url=fault_server.url, namespace=f"faults-{uuid.uuid4().hex[:8]}")
    llm = make_llm(upstream, cache)
    expected = {p: make_llm(upstream, False)(p) for p in PROMPTS}  # the provider's answers
    upstream.reset()

    durations: dict[str, list[float]] = {"up": [], "down": [], "back": []}
    snapshots: dict[str, tuple[int, int, int, int, int]] = {}
    wrong: list[int] = []

    def snapshot() -> tuple[int, int, int, int, int]:
        s = cache.stats
        return (s.hits, s.misses, s.errors, s.skipped, upstream.request_count)

    phase = "up"
    for i in range(CALLS):
        if i == STOP_AT:
            snapshots["before stop"] = snapshot()
            fault_server.stop()
            phase = "down"
        if i == START_AT:
            snapshots["before start"] = snapshot()
            fault_server.start()
            waited = wait_for_breaker_to_close(cache)
            snapshots["after start"] = snapshot()
            phase = "back"
        prompt = PROMPTS[i % len(PROMPTS)]
        began = time.perf_counter()
        answer = llm(prompt)
        durations[phase].append(time.perf_counter() - began)
        if answer != expected[prompt]:
            wrong.append(i)
    snapshots["end"] = snapshot()

    # Direct cost of the cache's two calls per model call while Redis is down (breaker open)
    # and up, without the HTTP round trip to the provider.
    with fault_server.stopped():
        down_cache = RedisCache(redis_url=fault_server.url, namespace="faults-down")
        first_failures = []
        for _ in range(3):  # until the breaker opens: real connection attempts, refused
            began = time.perf_counter()
            down_cache.lookup("p", LLM)
            first_failures.append(time.perf_counter() - began)
        assert down_cache.breaker.is_open
        down = []
        for i in range(2_000):
            began = time.perf_counter()
            down_cache.lookup(f"p{i}", LLM)
            down_cache.update(f"p{i}", LLM, sample_generations())
            down.append(time.perf_counter() - began)
    up_cache = RedisCache(redis_url=fault_server.url, namespace="faults-up")
    up_cache.update("p", LLM, sample_generations())
    up = []
    for _ in range(2_000):
        began = time.perf_counter()
        up_cache.lookup("p", LLM)
        up.append(time.perf_counter() - began)
    up_cache.clear()
    # The same model calls with no cache at all: what a call costs when only the provider answers.
    no_cache_llm, no_cache = make_llm(upstream, False), []
    for i in range(200):
        began = time.perf_counter()
        no_cache_llm(PROMPTS[i % len(PROMPTS)])
        no_cache.append(time.perf_counter() - began)

    with capsys.disabled():
        print("\n-- RedisCache fault test: 1,000 OpenAI calls, Redis stopped at call 300, started at 700 --")
        print(f"model call, Redis up (calls 0-299):       {ms(durations['up'])}")
        print(f"model call, Redis down (calls 300-699):   {ms(durations['down'])}")
        print(f"model call, Redis back (calls 700-999):   {ms(durations['back'])}")
        print(f"model call, no cache at all (200 calls):  {ms(no_cache)}")
        print(f"breaker closed {waited:.2f} s after Redis was started again")
        print(f"cache cost while down, first 3 calls (connection refused): "
              f"{', '.join(f'{t * 1e3:.3f} ms' for t in first_failures)}")
        print(f"cache cost while down, breaker open (lookup + update):      {ms(down)}")
        print(f"cache cost while up (a hit):                                {ms(up)}")
        print(f"stats (hits, misses, errors, skipped, provider requests): {snapshots}")
        print(f"final {cache.stats.as_dict()}")

    assert wrong == []  # every call returned the provider's answer
    hits, misses, errors, skipped, requests = snapshots["before stop"]
    assert (hits, misses, errors, requests) == (250, 50, 0, 50)
    hits2, misses2, errors2, skipped2, requests2 = snapshots["before start"]
    assert hits2 == hits  # no hit while Redis was down
    assert requests2 - requests == START_AT - STOP_AT  # every call went to the provider
    assert errors2 >= cache.breaker.failure_threshold  # errors were counted ...
    assert skipped2 > 0  # ... and the breaker then kept the calls off the store
    hits3, misses3, errors3, _, requests3 = snapshots["end"]
    # The restarted server is empty (no persistence): one miss per prompt, then hits again.
    assert requests3 - requests2 == len(PROMPTS)
    assert hits3 - hits2 == CALLS - START_AT - len(PROMPTS)
    assert errors3 == errors2  # nothing failed after the breaker closed
    cache.clear()
    cache.close()


def test_async_calls_survive_an_outage_and_hits_resume(fault_server: RedisServer, upstream: Any) -> None:
    cache = RedisCache(redis_url=fault_server.url, namespace=f"afaults-{uuid.uuid4().hex[:8]}")
    llm = make_llm(upstream, cache)
    prompts = PROMPTS[:20]
    expected = {p: make_llm(upstream, False)(p) for p in prompts}

    async def calls(n: int) -> list[bool]:
        return [await llm.ainvoke(prompts[i % len(prompts)]) == expected[prompts[i % len(prompts)]] for i in range(n)]

    async def scenario() -> None:
        assert all(await calls(100))  # 20 misses, 80 hits
        assert cache.stats.hits == 80
        fault_server.stop()
        try:
            assert all(await calls(100))
            assert cache.stats.hits == 80 and cache.stats.errors >= cache.breaker.failure_threshold
        finally:
            fault_server.start()
        began = time.monotonic()
        while cache.breaker.is_open and time.monotonic() - began < BREAKER_WAIT:
            await asyncio.sleep(0.02)
        assert not cache.breaker.is_open
        errors = cache.stats.errors
        assert all(await calls(100))  # the async client reconnects: 20 misses, then hits
        assert cache.stats.hits == 160 and cache.stats.errors == errors

    asyncio.run(scenario())
    cache.clear()
    cache.close()


def test_strict_mode_raises_and_clear_never_fails_silently(fault_server: RedisServer) -> None:
    strict = RedisCache(redis_url=fault_server.url, namespace="strict", strict=True)
    lenient = RedisCache(redis_url=fault_server.url, namespace="lenient")
    with fault_server.stopped():
        with pytest.raises(CacheBackendError, match="RedisCache lookup failed"):
            strict.lookup("p", LLM)
        with pytest.raises(CacheBackendError, match="RedisCache update failed"):
            strict.update("p", LLM, sample_generations())
        with pytest.raises(CacheBackendError, match="RedisCache clear failed"):
            lenient.clear()
        with pytest.raises(CacheBackendError, match="RedisCache clear failed"):
            asyncio.run(lenient.aclear())
        assert lenient.lookup("p", LLM) is None and lenient.stats.errors == 1
    strict.update("p", LLM, sample_generations())
    assert strict.lookup("p", LLM) == sample_generations()
    strict.clear()


def test_a_hung_server_costs_one_socket_timeout(fault_server: RedisServer, capsys: Any) -> None:
    """DEBUG SLEEP freezes the server: the lookup gives up after socket_timeout (0.25 s)."""
    cache = RedisCache(redis_url=fault_server.url, namespace="hung")
    cache.update("p", LLM, sample_generations())
    assert cache.lookup("p", LLM) == sample_generations()
    admin = redis.Redis.from_url(fault_server.url)
    sleeper = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", "1.5"))
    sleeper.start()
    time.sleep(0.2)  # let the server start sleeping
    began = time.perf_counter()
    assert cache.lookup("p", LLM) is None
    elapsed = time.perf_counter() - began
    sleeper.join()
    admin.close()
    assert cache.stats.errors == 1 and not cache.breaker.is_open
    assert cache.lookup("p", LLM) == sample_generations()  # the next call reconnects
    with capsys.disabled():
        print(f"\nlookup against a frozen Redis gave up after {elapsed * 1e3:.0f} ms (socket_timeout 250 ms)")
    cache.clear()


def test_breaker_probe_is_a_ping(fault_server: RedisServer) -> None:
    cache = RedisCache(redis_url=fault_server.url, namespace="probe")
    with fault_server.stopped():
        with pytest.raises(redis.ConnectionError):
            cache._probe()
    cache._probe()  # answers again once the server is back
