"""The caching proxy, run for real on a loopback port in front of the built-in upstream,
driven by the official ``openai`` SDK (and httpx where the SDK hides what we check)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llm_cache import BaseCache, ConfigurationError, Generation, InMemoryCache, SQLiteCache
from llm_cache.proxy import ProxyServer, create_app
from llm_cache.proxy.codec import response_to_generations
from llm_cache.proxy.keys import key_namespace, request_key
from llm_cache.testing import fake_openai

MODEL = "gpt-4o-mini"
JOKE = [{"role": "user", "content": "Tell me a joke"}]


@pytest.fixture
def proxy(make_proxy: Callable[..., ProxyServer], tmp_path: Path) -> ProxyServer:
    return make_proxy(f"sqlite:///{tmp_path / 'proxy.db'}")


def client(server: ProxyServer, key: str = "sk-client-a", **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, **kwargs)


def aclient(server: ProxyServer, key: str = "sk-client-a") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def chat(
    c: openai.OpenAI, messages: Any = JOKE, headers: dict[str, str] | None = None, **kwargs: Any
) -> Any:
    """A chat call returning (parsed completion, X-Cache header, all headers)."""
    raw = c.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, extra_headers=headers, **kwargs
    )
    return raw.parse(), raw.headers.get("x-cache"), raw.headers


def stream_text(stream: Any) -> tuple[str, list[Any]]:
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def settle(server: ProxyServer, timeout: float = 10.0) -> None:
    """Wait until the proxy has no upstream call or cache write in flight.

    An answer is sent before it is written to the cache; until the write ends, a repeat
    shares the in-flight answer (a coalesced HIT). Tests that count exact labels wait here.
    """
    deadline = time.monotonic() + timeout
    while server.app.proxy._flights or server.app.proxy._stores:
        assert time.monotonic() < deadline, "the proxy did not settle"
        time.sleep(0.01)


def metric(server: ProxyServer, line_start: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --------------------------------------------------------------------------- basics


def test_chat_miss_then_hit_sync(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    first, x1, _ = chat(c)
    settle(proxy)  # the answer is written after it is sent
    second, x2, headers = chat(c)
    assert (x1, x2) == ("MISS", "HIT") and "x-cache-coalesced" not in headers
    assert upstream.request_count == 1
    assert second.choices[0].message.content == first.choices[0].message.content
    # A replay keeps the upstream's id and created: it is the same response.
    assert second.id == first.id and second.created == first.created
    assert second.usage == first.usage
    assert int(headers["age"]) >= 0


async def test_chat_miss_then_hit_async(proxy: ProxyServer, upstream: Any) -> None:
    c = aclient(proxy)
    messages = [{"role": "user", "content": "async hello"}]
    first = await c.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
    second = await c.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert upstream.request_count == 1
    await c.close()


def test_parameters_are_part_of_the_key(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    chat(c, temperature=0.0)
    _, x_same, _ = chat(c, temperature=0.0)
    _, x_temp, _ = chat(c, temperature=0.5)
    _, x_n, _ = chat(c, temperature=0.0, n=2)
    _, x_model, _ = chat(c, temperature=0.0, max_tokens=3)
    assert (x_same, x_temp, x_n, x_model) == ("HIT", "MISS", "MISS", "MISS")
    # ``user`` is for abuse monitoring, not the answer: same entry.
    _, x_user, _ = chat(c, temperature=0.0, user="alice")
    assert x_user == "HIT"
    assert upstream.request_count == 4


def test_n_choices_and_tool_calls_replay(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    first, _, _ = chat(c, n=3)
    again, x, _ = chat(c, n=3)
    assert x == "HIT" and [ch.message.content for ch in again.choices] == [
        ch.message.content for ch in first.choices
    ]
    assert [ch.index for ch in again.choices] == [0, 1, 2]
    call, _, _ = chat(c, tools=tools, tool_choice="required")
    replay, x, _ = chat(c, tools=tools, tool_choice="required")
    assert x == "HIT"
    assert replay.choices[0].message.tool_calls == call.choices[0].message.tool_calls
    assert replay.choices[0].finish_reason == "tool_calls"
    assert replay.choices[0].message.content is None


# ------------------------------------------------------------------------ streaming


def test_stream_miss_then_replayed_hit(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    messages = [{"role": "user", "content": "stream me a few words please"}]
    raw = c.chat.completions.with_raw_response.create(model=MODEL, messages=messages, stream=True)
    assert raw.headers["x-cache"] == "MISS"
    miss_text, miss_chunks = stream_text(raw.parse())
    raw = c.chat.completions.with_raw_response.create(model=MODEL, messages=messages, stream=True)
    assert raw.headers["x-cache"] == "HIT"
    assert raw.headers["content-type"].startswith("text/event-stream")
    hit_text, hit_chunks = stream_text(raw.parse())
    assert hit_text == miss_text and miss_text.startswith("Answer")
    assert upstream.request_count == 1
    assert hit_chunks[0].choices[0].delta.role == "assistant"
    assert hit_chunks[-1].choices[0].finish_reason == "stop"
    assert len(hit_chunks) > 3  # replayed in pieces, not one blob
    assert {ch.id for ch in hit_chunks} == {miss_chunks[0].id}
    # The client asked for no usage, so neither the miss nor the hit carries a usage chunk,
    # although the proxy asked upstream for one (to store it).
    assert all(ch.usage is None for ch in miss_chunks + hit_chunks)
    assert upstream.requests[0]["body"]["stream_options"] == {"include_usage": True}
    # A non-streamed request is answered from the streamed miss, usage included.
    full, x, _ = chat(c, messages)
    assert x == "HIT" and full.choices[0].message.content == miss_text
    assert (
        full.object == "chat.completion"
        and full.usage is not None
        and full.usage.completion_tokens > 0
    )


def test_stream_include_usage_and_non_stream_miss(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    messages = [{"role": "user", "content": "first plain then streamed"}]
    full, x, _ = chat(c, messages)
    assert x == "MISS"
    stream = c.chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    text, chunks = stream_text(stream)
    assert text == full.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage == full.usage
    assert upstream.request_count == 1


async def test_async_stream(proxy: ProxyServer, upstream: Any) -> None:
    c = aclient(proxy)
    messages = [{"role": "user", "content": "async streaming words"}]
    texts = []
    for _ in range(2):
        stream = await c.chat.completions.create(model=MODEL, messages=messages, stream=True)
        texts.append(
            "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
        )
    assert texts[0] == texts[1] != ""
    assert upstream.request_count == 1
    await c.close()


def test_streamed_tool_call_is_assembled(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}, "k": {"type": "integer"}},
                },
            },
        }
    ]
    messages = [{"role": "user", "content": "find cached things"}]
    list(
        c.chat.completions.create(
            model=MODEL, messages=messages, tools=tools, tool_choice="required", stream=True
        )
    )
    assembled, x, _ = chat(c, messages, tools=tools, tool_choice="required")
    assert x == "HIT"
    direct = openai.OpenAI(
        base_url=upstream.base_url, api_key="sk-x", max_retries=0
    ).chat.completions.create(model=MODEL, messages=messages, tools=tools, tool_choice="required")
    assert assembled.choices[0].message.tool_calls == direct.choices[0].message.tool_calls
    assert assembled.choices[0].message.content is None
    assert assembled.choices[0].finish_reason == "tool_calls"


def test_completions_plain_and_streamed(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    kwargs = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say something about caches", "n": 2}
    first = c.completions.with_raw_response.create(**kwargs)
    second = c.completions.with_raw_response.create(**kwargs)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    texts = [ch.text for ch in first.parse().choices]
    assert [ch.text for ch in second.parse().choices] == texts
    chunks = list(c.completions.create(**kwargs, stream=True))
    by_index: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            by_index[choice.index] = by_index.get(choice.index, "") + choice.text
    assert [by_index[0], by_index[1]] == texts
    assert upstream.request_count == 1
    # And the other way: a streamed completions miss answers a plain request.
    other = {"model": "gpt-3.5-turbo-instruct", "prompt": "Another prompt to stream"}
    streamed = "".join(
        ch.choices[0].text for ch in c.completions.create(**other, stream=True) if ch.choices
    )
    plain = c.completions.with_raw_response.create(**other)
    assert plain.headers["x-cache"] == "HIT" and plain.parse().choices[0].text == streamed


def test_embeddings(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    vectors = {}
    for encoding in ("float", "base64"):
        first = c.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["alpha", "beta"], encoding_format=encoding
        )
        second = c.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["alpha", "beta"], encoding_format=encoding
        )
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
        a, b = first.parse(), second.parse()
        assert [d.embedding for d in b.data] == [d.embedding for d in a.data]
        assert b.usage == a.usage
        vectors[encoding] = [d.embedding for d in b.data]
    assert len(vectors["float"][0]) == 64
    # The SDK asks for base64 by default (and decodes it): the base64 entry answers it.
    default = c.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["alpha", "beta"]
    )
    assert default.headers["x-cache"] == "HIT"
    assert [d.embedding for d in default.parse().data] == vectors["float"]
    assert upstream.request_count == 2


# ---------------------------------------------------------------------- isolation


def test_entries_are_isolated_per_api_key(proxy: ProxyServer, upstream: Any) -> None:
    a, b = client(proxy, "sk-key-a"), client(proxy, "sk-key-b")
    _, xa, _ = chat(a)
    _, xb, _ = chat(b)
    _, xa2, _ = chat(a)
    _, xb2, _ = chat(b)
    assert (xa, xb, xa2, xb2) == ("MISS", "MISS", "HIT", "HIT")
    assert upstream.request_count == 2
    # The client's own key was passed through to the upstream.
    assert [r["headers"]["authorization"] for r in upstream.requests] == [
        "Bearer sk-key-a",
        "Bearer sk-key-b",
    ]


def test_share_across_keys(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    server = make_proxy("memory://", share_across_keys=True)
    _, xa, _ = chat(client(server, "sk-key-a"))
    _, xb, _ = chat(client(server, "sk-key-b"))
    assert (xa, xb) == ("MISS", "HIT")
    assert upstream.request_count == 1


def test_namespace_header(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    _, x1, _ = chat(c, headers={"X-LLM-Cache-Namespace": "team-a"})
    _, x2, _ = chat(c, headers={"X-LLM-Cache-Namespace": "team-b"})
    _, x3, _ = chat(c, headers={"X-LLM-Cache-Namespace": "team-a"})
    _, x4, _ = chat(c)
    assert (x1, x2, x3, x4) == ("MISS", "MISS", "HIT", "MISS")
    with pytest.raises(openai.BadRequestError) as info:
        chat(c, headers={"X-LLM-Cache-Namespace": "has spaces in it"})
    assert info.value.code == "invalid_namespace"


# -------------------------------------------------------------------- cache control


def test_no_store_bypasses_everything(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    messages = [{"role": "user", "content": "do not keep this"}]
    _, x1, _ = chat(c, messages, headers={"Cache-Control": "no-store"})
    _, x2, _ = chat(c, messages, headers={"Cache-Control": "no-store"})
    _, x3, _ = chat(c, messages)
    assert (x1, x2, x3) == ("BYPASS", "BYPASS", "MISS")
    assert upstream.request_count == 3
    # A stream with no-store is relayed as it comes.
    text, _ = stream_text(
        c.chat.completions.create(
            model=MODEL, messages=messages, stream=True, extra_headers={"Cache-Control": "no-store"}
        )
    )
    assert text.startswith("Answer")
    assert upstream.request_count == 4


def test_no_cache_refreshes_the_entry(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    first, _, _ = chat(c)
    refreshed, x, _ = chat(c, headers={"Cache-Control": "no-cache"})
    assert x == "MISS" and refreshed.id != first.id
    assert upstream.request_count == 2
    settle(proxy)
    hit, x, _ = chat(c)
    assert x == "HIT" and hit.id == refreshed.id
    assert upstream.request_count == 2


def test_max_age(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    cache = InMemoryCache()
    server = make_proxy(cache)
    body = {"model": MODEL, "messages": JOKE}
    key = request_key("chat.completions", body, key_namespace("sk-client-a"))
    assert key is not None
    stored = {
        "id": "chatcmpl-old",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "an old answer"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
    }
    cache.update(
        key.prompt,
        key.llm_string,
        response_to_generations("chat.completions", stored, created_at=time.time() - 100),
    )
    c = client(server)
    old, x, headers = chat(c, headers={"Cache-Control": "max-age=3600"})
    assert x == "HIT" and old.choices[0].message.content == "an old answer"
    assert 100 <= int(headers["age"]) < 200
    fresh, x, _ = chat(c, headers={"Cache-Control": "max-age=60"})
    assert x == "MISS" and fresh.choices[0].message.content != "an old answer"
    assert upstream.request_count == 1
    settle(server)
    again, x, headers = chat(c, headers={"Cache-Control": "max-age=60"})
    assert x == "HIT" and again.id == fresh.id and int(headers["age"]) < 60


def test_ttl_of_the_proxy(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    cache = InMemoryCache()
    body = {"model": MODEL, "messages": JOKE}
    key = request_key("chat.completions", body, key_namespace("sk-client-a"))
    assert key is not None
    stored = fake_openai.build_chat_completion(body, "chatcmpl-aged", 1)
    cache.update(
        key.prompt,
        key.llm_string,
        response_to_generations("chat.completions", stored, created_at=time.time() - 100),
    )
    _, x_long, _ = chat(client(make_proxy(cache, ttl=1000)))
    _, x_short, _ = chat(client(make_proxy(cache, ttl=50)))  # the entry is 100 s old
    assert (x_long, x_short) == ("HIT", "MISS")


def test_only_if_cached(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    with pytest.raises(openai.APIStatusError) as info:
        chat(c, headers={"Cache-Control": "only-if-cached"})
    assert info.value.status_code == 504 and upstream.request_count == 0
    chat(c)
    _, x, _ = chat(c, headers={"Cache-Control": "only-if-cached"})
    assert x == "HIT"


# --------------------------------------------------------------------- coalescing


async def test_50_concurrent_identical_requests_make_one_upstream_call(
    proxy: ProxyServer, upstream: Any
) -> None:
    upstream.latency = 0.3  # long enough for all 50 to arrive while the first is in flight
    c = openai.AsyncOpenAI(
        base_url=proxy.base_url,
        api_key="sk-client-a",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(limits=httpx.Limits(max_connections=100)),
    )
    messages = [{"role": "user", "content": "fifty at once"}]
    results = await asyncio.gather(
        *[
            c.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
            for _ in range(50)
        ]
    )
    assert upstream.request_count == 1
    texts = {r.parse().choices[0].message.content for r in results}
    assert len(texts) == 1
    assert sorted(r.headers["x-cache"] for r in results).count("MISS") == 1
    assert sum(r.headers.get("x-cache-coalesced") == "true" for r in results) >= 1
    await c.close()


async def test_concurrent_identical_streams_share_one_upstream_stream(
    proxy: ProxyServer, upstream: Any
) -> None:
    upstream.latency = 0.3
    c = openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-client-a", max_retries=0)
    messages = [{"role": "user", "content": "twenty streams at once"}]

    async def one(stream: bool) -> str:
        if stream:
            chunks = await c.chat.completions.create(model=MODEL, messages=messages, stream=True)
            return "".join([ch.choices[0].delta.content or "" async for ch in chunks if ch.choices])
        done = await c.chat.completions.create(model=MODEL, messages=messages)
        return done.choices[0].message.content or ""

    texts = await asyncio.gather(*[one(i % 4 != 3) for i in range(20)])
    assert upstream.request_count == 1
    assert len(set(texts)) == 1 and texts[0].startswith("Answer")
    await c.close()


# ------------------------------------------------------------------------- failures


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_upstream_gives_502(make_proxy: Callable[..., ProxyServer]) -> None:
    server = make_proxy("memory://", upstream_url=f"http://127.0.0.1:{_closed_port()}/v1")
    c = client(server)
    with pytest.raises(openai.APIStatusError) as info:
        c.chat.completions.create(model=MODEL, messages=JOKE)
    assert info.value.status_code == 502
    error = info.value.body
    assert (
        error["type"] == "upstream_error"
        and error["code"] == "upstream_connect_error"
        and error["message"]
    )
    with pytest.raises(openai.APIStatusError) as info:
        c.chat.completions.create(model=MODEL, messages=JOKE, stream=True)
    assert info.value.status_code == 502
    assert (
        metric(
            server,
            'llm_cache_proxy_upstream_errors_total{endpoint="chat.completions",kind="connect_error"}',
        )
        == 2
    )


def test_upstream_errors_pass_through_and_are_not_cached(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    upstream.fail_next(500, message="the model is overloaded")
    with pytest.raises(openai.InternalServerError) as info:
        chat(c)
    assert info.value.status_code == 500 and "overloaded" in info.value.message
    upstream.fail_next(429, message="slow down")
    with pytest.raises(openai.RateLimitError):
        chat(c, stream=True)
    with pytest.raises(openai.BadRequestError):  # the upstream's own validation
        chat(c, n=0)
    with pytest.raises(openai.BadRequestError):
        chat(c, n=0)
    _, x, _ = chat(c)
    assert x == "MISS"
    assert upstream.request_count == 5


class BrokenCache(BaseCache):
    """A store that is down: every operation raises."""

    def _lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        raise ConnectionRefusedError("store is down")

    def _update(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        raise ConnectionRefusedError("store is down")

    def _clear(self) -> None:
        raise ConnectionRefusedError("store is down")


@pytest.mark.parametrize("strict", [False, True], ids=["fail-open", "strict"])
def test_broken_cache_degrades_to_pass_through(
    make_proxy: Callable[..., ProxyServer], upstream: Any, strict: bool
) -> None:
    server = make_proxy(BrokenCache(strict=strict))
    c = client(server)
    misses = 0
    for _ in range(3):
        answer, x, headers = chat(c)
        assert answer.choices[0].message.content
        # Nothing comes from the store. A repeat that arrives while the previous answer's
        # (failing) write is still running shares that answer, and says so.
        assert x == "MISS" or (x == "HIT" and headers.get("x-cache-coalesced") == "true")
        misses += x == "MISS"
    settle(server)
    raw = c.chat.completions.with_raw_response.create(model=MODEL, messages=JOKE, stream=True)
    assert raw.headers["x-cache"] == "MISS"
    text, _ = stream_text(raw.parse())
    assert text == answer.choices[0].message.content
    assert upstream.request_count == misses + 1
    health = httpx.get(server.url + "/healthz").json()
    assert health["status"] == "degraded" and health["cache"]["reachable"] is False
    assert "store is down" in health["cache"]["error"]


def test_readonly_sqlite_file_still_answers(
    make_proxy: Callable[..., ProxyServer], upstream: Any, tmp_path: Path
) -> None:
    path = tmp_path / "ro.db"
    SQLiteCache(path).close()
    # A read-only connection (as when the file or its directory is not writable for the
    # proxy's user; chmod does not stop root, so open it read-only instead).
    cache = SQLiteCache(path)
    import sqlite3

    cache._connect = lambda: sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, check_same_thread=False
    )  # type: ignore[method-assign]
    cache._local.__dict__.clear()
    server = make_proxy(cache)
    c = client(server)
    _, x1, _ = chat(c)
    settle(server)
    _, x2, _ = chat(c)
    assert (x1, x2) == ("MISS", "MISS")  # writes fail, nothing is ever stored, answers still come
    assert upstream.request_count == 2
    assert cache.stats.errors >= 1


# -------------------------------------------------------------- models, pass-through


def test_models_are_passed_through_and_kept_briefly(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    first = c.models.with_raw_response.list()
    second = c.models.with_raw_response.list()
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert "gpt-4o-mini" in [m.id for m in second.parse()]
    one = c.models.with_raw_response.retrieve("gpt-4o")
    assert one.headers["x-cache"] == "BYPASS" and one.parse().id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("no-such-model")


# ------------------------------------------------------------------ metrics, secrets


def test_metrics_count_results_tokens_and_cost(proxy: ProxyServer, upstream: Any) -> None:
    c = client(proxy)
    answer, _, _ = chat(c)
    settle(proxy)
    chat(c)
    chat(c)
    chat(c, headers={"Cache-Control": "no-store"})
    text = httpx.get(proxy.url + "/metrics").text
    assert "# TYPE llm_cache_proxy_requests_total counter" in text
    assert (
        metric(proxy, 'llm_cache_proxy_requests_total{endpoint="chat.completions",cache="hit"}')
        == 2
    )
    assert (
        metric(proxy, 'llm_cache_proxy_requests_total{endpoint="chat.completions",cache="miss"}')
        == 1
    )
    assert (
        metric(proxy, 'llm_cache_proxy_requests_total{endpoint="chat.completions",cache="bypass"}')
        == 1
    )
    assert (
        metric(
            proxy,
            'llm_cache_proxy_upstream_requests_total{endpoint="chat.completions",status="200"}',
        )
        == 2
    )
    assert (
        metric(proxy, 'llm_cache_proxy_upstream_latency_seconds_count{endpoint="chat.completions"}')
        == 2
    )
    usage = answer.usage
    assert (
        metric(proxy, 'llm_cache_proxy_tokens_saved_total{kind="prompt"}')
        == 2 * usage.prompt_tokens
    )
    assert (
        metric(proxy, 'llm_cache_proxy_tokens_saved_total{kind="completion"}')
        == 2 * usage.completion_tokens
    )
    expected = 2 * (usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.60) / 1e6
    assert metric(proxy, "llm_cache_proxy_cost_saved_usd_total") == pytest.approx(expected)
    assert metric(proxy, "llm_cache_proxy_cache_breaker_open") == 0


def test_keys_never_reach_the_store_or_the_logs(
    make_proxy: Callable[..., ProxyServer],
    upstream: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream_key = "sk-upstream-SECRET-0123456789"
    client_key = "sk-client-SECRET-9876543210"
    path = tmp_path / "keys.db"
    server = make_proxy(f"sqlite:///{path}", upstream_api_key=upstream_key)
    c = client(server, client_key)
    answer, _, _ = chat(c)
    chat(c)
    list(
        c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "s"}], stream=True
        )
    )
    upstream.fail_next(401, message="bad key")
    with pytest.raises(openai.AuthenticationError):
        chat(c, [{"role": "user", "content": "unauthorised"}])
    # The fixed key replaced the client's on the way upstream ...
    assert {r["headers"]["authorization"] for r in upstream.requests} == {f"Bearer {upstream_key}"}
    settle(server)
    server.stop()
    # ... and neither key is in the cache files or any log record.
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("keys.db"))
    assert answer.choices[0].message.content.encode() in stored  # the right files were read
    assert b"SECRET" not in stored
    assert "SECRET" not in caplog.text


def test_unknown_paths(proxy: ProxyServer) -> None:
    response = httpx.get(proxy.url + "/nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = httpx.post(
        proxy.base_url + "/chat/completions",
        content=b"not json",
        headers={"content-type": "application/json"},
    )
    assert (
        response.status_code == 400 and response.headers["x-cache"] == "BYPASS"
    )  # the upstream's verdict
    assert json.loads(response.content)["error"]["type"] == "invalid_request_error"


# --------------------------------------------------------------------- other backends


@pytest.mark.redis
def test_redis_backed_proxy(
    make_proxy: Callable[..., ProxyServer], upstream: Any, redis_url: str
) -> None:
    server = make_proxy(f"{redis_url}?namespace=proxy-test-{time.time_ns()}")
    c = client(server)
    first, x1, _ = chat(c)
    settle(server)
    text, _ = stream_text(c.chat.completions.create(model=MODEL, messages=JOKE, stream=True))
    second, x2, _ = chat(c)
    assert (x1, x2) == ("MISS", "HIT")
    assert text == second.choices[0].message.content == first.choices[0].message.content
    assert upstream.request_count == 1
    assert httpx.get(server.url + "/healthz").json()["cache"] == {
        "backend": "RedisCache",
        "reachable": True,
        "breaker_open": False,
        "error": None,
    }


# Deterministic bag-of-words vectors (the built-in server's), so no model is loaded; other
# test modules import it from here.
ToyEmbeddings = fake_openai.ToyEmbeddings


def test_semantic_hits(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    from llm_cache.semantic.cache import SemanticCache

    index = SemanticCache(ToyEmbeddings(), guards=None, threshold=0.8)
    server = make_proxy("memory://", semantic_cache=index)
    c = client(server)
    first, x1, _ = chat(c, [{"role": "user", "content": "What is the capital of France?"}])
    settle(server)
    raw = c.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "what is the capital of france"}]
    )
    assert (x1, raw.headers["x-cache"]) == ("MISS", "SEMANTIC-HIT")
    assert 0.8 <= float(raw.headers["x-cache-similarity"]) < 1.0
    assert raw.parse().choices[0].message.content == first.choices[0].message.content
    _, x_exact, headers = chat(c, [{"role": "user", "content": "What is the capital of France?"}])
    assert x_exact == "HIT" and "x-cache-similarity" not in headers
    # Another model, another conversation or an unrelated question never match by meaning.
    _, x_model, _ = chat(
        c, [{"role": "user", "content": "what is the capital of france"}], temperature=0.5
    )
    _, x_other, _ = chat(c, [{"role": "user", "content": "How do tides work?"}])
    assert (x_model, x_other) == ("MISS", "MISS")
    # Embeddings are only ever matched exactly.
    c.embeddings.create(model="text-embedding-3-small", input="What is the capital of France?")
    e = c.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="what is the capital of france"
    )
    assert e.headers["x-cache"] == "MISS"
    assert (
        metric(
            server,
            'llm_cache_proxy_requests_total{endpoint="chat.completions",cache="semantic_hit"}',
        )
        == 1
    )
    assert upstream.request_count == 5


def test_semantic_needs_a_semantic_cache(upstream: Any) -> None:
    with pytest.raises(ConfigurationError, match="semantic"):
        create_app(upstream.base_url, InMemoryCache(), semantic=True)
    with pytest.raises(ConfigurationError, match="alookup_with_score"):
        create_app(upstream.base_url, "memory://", semantic_cache=InMemoryCache())


# ------------------------------------------------------------------------------- CLI


def test_llm_cache_serve_command(upstream: Any, tmp_path: Path) -> None:
    import subprocess
    import sys

    port = _closed_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llm_cache.cli",
            "serve",
            "--upstream",
            upstream.base_url,
            "--cache",
            f"sqlite:///{tmp_path / 'cli.db'}",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok":
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                "llm-cache serve did not start"
            )
            time.sleep(0.1)
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-cli", max_retries=0)
        xs = [
            c.chat.completions.with_raw_response.create(model=MODEL, messages=JOKE).headers[
                "x-cache"
            ]
            for _ in range(2)
        ]
        assert xs == ["MISS", "HIT"]
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0]
    assert f"llm-cache proxy on http://127.0.0.1:{port}/v1" in output
    assert "sk-cli" not in output


def test_serve_rejects_a_bad_cache_url(capsys: pytest.CaptureFixture[str]) -> None:
    from llm_cache.cli import main

    assert main(["serve", "--cache", "nosuch://x"]) == 1
    assert "unknown cache URL scheme" in capsys.readouterr().err


# ------------------------------------------------------------ abandoned streams


class SlowStreamUpstream:
    """A real ASGI upstream on loopback that streams one word every 50 ms and records
    whether its client (the proxy) hung up before the end."""

    def __init__(self, words: int = 60) -> None:
        self.words = words
        self.started = 0
        self.disconnected = asyncio.Event()
        self.completed = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        self.started += 1
        self.disconnected = asyncio.Event()

        async def watch() -> None:
            if (await receive())["type"] == "http.disconnect":
                self.disconnected.set()

        watcher = asyncio.ensure_future(watch())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for i in range(self.words):
            if self.disconnected.is_set():
                return
            chunk = {
                "id": "chatcmpl-slow",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": MODEL,
                "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}],
            }
            await send(
                {
                    "type": "http.response.body",
                    "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                    "more_body": True,
                }
            )
            await asyncio.sleep(0.05)
        watcher.cancel()
        self.completed = True
        last = {
            "id": "chatcmpl-slow",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": MODEL,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await send(
            {
                "type": "http.response.body",
                "body": f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode(),
            }
        )


def test_a_stream_every_client_abandons_is_cancelled_upstream(
    make_proxy: Callable[..., ProxyServer],
) -> None:
    slow = SlowStreamUpstream()
    with ProxyServer(slow) as slow_server:
        server = make_proxy("memory://", upstream_url=slow_server.base_url)
        body = {"model": MODEL, "messages": JOKE, "stream": True}
        with httpx.Client(base_url=server.base_url) as http:
            with http.stream("POST", "/chat/completions", json=body) as response:
                assert response.headers["x-cache"] == "MISS"
                first = next(response.iter_lines())
                assert first.startswith("data: ") and "w0" in first
            # The client hung up after one event: the proxy stops reading (and paying for)
            # the stream instead of finishing it for nobody, and stores nothing.
            settle(server)
            assert slow.started == 1 and not slow.completed
            deadline = time.monotonic() + 5
            while not slow.disconnected.is_set():
                assert time.monotonic() < deadline, "the upstream stream was not closed"
                time.sleep(0.01)
            with http.stream("POST", "/chat/completions", json=body) as response:
                assert response.headers["x-cache"] == "MISS"
            assert slow.started == 2


def test_a_late_stream_joins_the_live_one(make_proxy: Callable[..., ProxyServer]) -> None:
    slow = SlowStreamUpstream(words=20)
    with ProxyServer(slow) as slow_server:
        server = make_proxy("memory://", upstream_url=slow_server.base_url)
        c = client(server)
        first = c.chat.completions.with_raw_response.create(model=MODEL, messages=JOKE, stream=True)
        chunks = iter(first.parse())
        head = [next(chunks) for _ in range(4)]  # the stream is under way
        second = c.chat.completions.with_raw_response.create(
            model=MODEL, messages=JOKE, stream=True
        )
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
        assert second.headers["x-cache-coalesced"] == "true"
        late_text, _ = stream_text(second.parse())  # from the first word, not from where it joined
        text = "".join(
            ch.choices[0].delta.content or "" for ch in head + list(chunks) if ch.choices
        )
        assert late_text == text == "".join(f"w{i} " for i in range(20))
        assert slow.started == 1 and slow.completed
        settle(server)
        again, x, _ = chat(c)
        assert x == "HIT" and again.choices[0].message.content == text
        assert slow.started == 1
