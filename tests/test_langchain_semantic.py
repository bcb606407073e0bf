"""LangChainCache(SemanticCache(...)) with LangChain's own chat models.

LangChain hands a cache a chat conversation as ``langchain_core.load.dumps(messages)``.
The semantic cache must read that as messages: embed the last human message and keep
the system prompt and history in the partition. Read as plain text, the whole JSON blob
was embedded and every short question looked alike ("meow?" and "Is it raining?" hit
the entry for "How are you?" at similarity 0.97), and an answer given under a system
prompt was returned to a request without it.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.load import dumps
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from llm_cache.chat_prompt import llm_string_model, parse_chat_prompt, readable_prompt
from llm_cache.integrations.langchain import LangChainCache
from llm_cache.semantic.cache import SemanticCache
from llm_cache.semantic.partition import split_prompt
from llm_cache.testing.semantic_contract import shared_embeddings


@pytest.fixture
def semantic() -> Iterator[SemanticCache]:
    cache = SemanticCache(shared_embeddings())
    yield cache
    cache.close()


@pytest.fixture
def unguarded() -> Iterator[SemanticCache]:
    """No guards: only the partition keeps conversations apart (the guards are a second,
    independent line of defence and must not be what hides a wrong partition)."""
    cache = SemanticCache(shared_embeddings(), guards=None)
    yield cache
    cache.close()


def chat_model(cache: SemanticCache, responses: list[str]) -> FakeListChatModel:
    return FakeListChatModel(responses=responses, cache=LangChainCache(cache))


def test_unrelated_short_questions_do_not_hit_each_other(semantic: SemanticCache) -> None:
    model = chat_model(semantic, ["I am fine.", "Meow!", "No, it is sunny."])
    assert model.invoke("How are you?").content == "I am fine."
    assert model.invoke("meow?").content == "Meow!"  # was "I am fine." (a hit at 0.97)
    assert model.invoke("Is it raining?").content == "No, it is sunny."  # was "I am fine."
    assert semantic.stats.hits == 0


def test_a_rephrased_question_still_hits(semantic: SemanticCache) -> None:
    model = chat_model(semantic, ["Paris.", "second call"])
    assert model.invoke("What is the capital of France?").content == "Paris."
    assert model.invoke("What's the capital of France?").content == "Paris."
    assert semantic.stats.hits == 1


def test_a_system_prompt_is_part_of_the_partition(unguarded: SemanticCache) -> None:
    semantic = unguarded
    model = chat_model(semantic, ["Je vais bien.", "I am fine.", "Paris, bien sûr.", "Paris.", "unused"])
    french = SystemMessage("Reply only in French.")
    assert model.invoke([french, HumanMessage("How are you?")]).content == "Je vais bien."
    # The same question without the system prompt was answered in French from the cache.
    assert model.invoke([HumanMessage("How are you?")]).content == "I am fine."
    assert model.invoke([french, HumanMessage("What is the capital of France?")]).content == "Paris, bien sûr."
    assert model.invoke([HumanMessage("What's the capital of France?")]).content == "Paris."
    # Under the same system prompt, a rephrased question is a semantic hit.
    assert model.invoke([french, HumanMessage("What's the capital of France?")]).content == "Paris, bien sûr."
    assert semantic.stats.hits == 1


def test_history_is_part_of_the_partition(unguarded: SemanticCache) -> None:
    semantic = unguarded
    model = GenericFakeChatModel(
        messages=iter([AIMessage("It is 5."), AIMessage("It is 12."), AIMessage("unused")]),
        cache=LangChainCache(semantic),
    )
    first = [HumanMessage("Pick a number"), AIMessage("2 and 3"), HumanMessage("What is their sum?")]
    other = [HumanMessage("Pick a number"), AIMessage("5 and 7"), HumanMessage("What is their sum?")]
    assert model.invoke(first).content == "It is 5."
    assert model.invoke(other).content == "It is 12."


async def test_async_chat_calls_are_partitioned_too(semantic: SemanticCache) -> None:
    model = chat_model(semantic, ["I am fine.", "Meow!", "Paris.", "unused"])
    assert (await model.ainvoke("How are you?")).content == "I am fine."
    assert (await model.ainvoke("meow?")).content == "Meow!"
    assert (await model.ainvoke("What is the capital of France?")).content == "Paris."
    assert (await model.ainvoke("What's the capital of France?")).content == "Paris."


def test_chat_openai_through_the_fake_server(semantic: SemanticCache, upstream: Any) -> None:
    """langchain-openai's ChatOpenAI (its own prompt and llm_string) against a real HTTP server."""
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", base_url=upstream.base_url, cache=LangChainCache(semantic))
    model.invoke([SystemMessage("Reply only in French."), HumanMessage("How are you?")])
    model.invoke([HumanMessage("How are you?")])  # no system prompt: a miss
    model.invoke([HumanMessage("meow?")])  # another question: a miss
    model.invoke([HumanMessage("What is the capital of France?")])
    model.invoke([HumanMessage("What's the capital of France?")])  # a paraphrase: a hit
    assert upstream.request_count == 4
    assert semantic.stats.hits == 1


# -- the parser, on exactly what LangChain produces ----------------------------------------------
def test_langchain_messages_are_parsed() -> None:
    prompt = dumps(
        [
            SystemMessage("Be terse."),
            HumanMessage([{"type": "text", "text": "What is"}, "this?", {"type": "image_url", "image_url": {"url": "u"}}]),
            AIMessage("", tool_calls=[{"name": "look", "args": {}, "id": "c1"}]),
            ToolMessage("a cat", tool_call_id="c1"),
            HumanMessage("And now?"),
        ]
    )
    messages = parse_chat_prompt(prompt)
    assert messages is not None
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user"]
    assert messages[2]["tool_calls"][0]["name"] == "look" and messages[3]["tool_call_id"] == "c1"
    sk = split_prompt(prompt, "llm")
    assert sk.text == "And now?"
    assert "Be terse." in sk.context and "a cat" in sk.context and "And now?" not in sk.context
    assert readable_prompt(prompt) == "Be terse. | What is\nthis? |  | a cat | And now?"
    assert split_prompt(dumps([HumanMessage([{"type": "text", "text": "a"}, "b"])]), "l").text == "a\nb"


def test_every_langchain_message_type_has_its_role() -> None:
    from langchain_core.messages import AIMessageChunk, ChatMessage, FunctionMessage, HumanMessageChunk

    prompt = dumps(
        [
            ChatMessage(role="critic", content="Be harsh."),
            FunctionMessage(name="lookup", content="42"),
            AIMessageChunk(content="partial"),
            HumanMessageChunk(content="Go on"),
        ]
    )
    messages = parse_chat_prompt(prompt) or []
    assert [m["role"] for m in messages] == ["critic", "function", "assistant", "user"]
    assert messages[1]["name"] == "lookup"
    assert split_prompt(prompt, "l").text == "Go on"


def test_something_that_only_looks_like_langchain_is_not_chat() -> None:
    fake = json.dumps([{"lc": 1, "type": "constructor", "id": ["x"], "kwargs": "not a dict"}])
    assert parse_chat_prompt(fake) is None
    assert split_prompt(fake, "l").text == fake
    unknown = dumps([SystemMessage("s")]).replace("SystemMessage", "SomeNewMessage").replace('"system"', '"new"')
    (message,) = parse_chat_prompt(unknown) or [None]
    assert message["role"].startswith("langchain:")  # kept, never embedded
    assert split_prompt(unknown, "l").text is None


def test_the_model_name_in_langchain_llm_strings() -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    assert llm_string_model(chat._get_llm_string()) == "gpt-4o-mini"
    assert llm_string_model("[('_type', 'fake'), ('model_name', 'tiny'), ('stop', None)]") == "tiny"
    assert llm_string_model('{"model":"m","provider":"openai"}') == "m"
    assert llm_string_model('{"params":"{\\"model\\":\\"p\\"}"}') == "p"
    assert llm_string_model("[('_type', 'fake-list-chat-model'), ('stop', None)]") is None


# -- the CLI reads what LangChain wrote ----------------------------------------------------------
def test_inspect_and_search_show_langchain_chat_entries(
    tmp_path: Any, upstream: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from langchain_openai import ChatOpenAI

    from llm_cache import SQLiteCache
    from llm_cache.cli import main

    path = tmp_path / "lc.db"
    with SQLiteCache(path) as store:
        model = ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", base_url=upstream.base_url, cache=LangChainCache(store))
        model.invoke([SystemMessage("Reply only in French."), HumanMessage("How are you?")])
    assert main(["inspect", "--cache", f"sqlite:///{path}"]) == 0
    out = capsys.readouterr().out
    assert "gpt-4o-mini" in out and "Reply only in French. | How are you?" in out
    assert '"lc"' not in out
    assert main(["search", "--cache", f"sqlite:///{path}", "French. | How"]) == 0
    assert "gpt-4o-mini" in capsys.readouterr().out
