"""Models against servers that behave like llama.cpp's and Ollama's: one prompt per
completions request, ``n`` ignored. The built-in server imitates both (opt-in quirks);
tests/test_real_llm.py runs the same paths against llama.cpp itself."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Iterator

import openai
import pytest

from llm_cache import ConfigurationError, InMemoryCache, set_llm_cache
from llm_cache.errors import ProviderError
from llm_cache.llms import ChatOpenAI, OpenAI
from llm_cache.llms.plans import SERVER_QUIRKS, split_choices
from llm_cache.testing.fake_openai import FakeOpenAIServer


@pytest.fixture
def make_server() -> Iterator[Any]:
    servers: list[FakeOpenAIServer] = []

    def factory(**quirks: bool) -> FakeOpenAIServer:
        server = FakeOpenAIServer(**quirks).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


def make_llm(server: FakeOpenAIServer, **kwargs: Any) -> OpenAI:
    # max_retries=2 as the default: a refused list must not be retried by the SDK.
    kwargs.setdefault("max_retries", 2)
    return OpenAI(base_url=server.base_url, api_key="sk-test", max_tokens=16, **kwargs)


def prompt_shapes(server: FakeOpenAIServer) -> list[Any]:
    """Each completions request's prompt: its length when a list, else "one"."""
    shapes: list[Any] = []
    for request in server.requests:
        prompt = request["body"]["prompt"]
        shapes.append(len(prompt) if isinstance(prompt, list) else "one")
    return shapes


PROMPTS = ["alpha", "beta", "gamma"]


# -- the fake server's quirks themselves --------------------------------------------------------


def test_fake_quirks_imitate_llama_cpp(make_server) -> None:
    server = make_server(one_prompt_per_request=True, ignore_n=True)
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.completions.create(model="m", prompt=["a", "b"])
    assert len(client.completions.create(model="m", prompt=["a"], n=3).choices) == 1
    chat = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}], n=2)
    assert len(chat.choices) == 1
    plain = make_server()
    client = openai.OpenAI(base_url=plain.base_url, api_key="sk-test", max_retries=0)
    assert len(client.completions.create(model="m", prompt=["a", "b"], n=2).choices) == 4


# -- one prompt per request --------------------------------------------------------------------


def test_a_refused_batch_falls_back_to_one_prompt_per_request(make_server) -> None:
    server = make_server(one_prompt_per_request=True)
    cache = InMemoryCache()
    set_llm_cache(cache)
    result = make_llm(server).generate(PROMPTS)
    assert [len(g) for g in result.generations] == [1, 1, 1]
    # The list once (no SDK retries of a refusal), then each prompt alone.
    assert prompt_shapes(server) == [3, "one", "one", "one"]
    assert [r["body"]["prompt"] for r in server.requests[1:]] == PROMPTS
    assert len(cache) == 3
    server.reset()
    assert make_llm(server).generate(PROMPTS).cached == [True, True, True]
    assert server.request_count == 0


def test_answers_are_those_of_each_prompt(make_server) -> None:
    quirky, plain = make_server(one_prompt_per_request=True), make_server()
    fallback = make_llm(quirky, temperature=0).generate(PROMPTS)
    batched = make_llm(plain, temperature=0).generate(PROMPTS)
    assert [g[0].text for g in fallback.generations] == [g[0].text for g in batched.generations]


def test_the_refusal_is_remembered_per_base_url(make_server) -> None:
    quirky, plain = make_server(one_prompt_per_request=True), make_server()
    make_llm(quirky, cache=False).generate(PROMPTS)
    quirky.reset()
    # A later batch, by another model object, goes one by one straight away.
    make_llm(quirky, cache=False).generate(["one", "two"])
    assert prompt_shapes(quirky) == ["one", "one"]
    assert SERVER_QUIRKS.accepts_prompt_lists(quirky.base_url.rstrip("/") + "/") is False
    # Another server is not affected.
    make_llm(plain, cache=False).generate(["one", "two"])
    assert prompt_shapes(plain) == [2]


async def test_async_fallback_and_memory(make_server) -> None:
    server = make_server(one_prompt_per_request=True)
    llm = make_llm(server, cache=InMemoryCache())
    result = await llm.agenerate(PROMPTS)
    assert [len(g) for g in result.generations] == [1, 1, 1]
    assert prompt_shapes(server) == [3, "one", "one", "one"]
    server.reset()
    await llm.agenerate(["four", "five"])
    assert prompt_shapes(server) == ["one", "one"]


def test_a_failure_of_both_list_and_single_is_raised_and_not_remembered(make_server) -> None:
    server = make_server()
    server.fail_next(500, count=2)  # the list and the first single prompt
    with pytest.raises(openai.InternalServerError):
        make_llm(server, max_retries=0, cache=False).generate(PROMPTS)
    assert prompt_shapes(server) == [3, "one"]
    server.reset()
    make_llm(server, cache=False).generate(PROMPTS)
    assert prompt_shapes(server) == [3]  # still sent as a list: the server was not labelled


def test_a_transient_error_on_the_first_list_gets_the_sdks_retries(make_server) -> None:
    server = make_server()
    server.fail_next(503)  # not a refusal: sent again as a list, with the SDK's retries
    result = make_llm(server, cache=False).generate(PROMPTS)
    assert len(result.generations) == 3
    assert prompt_shapes(server) == [3, 3]


@pytest.mark.parametrize(
    ("batch_size", "shapes"),
    [(2, [2, 2, "one"]), (1, ["one"] * 5), (None, [5]), (20, [5])],
)
def test_batch_size(make_server, batch_size: int | None, shapes: list[Any]) -> None:
    server = make_server()
    llm = make_llm(server, batch_size=batch_size, cache=InMemoryCache())
    result = llm.generate([f"prompt {i}" for i in range(5)])
    assert len(result.generations) == 5
    assert prompt_shapes(server) == shapes


def test_batch_size_is_not_part_of_the_key(make_server) -> None:
    server = make_server()
    assert make_llm(server, batch_size=1).llm_string() == make_llm(server, batch_size=7).llm_string()
    with pytest.raises(ConfigurationError):
        make_llm(server, batch_size=0)


def test_default_batch_size_is_twenty_as_langchain(make_server) -> None:
    server = make_server()
    make_llm(server, cache=False).generate([f"p{i}" for i in range(45)])
    assert prompt_shapes(server) == [20, 20, 5]


# -- n ignored -----------------------------------------------------------------------------------


def test_completions_n_ignored_makes_the_missing_calls(make_server) -> None:
    server = make_server(ignore_n=True)
    cache = InMemoryCache()
    set_llm_cache(cache)
    llm = make_llm(server, n=2, best_of=2)
    text = llm("Tell me a joke")
    assert text
    assert server.request_count == 2
    assert [r["body"]["n"] for r in server.requests] == [2, 1]  # the second asks for what is missing
    (entry,) = [cache.lookup("Tell me a joke", llm.llm_string())]
    assert entry is not None and len(entry) == 2
    server.reset()
    assert llm("Tell me a joke") == text
    assert server.request_count == 0


def test_n_ignored_in_a_batch_keeps_each_prompts_choices(make_server) -> None:
    server = make_server(ignore_n=True)
    result = make_llm(server, n=2, temperature=0, cache=InMemoryCache()).generate(PROMPTS)
    assert [len(g) for g in result.generations] == [2, 2, 2]
    # One list (one choice per prompt) and one request per prompt for the second choice.
    assert prompt_shapes(server) == [3, "one", "one", "one"]
    singles = [make_llm(server, temperature=0, cache=False)(p) for p in PROMPTS]
    assert [g[0].text for g in result.generations] == singles


async def test_both_quirks_async(make_server) -> None:
    server = make_server(ignore_n=True, one_prompt_per_request=True)
    result = await make_llm(server, n=2, best_of=2, cache=InMemoryCache()).agenerate(PROMPTS[:2])
    assert [len(g) for g in result.generations] == [2, 2]
    assert prompt_shapes(server) == [2, "one", "one", "one", "one"]
    assert result.llm_output is not None and result.llm_output["token_usage"]["total_tokens"] > 0


def test_chat_n_ignored_makes_the_missing_calls(make_server) -> None:
    server = make_server(ignore_n=True)
    cache = InMemoryCache()
    chat = ChatOpenAI(base_url=server.base_url, api_key="sk-test", n=2, max_tokens=16, cache=cache)
    result = chat.generate(["Tell me a joke", "Tell me another"])
    assert [len(g) for g in result.generations] == [2, 2]
    assert server.request_count == 4
    assert all(g.message and g.message["role"] == "assistant" for gens in result.generations for g in gens)
    server.reset()
    assert chat.generate(["Tell me a joke"]).cached == [True]
    assert server.request_count == 0


async def test_chat_n_ignored_async(make_server) -> None:
    server = make_server(ignore_n=True)
    chat = ChatOpenAI(base_url=server.base_url, api_key="sk-test", n=3, max_tokens=16, cache=False)
    result = await chat.agenerate(["Tell me a joke"])
    assert len(result.generations[0]) == 3
    assert [r["body"]["n"] for r in server.requests] == [3, 2, 1]


def test_a_server_honouring_n_gets_one_request(make_server) -> None:
    server = make_server()
    result = make_llm(server, n=2, best_of=2, cache=False).generate(PROMPTS)
    assert [len(g) for g in result.generations] == [2, 2, 2]
    assert server.request_count == 1


def test_choices_that_cannot_be_attributed_are_an_error() -> None:
    choices = [SimpleNamespace(index=i) for i in range(3)]
    with pytest.raises(ProviderError, match="expected 4 choices for 2 prompts with n=2, got 3"):
        split_choices(choices, 2, 2)
    with pytest.raises(ProviderError):
        split_choices([], 1, 1)
    assert split_choices(choices[:2], 2, 2) == [[choices[0]], [choices[1]]]


# -- model_name / model ----------------------------------------------------------------------------


def test_chat_model_name_is_an_alias_of_model(make_server) -> None:
    server = make_server()
    chat = ChatOpenAI(model_name="my-model", base_url=server.base_url, api_key="sk-test", cache=False)
    assert chat.model == chat.model_name == "my-model"
    assert chat.llm_string() == ChatOpenAI(model="my-model").llm_string()
    chat("hi")
    assert server.requests[0]["body"]["model"] == "my-model"
    chat.model_name = "other"
    assert chat.model == "other" and '"other"' in chat.llm_string()
    with pytest.raises(ConfigurationError):
        ChatOpenAI(model="a", model_name="b")


def test_completions_model_is_an_alias_of_model_name(make_server) -> None:
    server = make_server()
    llm = OpenAI(model="my-model", base_url=server.base_url, api_key="sk-test", cache=False)
    assert llm.model_name == llm.model == "my-model"
    assert llm.llm_string() == OpenAI("my-model").llm_string()
    llm("hi")
    assert server.requests[0]["body"]["model"] == "my-model"
    with pytest.raises(ConfigurationError):
        OpenAI(model_name="a", model="b")
