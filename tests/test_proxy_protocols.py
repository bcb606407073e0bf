"""The proxy in front of the Responses API and Anthropic Messages, driven by the official
``openai`` and ``anthropic`` SDKs; and entries shared between the proxy and the SDK
wrappers, both ways."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llm_cache import InMemoryCache
from llm_cache.integrations import anthropic_client, openai_client
from llm_cache.proxy import ProxyServer, create_app
from test_proxy import metric, settle

MODEL = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-5"
ASK = {"model": CLAUDE, "max_tokens": 64, "messages": [{"role": "user", "content": "Tell me a joke"}]}


def oai(server: ProxyServer, key: str = "sk-a") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def claude(server: ProxyServer, key: str = "sk-ant-a") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0)


# ----------------------------------------------------------------------------- Responses
def test_responses_miss_hit_and_streamed_replay(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    server = make_proxy()
    c = oai(server)
    first = c.responses.with_raw_response.create(model=MODEL, input="Tell me a joke", instructions="Be brief.")
    settle(server)
    second = c.responses.with_raw_response.create(model=MODEL, input="Tell me a joke", instructions="Be brief.")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.parse().id == first.parse().id and second.parse().output_text == first.parse().output_text
    raw = c.responses.with_raw_response.create(model=MODEL, input="Tell me a joke", instructions="Be brief.", stream=True)
    assert raw.headers["x-cache"] == "HIT"
    events = list(raw.parse())
    assert [e.type for e in events][0] == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == first.parse().output_text
    with c.responses.stream(model=MODEL, input="Tell me a joke", instructions="Be brief.") as stream:
        assert stream.get_final_response().output_text == first.parse().output_text
    assert upstream.request_count == 1


def test_responses_streamed_miss_is_stored_and_replayed(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    server = make_proxy()
    c = oai(server)
    live = list(c.responses.create(model=MODEL, input="Summarize: the proxy streams.", stream=True))
    settle(server)
    hit = c.responses.with_raw_response.create(model=MODEL, input="Summarize: the proxy streams.")
    assert hit.headers["x-cache"] == "HIT" and hit.parse().id == live[-1].response.id
    assert upstream.request_count == 1


def test_responses_background_and_by_id_pass_through(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    server = make_proxy()
    c = oai(server)
    queued = c.responses.with_raw_response.create(model=MODEL, input="Tell me a joke", background=True)
    again = c.responses.with_raw_response.create(model=MODEL, input="Tell me a joke", background=True)
    assert (queued.headers["x-cache"], again.headers["x-cache"]) == ("BYPASS", "BYPASS")
    rid = queued.parse().id
    got = c.responses.with_raw_response.retrieve(rid)
    assert got.headers["x-cache"] == "BYPASS" and got.parse().status == "completed"
    assert c.responses.delete(rid) is None
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(rid)
    assert upstream.request_count == 2  # both background requests went upstream (the fake counts POSTs)


def test_responses_async(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    server = make_proxy()

    async def main() -> None:
        c = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-a", max_retries=0)
        first = await c.responses.create(model=MODEL, input="Tell me a joke")
        await asyncio.sleep(0)
        for _ in range(200):
            if not server.app.proxy._stores and not server.app.proxy._flights:
                break
            await asyncio.sleep(0.01)
        stream = await c.responses.create(model=MODEL, input="Tell me a joke", stream=True)
        events = [e async for e in stream]
        assert events[-1].response.id == first.id

    asyncio.run(main())
    assert upstream.request_count == 1


# ---------------------------------------------------------------------------- Anthropic
def test_messages_miss_hit_and_stream_replay(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    server = make_proxy()
    c = claude(server)
    first = c.messages.with_raw_response.create(**ASK)
    settle(server)
    second = c.messages.with_raw_response.create(**ASK, metadata={"user_id": "another-user"})
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.parse().id == first.parse().id and second.parse().content == first.parse().content
    with c.messages.stream(**ASK) as stream:  # a HIT replayed as named events
        assert stream.get_final_text() == first.parse().content[0].text
    raw = c.messages.with_raw_response.create(**ASK, stream=True)
    assert raw.headers["x-cache"] == "HIT"
    assert [e.type for e in raw.parse()][-1] == "message_stop"
    assert upstream.request_count == 1
    assert metric(server, 'llm_cache_proxy_requests_total{endpoint="anthropic.messages",cache="hit"}') == 3
    assert metric(server, 'llm_cache_proxy_protocol_tokens_saved_total{endpoint="anthropic.messages",kind="output"}') > 0


def test_messages_streamed_miss_is_relayed_live_and_stored(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    server = make_proxy()
    c = claude(server)
    tool = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    ask = {**ASK, "tools": [tool], "tool_choice": {"type": "any"}, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    with c.messages.stream(**ask) as stream:
        live = stream.get_final_message()
    settle(server)
    hit = c.messages.with_raw_response.create(**ask)
    assert hit.headers["x-cache"] == "HIT"
    assert hit.parse().content == live.content and [b.type for b in live.content] == ["thinking", "tool_use"]
    assert upstream.request_count == 1


def test_messages_tenants_are_isolated_by_x_api_key(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    cache = InMemoryCache()
    server = make_proxy(cache)

    def post(key: str) -> httpx.Response:
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        response = httpx.post(server.url + "/v1/messages", json=ASK, headers=headers)
        settle(server)
        return response

    a, b, a_again = post("sk-ant-a"), post("sk-ant-b"), post("sk-ant-a")
    assert [r.headers["x-cache"] for r in (a, b, a_again)] == ["MISS", "MISS", "HIT"]
    # the key went upstream as Anthropic's header, with the version header
    sent = upstream.requests[-1]["headers"]
    assert sent["x-api-key"] == "sk-ant-b" and sent["anthropic-version"] == "2023-06-01"
    assert upstream.request_count == 2
    # and never into the cache: the tenant is a hash of it
    stored = json.dumps([[e.prompt, e.llm_string, [g.to_dict() for g in e.generations]] for e in cache.entries()])
    assert cache.count() == 2 and "sk-ant" not in stored


def test_a_fixed_upstream_key_replaces_x_api_key(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    server = make_proxy(upstream_api_key="sk-ant-fixed")
    httpx.post(server.url + "/v1/messages", json=ASK, headers={"x-api-key": "sk-ant-mine", "anthropic-version": "2023-06-01"})
    sent = upstream.requests[-1]["headers"]
    assert sent["x-api-key"] == "sk-ant-fixed" and "authorization" not in sent


def test_messages_errors_are_anthropic_errors(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    server = make_proxy()
    c = claude(server)
    with pytest.raises(anthropic.BadRequestError) as upstream_error:
        c.messages.create(model=CLAUDE, max_tokens=0, messages=ASK["messages"])
    assert upstream_error.value.body["error"]["type"] == "invalid_request_error"  # passed through
    response = httpx.post(
        server.url + "/v1/messages", json=ASK,
        headers={"x-api-key": "sk-ant-a", "anthropic-version": "2023-06-01", "cache-control": "only-if-cached"},
    )
    assert response.status_code == 504 and response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "timeout_error"


def test_messages_unreachable_upstream_is_an_anthropic_error(upstream: Any) -> None:
    with socket_port() as port:
        app = create_app(f"http://127.0.0.1:{port}/v1", "memory://", connect_timeout=2)
    with ProxyServer(app) as server:
        with pytest.raises(anthropic.APIStatusError) as caught:
            claude(server).messages.create(**ASK)
    assert caught.value.status_code == 502 and caught.value.body["type"] == "error"


def test_every_proxy_error_under_messages_is_an_anthropic_error(upstream: Any) -> None:
    # Pass-through paths too: an uncacheable request (a query string), count_tokens and
    # any other /v1/messages/... route, with the upstream unreachable; the same failure on
    # an OpenAI route stays an OpenAI error.
    with socket_port() as port:
        app = create_app(f"http://127.0.0.1:{port}/v1", "memory://", connect_timeout=2)
    with ProxyServer(app) as server:
        c = anthropic.Anthropic(base_url=server.url, api_key="sk-ant-a", max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as caught:
            c.messages.count_tokens(model=CLAUDE, messages=ASK["messages"])
        assert caught.value.status_code == 502 and caught.value.body["type"] == "error"
        headers = {"x-api-key": "sk-ant-a", "anthropic-version": "2023-06-01"}
        for path in ("/v1/messages?beta=true", "/v1/messages/batches", "/v1/messages/count_tokens"):
            response = httpx.post(server.url + path, json=ASK, headers=headers)
            assert response.status_code == 502 and response.headers["x-cache"] == "BYPASS"
            body = response.json()
            assert body["type"] == "error" and body["error"]["type"] == "api_error", (path, body)
            assert "upstream" in body["error"]["message"]
        openai_shaped = httpx.post(server.url + "/v1/files", json={}, headers={"authorization": "Bearer sk-a"}).json()
        assert openai_shaped["error"]["code"] == "upstream_connect_error"


def socket_port() -> Any:
    import contextlib
    import socket

    @contextlib.contextmanager
    def free() -> Iterator[int]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        yield port  # closed: nothing listens there

    return free()


def test_count_tokens_passes_through(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    server = make_proxy()
    raw = claude(server).messages.with_raw_response.count_tokens(model=CLAUDE, messages=ASK["messages"])
    assert raw.headers["x-cache"] == "BYPASS" and raw.parse().input_tokens == 4


def test_messages_async_stream(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    server = make_proxy()

    async def main() -> None:
        c = anthropic.AsyncAnthropic(base_url=server.url, api_key="sk-ant-a", max_retries=0)
        async with c.messages.stream(**ASK) as stream:
            live = await stream.get_final_message()
        for _ in range(200):
            if not server.app.proxy._stores and not server.app.proxy._flights:
                break
            await asyncio.sleep(0.01)
        again = await c.messages.create(**ASK)
        assert again.id == live.id

    asyncio.run(main())
    assert upstream.request_count == 1


# ------------------------------------------------------------------- proxy <-> SDK wrappers
@pytest.mark.parametrize("namespace", [None, "team-1"])
def test_proxy_entries_are_hits_through_the_sdk_wrappers_and_back(
    make_proxy: Callable[..., ProxyServer], upstream: Any, namespace: str | None
) -> None:
    cache = InMemoryCache()
    server = make_proxy(cache, share_across_keys=True)
    headers = {"X-LLM-Cache-Namespace": namespace} if namespace else {}
    direct_openai = openai.OpenAI(base_url=upstream.base_url, api_key="sk-a", max_retries=0)
    direct_claude = anthropic.Anthropic(base_url=upstream.base_url.removesuffix("/v1"), api_key="sk-ant-a", max_retries=0)
    wrapped = openai_client.cached_client(direct_openai, cache, namespace=namespace)
    wrapped_claude = anthropic_client.cached_client(direct_claude, cache, namespace=namespace)
    via_proxy = oai(server)
    via_proxy_claude = claude(server)

    # proxy first, then the wrapper: a hit (no upstream call)
    chat = via_proxy.chat.completions.create(model=MODEL, messages=ASK["messages"], extra_headers=headers)
    answer = via_proxy.responses.create(model=MODEL, input="Tell me a joke", extra_headers=headers)
    message = via_proxy_claude.messages.create(**ASK, extra_headers=headers)
    settle(server)
    assert upstream.request_count == 3
    assert wrapped.chat.completions.create(model=MODEL, messages=ASK["messages"]).id == chat.id
    assert wrapped.responses.create(model=MODEL, input="Tell me a joke").id == answer.id
    assert wrapped_claude.messages.create(**ASK).id == message.id
    assert upstream.request_count == 3

    # the wrapper first, then the proxy: a HIT
    ask = {**ASK, "messages": [{"role": "user", "content": "Summarize: shared entries."}]}
    own = wrapped_claude.messages.create(**ask)
    own_answer = wrapped.responses.create(model=MODEL, input="Summarize: shared entries.")
    assert upstream.request_count == 5
    raw = via_proxy_claude.messages.with_raw_response.create(**ask, extra_headers=headers)
    assert raw.headers["x-cache"] == "HIT" and raw.parse().id == own.id
    raw_answer = via_proxy.responses.with_raw_response.create(model=MODEL, input="Summarize: shared entries.", extra_headers=headers)
    assert raw_answer.headers["x-cache"] == "HIT" and raw_answer.parse().id == own_answer.id
    assert upstream.request_count == 5
    # another namespace is another entry
    other = {"X-LLM-Cache-Namespace": "elsewhere"}
    assert via_proxy_claude.messages.with_raw_response.create(**ask, extra_headers=other).headers["x-cache"] == "MISS"


# ------------------------------------------------------------------------------ semantic
def test_semantic_matching_for_both_protocols(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    from llm_cache.semantic.cache import SemanticCache

    from test_proxy import ToyEmbeddings

    index = SemanticCache(ToyEmbeddings(), guards=None, threshold=0.8)
    server = make_proxy("memory://", semantic_cache=index)
    c, k = oai(server), claude(server)
    first = c.responses.create(model=MODEL, input="What is the capital of France?", instructions="Be brief.")
    message = k.messages.create(**{**ASK, "system": "Be brief.", "messages": [{"role": "user", "content": "What is the capital of France?"}]})
    settle(server)
    similar = c.responses.with_raw_response.create(model=MODEL, input="what is the capital of france", instructions="Be brief.")
    assert similar.headers["x-cache"] == "SEMANTIC-HIT" and similar.parse().output_text == first.output_text
    near = k.messages.with_raw_response.create(
        **{**ASK, "system": "Be brief.", "messages": [{"role": "user", "content": "what is the capital of france"}]}
    )
    assert near.headers["x-cache"] == "SEMANTIC-HIT" and near.parse().content == message.content
    # other instructions / system prompt: another partition, never a semantic hit
    other = c.responses.with_raw_response.create(model=MODEL, input="what is the capital of france", instructions="Be long.")
    other_system = k.messages.with_raw_response.create(
        **{**ASK, "system": "Be long.", "messages": [{"role": "user", "content": "what is the capital of france"}]}
    )
    assert (other.headers["x-cache"], other_system.headers["x-cache"]) == ("MISS", "MISS")
    assert upstream.request_count == 4
