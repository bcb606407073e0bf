"""Python function calls per cached chat hit of the proxy, counted in process (deterministic).

Drives the ASGI app directly (no server, no sockets): one chat request is answered once
by a fake upstream (an ``httpx.MockTransport``) and stored in an in-memory cache, then
repeated ``--hits`` times; cProfile counts the calls made during the repeats. Unlike a
wall-clock benchmark, the count does not depend on the machine's load.

    PYTHONPATH=src python benchmarks/profile_proxy_hit.py [--hits 2000] [--top 40]

Run it with another tree's ``src`` on ``PYTHONPATH`` to compare two versions.

``--server`` counts the calls of the whole server instead: uvicorn (httptools) with the
options ``llm-cache serve`` uses, in a thread of its own (the only thread profiled), and a
client in the main thread sending the requests one after another on one keep-alive
connection, so each arrives in one read. uvicorn's periodic ticks add a few calls per
second of run time (a fraction of a call per hit).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import socket
import threading
from typing import Any

import httpx

import llm_cache
from llm_cache.proxy import create_app

BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is a cache?"}]}
).encode()
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "A store of answers."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
}
SCOPE: dict[str, Any] = {
    "type": "http",
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/v1/chat/completions",
    "raw_path": b"/v1/chat/completions",
    "query_string": b"",
    "root_path": "",
    "headers": [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer sk-test-key"),
        (b"content-length", str(len(BODY)).encode()),
    ],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}


async def request(app: Any) -> tuple[int, dict[bytes, bytes]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(dict(SCOPE), receive, send)
    return sent[0]["status"], dict(sent[0]["headers"])


async def main(hits: int, top: int) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json=ANSWER))
    app = create_app("http://upstream.invalid/v1", "memory://", transport=transport)
    status, headers = await request(app)
    assert status == 200, status
    for _ in range(3):  # let the write land and warm the memos
        await asyncio.sleep(0.01)
        status, headers = await request(app)
    assert headers.get(b"x-cache") == b"HIT", headers
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(hits):
        await request(app)
    profile.disable()
    report(profile, hits, top, "ASGI app in process")


def report(profile: cProfile.Profile, hits: int, top: int, what: str) -> None:
    stats = pstats.Stats(profile)
    total = stats.total_calls  # type: ignore[attr-defined]
    print(f"llm_cache from {llm_cache.__file__}")
    print(f"{total / hits:.1f} Python calls per cached chat hit, {what} ({total} over {hits} hits)")
    if top:
        stats.sort_stats("ncalls").print_stats(top)


def raw_request(key: str = "sk-test-key") -> bytes:
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-type: application/json\r\nauthorization: Bearer {key}\r\n"
        f"content-length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


def exchange(sock: socket.socket, payload: bytes) -> bytes:
    """Send one request, read its whole response (content-length framed)."""
    sock.sendall(payload)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def server_main(hits: int, top: int) -> None:
    import time

    import uvicorn

    from llm_cache.proxy import server as proxy_server

    transport = httpx.MockTransport(lambda _: httpx.Response(200, json=ANSWER))
    app = create_app("http://upstream.invalid/v1", "memory://", transport=transport)
    limits_of = getattr(proxy_server, "_limits_of", None)
    options = proxy_server.uvicorn_options(*limits_of(app)) if limits_of else proxy_server.uvicorn_options()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", **options)
    server = uvicorn.Server(config)
    profile = cProfile.Profile()
    go = threading.Event()

    def serve() -> None:
        asyncio.run(run())

    async def run() -> None:
        serving = asyncio.ensure_future(server.serve(sockets=[listener]))
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        profile.enable()
        await serving
        profile.disable()

    thread = threading.Thread(target=serve)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        payload = raw_request()
        for _ in range(4):  # the miss, then hits once the write has landed
            head = exchange(sock, payload)
            time.sleep(0.02)
        assert b"x-cache: HIT" in head, head
        go.set()
        time.sleep(0.05)
        for _ in range(hits):
            exchange(sock, payload)
    server.should_exit = True
    thread.join()
    report(profile, hits, top, "whole server")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=2000)
    parser.add_argument("--top", type=int, default=0, help="also list the N most called functions")
    parser.add_argument("--server", action="store_true", help="profile the whole server (uvicorn)")
    args = parser.parse_args()
    if args.server:
        server_main(args.hits, args.top)
    else:
        asyncio.run(main(args.hits, args.top))
