"""Store hardening (issue 12): bounded store calls, a breaker that sees failing writes, bad input
that never counts as a store failure, imports that report bad lines, malformed rows skipped.

Real servers: the session's PostgreSQL and Redis, MariaDB from MYSQL_URL. A hung server is a
:class:`~llm_cache.testing.freezer.FreezingProxy` in front of the session's server (frozen, it
holds every byte, as a stopped process does), so no shared server is ever stopped. Timings are
checked only as generous "did not hang" bounds; the figures are printed (run with -s).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_cache import CacheTimeoutError, Generation, SQLiteCache
from llm_cache.caches.base import BaseCache
from llm_cache.caches.memory import InMemoryCache
from llm_cache.cli import main
from llm_cache.llms import OpenAI
from llm_cache.testing.freezer import FreezingProxy
from llm_cache.urls import cache_from_url

LLM = '{"model":"hardening"}'
LONE = "\ud800"  # a lone surrogate: valid in a Python str, not in UTF-8
HANG_LIMIT = 20.0  # seconds: a call that has not returned by then hung (before the fix: forever)


def unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


def deeply_nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def returns_within(fn: Callable[[], Any], limit: float = HANG_LIMIT) -> tuple[Any, float]:
    """``fn()`` in a daemon thread; fail (rather than hang the suite) if it has not returned."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # surfaced below
            box["error"] = exc

    began = time.perf_counter()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    elapsed = time.perf_counter() - began
    assert not thread.is_alive(), f"the call had not returned after {limit:.0f}s"
    if "error" in box:
        raise box["error"]
    return box["value"], elapsed


def wait_until(condition: Callable[[], bool], limit: float = HANG_LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def model(upstream: Any, cache: BaseCache) -> OpenAI:
    return OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0, cache=cache)


# -- 1. a hung server costs at most the timeout, then the breaker skips it ----------------------
def _hung_server_run(cache: BaseCache, proxy: FreezingProxy, upstream: Any, capsys: Any, what: str) -> None:
    llm = model(upstream, cache)
    llm.generate(["warm prompt"])
    assert llm.generate(["warm prompt"]).cached == [True]
    errors_before = cache.stats.errors
    durations: list[float] = []
    proxy.freeze()
    try:
        for i in range(8):
            result, elapsed = returns_within(lambda: llm.generate([f"{what} hung {i}"]))
            assert result.cached == [False] and result.texts[0]
            durations.append(elapsed)
        assert cache.stats.errors - errors_before >= 3  # timeouts are store errors
        assert cache.breaker.is_open
        skipped = cache.stats.skipped
        returns_within(lambda: llm.generate(["warm prompt"]))  # breaker open: the store is not called
        assert cache.stats.skipped == skipped + 1
    finally:
        proxy.thaw()
    wait_until(lambda: not cache.breaker.is_open)
    wait_until(lambda: llm.generate(["warm prompt"]).cached == [True])  # hits resume
    with capsys.disabled():
        print(
            f"\n{what} frozen (timeout {getattr(cache, 'timeout', '?')} s): calls took "
            + ", ".join(f"{d * 1e3:.0f}" for d in durations)
            + " ms (first ones: lookup and write time out; then the breaker is open)"
        )


def _hung_behind_proxy(url: str, what: str, upstream: Any, capsys: Any, query: str = "") -> None:
    """A cache for ``url`` (a server URL) reached through a FreezingProxy, then frozen."""
    from sqlalchemy.engine import make_url

    target = make_url(url.replace("redis://", "redis+x://"))  # any URL with host and port
    with FreezingProxy(target.port, target.host or "127.0.0.1") as proxy:
        proxied = url.replace(f"{target.host}:{target.port}", f"127.0.0.1:{proxy.port}", 1)
        cache = cache_from_url(proxied + query, namespace=unique(f"hung-{what}"))
        try:
            _hung_server_run(cache, proxy, upstream, capsys, what)
        finally:
            cache.clear()
            cache.close()


@pytest.mark.postgres
def test_a_hung_postgres_costs_at_most_the_timeout(postgres_url: str, upstream: Any, capsys: Any) -> None:
    # The default timeout (0.5 s): before issue 12 the first lookup never returned.
    _hung_behind_proxy(postgres_url, "PostgreSQL", upstream, capsys)


@pytest.mark.mysql
def test_a_hung_mariadb_costs_at_most_the_timeout(mysql_url: str, upstream: Any, capsys: Any) -> None:
    _hung_behind_proxy(mysql_url, "MariaDB", upstream, capsys)  # the default timeout


@pytest.mark.redis
def test_a_hung_redis_costs_at_most_the_timeout(redis_url: str, upstream: Any, capsys: Any) -> None:
    _hung_behind_proxy(redis_url, "Redis", upstream, capsys, "?timeout=0.3")


@pytest.mark.postgres
def test_strict_mode_raises_a_timeout(postgres_server: Any) -> None:
    from sqlalchemy import create_engine

    from llm_cache.caches.sql import SQLAlchemyCache

    port = postgres_server.port
    with FreezingProxy(port) as proxy:
        engine = create_engine(proxy.url_for(postgres_server.url, port))
        cache = SQLAlchemyCache(engine, namespace=unique("strict"), timeout=0.3, strict=True)
        cache.update("p", LLM, [Generation("a")])
        with proxy.frozen_for_block():
            with pytest.raises(CacheTimeoutError, match="within 0.3s"):
                returns_within(lambda: cache.lookup("p", LLM))
        cache.clear()
        cache.close()
        engine.dispose()


def test_timeout_in_urls_and_arguments(tmp_path: Path) -> None:
    from llm_cache.errors import ConfigurationError

    cache = cache_from_url(f"sqlite:///{tmp_path / 'u.db'}?timeout=0.2")
    assert isinstance(cache, SQLiteCache) and cache.timeout == 0.2
    assert SQLiteCache(tmp_path / "d.db").timeout == 0.5  # the default: well under a second
    for bad in ("0", "-1", "soon", "nan"):
        with pytest.raises(ConfigurationError, match="timeout"):
            cache_from_url(f"sqlite:///{tmp_path / 'u.db'}?timeout={bad}")


# -- 2. a store that only fails writes opens the breaker -----------------------------------------
@pytest.fixture
def locked_sqlite(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    """An SQLite cache file whose write lock another connection holds (BEGIN IMMEDIATE)."""
    path = tmp_path / "locked.db"
    SQLiteCache(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        yield path, holder
    finally:
        holder.close()


def test_failing_writes_alone_open_the_breaker(locked_sqlite: tuple[Path, sqlite3.Connection], upstream: Any, capsys: Any) -> None:
    path, holder = locked_sqlite
    cache = SQLiteCache(path)  # the default timeout, 0.5 s (before issue 12: a 10 s busy wait)
    # The probe is a lookup, which works here: it would close the breaker half-open every
    # probe_interval (and a slow machine would see a fourth failed write). Not in this test.
    cache.breaker.probe_interval = 3600
    llm = model(upstream, cache)
    llm.generate(["stored before the lock"])
    holder.execute("BEGIN IMMEDIATE")
    durations = []
    try:
        for i in range(6):
            result, elapsed = returns_within(lambda: llm.generate([f"while locked {i}"]))
            assert result.cached == [False]
            durations.append(elapsed)
        # Lookups kept working (WAL readers are not blocked); every write failed.
        assert llm.generate(["stored before the lock"]).cached == [True] or cache.breaker.is_open
        assert cache.stats.errors == 3, cache.stats
        assert cache.breaker.is_open
    finally:
        holder.execute("ROLLBACK")
    cache.breaker.reset()  # what the probe does after probe_interval
    llm.generate(["after the lock"])
    assert llm.generate(["after the lock"]).cached == [True]
    cache.close()
    with capsys.disabled():
        print("\nSQLite write lock held elsewhere (timeout 0.5 s): misses took " + ", ".join(f"{d * 1e3:.0f}" for d in durations) + " ms")


def test_a_successful_lookup_does_not_hide_failing_writes() -> None:
    from llm_cache.caches.base import CircuitBreaker

    breaker = CircuitBreaker(failure_threshold=3, probe_interval=60)
    for _ in range(3):
        breaker.record_success("lookup")
        assert not breaker.is_open
        breaker.record_failure(lambda: None, "update")
    assert breaker.is_open


def test_writes_come_back_half_open_after_a_successful_probe() -> None:
    from llm_cache.caches.base import CircuitBreaker

    breaker = CircuitBreaker(failure_threshold=3, probe_interval=0.01)
    for _ in range(3):
        breaker.record_failure(lambda: None, "update")
    assert breaker.is_open
    wait_until(lambda: not breaker.is_open)  # the probe (a lookup) answered
    breaker.record_failure(lambda: None, "update")
    assert breaker.is_open  # one more failed write reopens it at once
    wait_until(lambda: not breaker.is_open)
    breaker.record_success("update")
    breaker.record_failure(lambda: None, "update")
    assert not breaker.is_open  # a successful write cleared the count


# -- 7. bad input is never a store failure ---------------------------------------------------------
def _bad_input_never_trips_the_breaker(cache: BaseCache) -> None:
    good = [Generation("fine")]
    for i in range(85):  # the attack: 85 requests in a row
        cache.update(f"prompt {i} {LONE}", LLM, good)
        cache.update(f"prompt {i}", LLM, [Generation(f"text {LONE}")])
        cache.update(f"prompt {i}", LLM, [Generation("x", generation_info={"metadata": LONE})])
        cache.update(f"prompt {i}", LLM, [Generation("x", generation_info=deeply_nested(5000))])
        stored = cache.lookup(f"prompt {i} {LONE}", LLM)
        assert stored == (good if cache.accepts_lone_surrogates else None)
        assert cache.lookup("prompt", LLM + LONE) is None
    assert cache.stats.errors == 0 and not cache.breaker.is_open
    # Every write the store cannot hold is rejected (Redis and the in-memory cache keep lone
    # surrogates as they are; deep nesting no store takes); a lookup is a miss, counted as
    # rejected when the store could not even be asked (PostgreSQL and MariaDB are asked by key
    # hash and just miss).
    if cache.accepts_lone_surrogates:
        assert cache.stats.rejected == 85 and cache.stats.updates == 85 * 3
        assert cache.stats.misses == 85 and cache.stats.hits == 85
    else:
        assert 85 * 4 <= cache.stats.rejected <= 85 * 6 and cache.stats.updates == 0
        assert cache.stats.misses == 85 * 2
    # The cache still works for everybody else.
    cache.update("a good prompt", LLM, good)
    assert cache.lookup("a good prompt", LLM) == good
    assert cache.stats.errors == 0


def test_bad_input_memory() -> None:
    _bad_input_never_trips_the_breaker(InMemoryCache())


def test_bad_input_sqlite(tmp_path: Path) -> None:
    with SQLiteCache(tmp_path / "bad.db") as cache:
        _bad_input_never_trips_the_breaker(cache)


@pytest.mark.parametrize(
    "url_fixture",
    [
        pytest.param("redis_url", marks=pytest.mark.redis),
        pytest.param("postgres_url", marks=pytest.mark.postgres),
        pytest.param("mysql_url", marks=pytest.mark.mysql),
    ],
)
def test_bad_input_on_servers(url_fixture: str, request: pytest.FixtureRequest) -> None:
    cache = cache_from_url(request.getfixturevalue(url_fixture), namespace=unique("bad-input"))
    try:
        _bad_input_never_trips_the_breaker(cache)
    finally:
        cache.clear()
        cache.close()


def test_bad_input_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with SQLiteCache(tmp_path / "log.db") as cache, caplog.at_level("DEBUG", logger="llm_cache"):
        for _ in range(5):
            cache.update(LONE, LLM, [Generation("a")])
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "not valid UTF-8" in warnings[0].getMessage()
    assert LONE not in warnings[0].getMessage()


# -- 9. import reports every bad line and goes on ----------------------------------------------------
def test_import_reports_unencodable_and_too_deep_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = {"prompt": "p1", "llm_string": "l", "generations": [{"text": "one"}]}
    nested = "[" * 100_000 + "]" * 100_000
    lines = [
        json.dumps(good),
        json.dumps({**good, "prompt": "p2" + LONE}),  # json.dumps escapes it: \ud800
        json.dumps({**good, "prompt": "p3", "generations": [{"text": "x", "generation_info": {"a": LONE}}]}),
        '{"prompt": "p4", "llm_string": "l", "generations": [{"text": "x", "generation_info": {"deep": ' + nested + "}}]}",
        json.dumps({**good, "prompt": "p5"}),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    target = tmp_path / "t.db"
    code = main(["import", "--cache", f"sqlite:///{target}", str(source)])
    err = capsys.readouterr().err
    assert code == 1
    assert "line 2: the prompt holds text that is not valid UTF-8" in err
    assert "line 3: a generation holds text that is not valid UTF-8" in err
    assert "line 4: JSON nested too deeply" in err and "Traceback" not in err
    assert "imported 2 entries, 3 bad lines skipped" in err
    with SQLiteCache(target) as cache:
        assert sorted(e.prompt for e in cache.entries()) == ["p1", "p5"]


def test_import_skips_lines_over_the_size_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = {"prompt": "p1", "llm_string": "l", "generations": [{"text": "one"}]}
    lines = [json.dumps(good), json.dumps({**good, "prompt": "p2", "generations": [{"text": "y" * 50_000}]}), json.dumps({**good, "prompt": "p3"})]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines))  # the last line has no newline
    target = tmp_path / "t.db"
    code = main(["import", "--cache", f"sqlite:///{target}", "--max-line-bytes", "4096", str(source)])
    err = capsys.readouterr().err
    assert code == 1
    assert "line 2: longer than --max-line-bytes (4096 bytes)" in err
    assert "imported 2 entries, 1 bad line skipped" in err
    with SQLiteCache(target) as cache:
        assert sorted(e.prompt for e in cache.entries()) == ["p1", "p3"]


# -- 10. a malformed stored row is skipped, never the whole partition --------------------------------
def test_a_malformed_vector_row_does_not_break_its_partition(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    from llm_cache.semantic.stores.base import SemanticEntry
    from llm_cache.semantic.stores.local import DB_NAME, LocalVectorStore

    store = LocalVectorStore(tmp_path / "vs", dimension=4)

    def entry(i: int) -> SemanticEntry:
        return SemanticEntry(f"{i:064x}", "part", f"text {i}", f"prompt {i}", LLM, json.dumps({"v": 1, "g": [{"text": str(i)}]}), 1.0)

    for i in range(5):
        store.add(entry(i), np.array([1.0, i / 10, 0.0, 0.0], dtype=np.float32))
    raw = sqlite3.connect(tmp_path / "vs" / DB_NAME)
    raw.execute("UPDATE semantic_entries SET vector = x'0102' WHERE key = ?", (f"{2:064x}",))
    raw.commit()
    raw.close()
    found = store.search("part", np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32), k=5)
    assert sorted(n.entry.text for n in found) == ["text 0", "text 1", "text 3", "text 4"]
    assert store.malformed_rows >= 1
    store.close()
    # Reopened: the index path (a partition larger than exact_limit) skips it too.
    reopened = LocalVectorStore(tmp_path / "vs", dimension=4, exact_limit=2)
    found = reopened.search("part", np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32), k=5)
    assert "text 2" not in [n.entry.text for n in found] and len(found) >= 3
    assert reopened.malformed_rows >= 1
    reopened.close()


def test_a_corrupt_semantic_candidate_is_skipped_for_the_next(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    from llm_cache.semantic.cache import SemanticCache
    from llm_cache.semantic.stores.local import DB_NAME

    cache = SemanticCache(data_dir=str(tmp_path / "sem"), threshold=0.5, guards=[])
    cache.update("What is the capital of France?", LLM, [Generation("Paris")])
    cache.update("What's the capital city of France?", LLM, [Generation("Paris, France")])
    raw = sqlite3.connect(tmp_path / "sem" / DB_NAME)
    raw.execute("UPDATE semantic_entries SET response = 'not json' WHERE prompt = ?", ("What's the capital city of France?",))
    raw.commit()
    raw.close()
    answer = cache.lookup("Tell me the capital city of France?", LLM)
    assert answer is not None and answer[0].text == "Paris"
    assert cache.semantic_stats["corrupt_candidates"] >= 1 and cache.stats.errors == 0
    assert not cache.breaker.is_open
    cache.close()


@pytest.mark.postgres
def test_a_hung_pgvector_store_costs_at_most_the_timeout(postgres_server: Any) -> None:
    np = pytest.importorskip("numpy")
    from llm_cache.semantic.stores.base import SemanticEntry
    from llm_cache.semantic.stores.pgvector import PGVectorStore

    port = postgres_server.port
    with FreezingProxy(port) as proxy:
        store = PGVectorStore(
            proxy.url_for(postgres_server.url, port), table="hung_vectors", namespace=unique("hung"), dimension=4, timeout=0.3
        )
        vector = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
        store.add(SemanticEntry("a" * 64, "p", "t", "t", LLM, '{"v":1,"g":[{"text":"x"}]}', 1.0), vector)
        assert store.get("a" * 64) is not None
        with proxy.frozen_for_block():
            for call in (lambda: store.get("a" * 64), lambda: store.search("p", vector)):
                with pytest.raises(CacheTimeoutError):
                    returns_within(call)
        wait_until(lambda: _answers(store))
        assert [n.entry.key for n in store.search("p", vector)] == ["a" * 64]
        store.clear()
        store.close()


def _answers(store: Any) -> bool:
    try:
        store.get("0" * 64)
    except Exception:
        return False
    return True


def test_a_corrupt_row_is_skipped_by_entries_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "corrupt.db"
    with SQLiteCache(path) as cache:
        for i in range(3):
            cache.update(f"p{i}", LLM, [Generation(str(i))])
    raw = sqlite3.connect(path)
    raw.execute("UPDATE llm_cache SET response = 'not json' WHERE prompt = 'p1'")
    raw.commit()
    raw.close()
    with SQLiteCache(path) as cache:
        assert sorted(e.prompt for e in cache.entries()) == ["p0", "p2"]
        assert cache.stats.corrupt == 1 and cache.stats.errors == 0
        assert cache.lookup("p1", LLM) is None and cache.lookup("p0", LLM) == [Generation("0")]
    dump = tmp_path / "dump.jsonl"
    assert main(["export", "--cache", f"sqlite:///{path}", str(dump)]) == 0
    assert len(dump.read_text().splitlines()) == 2


@pytest.mark.postgres
def test_a_hung_postgres_through_an_async_engine(postgres_url: str) -> None:
    import asyncio

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    from llm_cache.caches.sql import SQLAlchemyCache

    target = make_url(postgres_url)
    with FreezingProxy(target.port) as proxy:
        url = target.set(port=proxy.port).render_as_string(hide_password=False)
        engine, async_engine = create_engine(url), create_async_engine(url)
        cache = SQLAlchemyCache(engine, async_engine=async_engine, namespace=unique("hung-async"), timeout=0.3)

        async def scenario() -> None:
            await cache.aupdate("p", LLM, [Generation("a")])
            assert await cache.alookup("p", LLM) == [Generation("a")]
            with proxy.frozen_for_block():
                for _ in range(3):
                    began = time.perf_counter()
                    assert await cache.alookup("p", LLM) is None
                    # A generous bound (16x the timeout) that catches a wait on the cancelled
                    # call's cleanup (asyncio.wait_for: 10 s here), not a slow machine.
                    assert time.perf_counter() - began < 5.0
            assert cache.stats.errors == 3 and cache.breaker.is_open
            await async_engine.dispose()

        returns_within(lambda: asyncio.run(scenario()))
        wait_until(lambda: not cache.breaker.is_open)
        cache.clear()
        cache.close()
        engine.dispose()


@pytest.mark.postgres
def test_a_cache_made_while_postgres_hangs_starts_failing_open(postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    target = make_url(postgres_url)
    with FreezingProxy(target.port) as proxy:
        proxy.freeze()
        url = target.set(port=proxy.port).render_as_string(hide_password=False)
        try:
            cache, _ = returns_within(lambda: cache_from_url(url, namespace=unique("born-hung")), limit=40)
            assert returns_within(lambda: cache.lookup("p", LLM))[0] is None
            assert cache.stats.errors == 1
        finally:
            proxy.thaw()

        def stored_and_found() -> bool:  # the table is created by the first call that gets through
            cache.update("p", LLM, [Generation("a")])
            return cache.lookup("p", LLM) == [Generation("a")]

        wait_until(stored_and_found)
        cache.clear()
        cache.close()


def test_a_hung_momento_costs_at_most_the_timeout() -> None:
    pytest.importorskip("momento")
    from momento import CredentialProvider

    from llm_cache.caches.momento import MomentoCache
    from llm_cache.testing.momento_emulator import MomentoEmulator

    with MomentoEmulator() as emulator, FreezingProxy(emulator.port) as proxy:
        cache = MomentoCache.from_client_params(
            "hung",
            ttl=60,
            credential_provider=CredentialProvider.for_momento_local("127.0.0.1", proxy.port),
            configuration=emulator.configuration(),
            timeout=0.3,
        )
        try:
            cache.update("p", LLM, [Generation("a")])
            assert cache.lookup("p", LLM) == [Generation("a")]
            with proxy.frozen_for_block():
                for _ in range(3):
                    _, elapsed = returns_within(lambda: cache.lookup("p", LLM))
                    assert elapsed < 5.0  # timeout=0.3 s; without it, the Laptop configuration waits 15 s
            assert cache.stats.errors == 3 and cache.breaker.is_open
        finally:
            cache.close()
