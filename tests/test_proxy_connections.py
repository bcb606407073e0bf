"""Connection limits of the proxy's HTTP server, tried with raw sockets against a real
running server: idle and half-sent connections are closed, big headers and slow bodies
refused, the connection cap answers 503 and new clients are still served.

The timeouts here are short (1-2 s) so that the tests are quick; every wait on the proxy
has a generous bound (it checks "was closed", not "how fast").
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from test_proxy import metric

from llm_cache.proxy import ProxyServer
from llm_cache.proxy.limits import ProxyLimits

GENEROUS = 30.0  # seconds: "did not hang", never a speed claim


@pytest.fixture
def guarded(make_proxy: Callable[..., ProxyServer]) -> Callable[..., ProxyServer]:
    """Start a proxy (stopped after the test) with these limits."""
    return lambda **limits: make_proxy("memory://", limits=ProxyLimits(**limits))


def connect(server: ProxyServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=GENEROUS)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (fails on a hang)."""
    data = b""
    started = time.monotonic()
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except TimeoutError:
            pytest.fail(f"the proxy kept the connection open for {GENEROUS} s; got {data!r}")
        if not chunk:
            return data
        data += chunk
        assert time.monotonic() - started < GENEROUS


def status_and_body(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


def live_connections(server: ProxyServer) -> int:
    return len(server._server.server_state.connections)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GENEROUS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_an_idle_connection_is_closed_after_the_idle_timeout(
    guarded: Callable[..., ProxyServer],
) -> None:
    server = guarded(idle_timeout=1.0)
    fresh = connect(server)  # never sends a byte
    used = connect(server)  # one request, then idles on keep-alive
    used.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = used.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert read_until_closed(fresh) == b""
    assert read_until_closed(used) in (b"", first[len(first) :])
    assert time.monotonic() - started >= 0.5  # closed by the timeout, not at once
    wait_for(lambda: live_connections(server) == 0, "the server still counts the connections")


def test_a_half_sent_header_gets_408_and_is_closed(guarded: Callable[..., ProxyServer]) -> None:
    server = guarded(header_timeout=1.0, idle_timeout=60.0)
    sock = connect(server)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
    status, headers, body = status_and_body(read_until_closed(sock))
    assert status == 408 and headers["connection"] == "close"
    assert body["error"]["code"] == "header_timeout"
    assert httpx.get(server.url + "/healthz").status_code == 200
    refused = 'llm_cache_proxy_refused_requests_total{endpoint="connection",code="header_timeout"}'
    assert metric(server, refused) == 1


def test_a_slow_body_gets_408_and_is_closed(guarded: Callable[..., ProxyServer]) -> None:
    server = guarded(body_timeout=1.0, idle_timeout=60.0)
    sock = connect(server)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"model": "gpt-4o-mini", '
    )
    status, _, body = status_and_body(read_until_closed(sock))
    assert status == 408 and body["error"]["code"] == "body_timeout"
    # A chunked body that never ends is cut the same way.
    sock = connect(server)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"a":\r\n'
    )
    status, _, body = status_and_body(read_until_closed(sock))
    assert status == 408 and body["error"]["code"] == "body_timeout"


def test_headers_over_the_limit_get_431(guarded: Callable[..., ProxyServer]) -> None:
    server = guarded(max_header_bytes=4096)
    sock = connect(server)
    # Sent in pieces, never finished: the limit holds without waiting for the end.
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    try:
        for _ in range(64):
            sock.sendall(b"a" * 1024)
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed while we were still sending: also a refusal
    raw = read_until_closed(sock)
    if raw:  # the 431 arrives unless the reset beat it
        status, _, body = status_and_body(raw)
        assert status == 431 and body["error"]["code"] == "headers_too_large"
    # Whole headers over the limit in one write: refused, and no request reaches the app.
    sock = connect(server)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        + b"X-Big: "
        + b"a" * 8000
        + b"\r\n\r\n{}"
    )
    status, _, body = status_and_body(read_until_closed(sock))
    assert status == 431 and body["error"]["code"] == "headers_too_large"
    assert server.app.proxy.metrics.requests == {}
    # A request just under the limit is served.
    ok = httpx.get(server.url + "/healthz", headers={"x-big": "a" * 3000})
    assert ok.status_code == 200


def test_the_connection_cap_answers_503_and_new_clients_are_served_again(
    guarded: Callable[..., ProxyServer],
) -> None:
    server = guarded(max_connections=5, idle_timeout=60.0, header_timeout=60.0)
    held = [connect(server) for _ in range(5)]
    wait_for(lambda: live_connections(server) == 5, "the 5 connections were not accepted")
    extra = connect(server)
    raw = read_until_closed(extra)
    if raw:  # a 503 with Retry-After, or (if our request raced the close) just closed
        status, headers, body = status_and_body(raw)
        assert status == 503 and headers["retry-after"] == "1"
        assert body["error"]["code"] == "too_many_connections"
    try:
        refused = httpx.get(server.url + "/healthz", timeout=GENEROUS)
    except httpx.TransportError:
        pass
    else:
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert live_connections(server) == 5  # the refused ones hold nothing
    # A slot frees up: the next client is served.
    held.pop().close()
    wait_for(lambda: live_connections(server) == 4, "the closed connection was not released")
    assert httpx.get(server.url + "/healthz", timeout=GENEROUS).status_code == 200
    for sock in held:
        sock.close()


def test_held_connections_expire_and_new_clients_get_in(
    guarded: Callable[..., ProxyServer],
) -> None:
    server = guarded(max_connections=5, idle_timeout=1.0, header_timeout=1.0)
    held = [connect(server) for _ in range(3)]  # silent
    for _ in range(2):  # half a request each
        sock = connect(server)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost")
        held.append(sock)
    # Without their clients doing anything, the server closes all five ...
    for sock in held:
        read_until_closed(sock)
    wait_for(lambda: live_connections(server) == 0, "the held connections were not released")
    # ... and new clients get in.
    assert httpx.get(server.url + "/healthz", timeout=GENEROUS).status_code == 200
