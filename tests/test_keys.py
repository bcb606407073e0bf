"""The cache key: what changes it, what never reaches it."""

from __future__ import annotations

import pytest

from llm_cache import ConfigurationError, SQLiteCache
from llm_cache.keys import cache_key, make_llm_string, messages_prompt
from llm_cache.llms import ChatOpenAI, OpenAI

SECRET = "sk-THIS-IS-A-SECRET-0123456789"


@pytest.mark.parametrize(
    "change",
    [
        {"model_name": "other-model"},
        {"temperature": 0.1},
        {"top_p": 0.5},
        {"n": 2, "best_of": 2},
        {"best_of": 3},
        {"max_tokens": 17},
        {"stop": ["\n"]},
        {"seed": 7},
        {"logit_bias": {"50256": -100}},
        {"frequency_penalty": 0.5},
        {"presence_penalty": 0.5},
        {"model_kwargs": {"suffix": "!"}},
    ],
)
def test_each_completion_parameter_changes_the_key(change: dict) -> None:
    base = OpenAI(api_key=SECRET)
    assert OpenAI(api_key=SECRET, **change).llm_string() != base.llm_string()


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-other"},
        {"temperature": 0.0},
        {"n": 3},
        {"seed": 1},
        {"stop": "END"},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
        {"tool_choice": "required"},
        {"response_format": {"type": "json_object"}},
        {"logit_bias": {"1": 2}},
        {"max_tokens": 5},
    ],
)
def test_each_chat_parameter_changes_the_key(change: dict) -> None:
    assert ChatOpenAI(api_key=SECRET, **change).llm_string() != ChatOpenAI(api_key=SECRET).llm_string()


@pytest.mark.parametrize("kwarg", [{"temperature": 0.2}, {"stop": ["x"]}, {"user_defined_knob": 1}, {"seed": 3}])
def test_call_time_kwargs_change_the_key(kwarg: dict) -> None:
    llm = OpenAI(api_key=SECRET)
    assert llm.llm_string(**kwarg) != llm.llm_string()


def test_transport_settings_and_secrets_do_not_change_the_key() -> None:
    a = OpenAI(api_key=SECRET, timeout=3, max_retries=0, base_url="http://127.0.0.1:1/v1")
    b = OpenAI(api_key="sk-another", timeout=60, max_retries=5)
    assert a.llm_string() == b.llm_string()
    assert SECRET not in a.llm_string()
    assert a.llm_string(api_key=SECRET, timeout=1) == a.llm_string()


def test_llm_string_is_canonical() -> None:
    assert make_llm_string({"b": 1, "a": {"y": 2, "x": 1}}) == '{"a":{"x":1,"y":2},"b":1}'
    assert make_llm_string({"a": 1, "b": None}) == make_llm_string({"a": 1})
    assert make_llm_string({"a": 1}, {"a": 2}) == make_llm_string({"a": 2})


def test_changing_a_model_attribute_changes_its_key() -> None:
    llm = OpenAI(api_key=SECRET)
    before = llm.llm_string()
    llm.temperature = 0.0
    assert llm.llm_string() != before


def test_chat_prompt_is_canonical() -> None:
    as_dicts = [{"role": "system", "content": "be brief"}, {"content": "hi", "role": "user", "name": None}]
    as_pairs = [("system", "be brief"), ("user", "hi")]
    assert messages_prompt(as_dicts) == messages_prompt(as_pairs)
    chat = ChatOpenAI(api_key=SECRET)
    for text in ["hi", "", "quote \" é ✓ \n", "\u2028"]:
        assert chat._cache_prompt(text) == messages_prompt([("user", text)])
    assert messages_prompt([("user", "hi")]) != messages_prompt([("user", "hi"), ("assistant", "hello")])


def test_bad_messages_and_parameters_get_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="role"):
        messages_prompt([{"content": "no role"}])
    with pytest.raises(ConfigurationError, match="at least one message"):
        messages_prompt([])
    with pytest.raises(ConfigurationError, match="JSON-compatible"):
        make_llm_string({"x": object()})


def test_key_is_unambiguous_and_versioned() -> None:
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert cache_key("p", "l") == cache_key("p", "l")
    assert len(cache_key("p", "l")) == 32


def test_api_key_never_reaches_the_store(tmp_path, upstream) -> None:
    cache = SQLiteCache(tmp_path / "c.db")
    llm = OpenAI(base_url=upstream.base_url, api_key=SECRET, cache=cache)
    chat = ChatOpenAI(base_url=upstream.base_url, api_key=SECRET, cache=cache)
    llm("Tell me a joke")
    chat.invoke("Tell me a joke")
    cache.close()
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path
