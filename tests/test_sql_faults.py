"""SQLAlchemyCache when PostgreSQL goes away in the middle of cached model calls.

A dedicated PostgreSQL (not the session's: this test stops it) behind an ``llm_cache.llms.OpenAI``
model talking to the built-in fake OpenAI server. PostgreSQL is stopped in the middle of the
calls: every call must still answer (from the provider), store errors are counted, the breaker
skips the store while it is down, and hits come back once PostgreSQL is started again. The cost
of the outage per call is printed (run with -s to see it), never asserted.

Run: PYTHONPATH=src:tests pytest -p servers_fixtures tests/test_sql_faults.py -s
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine

from llm_cache.caches.sql import SQLAlchemyCache
from llm_cache.llms import OpenAI
from llm_cache.testing.servers import PostgresServer
from servers_fixtures import private_server

pytestmark = pytest.mark.postgres

PROMPTS = [f"Fault test question {i}: what is {i} squared?" for i in range(50)]


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, so that stopping it disturbs no other test."""
    yield from private_server(PostgresServer())


def fast_failing_engine(server: PostgresServer) -> Any:
    """Short timeouts everywhere, so a down or hung database costs milliseconds, not seconds.

    connect_timeout (libpq's minimum is 2 s) only matters for a host that does not answer; a
    stopped server on a reachable host refuses at once. statement_timeout bounds a query on a
    server that hangs. pool_timeout bounds the wait for a pooled connection.
    """
    return create_engine(
        server.url + "?connect_timeout=2",
        pool_size=4,
        max_overflow=4,
        pool_timeout=1,
        connect_args={"options": "-c statement_timeout=1000"},
    )


def make_llm(upstream: Any, cache: SQLAlchemyCache) -> OpenAI:
    return OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0, cache=cache)


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_postgres_outage_during_1000_cached_calls(pg: PostgresServer, upstream: Any) -> None:
    engine = fast_failing_engine(pg)
    cache = SQLAlchemyCache(engine, namespace="faults")
    llm = make_llm(upstream, cache)
    no_cache = OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0, cache=False)

    baseline: list[float] = []

    def measure_provider_alone() -> None:
        """The provider's own cost per call (no cache), for the overhead figure below."""
        for i in range(100):
            start = time.perf_counter()
            no_cache.generate([PROMPTS[i % len(PROMPTS)]])
            baseline.append(time.perf_counter() - start)

    # The fake provider is deterministic: these are the right answers (and this warms up).
    expected = {p: no_cache.invoke(p) for p in PROMPTS}
    measure_provider_alone()
    upstream.reset()

    timings: dict[str, list[float]] = {"up": [], "down": [], "back": []}
    cached: dict[str, list[bool]] = {"up": [], "down": [], "back": []}

    def call(i: int, phase: str) -> None:
        prompt = PROMPTS[i % len(PROMPTS)]
        start = time.perf_counter()
        result = llm.generate([prompt])
        timings[phase].append(time.perf_counter() - start)
        cached[phase].append(result.cached[0])
        assert result.generations[0][0].text == expected[prompt]  # every call answers, correctly

    for i in range(400):
        call(i, "up")
    assert cache.stats.errors == 0 and sum(cached["up"]) == 350  # 50 misses, then hits

    stop_started = time.perf_counter()
    pg.stop()  # "fast": the server terminates our pooled connections
    stop_seconds = time.perf_counter() - stop_started
    for i in range(400, 700):
        call(i, "down")
    errors_while_down = cache.stats.errors
    assert errors_while_down >= 1  # counted, not raised
    # The breaker stopped the calls to the store.
    assert cache.stats.skipped > 0 and cache.breaker.is_open
    assert not any(cached["down"])
    assert upstream.request_count == 50 + 300  # every call while down went to the provider
    measure_provider_alone()  # again, right beside the outage: the machine's load drifts
    upstream.reset()

    pg.start()
    wait_for(lambda: not cache.breaker.is_open)  # the background probe saw PostgreSQL again
    for i in range(700, 1000):
        call(i, "back")
    assert all(cached["back"]), "entries written before the outage are hits again"
    assert upstream.request_count == 0
    assert cache.stats.errors == errors_while_down

    base, base_p50 = statistics.mean(baseline), statistics.median(baseline)
    down, down_p50 = statistics.mean(timings["down"]), statistics.median(timings["down"])
    print(
        f"\nPostgreSQL outage, 1,000 calls (400 up, 300 down, 300 after restart; stop took {stop_seconds:.2f}s):\n"
        f"  provider alone (no cache): mean {base * 1e3:.2f} ms, p50 {base_p50 * 1e3:.2f} ms per call\n"
        f"  while PostgreSQL down:     mean {down * 1e3:.2f} ms, p50 {down_p50 * 1e3:.2f} ms per call; "
        f"overhead: mean {(down - base) * 1e3:+.2f} ms, p50 {(down_p50 - base_p50) * 1e3:+.2f} ms; "
        f"slowest {max(timings['down']) * 1e3:.1f} ms (call {timings['down'].index(max(timings['down'])) + 1} "
        f"of the outage; the breaker opened after {errors_while_down} errors)\n"
        f"  hits while up: p50 {statistics.median(t for t, c in zip(timings['up'], cached['up']) if c) * 1e3:.2f} ms; "
        f"after restart: p50 {statistics.median(timings['back']) * 1e3:.2f} ms\n"
        f"  store errors counted: {cache.stats.errors}, calls that skipped the store: {cache.stats.skipped}"
    )
    cache.clear()
    cache.close()
    engine.dispose()


def test_postgres_outage_async(pg: PostgresServer, upstream: Any) -> None:
    """The same through the native async path (psycopg async engine derived from the URL)."""
    engine = fast_failing_engine(pg)
    cache = SQLAlchemyCache(engine, namespace="faults-async")
    llm = make_llm(upstream, cache)
    prompts = PROMPTS[:20]

    async def calls(count: int) -> list[bool]:
        flags = []
        for i in range(count):
            result = await llm.agenerate([prompts[i % len(prompts)]])
            assert result.generations[0][0].text
            flags.append(result.cached[0])
        return flags

    async def scenario() -> None:
        up = await calls(100)
        assert sum(up) == 80
        pg.stop()
        started = time.perf_counter()
        down = await calls(100)
        down_seconds = time.perf_counter() - started
        assert not any(down) and cache.stats.errors >= 1 and cache.stats.skipped > 0
        pg.start()
        while cache.breaker.is_open:
            await asyncio.sleep(0.05)
        back = await calls(100)
        assert all(back)
        print(
            f"\nasync, PostgreSQL down: 100 calls in {down_seconds * 1e3:.0f} ms; errors {cache.stats.errors}"
        )
        await cache.aclear()
        await cache.aclose()

    asyncio.run(scenario())
    assert upstream.request_count == 20 + 100
    cache.close()
    engine.dispose()
