"""The SDK wrappers on the protocol layer: the Responses API through ``openai``'s
``cached_client`` and Anthropic Messages through ``anthropic_client.cached_client``,
sync, async and streaming, against the built-in server; and LangChain's ChatAnthropic
through LangChainCache."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from llm_cache import Generation, InMemoryCache
from llm_cache.integrations import anthropic_client, openai_client

MODEL = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-5"
ASK = {"model": CLAUDE, "max_tokens": 64, "messages": [{"role": "user", "content": "Tell me a joke"}]}
WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def oai(server: Any, cache: Any, **kwargs: Any) -> Any:
    return openai_client.cached_client(openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0), cache, **kwargs)


def aoai(server: Any, cache: Any, **kwargs: Any) -> Any:
    return openai_client.cached_client(openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0), cache, **kwargs)


def claude(server: Any, cache: Any, **kwargs: Any) -> Any:
    client = anthropic.Anthropic(base_url=server.base_url.removesuffix("/v1"), api_key="sk-ant-test", max_retries=0)
    return anthropic_client.cached_client(client, cache, **kwargs)


def aclaude(server: Any, cache: Any, **kwargs: Any) -> Any:
    client = anthropic.AsyncAnthropic(base_url=server.base_url.removesuffix("/v1"), api_key="sk-ant-test", max_retries=0)
    return anthropic_client.cached_client(client, cache, **kwargs)


_RESPONSE_EVENT = TypeAdapter(ResponseStreamEvent)
_MESSAGE_EVENT = TypeAdapter(RawMessageStreamEvent)


# ------------------------------------------------------------------------ Responses API
def test_responses_miss_then_hit_is_the_sdk_type(upstream) -> None:
    client = oai(upstream, InMemoryCache())
    first = client.responses.create(model=MODEL, input="Tell me a joke", instructions="Be brief.")
    second = client.responses.create(model=MODEL, input="Tell me a joke", instructions="Be brief.", metadata={"run": "2"})
    assert isinstance(second, Response) and second.id == first.id and second.output_text == first.output_text
    assert upstream.request_count == 1
    client.responses.create(model=MODEL, input="Tell me a joke", instructions="Be long.")
    client.responses.create(model=MODEL, input="Tell me a joke", instructions="Be brief.", previous_response_id=first.id)
    assert upstream.request_count == 3


def test_responses_tools_and_structured_output(upstream) -> None:
    client = oai(upstream, InMemoryCache())
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["input_schema"]}
    call = client.responses.create(model=MODEL, input="Weather in Oslo?", tools=[tool], tool_choice="required")
    again = client.responses.create(model=MODEL, input="Weather in Oslo?", tools=[tool], tool_choice="required")
    assert again.output[0].type == "function_call" and again.output[0].call_id == call.output[0].call_id
    follow = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "function_call", "call_id": call.output[0].call_id, "name": "get_weather", "arguments": call.output[0].arguments},
        {"type": "function_call_output", "call_id": call.output[0].call_id, "output": "sunny"},
    ]
    client.responses.create(model=MODEL, input=follow, tools=[tool])
    client.responses.create(model=MODEL, input=follow, tools=[tool])
    schema = {"type": "json_schema", "name": "a", "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}
    one = client.responses.create(model=MODEL, input="a number", text={"format": schema})
    two = client.responses.create(model=MODEL, input="a number", text={"format": schema})
    assert one.output_text == two.output_text and upstream.request_count == 3


def test_responses_background_is_never_cached(upstream) -> None:
    cache = InMemoryCache()
    client = oai(upstream, cache)
    for _ in range(2):
        queued = client.responses.create(model=MODEL, input="Tell me a joke", background=True)
        assert queued.status == "queued"
    assert upstream.request_count == 2 and cache.count() == 0
    assert client.responses.retrieve(queued.id).status == "completed"  # the SDK's own, uncached


def test_responses_stream_miss_then_replay(upstream) -> None:
    client = oai(upstream, InMemoryCache())
    live = list(client.responses.create(model=MODEL, input="Tell me a joke", stream=True))
    replay = client.responses.create(model=MODEL, input="Tell me a joke", stream=True)
    events = list(replay)
    assert isinstance(replay, openai_client.CachedStream) and upstream.request_count == 1
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
    for event in events:  # the SDK's own parser accepts every replayed event, validated
        _RESPONSE_EVENT.validate_python(event.model_dump(mode="json", exclude_unset=True))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == live[-1].response.output_text == events[-1].response.output_text
    # a streamed answer is a hit for the unstreamed request too
    assert client.responses.create(model=MODEL, input="Tell me a joke").id == live[-1].response.id
    assert upstream.request_count == 1


def test_responses_async_and_streamed(upstream) -> None:
    async def main() -> None:
        client = aoai(upstream, InMemoryCache())
        first = await client.responses.create(model=MODEL, input="Summarize: caches are fast.")
        second = await client.responses.create(model=MODEL, input="Summarize: caches are fast.")
        assert isinstance(second, Response) and second.id == first.id
        stream = await client.responses.create(model=MODEL, input="Summarize: caches are fast.", stream=True)
        events = [e async for e in stream]
        assert events[-1].type == "response.completed" and events[-1].response.output_text == first.output_text

    asyncio.run(main())
    assert upstream.request_count == 1


# --------------------------------------------------------------------- Anthropic Messages
def test_messages_miss_then_hit_is_the_sdk_type(upstream) -> None:
    client = claude(upstream, InMemoryCache())
    first = client.messages.create(**ASK)
    second = client.messages.create(**ASK, metadata={"user_id": "someone-else"})
    assert isinstance(second, Message) and second.id == first.id and second.content == first.content
    assert second.usage.input_tokens == first.usage.input_tokens
    assert upstream.request_count == 1
    client.messages.create(**{**ASK, "system": "Answer in French."})
    client.messages.create(**{**ASK, "max_tokens": 3})
    assert upstream.request_count == 3


def test_messages_cache_control_is_not_keyed_and_system_blocks_are(upstream) -> None:
    client = claude(upstream, InMemoryCache())
    system = [{"type": "text", "text": "You are terse."}]
    marked = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    first = client.messages.create(**ASK, system=marked)
    assert first.usage.cache_creation_input_tokens == 3  # the fake bills the marked prefix
    assert client.messages.create(**ASK, system=system).id == first.id
    assert upstream.request_count == 1


def test_messages_tools_thinking_and_images(upstream) -> None:
    client = claude(upstream, InMemoryCache())
    ask = {**ASK, "messages": [{"role": "user", "content": "Weather in Oslo?"}], "tools": [WEATHER]}
    used = client.messages.create(**ask, tool_choice={"type": "any"})
    assert used.stop_reason == "tool_use" and client.messages.create(**ask, tool_choice={"type": "any"}).id == used.id
    turn = ask["messages"] + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in used.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": used.content[0].id, "content": "sunny"}]},
    ]
    client.messages.create(**{**ask, "messages": turn})
    client.messages.create(**{**ask, "messages": turn})
    thinking = client.messages.create(**ASK, thinking={"type": "enabled", "budget_tokens": 1024})
    assert thinking.content[0].type == "thinking"
    assert client.messages.create(**ASK, thinking={"type": "enabled", "budget_tokens": 1024}).content == thinking.content
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    look = {**ASK, "messages": [{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}]}
    client.messages.create(**look)
    client.messages.create(**look)
    other = {"type": "image", "source": {"type": "url", "url": "https://example.com/dog.png"}}
    client.messages.create(**{**look, "messages": [{"role": "user", "content": [other, {"type": "text", "text": "What is this?"}]}]})
    assert upstream.request_count == 5


def test_messages_stream_helper_and_raw_stream_replay(upstream) -> None:
    client = claude(upstream, InMemoryCache())
    with client.messages.stream(**ASK) as stream:
        live_text = "".join(stream.text_stream)
        live = stream.get_final_message()
    with client.messages.stream(**ASK) as stream:  # a hit, accumulated by the SDK's helper
        assert "".join(stream.text_stream) == live_text
        replayed = stream.get_final_message()
    assert replayed.id == live.id and replayed.content == live.content and replayed.usage.output_tokens == live.usage.output_tokens
    raw = client.messages.create(**ASK, stream=True)
    events = list(raw)
    assert isinstance(raw, anthropic_client.CachedStream)
    assert [e.type for e in events][:2] == ["message_start", "content_block_start"] and events[-1].type == "message_stop"
    for event in events:
        _MESSAGE_EVENT.validate_python(event.model_dump(mode="json", exclude_unset=True))
    assert client.messages.create(**ASK).id == live.id
    assert upstream.request_count == 1


def test_messages_stream_of_a_tool_call_replays_its_input(upstream) -> None:
    client = claude(upstream, InMemoryCache())
    ask = {**ASK, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"}}
    live = list(client.messages.create(**ask, stream=True))
    with client.messages.stream(**ask) as stream:
        message = stream.get_final_message()
    assert message.content[0].type == "tool_use" and message.content[0].input == {"city": "Tell me a"}
    assert live[-1].type == "message_stop" and upstream.request_count == 1


def test_messages_broken_stream_is_not_stored(upstream) -> None:
    cache = InMemoryCache()
    client = claude(upstream, cache)
    stream = client.messages.create(**ASK, stream=True)
    next(iter(stream))
    stream.close()
    assert cache.count() == 0


def test_messages_async_create_and_stream(upstream) -> None:
    async def main() -> None:
        client = aclaude(upstream, InMemoryCache())
        first = await client.messages.create(**ASK)
        second = await client.messages.create(**ASK)
        assert isinstance(second, Message) and second.id == first.id
        async with client.messages.stream(**ASK) as stream:
            text = "".join([t async for t in stream.text_stream])
        assert text == first.content[0].text
        raw = await client.messages.create(**ASK, stream=True)
        assert [e.type async for e in raw][-1] == "message_stop"

    asyncio.run(main())
    assert upstream.request_count == 1


def test_messages_errors_are_the_sdk_errors_and_not_cached(upstream) -> None:
    cache = InMemoryCache()
    client = claude(upstream, cache)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=CLAUDE, max_tokens=0, messages=ASK["messages"])
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert cache.count() == 0


def test_messages_namespaces_and_unusable_entries(upstream) -> None:
    cache = InMemoryCache()
    claude(upstream, cache, namespace="a").messages.create(**ASK)
    claude(upstream, cache, namespace="b").messages.create(**ASK)
    assert upstream.request_count == 2
    prompt, llm_string = anthropic_client.MESSAGES.key(ASK, "c")
    cache.update(prompt, llm_string, [Generation("x", {"response": {"type": "message"}}, {"content": 5})])
    assert isinstance(claude(upstream, cache, namespace="c").messages.create(**ASK), Message)
    assert upstream.request_count == 3


def test_other_attributes_are_the_sdk_clients(upstream) -> None:
    client = claude(upstream, InMemoryCache())
    assert client.messages.count_tokens(model=CLAUDE, messages=ASK["messages"]).input_tokens == 4
    assert isinstance(client.with_options(timeout=5), anthropic_client.CachedAnthropic)


# ------------------------------------------------------------------- LangChain ChatAnthropic
def test_langchain_chat_anthropic_through_langchain_cache(upstream) -> None:
    from langchain_anthropic import ChatAnthropic
    from langchain_core.globals import set_llm_cache as set_langchain_cache

    from llm_cache.integrations.langchain import LangChainCache

    cache = InMemoryCache()
    set_langchain_cache(LangChainCache(cache))
    try:
        model = ChatAnthropic(
            model=CLAUDE, max_tokens=64, api_key="sk-ant-test", base_url=upstream.base_url.removesuffix("/v1"), max_retries=0
        )
        first = model.invoke("Tell me a joke")
        second = model.invoke("Tell me a joke")
        assert second.content == first.content and upstream.request_count == 1
        assert asyncio.run(model.ainvoke("Tell me a joke")).content == first.content
        model.invoke("Tell me another joke")
        assert upstream.request_count == 2 and cache.count() == 2
    finally:
        set_langchain_cache(None)


def test_responses_entry_without_a_newer_nested_field_is_still_a_hit(upstream) -> None:
    from llm_cache.protocols import RESPONSES
    from llm_cache.testing.fake_responses import build_response

    cache = InMemoryCache()
    body = {"model": MODEL, "input": "Tell me a joke"}
    response = build_response(body, "resp_old", 1)
    del response["usage"]["input_tokens_details"]["cache_write_tokens"]  # as an older server sends it
    prompt, llm_string = openai_client.RESPONSES.key(body, None)
    cache.update(prompt, llm_string, RESPONSES.to_entry(response))
    assert oai(upstream, cache).responses.create(**body).id == "resp_old" and upstream.request_count == 0


def test_a_request_with_query_parameters_is_not_cached(upstream) -> None:
    cache = InMemoryCache()
    client = claude(upstream, cache)
    client.messages.create(**ASK, extra_query={"beta": "true"})
    client.messages.create(**ASK, extra_query={"beta": "true"})
    assert upstream.request_count == 2 and cache.count() == 0
