"""The cached hit path does its per-request checks once per credential, not once per request.

The proxy's admission (the API key printable, one of the proxy's client keys) is a pure
function of the credential headers: a credential that passed is remembered in the bounded
tenant memo, a refused one is checked again in full every time. These tests drive the ASGI
app in process against a mock upstream.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from llm_cache.proxy import _http, create_app
from llm_cache.proxy._http import Refusal, _read_body
from llm_cache.proxy.auth import ClientKeys, hash_client_key

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is a cache?"}]}
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "A store."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}


class Upstream:
    """A mock upstream that records the paths it was asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.raw_path.decode("ascii"))
        return httpx.Response(200, json=ANSWER)


def make_app(upstream: Upstream, **kwargs: Any) -> Any:
    return create_app(
        "http://upstream.invalid/v1", "memory://", transport=httpx.MockTransport(upstream), **kwargs
    )


async def call(app: Any, path: str, key: str | None, **headers: str) -> httpx.Response:
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
        return await client.post(path, content=json.dumps(BODY), headers=headers)


class CountingKeys(ClientKeys):
    def __init__(self, keys: list[str]) -> None:
        super().__init__(bytes.fromhex(hash_client_key(k).split(":")[1]) for k in keys)
        self.checked = 0

    def verify(self, key: str | None) -> bool:
        self.checked += 1
        return super().verify(key)


def test_an_admitted_key_is_checked_once_a_refused_one_every_time() -> None:
    async def run() -> None:
        keys = CountingKeys(["lcp-good", "lcp-other"])
        upstream = Upstream()
        app = make_app(upstream, client_keys=keys, upstream_api_key="sk-upstream")
        for _ in range(5):
            assert (await call(app, "/v1/chat/completions", "lcp-good")).status_code == 200
        assert keys.checked == 1  # the first request checked it; the repeats found it admitted
        for _ in range(3):
            refused = await call(app, "/v1/chat/completions", "lcp-wrong")
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "invalid_api_key"
        assert keys.checked == 4  # a refusal is never remembered
        for _ in range(2):
            assert (await call(app, "/v1/chat/completions", None)).status_code == 401
        assert keys.checked == 6
        # A non-printable key is refused before the client keys are asked, every time.
        for _ in range(2):
            bad = await call(app, "/v1/chat/completions", "lcp-good\x7f")
            assert bad.status_code == 401
        assert keys.checked == 6
        # An admitted key still gets its namespace header checked on every request.
        bad_ns = await call(
            app, "/v1/chat/completions", "lcp-good", **{"x-llm-cache-namespace": "a b"}
        )
        assert bad_ns.status_code == 400
        assert bad_ns.json()["error"]["code"] == "invalid_namespace"
        # Each admitted key stays its own tenant: the other key misses and calls upstream.
        calls = len(upstream.paths)
        other = await call(app, "/v1/chat/completions", "lcp-other")
        assert other.status_code == 200 and other.headers["x-cache"] == "MISS"
        assert len(upstream.paths) == calls + 1
        again = await call(app, "/v1/chat/completions", "lcp-good")
        assert again.headers["x-cache"] == "HIT"
        assert keys.checked == 7

    asyncio.run(run())


def test_the_memo_is_bounded_and_holds_no_more_keys_than_before() -> None:
    async def run() -> None:
        app = make_app(Upstream())
        memo = app.proxy._namespace_memo
        for i in range(memo.maxsize + 50):
            response = await call(app, "/v1/chat/completions", f"sk-{i}")
            assert response.status_code == 200
        assert len(memo) == memo.maxsize
        # Refused credentials are never kept.
        before = dict(memo)
        assert (await call(app, "/v1/chat/completions", "sk-\x01")).status_code == 401
        assert dict(memo) == before

    asyncio.run(run())


def test_a_plain_path_skips_quoting_and_an_unusual_one_is_quoted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quoted: list[str] = []
    real_quote = _http.quote

    def counting_quote(path: str, *args: Any, **kwargs: Any) -> str:
        quoted.append(path)
        return real_quote(path, *args, **kwargs)

    monkeypatch.setattr(_http, "quote", counting_quote)

    async def run() -> None:
        upstream = Upstream()
        app = make_app(upstream)
        for _ in range(3):
            assert (await call(app, "/v1/chat/completions", "sk-a")).status_code == 200
        assert quoted == []
        # The ASGI server hands the app a percent-decoded path: it is encoded again.
        assert (await call(app, "/v1/files/a%20b%25c%3Fd", "sk-a")).status_code == 200
        assert upstream.paths[-1] == "/v1/files/a%20b%25c%3Fd"
        assert quoted == ["/v1/files/a b%c?d"]
        assert (await call(app, "/v1/files/x-1_2.~3", "sk-a")).status_code == 200
        assert upstream.paths[-1] == "/v1/files/x-1_2.~3"
        assert len(quoted) == 1

    asyncio.run(run())


@pytest.mark.parametrize(
    ("declared", "refused_before_reading"),
    [("101", True), ("100", False), ("abc", False), ("9" * 5000, False), (None, False)],
)
def test_the_declared_length_is_checked_before_reading(
    declared: str | None, refused_before_reading: bool
) -> None:
    received: list[int] = []

    async def receive() -> dict[str, Any]:
        received.append(1)
        return {"type": "http.request", "body": b"x" * 100, "more_body": False}

    async def run() -> bytes:
        return await _read_body(receive, 100, declared)

    if refused_before_reading:
        with pytest.raises(Refusal) as refusal:
            asyncio.run(run())
        assert refusal.value.status == 413 and received == []
    else:
        assert asyncio.run(run()) == b"x" * 100


def test_a_body_past_the_limit_is_refused_whatever_it_declares() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"x" * 60, "more_body": True}

    for declared in ("10", "abc", None):
        with pytest.raises(Refusal) as refusal:
            asyncio.run(_read_body(receive, 100, declared))
        assert refusal.value.status == 413


