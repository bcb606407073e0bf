"""A list of prompts to ``/v1/completions`` through the proxy, in front of a server that takes
one prompt per request (the built-in server's ``one_prompt_per_request`` quirk, which
answers a list with HTTP 500 as llama.cpp does)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from llm_cache.protocols.openai_completions import merge_prompt_responses
from llm_cache.proxy import ProxyServer, create_app
from llm_cache.testing.fake_openai import FakeOpenAIServer

from test_proxy import settle

MODEL = "gpt-3.5-turbo-instruct"
PROMPTS = ["alpha", "beta", "gamma"]


@pytest.fixture
def llama_like() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(one_prompt_per_request=True) as server:
        yield server


@pytest.fixture
def proxy(llama_like: FakeOpenAIServer) -> Iterator[ProxyServer]:
    with ProxyServer(create_app(llama_like.base_url, "memory://")) as server:
        yield server


def shapes(server: FakeOpenAIServer) -> list[Any]:
    """Each completions request's prompt: its length when a list, else "one"."""
    return [len(p) if isinstance(p := r["body"]["prompt"], list) else "one" for r in server.requests]


def test_a_refused_list_is_sent_one_prompt_per_request_and_answered_as_one(
    proxy: ProxyServer, llama_like: FakeOpenAIServer
) -> None:
    client = openai.OpenAI(base_url=proxy.base_url, api_key="sk-a", max_retries=0)
    raw = client.completions.with_raw_response.create(model=MODEL, prompt=PROMPTS, max_tokens=8, n=2)
    assert raw.headers["x-cache"] == "MISS"
    answer = raw.parse()
    assert shapes(llama_like) == [3, "one", "one", "one"]  # refused, then one by one
    assert [c.index for c in answer.choices] == list(range(6))  # prompt-major, as OpenAI numbers them
    direct = openai.OpenAI(base_url=llama_like.base_url, api_key="sk-a", max_retries=0)
    expected = [c.text for p in PROMPTS for c in direct.completions.create(model=MODEL, prompt=p, max_tokens=8, n=2).choices]
    assert [c.text for c in answer.choices] == expected
    assert answer.usage is not None and answer.usage.prompt_tokens > 0
    settle(proxy)
    llama_like.reset()

    # stored under the list's key; the refusal is remembered: the next list goes one by one at once
    again = client.completions.with_raw_response.create(model=MODEL, prompt=PROMPTS, max_tokens=8, n=2)
    assert again.headers["x-cache"] == "HIT" and [c.text for c in again.parse().choices] == expected
    other = client.completions.create(model=MODEL, prompt=["delta", "epsilon"], max_tokens=8)
    assert len(other.choices) == 2 and shapes(llama_like) == ["one", "one"]


def test_a_streamed_list_and_a_failing_prompt_are_passed_through(
    proxy: ProxyServer, llama_like: FakeOpenAIServer
) -> None:
    headers = {"authorization": "Bearer sk-a"}
    streamed = httpx.post(
        proxy.url + "/v1/completions", headers=headers,
        json={"model": MODEL, "prompt": PROMPTS, "stream": True, "max_tokens": 8},
    )
    assert streamed.status_code == 500  # a stream cannot be re-sent: the server's own answer
    # one prompt of the list is refused on its own too (max_tokens too large for every one):
    # the client gets that answer, and nothing is stored
    bad = {"model": MODEL, "prompt": PROMPTS, "max_tokens": -1}
    first = httpx.post(proxy.url + "/v1/completions", headers=headers, json=bad)
    assert first.status_code == 400 and "error" in first.json()
    settle(proxy)
    assert httpx.post(proxy.url + "/v1/completions", headers=headers, json=bad).headers["x-cache"] == "MISS"


def test_token_id_prompts() -> None:
    # One prompt of token ids is one prompt; lists of token lists are several.
    from llm_cache.proxy._split import prompt_list

    assert prompt_list(b'{"prompt": [1, 2, 3]}') is None
    assert prompt_list(b'{"prompt": ["one"]}') is None
    assert prompt_list(b'{"prompt": [[1, 2], [3]]}') is not None
    assert prompt_list(b'{"prompt": ["a", [3]]}') is None


def test_merge_numbers_choices_prompt_major_and_sums_usage() -> None:
    one = {"id": "a", "object": "text_completion", "model": "m", "choices": [
        {"index": 1, "text": "a1"}, {"index": 0, "text": "a0"}], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    two = {"id": "b", "object": "text_completion", "model": "m", "choices": [
        {"index": 0, "text": "b0"}, {"index": 1, "text": "b1"}], "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}}
    merged = merge_prompt_responses([one, two])
    assert merged["id"] == "a" and [c["text"] for c in merged["choices"]] == ["a0", "a1", "b0", "b1"]
    assert [c["index"] for c in merged["choices"]] == [0, 1, 2, 3]
    assert merged["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert "usage" not in merge_prompt_responses([one, {**two, "usage": None}])
