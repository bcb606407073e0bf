"""cached_client: the official openai SDK client, cached, against the built-in server over HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import openai
import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from llm_cache import ConfigurationError, Generation, InMemoryCache, SQLiteCache, set_llm_cache
from llm_cache.integrations.openai_client import (
    AsyncCachedStream,
    CachedOpenAI,
    CachedStream,
    cached_client,
)
from llm_cache.llms import ChatOpenAI

MODEL = "gpt-4o-mini"
JOKE = [{"role": "user", "content": "Tell me a joke"}]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}},
        },
    }
]


def sync_client(server: Any, cache: Any = None, **kwargs: Any) -> CachedOpenAI:
    return cached_client(openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0), cache, **kwargs)


def async_client(server: Any, cache: Any = None, **kwargs: Any) -> CachedOpenAI:
    return cached_client(openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0), cache, **kwargs)


def chunk_text(chunks: list[Any], index: int = 0) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == index)


# -- non-streaming ----------------------------------------------------------------------------
def test_chat_miss_then_hit_returns_the_sdk_type(upstream) -> None:
    client = sync_client(upstream, InMemoryCache())
    first = client.chat.completions.create(model=MODEL, messages=JOKE)
    second = client.chat.completions.create(model=MODEL, messages=JOKE)
    assert isinstance(second, ChatCompletion)
    assert second.model_dump() == first.model_dump()  # same id: a replay, not a new answer
    assert upstream.request_count == 1


def test_output_parameters_are_in_the_key_transport_ones_are_not(upstream) -> None:
    client = sync_client(upstream, InMemoryCache())
    base = client.chat.completions.create(model=MODEL, messages=JOKE, temperature=0.0)
    other = client.chat.completions.create(model=MODEL, messages=JOKE, temperature=1.0)
    assert upstream.request_count == 2 and other.id != base.id
    again = client.chat.completions.create(
        model=MODEL, messages=JOKE, temperature=0.0, timeout=30, user="someone",
        extra_headers={"X-Trace": "1"}, metadata={"run": "x"},
    )
    assert again.id == base.id and upstream.request_count == 2
    seeded = client.chat.completions.create(model=MODEL, messages=JOKE, temperature=0.0, seed=7)
    assert seeded.id != base.id and upstream.request_count == 3


def test_sdk_message_objects_in_messages_key_like_their_dicts(upstream) -> None:
    client = sync_client(upstream, InMemoryCache())
    first = client.chat.completions.create(model=MODEL, messages=JOKE)
    history = [*JOKE, first.choices[0].message, {"role": "user", "content": "Another"}]
    as_dicts = [*JOKE, {"role": "assistant", "content": first.choices[0].message.content}, history[-1]]
    a = client.chat.completions.create(model=MODEL, messages=history)
    b = client.chat.completions.create(model=MODEL, messages=as_dicts)
    assert a.id == b.id and upstream.request_count == 2


def test_completions_string_and_list_prompts_never_share_an_entry(upstream) -> None:
    client = sync_client(upstream, InMemoryCache())
    listed = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["a b", "c d"])
    looks_alike = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=json.dumps(["a b", "c d"]))
    assert len(listed.choices) == 2 and len(looks_alike.choices) == 1
    again = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["a b", "c d"], n=1)
    assert isinstance(again, Completion) and upstream.request_count == 3  # n=1 given is another key
    hit = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["a b", "c d"])
    assert hit.model_dump() == listed.model_dump() and upstream.request_count == 3


def test_embeddings_are_cached_per_encoding_format(upstream) -> None:
    client = sync_client(upstream, InMemoryCache())
    first = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    second = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    assert isinstance(second, CreateEmbeddingResponse)
    assert second.data[1].embedding == first.data[1].embedding and isinstance(first.data[0].embedding[0], float)
    assert upstream.request_count == 1
    b64 = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"], encoding_format="base64")
    assert isinstance(b64.data[0].embedding, str) and upstream.request_count == 2
    again = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"], encoding_format="base64")
    assert again.data[0].embedding == b64.data[0].embedding and upstream.request_count == 2


def test_n_choices_and_tool_calls_round_trip(upstream) -> None:
    client = sync_client(upstream, SQLiteCache(":memory:"))
    kwargs = dict(model=MODEL, messages=JOKE, n=3)
    first = client.chat.completions.create(**kwargs)
    assert client.chat.completions.create(**kwargs).model_dump() == first.model_dump()
    tools = dict(model=MODEL, messages=[{"role": "user", "content": "Weather in Paris"}], tools=TOOLS, tool_choice="required")
    called = client.chat.completions.create(**tools)
    hit = client.chat.completions.create(**tools)
    assert hit.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert hit.model_dump() == called.model_dump() and upstream.request_count == 2


# -- streaming ---------------------------------------------------------------------------------
def test_stream_miss_passes_chunks_through_and_stores_them(upstream) -> None:
    client = sync_client(upstream, InMemoryCache())
    stream = client.chat.completions.create(model=MODEL, messages=JOKE, stream=True)
    chunks = list(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks) and not isinstance(stream, CachedStream)
    assert stream.response.status_code == 200  # the SDK stream's own attributes are there
    full = client.chat.completions.create(model=MODEL, messages=JOKE)
    assert upstream.request_count == 1
    assert full.choices[0].message.content == chunk_text(chunks)
    assert full.id == chunks[0].id and full.choices[0].finish_reason == "stop"


def test_stream_hit_replays_sdk_chunks_with_usage_when_asked(upstream) -> None:
    client = sync_client(upstream, InMemoryCache())
    full = client.chat.completions.create(model=MODEL, messages=JOKE)
    with client.chat.completions.create(
        model=MODEL, messages=JOKE, stream=True, stream_options={"include_usage": True}
    ) as stream:
        assert isinstance(stream, CachedStream)
        chunks = list(stream)
    assert upstream.request_count == 1
    assert all(isinstance(c, ChatCompletionChunk) and c.id == full.id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunk_text(chunks) == full.choices[0].message.content
    assert len(chunks) > 4  # word-sized pieces, not one blob
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == full.usage.total_tokens
    plain = list(client.chat.completions.create(model=MODEL, messages=JOKE, stream=True))
    assert all(c.choices for c in plain)  # no usage chunk unless asked


def test_streamed_tool_calls_and_n_are_assembled(upstream) -> None:
    client = sync_client(upstream, InMemoryCache())
    kwargs = dict(model=MODEL, messages=[{"role": "user", "content": "Weather in Oslo"}], tools=TOOLS, tool_choice="required", n=2)
    live = list(client.chat.completions.create(**kwargs, stream=True))
    stored = client.chat.completions.create(**kwargs)
    assert upstream.request_count == 1
    assert [c.index for c in stored.choices] == [0, 1]
    call = stored.choices[1].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments).keys() == {"city", "days"}
    assert stored.choices[1].finish_reason == "tool_calls" and stored.choices[1].message.content is None
    replay = list(client.chat.completions.create(**kwargs, stream=True))
    calls = [d.choices[0].delta.tool_calls[0] for d in replay if d.choices and d.choices[0].delta.tool_calls]
    live_calls = [d.choices[0].delta.tool_calls[0] for d in live if d.choices and d.choices[0].delta.tool_calls]
    assert [(c.id, c.function.arguments) for c in calls] == [(c.id, c.function.arguments) for c in live_calls]


def test_completion_stream_miss_and_replay(upstream) -> None:
    client = sync_client(upstream, InMemoryCache())
    kwargs = dict(model="gpt-3.5-turbo-instruct", prompt="Say something nice", n=2)
    live = list(client.completions.create(**kwargs, stream=True))
    replay = list(client.completions.create(**kwargs, stream=True))
    assert upstream.request_count == 1
    assert all(isinstance(c, Completion) for c in replay)
    for index in (0, 1):
        text = lambda chunks: "".join(c.choices[0].text for c in chunks if c.choices[0].index == index)  # noqa: E731
        assert text(replay) == text(live) != ""
    full = client.completions.create(**kwargs)
    assert [c.text for c in full.choices] == ["".join(c.choices[0].text for c in live if c.choices[0].index == i) for i in (0, 1)]


def test_an_abandoned_stream_is_not_stored(upstream) -> None:
    client = sync_client(upstream, InMemoryCache())
    stream = client.chat.completions.create(model=MODEL, messages=JOKE, stream=True)
    next(stream)
    stream.close()
    client.chat.completions.create(model=MODEL, messages=JOKE)
    assert upstream.request_count == 2


def test_upstream_error_is_raised_and_nothing_stored(upstream) -> None:
    client = sync_client(upstream, InMemoryCache())
    upstream.fail_next(500)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=JOKE)
    first = client.chat.completions.create(model=MODEL, messages=JOKE)
    assert client.chat.completions.create(model=MODEL, messages=JOKE).id == first.id
    assert upstream.request_count == 2


# -- async ---------------------------------------------------------------------------------
async def test_async_chat_hit_and_stream(upstream) -> None:
    client = async_client(upstream, InMemoryCache())
    assert client.is_async
    first = await client.chat.completions.create(model=MODEL, messages=JOKE)
    stream = await client.chat.completions.create(model=MODEL, messages=JOKE, stream=True)
    assert isinstance(stream, AsyncCachedStream)
    async with stream:
        chunks = [c async for c in stream]
    assert chunk_text(chunks) == first.choices[0].message.content and upstream.request_count == 1
    other = [{"role": "user", "content": "Summarize this: caches save money."}]
    live = await client.chat.completions.create(model=MODEL, messages=other, stream=True)
    live_chunks = [c async for c in live]
    again = await client.chat.completions.create(model=MODEL, messages=other)
    assert again.choices[0].message.content == chunk_text(live_chunks) and upstream.request_count == 2
    embedded = await client.embeddings.create(model="text-embedding-3-small", input="x y")
    assert (await client.embeddings.create(model="text-embedding-3-small", input="x y")) == embedded
    assert upstream.request_count == 3


async def test_async_concurrent_identical_misses_make_one_call(upstream) -> None:
    upstream.latency = 0.2
    client = async_client(upstream, InMemoryCache())
    results = await asyncio.gather(*(client.chat.completions.create(model=MODEL, messages=JOKE) for _ in range(8)))
    assert upstream.request_count == 1
    assert len({r.id for r in results}) == 1


def test_threads_with_identical_misses_make_one_call(upstream) -> None:
    upstream.latency = 0.2
    client = sync_client(upstream, SQLiteCache(":memory:"))
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait()
        results.append(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Tell me a joke"))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert upstream.request_count == 1 and len({r.id for r in results}) == 1


# -- cache resolution, namespace, pass-through, interop ---------------------------------------
def test_cache_argument_follows_the_model_rules(upstream) -> None:
    global_cache = InMemoryCache()
    set_llm_cache(global_cache)
    client = sync_client(upstream)  # cache=None: the global cache
    client.chat.completions.create(model=MODEL, messages=JOKE)
    client.chat.completions.create(model=MODEL, messages=JOKE)
    assert upstream.request_count == 1 and len(global_cache) == 1
    never = sync_client(upstream, False)
    never.chat.completions.create(model=MODEL, messages=JOKE)
    assert upstream.request_count == 2
    set_llm_cache(None)
    with pytest.raises(ConfigurationError, match="no global cache"):
        sync_client(upstream, True).chat.completions.create(model=MODEL, messages=JOKE)
    with pytest.raises(ConfigurationError):
        sync_client(upstream, "sqlite")


def test_namespaces_do_not_share_entries(upstream) -> None:
    cache = InMemoryCache()
    a, b = sync_client(upstream, cache, namespace="a"), sync_client(upstream, cache, namespace="b")
    a.chat.completions.create(model=MODEL, messages=JOKE)
    b.chat.completions.create(model=MODEL, messages=JOKE)
    a.chat.completions.create(model=MODEL, messages=JOKE)
    assert upstream.request_count == 2


def test_everything_else_passes_through(upstream) -> None:
    client = sync_client(upstream, InMemoryCache())
    assert MODEL in [m.id for m in client.models.list().data]
    assert client.base_url == client.wrapped.base_url
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=JOKE)  # uncached SDK call
    assert raw.http_response.status_code == 200
    slower = client.with_options(timeout=5)
    assert isinstance(slower, CachedOpenAI)
    slower.chat.completions.create(model=MODEL, messages=JOKE)
    slower.chat.completions.create(model=MODEL, messages=JOKE)
    assert upstream.request_count == 2


def test_entries_are_shared_with_chat_openai_model(upstream) -> None:
    cache = InMemoryCache()
    client = sync_client(upstream, cache)
    model = ChatOpenAI(MODEL, base_url=upstream.base_url, api_key="sk-test", max_retries=0, temperature=0.5, cache=cache)
    sdk = client.chat.completions.create(model=MODEL, messages=JOKE, temperature=0.5, n=1)
    assert model.invoke("Tell me a joke") == sdk.choices[0].message.content
    assert upstream.request_count == 1
    # and the other way round: an entry the model wrote is rebuilt as a ChatCompletion
    model.invoke("Summarize this: one store, many readers.")
    rebuilt = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Summarize this: one store, many readers."}], temperature=0.5, n=1
    )
    assert isinstance(rebuilt, ChatCompletion) and upstream.request_count == 2


def test_an_unusable_entry_is_a_miss_and_is_replaced(upstream) -> None:
    cache = InMemoryCache()
    client = sync_client(upstream, cache)
    from llm_cache.integrations.openai_client import CHAT

    prompt, llm_string = CHAT.key({"model": MODEL, "messages": JOKE}, None)
    cache.update(prompt, llm_string, [Generation(text="x", message={"role": "assistant", "content": 5})])
    answer = client.chat.completions.create(model=MODEL, messages=JOKE)
    assert upstream.request_count == 1 and isinstance(answer.choices[0].message.content, str)
    assert client.chat.completions.create(model=MODEL, messages=JOKE).id == answer.id
    assert upstream.request_count == 1
