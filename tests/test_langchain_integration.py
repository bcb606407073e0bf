"""LangChainCache: llm-cache caches behind langchain-core's BaseCache, with its fake models."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import pytest
from langchain_core.globals import set_llm_cache as set_langchain_cache
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration
from langchain_core.outputs import Generation as LCGeneration

from llm_cache import ConfigurationError, Generation, InMemoryCache, SQLiteCache
from llm_cache.integrations.langchain import LangChainCache


@pytest.fixture
def sqlite_cache(tmp_path: Path) -> Iterator[SQLiteCache]:
    cache = SQLiteCache(tmp_path / "langchain.db")
    yield cache
    cache.close()


@pytest.fixture
def global_lc_cache(sqlite_cache: SQLiteCache) -> Iterator[LangChainCache]:
    adapter = LangChainCache(sqlite_cache)
    set_langchain_cache(adapter)
    yield adapter
    set_langchain_cache(None)


def rich_message() -> AIMessage:
    return AIMessage(
        content="Calling the weather tool.",
        tool_calls=[{"name": "get_weather", "args": {"city": "Oslo", "days": 2}, "id": "call_1"}],
        usage_metadata={"input_tokens": 5, "output_tokens": 7, "total_tokens": 12},
        response_metadata={"model_name": "fake-1", "finish_reason": "tool_calls"},
        additional_kwargs={"refusal": None},
    )


# -- LLMs ---------------------------------------------------------------------------------------
def test_text_llm_second_call_is_cached(global_lc_cache: LangChainCache) -> None:
    llm = FakeListLLM(responses=["first answer", "second answer"])
    assert llm.invoke("Tell me a joke") == "first answer"
    assert llm.invoke("Tell me a joke") == "first answer"  # the fake would now say "second answer"
    assert llm.invoke("Another prompt") == "second answer"
    assert global_lc_cache.cache.count() == 2


async def test_text_llm_async(global_lc_cache: LangChainCache) -> None:
    llm = FakeListLLM(responses=["one", "two"])
    assert await llm.ainvoke("async prompt") == "one"
    assert await llm.ainvoke("async prompt") == "one"
    assert llm.invoke("async prompt") == "one"  # sync and async share entries


def test_cache_false_still_bypasses(global_lc_cache: LangChainCache) -> None:
    llm = FakeListLLM(responses=["one", "two"], cache=False)
    assert [llm.invoke("same"), llm.invoke("same")] == ["one", "two"]
    chat = FakeListChatModel(responses=["a", "b"], cache=False)
    assert [chat.invoke("same").content, chat.invoke("same").content] == ["a", "b"]
    assert global_lc_cache.cache.count() == 0


def test_model_level_cache_without_a_global_one(sqlite_cache: SQLiteCache) -> None:
    llm = FakeListLLM(responses=["x", "y"], cache=LangChainCache(sqlite_cache))
    assert [llm.invoke("p"), llm.invoke("p")] == ["x", "x"]


# -- chat models --------------------------------------------------------------------------------
def test_chat_model_second_call_is_cached(global_lc_cache: LangChainCache) -> None:
    chat = FakeListChatModel(responses=["hello", "goodbye"])
    first = chat.invoke("Hi there")
    second = chat.invoke("Hi there")
    assert first.content == second.content == "hello"
    assert isinstance(second, AIMessage)
    assert global_lc_cache.cache.count() == 1


async def test_chat_model_async(global_lc_cache: LangChainCache) -> None:
    chat = FakeListChatModel(responses=["alpha", "beta"])
    assert (await chat.ainvoke("question")).content == "alpha"
    assert (await chat.ainvoke("question")).content == "alpha"
    assert (await chat.ainvoke("other question")).content == "beta"


def test_chat_message_round_trips_tool_calls_usage_and_metadata(global_lc_cache: LangChainCache) -> None:
    chat = GenericFakeChatModel(messages=iter([rich_message(), AIMessage(content="something else")]))
    first = chat.invoke("What is the weather?")
    second = chat.invoke("What is the weather?")
    assert second.content == first.content == "Calling the weather tool."
    assert second.tool_calls == first.tool_calls
    assert second.tool_calls[0]["args"] == {"city": "Oslo", "days": 2}
    assert second.response_metadata == first.response_metadata
    assert second.additional_kwargs == first.additional_kwargs
    assert second.id == first.id
    # LangChain itself adds total_cost=0 to usage on a hit; the tokens are the stored ones.
    assert {k: v for k, v in second.usage_metadata.items() if k != "total_cost"} == first.usage_metadata


def test_stored_value_is_plain_json(global_lc_cache: LangChainCache, sqlite_cache: SQLiteCache) -> None:
    GenericFakeChatModel(messages=iter([rich_message()])).invoke("Store me")
    (raw,) = sqlite3.connect(sqlite_cache.database_path).execute("SELECT response FROM llm_cache").fetchone()
    value = json.loads(raw)  # JSON, not a pickle or LangChain's lc serialisation
    message = value["g"][0]["message"]
    assert message["type"] == "ai" and message["data"]["tool_calls"][0]["name"] == "get_weather"
    assert '"lc":' not in raw


# -- the adapter directly ---------------------------------------------------------------------
def test_lookup_returns_a_list_of_langchain_generations() -> None:
    adapter = LangChainCache(InMemoryCache())
    adapter.update("p", "l", [LCGeneration(text="t", generation_info={"finish_reason": "stop"})])
    adapter.update("c", "l", [ChatGeneration(message=rich_message())])
    text = adapter.lookup("p", "l")
    chat = adapter.lookup("c", "l")
    assert type(text) is list and type(text[0]) is LCGeneration and text[0].generation_info == {"finish_reason": "stop"}
    assert type(chat[0]) is ChatGeneration and chat[0].message == rich_message()
    assert adapter.lookup("missing", "l") is None


@pytest.mark.parametrize(
    "message",
    [
        {"type": "not-a-message", "data": {"content": "x"}},
        {"type": "ai", "data": {"content": 5}},
        {"type": "ai", "data": "not a dict"},
        # LangChain's own serialisation names a class to import: never honoured here.
        {"lc": 1, "type": "constructor", "id": ["os", "system"], "kwargs": {"command": "true"}},
    ],
)
def test_a_stored_message_that_is_not_a_message_is_a_miss(message: dict[str, Any]) -> None:
    store = InMemoryCache()
    store.update("p", "l", [Generation(text="x", message=message)])
    adapter = LangChainCache(store)
    assert adapter.lookup("p", "l") is None
    assert store.stats.corrupt == 1


def test_a_generation_that_is_not_json_is_not_stored() -> None:
    store = InMemoryCache()
    adapter = LangChainCache(store)
    adapter.update("p", "l", [LCGeneration(text="x", generation_info={"obj": object()})])
    assert adapter.lookup("p", "l") is None and len(store) == 0


async def test_async_methods_and_clear(sqlite_cache: SQLiteCache) -> None:
    adapter = LangChainCache(sqlite_cache)
    await adapter.aupdate("p", "l", [LCGeneration(text="t")])
    assert (await adapter.alookup("p", "l"))[0].text == "t"
    await adapter.aclear()
    assert await adapter.alookup("p", "l") is None
    adapter.update("p", "l", [LCGeneration(text="t")])
    adapter.clear()
    assert adapter.lookup("p", "l") is None
    with pytest.raises(ConfigurationError, match="takes no options"):
        adapter.clear(llm_string="l")


def test_clear_removes_only_its_namespace(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    mine, theirs = LangChainCache(SQLiteCache(path, namespace="mine")), LangChainCache(SQLiteCache(path, namespace="theirs"))
    mine.update("p", "l", [LCGeneration(text="a")])
    theirs.update("p", "l", [LCGeneration(text="b")])
    mine.clear()
    assert mine.lookup("p", "l") is None and theirs.lookup("p", "l")[0].text == "b"


def test_rejects_something_that_is_not_an_llm_cache_cache() -> None:
    from langchain_core.caches import InMemoryCache as LCInMemoryCache

    with pytest.raises(ConfigurationError):
        LangChainCache(LCInMemoryCache())  # type: ignore[arg-type]
