"""The ``llms`` models on the protocol layer: their keys and entries are the ones the SDK
wrapper (``cached_client``) and the proxy compute and store for the same request, so an
entry written by any of the three is a hit through the other two (same namespace)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion

from llm_cache import ConfigurationError, InMemoryCache
from llm_cache.integrations.openai_client import cached_client
from llm_cache.keys import make_llm_string, messages_prompt
from llm_cache.llms import ChatOpenAI, OpenAI
from llm_cache.protocols import CHAT, COMPLETIONS
from llm_cache.proxy import ProxyServer, create_app
from llm_cache.testing.fake_openai import FakeOpenAIServer

from test_proxy import settle

MODEL = "gpt-4o-mini"
INSTRUCT = "gpt-3.5-turbo-instruct"
NAMESPACES = [None, "team-1"]


@pytest.fixture
def make_proxy(upstream: Any) -> Iterator[Callable[..., ProxyServer]]:
    servers: list[ProxyServer] = []

    def factory(cache: Any, target: str | None = None) -> ProxyServer:
        server = ProxyServer(create_app(target or upstream.base_url, cache, share_across_keys=True)).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


def chat_model(server: Any, cache: Any, namespace: str | None = None, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        MODEL, base_url=server.base_url, api_key="sk-test", max_retries=0, temperature=0.5, cache=cache,
        namespace=namespace, **kwargs,
    )


def completion_model(server: Any, cache: Any, namespace: str | None = None, **kwargs: Any) -> OpenAI:
    return OpenAI(
        INSTRUCT, base_url=server.base_url, api_key="sk-test", max_retries=0, max_tokens=16, cache=cache,
        namespace=namespace, **kwargs,
    )


def headers(namespace: str | None) -> dict[str, str]:
    return {"X-LLM-Cache-Namespace": namespace} if namespace else {}


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# -- keys --------------------------------------------------------------------------------------
@pytest.mark.parametrize("namespace", NAMESPACES)
def test_a_model_key_is_the_layer_key_of_the_request_it_sends(namespace: str | None) -> None:
    chat = ChatOpenAI(MODEL, api_key="sk-x", temperature=0.2, seed=3, stop=["END"], namespace=namespace)
    request = {"model": MODEL, "messages": ask("hi"), "temperature": 0.2, "n": 1, "seed": 3, "stop": ["END"]}
    identity = CHAT.identify({**request, "logprobs": True}, namespace)
    assert identity
    assert (chat._cache_prompt("hi"), chat.llm_string(logprobs=True)) == (identity.prompt, identity.llm_string)
    completion = OpenAI(INSTRUCT, api_key="sk-x", namespace=namespace)
    body = {"model": INSTRUCT, "prompt": "hi", "temperature": 0.7, "max_tokens": 256, "n": 1}
    identity = COMPLETIONS.identify(body, namespace)
    assert identity and (completion._cache_prompt("hi"), completion.llm_string()) == (identity.prompt, identity.llm_string)


def test_keys_without_a_namespace_are_the_ones_models_always_wrote() -> None:
    # Entries already in users' caches stay hits: the formula before the layer, spelled out.
    chat = ChatOpenAI(MODEL, api_key="sk-x", temperature=0.0, tools=[{"type": "function", "function": {"name": "f"}}])
    params = {"model": MODEL, "temperature": 0.0, "n": 1, "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert chat.llm_string(seed=1) == make_llm_string({"provider": "openai", "api": "chat.completions", **params}, {"seed": 1})
    conversation = [("system", "be brief"), {"role": "user", "content": "hi", "name": None}]
    assert chat._cache_prompt(conversation) == messages_prompt(conversation)
    for text in ["hi", "", "quote \" é ✓ \n", "\u2028"]:  # the layer's fast path for one user message
        assert chat._cache_prompt(text) == messages_prompt([("user", text)])
    completion = OpenAI(INSTRUCT, api_key="sk-x", best_of=2)
    params = {"model": INSTRUCT, "temperature": 0.7, "max_tokens": 256, "n": 1, "best_of": 2}
    assert completion.llm_string() == make_llm_string({"provider": "openai", "api": "completions", **params})


def test_a_namespace_partitions_and_a_body_field_cannot_forge_one() -> None:
    plain = ChatOpenAI(MODEL, api_key="sk-x")
    assert plain.llm_string() != ChatOpenAI(MODEL, api_key="sk-x", namespace="a").llm_string()
    forged = ChatOpenAI(MODEL, api_key="sk-x", model_kwargs={"namespace": "a"})
    assert json.loads(forged.llm_string()).get("namespace") is None
    with pytest.raises(ConfigurationError, match="namespace"):
        ChatOpenAI(MODEL, api_key="sk-x", namespace="")


# -- model <-> cached_client ----------------------------------------------------------------------
@pytest.mark.parametrize("namespace", NAMESPACES)
def test_model_entries_are_hits_through_cached_client_and_back(upstream: Any, namespace: str | None) -> None:
    cache = InMemoryCache()
    client = cached_client(openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0), cache, namespace=namespace)
    chat, completion = chat_model(upstream, cache, namespace), completion_model(upstream, cache, namespace)

    # the model first: the wrapper rebuilds its entry as the SDK's type, with the provider's id
    result = chat.generate(["Tell me a joke"])
    sent = upstream.requests[-1]["body"]
    assert upstream.request_count == 1
    replay = client.chat.completions.create(model=MODEL, messages=ask("Tell me a joke"), temperature=0.5, n=1)
    assert isinstance(replay, ChatCompletion) and upstream.request_count == 1
    assert replay.choices[0].message.content == result.generations[0][0].text
    assert replay.id.startswith("chatcmpl-") and "llmcache" not in replay.id  # the stored envelope
    assert replay.usage is not None and replay.usage.prompt_tokens > 0
    assert sent["messages"] == ask("Tell me a joke")
    completion.generate(["Once upon a time"])
    text = client.completions.create(model=INSTRUCT, prompt="Once upon a time", temperature=0.7, max_tokens=16, n=1)
    assert isinstance(text, Completion) and upstream.request_count == 2

    # the wrapper first: the model hits
    own = client.chat.completions.create(model=MODEL, messages=ask("Summarize: one store"), temperature=0.5, n=1)
    again = chat.generate(["Summarize: one store"])
    assert again.cached == [True] and again.generations[0][0].text == own.choices[0].message.content
    client.completions.create(model=INSTRUCT, prompt="Twice upon a time", temperature=0.7, max_tokens=16, n=1)
    assert completion.generate(["Twice upon a time"]).cached == [True]
    assert upstream.request_count == 4
    # another namespace is another entry
    other = chat_model(upstream, cache, "elsewhere" if namespace else "team-2")
    assert other.generate(["Tell me a joke"]).cached == [False]


# -- model <-> proxy --------------------------------------------------------------------------------
@pytest.mark.parametrize("namespace", NAMESPACES)
def test_model_entries_are_hits_through_the_proxy_and_back(
    make_proxy: Callable[..., ProxyServer], upstream: Any, namespace: str | None
) -> None:
    cache = InMemoryCache()
    server = make_proxy(cache)
    via_proxy = openai.OpenAI(base_url=server.base_url, api_key="sk-a", max_retries=0)
    chat, completion = chat_model(upstream, cache, namespace), completion_model(upstream, cache, namespace)

    chat.generate(["Tell me a joke"])
    completion.generate(["Once upon a time"])
    assert upstream.request_count == 2
    raw = via_proxy.chat.completions.with_raw_response.create(
        model=MODEL, messages=ask("Tell me a joke"), temperature=0.5, n=1, extra_headers=headers(namespace)
    )
    assert raw.headers["x-cache"] == "HIT" and raw.parse().choices[0].message.content
    raw = via_proxy.completions.with_raw_response.create(
        model=INSTRUCT, prompt="Once upon a time", temperature=0.7, max_tokens=16, n=1, extra_headers=headers(namespace)
    )
    assert raw.headers["x-cache"] == "HIT" and upstream.request_count == 2

    # the proxy first: the model hits
    answer = via_proxy.chat.completions.create(
        model=MODEL, messages=ask("Summarize: one store"), temperature=0.5, n=1, extra_headers=headers(namespace)
    )
    settle(server)
    again = chat.generate(["Summarize: one store"])
    assert again.cached == [True] and again.generations[0][0].text == answer.choices[0].message.content
    assert upstream.request_count == 3


def test_a_batch_is_stored_as_one_entry_per_prompt(make_proxy: Callable[..., ProxyServer], upstream: Any) -> None:
    # One request answered three prompts: each entry holds its own choices, numbered from 0,
    # and no usage (the request's usage is the batch's, not any one prompt's).
    cache = InMemoryCache()
    server = make_proxy(cache)
    completion = completion_model(upstream, cache, n=2)
    result = completion.generate(["a", "b", "c"])
    assert upstream.request_count == 1
    via_proxy = openai.OpenAI(base_url=server.base_url, api_key="sk-a", max_retries=0)
    raw = via_proxy.completions.with_raw_response.create(model=INSTRUCT, prompt="b", temperature=0.7, max_tokens=16, n=2)
    assert raw.headers["x-cache"] == "HIT" and upstream.request_count == 1
    replay = raw.parse()
    assert [c.index for c in replay.choices] == [0, 1]
    assert [c.text for c in replay.choices] == [g.text for g in result.generations[1]]
    assert replay.usage is None


# -- streams --------------------------------------------------------------------------------------
def test_a_streamed_answer_is_stored_through_the_layer(upstream: Any) -> None:
    cache = InMemoryCache()
    client = cached_client(openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0), cache)
    chat = chat_model(upstream, cache)
    streamed = "".join(chat.stream("Tell me a story"))
    replay = client.chat.completions.create(model=MODEL, messages=ask("Tell me a story"), temperature=0.5, n=1)
    assert replay.choices[0].message.content == streamed and upstream.request_count == 1
    assert replay.choices[0].finish_reason == "stop"


def test_a_stream_is_keyed_as_the_one_choice_it_asks_for(upstream: Any) -> None:
    # A stream asks for one choice whatever n is: it must not fill the key of an n=2 call.
    cache = InMemoryCache()
    chat = chat_model(upstream, cache, n=2)
    "".join(chat.stream("Tell me a story"))
    result = chat.generate(["Tell me a story"])
    assert result.cached == [False] and len(result.generations[0]) == 2


def test_a_model_with_an_ignored_n_stores_n_choices_under_the_request_key(make_proxy: Callable[..., ProxyServer]) -> None:
    with FakeOpenAIServer(ignore_n=True) as quirky:
        cache = InMemoryCache()
        server = make_proxy(cache, quirky.base_url)
        chat = chat_model(quirky, cache, n=2)
        chat.generate(["Tell me a joke"])
        assert quirky.request_count == 2  # the missing choice asked for again
        via_proxy = openai.OpenAI(base_url=server.base_url, api_key="sk-a", max_retries=0)
        raw = via_proxy.chat.completions.with_raw_response.create(
            model=MODEL, messages=ask("Tell me a joke"), temperature=0.5, n=2
        )
        assert raw.headers["x-cache"] == "HIT" and [c.index for c in raw.parse().choices] == [0, 1]
