"""Scale-out: coalescing across proxy instances on one Redis / PostgreSQL, ``serve --workers``.

Against the real Redis and PostgreSQL the test session starts, and the built-in upstream
(which counts the requests it gets and can answer slowly). Several proxies are either
in-process servers on their own ports (each its own app, flights and lease store: what
separate instances are) or ``llm-cache serve`` subprocesses where a process must die.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_cache.proxy import ProxyServer
from llm_cache.proxy.leases import (
    LeasePolicy,
    Step,
    after_acquire,
    after_wake,
    coordinate,
    lease_name,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")
HUNG = 60.0  # "did not hang" bound for anything here


def chat_body(prompt: str, stream: bool = False) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    }


def post(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": "Bearer sk-scale"},
        timeout=HUNG,
    )


def stream_text(url: str, body: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The concatenated content of a streamed chat answer, and the response headers."""
    text = []
    with httpx.stream(
        "POST",
        url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": "Bearer sk-scale"},
        timeout=HUNG,
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices") or []:
                    text.append(choice.get("delta", {}).get("content") or "")
        return "".join(text), dict(response.headers)


def spread(urls: list[str], count: int, call: Callable[[str], Any]) -> list[Any]:
    """``count`` concurrent calls, round-robin over ``urls``, all released at once."""
    barrier = threading.Barrier(count)

    def one(index: int) -> Any:
        barrier.wait(HUNG)
        return call(urls[index % len(urls)])

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def with_namespace(url: str) -> str:
    """A fresh namespace; and a generous store timeout: on a loaded machine the default
    (0.5 s) turns slow lookups into misses by design, and each such miss may rightly call
    upstream again, which is not what these tests are about."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}namespace=scale-{uuid.uuid4().hex[:8]}&timeout=10"


@pytest.fixture(params=["redis", "postgres"])
def shared_cache(request: pytest.FixtureRequest) -> str:
    """A cache URL every instance shares: Redis or PostgreSQL (each test its own namespace)."""
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "postgres_url")
    return with_namespace(url)


# ------------------------------------------------------------------ the pure decisions


def test_lease_decisions() -> None:
    policy = LeasePolicy(ttl=3, poll=0.1, wait=10)
    assert after_acquire(True, 0, policy) is Step.LEAD
    assert after_acquire(False, 0, policy) is Step.WAIT
    assert after_acquire(False, 10, policy) is Step.ALONE  # waited the upstream timeout
    assert after_acquire(None, 0, policy) is Step.ALONE  # the store failed: fail open
    assert after_wake(True, 0, policy) is Step.SERVE
    assert after_wake(False, 1, policy) is Step.ACQUIRE  # leader failed or died: take over
    assert after_wake(False, 10, policy) is Step.ALONE
    assert policy.renew_every == 1
    name = lease_name("the prompt sk-secret", "llm")
    assert len(name) == 64 and "secret" not in name
    with pytest.raises(ValueError):
        LeasePolicy(ttl=0)


def test_which_caches_coalesce_across_processes() -> None:
    from llm_cache.proxy.leases import store_for_url

    for url in ("redis://127.0.0.1:1/0?namespace=a", "semantic+redis://127.0.0.1:1/0"):
        assert type(store_for_url(url)).__name__ == "RedisLeaseStore"
        assert store_for_url(url)._url == "redis://127.0.0.1:1/0"  # options are the cache's
    for url in ("postgresql+psycopg://u:p@h/db", "semantic+postgresql://u:p@h/db"):
        assert type(store_for_url(url)).__name__ == "PostgresLeaseStore"
    for url in ("memory://", "sqlite:///x.db", "semantic:///dir"):
        assert store_for_url(url) is None  # one process's (or one machine's) store


class _BrokenStore:
    """A lease store whose every call fails (or hangs): coordination must not block."""

    def __init__(self, hang: bool) -> None:
        self.policy = LeasePolicy(op_timeout=0.2, poll=0.05, wait=5)
        self.hang = hang

    async def session(self, name: str) -> Any:
        if self.hang:
            await asyncio.sleep(3600)
        raise ConnectionError("lease store down")

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("hang", [False, True])
def test_a_broken_lease_store_means_going_upstream_alone(hang: bool) -> None:
    async def nothing() -> None:
        return None

    started = time.monotonic()
    outcome = asyncio.run(coordinate(_BrokenStore(hang), "0" * 64, nothing))
    assert outcome.step is Step.ALONE
    assert time.monotonic() - started < HUNG


def test_a_broken_lease_store_never_fails_a_request(make_proxy: Any, upstream: Any) -> None:
    # A Redis URL on a port where nothing listens: the cache and the lease store are down;
    # the proxy still answers every request from upstream.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proxies = [make_proxy(f"redis://127.0.0.1:{port}/0?timeout=0.5") for _ in range(2)]
    answers = spread([p.url for p in proxies], 6, lambda url: post(url, chat_body("down")))
    assert all(a.status_code == 200 for a in answers)
    assert 2 <= upstream.request_count <= 6  # one per process at least (no shared lease)


# ------------------------------------------------------------- across instances


def test_identical_misses_across_instances_make_one_upstream_call(
    make_proxy: Any, upstream: Any, shared_cache: str
) -> None:
    upstream.latency = 0.5
    proxies = [make_proxy(shared_cache) for _ in range(3)]
    prompt = f"coalesce me {uuid.uuid4()}"
    answers = spread([p.url for p in proxies], 50, lambda url: post(url, chat_body(prompt)))
    assert [a.status_code for a in answers] == [200] * 50
    assert len({a.json()["choices"][0]["message"]["content"] for a in answers}) == 1
    assert upstream.request_count == 1
    assert sum(a.headers["x-cache"] == "MISS" for a in answers) == 1


def test_streamed_misses_across_instances_are_coalesced(
    make_proxy: Any, upstream: Any, redis_url: str
) -> None:
    upstream.latency = 0.5
    cache = with_namespace(redis_url)
    proxies = [make_proxy(cache) for _ in range(3)]
    prompt = f"stream me {uuid.uuid4()}"
    # Streamed and non-streamed requests share one entry, so they coalesce with each other.
    results = spread(
        [p.url for p in proxies],
        12,
        lambda url: stream_text(url, chat_body(prompt, stream=True)),
    )
    plain = post(proxies[0].url, chat_body(prompt))
    assert upstream.request_count == 1
    texts = {text for text, _ in results}
    assert texts == {plain.json()["choices"][0]["message"]["content"]}
    assert sum(headers["x-cache"] == "MISS" for _, headers in results) == 1


def test_no_cache_refreshes_do_not_take_a_shared_answer(
    make_proxy: Any, upstream: Any, redis_url: str
) -> None:
    cache = with_namespace(redis_url)
    proxies = [make_proxy(cache) for _ in range(2)]
    body = chat_body(f"refresh {uuid.uuid4()}")
    assert post(proxies[0].url, body).status_code == 200
    refreshed = httpx.post(
        proxies[1].url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": "Bearer sk-scale", "Cache-Control": "no-cache"},
        timeout=HUNG,
    )
    assert refreshed.headers["x-cache"] == "MISS"
    assert upstream.request_count == 2


# ----------------------------------------------------------- processes: serve, kill


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """An ``llm-cache serve`` subprocess."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": SRC}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llm_cache.cli", "serve", "--port", str(self.port), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + HUNG
        while True:
            assert self.process.poll() is None, self.process.communicate()[0]
            try:
                if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "llm-cache serve did not start"
            time.sleep(0.1)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(HUNG)

    def stop(self) -> str:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=HUNG)
        except subprocess.TimeoutExpired:
            self.kill()
            out, _ = self.process.communicate()
        return out


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def factory(*args: str) -> Served:
        started.append(Served(*args))
        return started[-1]

    yield factory
    for served in started:
        served.stop()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HUNG
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def scrape(url: str, line_start: str) -> float:
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=HUNG).text.splitlines():
        if line.startswith(line_start + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_follower_takes_over_from_a_leader_that_died(
    serve: Callable[..., Served], upstream: Any, shared_cache: str
) -> None:
    common = ("--upstream", upstream.base_url, "--cache", shared_cache, "--lease-ttl", "1")
    leader, follower = serve(*common), serve(*common)
    body = chat_body(f"leader dies {uuid.uuid4()}")
    upstream.latency = 30.0  # the leader's call outlives the leader
    threading.Thread(target=lambda: _ignore(lambda: post(leader.url, body)), daemon=True).start()
    wait_for(lambda: upstream.request_count == 1, "the leader's upstream call")
    upstream.latency = 0.0
    answer: list[httpx.Response] = []
    waiting = threading.Thread(target=lambda: answer.append(post(follower.url, body)))
    waiting.start()
    # The follower's flight has started (and found the lease taken) before the leader dies.
    wait_for(lambda: scrape(follower.url, "llm_cache_proxy_inflight_requests") == 1, "the follower")
    leader.kill()
    waiting.join(HUNG)
    assert answer and answer[0].status_code == 200, answer
    assert answer[0].headers["x-cache"] == "MISS"  # the follower led after the takeover
    assert upstream.request_count == 2
    assert (
        scrape(
            follower.url,
            'llm_cache_proxy_coalescing_leases_total{endpoint="chat.completions",outcome="lead"}',
        )
        == 1
    )


def _ignore(call: Callable[[], Any]) -> None:
    try:
        call()
    except httpx.HTTPError:
        pass  # the leader was killed: its client sees the connection drop


def test_workers_share_the_port_the_cache_and_the_metrics(
    serve: Callable[..., Served], upstream: Any, redis_url: str
) -> None:
    served = serve(
        "--workers", "2", "--upstream", upstream.base_url, "--cache", with_namespace(redis_url)
    )
    body = chat_body(f"workers {uuid.uuid4()}")
    assert post(served.url, body).headers["x-cache"] == "MISS"
    hits: dict[int, int] = {}
    metrics_seen: dict[int, str] = {}
    for _ in range(400):  # new connections until the kernel gave some to each worker
        with httpx.Client(base_url=served.url, timeout=HUNG) as client:
            pid = client.get("/healthz").json()["pid"]  # the worker owning this connection
            answer = client.post(
                "/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-scale"}
            )
            assert answer.status_code == 200 and answer.headers["x-cache"] == "HIT"
            hits[pid] = hits.get(pid, 0) + 1
        if len(hits) == 2 and min(hits.values()) >= 2:
            break
    assert len(hits) == 2, f"every connection went to one worker: {hits}"
    total = sum(hits.values())
    hit_line = 'llm_cache_proxy_requests_total{endpoint="chat.completions",cache="hit"}'
    for _ in range(400):  # the metrics as each worker reports them
        with httpx.Client(base_url=served.url, timeout=HUNG) as client:
            pid = client.get("/healthz").json()["pid"]
            metrics_seen[pid] = client.get("/metrics").text
        if len(metrics_seen) == 2:
            break
    assert len(metrics_seen) == 2
    for text in metrics_seen.values():  # either worker reports both workers' counts
        lines = [line for line in text.splitlines() if line.startswith(hit_line + " ")]
        assert lines == [f"{hit_line} {total}"]
        miss_line = 'llm_cache_proxy_requests_total{endpoint="chat.completions",cache="miss"} 1'
        assert miss_line in text.splitlines()
    assert upstream.request_count == 1
    out = served.stop()
    assert "2 workers" in out


# ------------------------------------------------------------------ the store shells


def _lease_store(kind: str, url: str, ttl: float) -> Any:
    from llm_cache.proxy.leases import store_for_url

    return store_for_url(url, LeasePolicy(ttl=ttl, poll=0.05, wait=30))


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_a_lease_is_exclusive_freed_by_death_and_never_released_by_a_former_holder(
    kind: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url" if kind == "redis" else "postgres_url")
    name = lease_name(f"exclusive {uuid.uuid4()}", "llm")

    async def scenario() -> None:
        store = _lease_store(kind, url, ttl=0.5)
        first, second, watcher = [await store.session(name) for _ in range(3)]

        async def eventually_acquire(session: Any) -> None:
            deadline = time.monotonic() + HUNG
            while not await session.acquire():
                assert time.monotonic() < deadline, "the lease was never freed"
                await asyncio.sleep(0.05)

        try:
            assert await first.acquire()
            assert not await second.acquire()  # held
            waiter = asyncio.ensure_future(watcher.wait(HUNG))
            if kind == "redis":  # a leader that stops renewing loses the lease after ttl
                await eventually_acquire(second)
                # The former holder's release must not free its successor's lease.
                await first.release()
            else:  # the lock goes with the connection of a leader that died
                await first.close()
                await eventually_acquire(second)
            other = await store.session(name)
            assert not await other.acquire()
            await other.close()
            assert not waiter.done() or kind == "redis"  # redis: first's release notified
            await second.release()  # the holder's release notifies the waiters
            await asyncio.wait_for(waiter, HUNG)
            third = await store.session(name)
            assert await third.acquire()  # and frees the lease
            await third.close()
        finally:
            for session in (first, second, watcher):
                await session.close()
            await store.aclose()

    asyncio.run(scenario())


def test_an_operator_metrics_dir_is_emptied_of_old_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_cache.proxy.workers import prepare_metrics_dir

    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "keep.txt").write_text("mine")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert prepare_metrics_dir() == (str(tmp_path), False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_each_worker_keeps_its_connection_guard(
    serve: Callable[..., Served], upstream: Any
) -> None:
    served = serve(
        "--workers", "2", "--upstream", upstream.base_url, "--cache", "memory://",
        "--max-connections", "1", "--idle-timeout", "2",
    )  # fmt: skip
    socks = [socket.create_connection(("127.0.0.1", served.port), timeout=HUNG) for _ in range(8)]
    answers = []
    for sock in socks:  # a refused one gets a 503 at once; a held one is closed when idle
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        sock.close()
        answers.append(b"".join(chunks))
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
    assert all(b"too_many_connections" in a for a in refused)
    held = len(answers) - len(refused)
    assert 1 <= held <= 2, answers  # one connection per worker, never more
    line = 'llm_cache_proxy_refused_requests_total{endpoint="connection",code="too_many_connections"}'
    wait_for(lambda: scrape(served.url, line) >= len(refused), "the refusals in /metrics")


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--workers", "0", "--port", "1"], "at least 1"), (["--workers", "2", "--port", "0"], "fixed --port")],
)
def test_bad_worker_flags_are_refused_with_what_to_do(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from llm_cache.cli import main

    assert main(["serve", "--cache", "memory://", *args]) != 0
    assert message in capsys.readouterr().err
