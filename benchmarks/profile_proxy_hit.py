"""Python function calls per cached chat hit of the proxy, counted in process (deterministic).

Drives the ASGI app directly (no server, no sockets): one chat request is answered once
by a fake upstream (an ``httpx.MockTransport``) and stored in an in-memory cache, then
repeated ``--hits`` times; cProfile counts the calls made during the repeats. Unlike a
wall-clock benchmark, the count does not depend on the machine's load.

    PYTHONPATH=src python benchmarks/profile_proxy_hit.py [--hits 2000] [--top 40]

Run it with another tree's ``src`` on ``PYTHONPATH`` to compare two versions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
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
    stats = pstats.Stats(profile)
    total = stats.total_calls  # type: ignore[attr-defined]
    print(f"llm_cache from {llm_cache.__file__}")
    print(f"{total / hits:.1f} Python calls per cached chat hit ({total} over {hits} hits)")
    if top:
        stats.sort_stats("ncalls").print_stats(top)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=2000)
    parser.add_argument("--top", type=int, default=0, help="also list the N most called functions")
    args = parser.parse_args()
    asyncio.run(main(args.hits, args.top))
