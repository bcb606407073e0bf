"""The real-model tier: the library, the CLI, the proxy and the integrations against
llama.cpp's OpenAI-compatible server running SmolLM2-135M (tests/real_llm_fixtures.py).

This server behaves like many real ones (one prompt per completions request, ``n``
ignored, its own error texts). Tests assert behaviour — calls that reached the model
(counted by a pass-through in front of it), hits, what is stored — never model text.
Answers are kept short (``max_tokens``) so that each call takes about half a second.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import openai
import pytest

from counting_upstream import CountingUpstream
from llm_cache import InMemoryCache, SemanticCache, SQLiteCache, set_llm_cache
from llm_cache.chains import CharacterTextSplitter, Document, load_summarize_chain
from llm_cache.demo_summary import state_of_the_union
from llm_cache.llms import ChatOpenAI, OpenAI

pytestmark = pytest.mark.real_llm

ROOT = Path(__file__).resolve().parents[1]
KEY = "no-key-needed"  # llama.cpp's server takes any key
SHORT = {"max_tokens": 12, "temperature": 0}
JOKE = "Tell me a joke"
SUBPROCESS_SECONDS = 900  # the demo's map-reduce asks for 256-token summaries of ~1,000-token chunks


@dataclass
class Real:
    upstream: CountingUpstream
    model: str

    @property
    def base_url(self) -> str:
        return self.upstream.base_url

    def calls(self, path: str = "/v1/completions") -> list[Any]:
        return self.upstream.calls(path)

    def completions(self, **kwargs: Any) -> OpenAI:
        return OpenAI(model_name=self.model, base_url=self.base_url, api_key=KEY, **{**SHORT, **kwargs})

    def chat(self, **kwargs: Any) -> ChatOpenAI:
        return ChatOpenAI(model=self.model, base_url=self.base_url, api_key=KEY, **{**SHORT, **kwargs})


@pytest.fixture
def real(llama: CountingUpstream, llama_server: Any) -> Real:
    return Real(llama, llama_server.model)


def shapes(calls: list[Any]) -> list[tuple[str, int]]:
    """(prompt kind, status) of completions calls: "list" or "one"."""
    return [("list" if isinstance(c.body["prompt"], list) else "one", c.status) for c in calls]


# -- the seed notebook, end to end ---------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def global_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    cache = InMemoryCache() if request.param == "memory" else SQLiteCache(database_path=str(tmp_path / "seed.db"))
    set_llm_cache(cache)
    yield cache
    set_llm_cache(None)


def test_seed_completions_n2_best_of2_miss_then_hit(real: Real, global_cache: Any) -> None:
    llm = real.completions(n=2, best_of=2)
    first = llm(JOKE)
    # llama.cpp ignores n: one call answered one choice, a second call the missing one.
    assert [(c.body["n"], c.status) for c in real.calls()] == [(2, 200), (1, 200)]
    stored = global_cache.lookup(JOKE, llm.llm_string())
    assert stored is not None and len(stored) == 2
    assert llm(JOKE) == first
    assert llm.generate([JOKE]).cached == [True]
    assert len(real.calls()) == 2


def test_seed_chat_miss_then_hit_and_n(real: Real, global_cache: Any) -> None:
    chat = real.chat()
    first = chat(JOKE)
    assert chat(JOKE) == first
    assert len(real.calls("/v1/chat/completions")) == 1
    two = real.chat(model_name=real.model, n=2).generate([JOKE])  # model_name= as LangChain's
    assert len(two.generations[0]) == 2 and two.cached == [False]
    assert len(real.calls("/v1/chat/completions")) == 1 + 2


def test_seed_cache_false_always_calls(real: Real, global_cache: Any) -> None:
    uncached = real.completions(cache=False)
    uncached(JOKE)
    uncached(JOKE)
    assert len(real.calls()) == 2
    assert global_cache.lookup(JOKE, uncached.llm_string()) is None


@pytest.mark.parametrize("kind", ["completions", "chat"])
def test_seed_stream_miss_then_replayed_hit(real: Real, kind: str) -> None:
    cache = InMemoryCache()
    llm: Any = real.completions(cache=cache) if kind == "completions" else real.chat(cache=cache)
    path = "/v1/completions" if kind == "completions" else "/v1/chat/completions"
    pieces = list(llm.stream(JOKE))
    assert len(real.calls(path)) == 1 and real.calls(path)[0].body["stream"] is True
    stored = cache.lookup(llm._cache_prompt(JOKE), llm.llm_string())
    assert stored is not None and stored[0].text == "".join(pieces)
    assert "".join(llm.stream(JOKE)) == "".join(pieces)
    assert len(real.calls(path)) == 1


def test_seed_async(real: Real) -> None:
    cache = InMemoryCache()
    llm, chat = real.completions(cache=cache), real.chat(cache=cache)

    async def main() -> None:
        first = await llm.ainvoke(JOKE)
        assert await llm.ainvoke(JOKE) == first
        assert len(real.calls()) == 1
        result = await llm.agenerate([JOKE, "Name a colour", "Name a fruit"])
        assert result.cached == [True, False, False]
        # The two misses: one list (refused), then one request each, remembered after.
        assert shapes(real.calls()[1:]) == [("list", 500), ("one", 200), ("one", 200)]
        await chat.ainvoke(JOKE)
        result = await chat.agenerate([JOKE, "Name a colour"])
        assert result.cached == [True, False]
        assert len(real.calls("/v1/chat/completions")) == 2

    asyncio.run(main())


# -- a batch of misses ---------------------------------------------------------------------------


def test_multi_prompt_generate_falls_back_and_remembers(real: Real) -> None:
    llm = real.completions(cache=InMemoryCache())
    prompts = ["Name a colour", "Name a fruit", "Name a city"]
    result = llm.generate(prompts)
    assert [len(g) for g in result.generations] == [1, 1, 1]
    # One refused list (no SDK retries of it), then one request per prompt.
    assert shapes(real.calls()) == [("list", 500)] + [("one", 200)] * 3
    assert [c.body["prompt"] for c in real.calls()[1:]] == prompts
    assert llm.generate(prompts).cached == [True, True, True]
    llm.generate(["Name a river", "Name a lake"])
    assert shapes(real.calls()[4:]) == [("one", 200)] * 2  # straight to one by one


def test_map_reduce_summary(real: Real, tmp_path: Path) -> None:
    text = state_of_the_union()[:1500]
    docs = [Document(page_content=t) for t in CharacterTextSplitter(chunk_size=500, chunk_overlap=0).split_text(text)[:3]]
    assert len(docs) == 3
    set_llm_cache(SQLiteCache(database_path=str(tmp_path / "summary.db")))
    chain = load_summarize_chain(
        real.completions(max_tokens=16), chain_type="map_reduce", reduce_llm=real.completions(max_tokens=16, cache=False)
    )
    first = chain.invoke({"input_documents": docs})
    assert [(s.kind, s.cached) for s in first["steps"]] == [("map", False)] * 3 + [("reduce", False)]
    assert shapes(real.calls()) == [("list", 500)] + [("one", 200)] * 4  # 3 maps, 1 reduce
    second = chain.invoke({"input_documents": docs})
    assert [(s.kind, s.cached) for s in second["steps"]] == [("map", True)] * 3 + [("reduce", False)]
    assert second["intermediate_steps"] == first["intermediate_steps"]
    assert shapes(real.calls()[5:]) == [("one", 200)]  # only the reduce step


# -- the demo and the example, as a user runs them ----------------------------------------------------


def run_script(args: list[str], real: Real, cwd: Path) -> subprocess.CompletedProcess[str]:
    # This checkout's code, whatever the caller's working directory and PYTHONPATH.
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OPENAI_BASE_URL": real.base_url, "PYTHONPATH": path}
    env.pop("OPENAI_API_KEY", None)  # a local server needs none
    env.pop("LLM_CACHE_DEMO_MODEL", None)
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=SUBPROCESS_SECONDS
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow  # the demo's full-size map-reduce: a few minutes on a busy 2-core machine
def test_llm_cache_demo(real: Real, tmp_path: Path) -> None:
    out = run_script(["-m", "llm_cache.cli", "demo", "--database", str(tmp_path / "demo.db")], real, tmp_path).stdout
    assert f"Model:    {real.model} (the first model the server lists" in out
    assert out.count("cache stats: 1 hit, 1 miss") == 2
    assert "3 of 3 map steps came from the cache" in out
    assert f"Done (model {real.model})" in out
    assert real.calls() and all(c.body["model"] == real.model for c in real.calls())


@pytest.mark.slow  # the demo's full-size map-reduce: a few minutes on a busy 2-core machine
def test_examples_summarize(real: Real, tmp_path: Path) -> None:
    out = run_script([str(ROOT / "examples" / "summarize.py")], real, tmp_path).stdout
    assert f"model {real.model}" in out
    assert "run 1:" in out and "steps answered by the cache: none" in out
    assert "run 2:" in out and "steps answered by the cache: ['map', 'map', 'map']" in out
    assert (tmp_path / ".llm_cache.db").exists()


# -- the proxy, the SDK wrapper and LangChain in front of the real server ------------------------------


@pytest.fixture
def proxy(real: Real) -> Iterator[Any]:
    from llm_cache.proxy import ProxyServer, create_app

    server = ProxyServer(create_app(real.base_url, "memory://")).start()
    yield server
    server.stop()


def test_proxy_with_the_openai_sdk(real: Real, proxy: Any) -> None:
    from test_proxy import settle

    client = openai.OpenAI(base_url=proxy.base_url, api_key="sk-client", max_retries=0)
    messages = [{"role": "user", "content": JOKE}]
    seen = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model=real.model, messages=messages, **SHORT)
        assert raw.parse().choices[0].message.role == "assistant"
        seen.append(raw.headers.get("x-cache"))
        settle(proxy)
    for _ in range(2):
        raw = client.completions.with_raw_response.create(model=real.model, prompt=JOKE, **SHORT)
        assert raw.parse().choices
        seen.append(raw.headers.get("x-cache"))
        settle(proxy)
    assert seen == ["MISS", "HIT", "MISS", "HIT"]
    assert len(real.calls("/v1/chat/completions")) == 1 and len(real.calls()) == 1


def test_proxy_sends_a_refused_prompt_list_one_by_one(real: Real, proxy: Any) -> None:
    from test_proxy import settle

    client = openai.OpenAI(base_url=proxy.base_url, api_key="sk-client", max_retries=0)
    prompts = ["Name a colour", "Name a fruit"]
    raw = client.completions.with_raw_response.create(model=real.model, prompt=prompts, **SHORT)
    answer = raw.parse()
    assert raw.headers["x-cache"] == "MISS" and [c.index for c in answer.choices] == [0, 1]
    # llama.cpp refuses the list (500); the proxy asks again one prompt per request
    assert shapes(real.calls()) == [("list", 500), ("one", 200), ("one", 200)]
    settle(proxy)
    again = client.completions.with_raw_response.create(model=real.model, prompt=prompts, **SHORT)
    assert again.headers["x-cache"] == "HIT"
    assert [c.text for c in again.parse().choices] == [c.text for c in answer.choices]
    client.completions.create(model=real.model, prompt=["Name a river", "Name a lake"], **SHORT)
    assert shapes(real.calls()[3:]) == [("one", 200)] * 2  # remembered: straight to one by one


def test_proxy_with_langchain_openai(real: Real, proxy: Any) -> None:
    from langchain_openai import ChatOpenAI as LangChainChatOpenAI
    from test_proxy import settle

    chat = LangChainChatOpenAI(
        model=real.model, base_url=proxy.base_url, api_key="sk-client", max_retries=0,
        include_response_headers=True, **SHORT,
    )
    first = chat.invoke(JOKE)
    settle(proxy)
    second = chat.invoke(JOKE)
    assert first.response_metadata["headers"]["x-cache"] == "MISS"
    assert second.response_metadata["headers"]["x-cache"] == "HIT"
    assert second.content == first.content
    assert len(real.calls("/v1/chat/completions")) == 1


def test_cached_client_over_the_real_server(real: Real) -> None:
    from openai.types import Completion
    from openai.types.chat import ChatCompletion

    from llm_cache.integrations.openai_client import cached_client

    cache = InMemoryCache()
    client = cached_client(openai.OpenAI(base_url=real.base_url, api_key=KEY, max_retries=0), cache=cache)
    messages = [{"role": "user", "content": JOKE}]
    first = client.chat.completions.create(model=real.model, messages=messages, **SHORT)
    second = client.chat.completions.create(model=real.model, messages=messages, **SHORT)
    assert isinstance(second, ChatCompletion) and second.choices[0].message.content == first.choices[0].message.content
    assert len(real.calls("/v1/chat/completions")) == 1
    one = client.completions.create(model=real.model, prompt=JOKE, **SHORT)
    two = client.completions.create(model=real.model, prompt=JOKE, **SHORT)
    assert isinstance(two, Completion) and two.choices[0].text == one.choices[0].text
    assert len(real.calls()) == 1
    assert len(cache) == 2


def test_langchain_cache_with_langchain_openai(real: Real) -> None:
    from langchain_openai import ChatOpenAI as LangChainChatOpenAI

    from llm_cache.integrations.langchain import LangChainCache

    inner = InMemoryCache()
    chat = LangChainChatOpenAI(
        model=real.model, base_url=real.base_url, api_key=KEY, max_retries=0, cache=LangChainCache(inner), **SHORT
    )
    first = chat.invoke(JOKE)
    second = chat.invoke(JOKE)
    assert second.content == first.content
    assert len(real.calls("/v1/chat/completions")) == 1
    assert len(inner) == 1


def test_semantic_cache_answers_a_paraphrase(real: Real, tmp_path: Path) -> None:
    chat = real.chat(cache=SemanticCache(data_dir=str(tmp_path / "semantic")))
    first = chat("How do I install the app?")
    result = chat.generate(["How can I install the app?"])
    assert result.cached == [True] and result.generations[0][0].text == first
    assert len(real.calls("/v1/chat/completions")) == 1
    # A look-alike that needs another answer is a miss (a guard rejects it).
    assert chat.generate(["How do I uninstall the app?"]).cached == [False]
    assert len(real.calls("/v1/chat/completions")) == 2
