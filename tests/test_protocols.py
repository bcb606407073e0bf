"""The protocol layer (no I/O): identities, entries, stream assembly and replay, usage, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_cache.errors import CorruptEntryError
from llm_cache.generation import Generation, decode_generations, encode_generations
from llm_cache.protocols import CHAT, COMPLETIONS, EMBEDDINGS, MESSAGES, PROTOCOLS, RESPONSES, Uncacheable
from llm_cache.protocols.base import RequestIdentity, entry_created_at
from llm_cache.testing import fake_anthropic, fake_openai, fake_responses

CHAT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me a joke"}]}
RESPONSES_BODY = {"model": "gpt-4o-mini", "input": "Tell me a joke", "instructions": "Be brief."}
MESSAGES_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "Tell me a joke"}],
}


def ident(protocol: Any, body: dict[str, Any], namespace: str | None = "ns") -> RequestIdentity:
    identity = protocol.identify(body, namespace)
    assert isinstance(identity, RequestIdentity), identity
    return identity


def stored(generations: list[Generation]) -> list[Generation]:
    """What a store gives back: the generations through their JSON codec."""
    return decode_generations(encode_generations(generations))


# ------------------------------------------------------------------------------ identities
def test_a_body_field_can_never_take_the_namespace_or_api_of_the_key() -> None:
    plain = ident(CHAT, CHAT_BODY, "tenant-a")
    forged = ident(CHAT, {**CHAT_BODY, "namespace": "tenant-b", "api": "x", "provider": "y"}, "tenant-a")
    assert json.loads(forged.llm_string)["namespace"] == "tenant-a"
    assert json.loads(forged.llm_string)["~namespace"] == "tenant-b"
    other = ident(CHAT, CHAT_BODY, "tenant-b")
    assert forged.llm_string not in (plain.llm_string, other.llm_string)
    # the escape is one-to-one: a field literally named "~namespace" is another key again
    escaped = ident(CHAT, {**CHAT_BODY, "~namespace": "tenant-b"}, "tenant-a")
    assert escaped.llm_string != forged.llm_string


def test_chat_identity_is_the_chat_model_key() -> None:
    from llm_cache.keys import make_llm_string, messages_prompt

    identity = ident(CHAT, {**CHAT_BODY, "temperature": 0.5, "stream": True, "user": "bob", "metadata": {"a": "b"}}, None)
    assert identity.prompt == messages_prompt(CHAT_BODY["messages"])
    assert identity.llm_string == make_llm_string(
        {"provider": "openai", "api": "chat.completions", "model": "gpt-4o-mini", "temperature": 0.5}
    )
    assert identity.semantic


@pytest.mark.parametrize(
    "protocol, body",
    [
        (CHAT, {"model": "m"}),
        (CHAT, {"model": "m", "messages": "hi"}),
        (CHAT, {**CHAT_BODY, "temperature": float("nan")}),
        (COMPLETIONS, {"model": "m", "prompt": []}),
        (EMBEDDINGS, {"model": "m"}),
        (RESPONSES, {**RESPONSES_BODY, "background": True}),
        (RESPONSES, {**RESPONSES_BODY, "conversation": "conv_1"}),
        (RESPONSES, {"model": "m"}),
        (RESPONSES, {"model": "m", "input": [{"role": "~function_call", "content": "x"}]}),
        (MESSAGES, {"model": "m", "max_tokens": 5}),
    ],
)
def test_uncacheable_requests(protocol: Any, body: dict[str, Any]) -> None:
    assert isinstance(protocol.identify(body, "ns"), Uncacheable)


def test_batch_prompts_never_meet_the_string_that_looks_the_same() -> None:
    listed = ident(COMPLETIONS, {"model": "m", "prompt": ["a", "b"]})
    text = ident(COMPLETIONS, {"model": "m", "prompt": listed.prompt})
    assert listed.prompt == text.prompt and listed.llm_string != text.llm_string
    assert not listed.semantic and text.semantic


@pytest.mark.parametrize(
    "change",
    [
        {"instructions": "Be long."},
        {"previous_response_id": "resp_1"},
        {"tools": [{"type": "function", "name": "f", "parameters": {}}]},
        {"text": {"format": {"type": "json_object"}}},
        {"reasoning": {"effort": "high"}},
        {"store": False},
        {"model": "gpt-4o"},
    ],
)
def test_responses_fields_that_change_the_answer_are_keyed(change: dict[str, Any]) -> None:
    assert ident(RESPONSES, RESPONSES_BODY) != ident(RESPONSES, {**RESPONSES_BODY, **change})


def test_responses_fields_that_do_not_change_the_answer_are_not_keyed() -> None:
    same = {**RESPONSES_BODY, "stream": True, "metadata": {"run": "7"}, "store": True, "user": "u", "background": False}
    assert ident(RESPONSES, RESPONSES_BODY) == ident(RESPONSES, same)
    # a string input is the one user message it stands for
    items = {**RESPONSES_BODY, "input": [{"role": "user", "content": "Tell me a joke"}]}
    assert ident(RESPONSES, RESPONSES_BODY) == ident(RESPONSES, items)


def test_responses_items_have_roles_for_the_semantic_split() -> None:
    from llm_cache.semantic.partition import split_prompt

    body = {
        **RESPONSES_BODY,
        "input": [
            {"role": "user", "content": "weather in Paris?"},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"role": "user", "content": "and tomorrow?"},
        ],
    }
    identity = ident(RESPONSES, body)
    key = split_prompt(identity.prompt, identity.llm_string)
    assert key.text == "and tomorrow?" and "sunny" in key.context


def test_anthropic_cache_control_and_user_id_are_not_keyed() -> None:
    marked = {
        **MESSAGES_BODY,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Tell me a joke", "cache_control": {"type": "ephemeral"}}]}
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
        "metadata": {"user_id": "u-1"},
        "stream": True,
        "cache_control": {"type": "ephemeral"},
    }
    unmarked = {
        **MESSAGES_BODY,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Tell me a joke"}]}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    }
    assert ident(MESSAGES, marked) == ident(MESSAGES, unmarked)
    # but a tool schema property that happens to be called cache_control is part of the key
    schema = {"type": "object", "properties": {"cache_control": {"type": "string"}}}
    assert ident(MESSAGES, {**unmarked, "tools": [{"name": "f", "input_schema": schema}]}) != ident(MESSAGES, unmarked)


@pytest.mark.parametrize(
    "change",
    [
        {"system": "Be long."},
        {"max_tokens": 65},
        {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        {"tools": [{"name": "f", "input_schema": {"type": "object"}}]},
        {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}]}]},
    ],
)
def test_anthropic_fields_that_change_the_answer_are_keyed(change: dict[str, Any]) -> None:
    assert ident(MESSAGES, MESSAGES_BODY) != ident(MESSAGES, {**MESSAGES_BODY, **change})


def test_protocols_and_namespaces_never_share_keys() -> None:
    chat = ident(CHAT, CHAT_BODY)
    anthropic = ident(MESSAGES, {"model": "gpt-4o-mini", "messages": CHAT_BODY["messages"]})
    assert chat.prompt == anthropic.prompt and chat.llm_string != anthropic.llm_string
    assert ident(CHAT, CHAT_BODY, "a").llm_string != ident(CHAT, CHAT_BODY, "b").llm_string


# --------------------------------------------------------------------------------- entries
def _responses(body: dict[str, Any]) -> dict[str, Any]:
    return fake_responses.build_response(body, "resp_1", 1700000000)


def _message(body: dict[str, Any]) -> dict[str, Any]:
    return fake_anthropic.build_message(body, "msg_1")


CASES = [
    (CHAT, {**CHAT_BODY, "n": 2}, lambda b: fake_openai.build_chat_completion(b, "chatcmpl-1", 1)),
    (COMPLETIONS, {"model": "m", "prompt": ["a", "b"]}, lambda b: fake_openai.build_completion(b, "cmpl-1", 1)),
    (EMBEDDINGS, {"model": "e", "input": ["a"]}, lambda b: fake_openai.build_embeddings(b, 8)),
    (RESPONSES, RESPONSES_BODY, _responses),
    (MESSAGES, MESSAGES_BODY, _message),
]


@pytest.mark.parametrize("protocol, request_body, build", CASES, ids=[c[0].name for c in CASES])
def test_entries_round_trip_through_a_store(protocol: Any, request_body: dict[str, Any], build: Any) -> None:
    response = build(request_body)
    generations = stored(protocol.to_entry(response, created_at=123.5))
    assert entry_created_at(generations) == 123.5
    assert protocol.from_entry(generations, request_body) == response


@pytest.mark.parametrize("protocol", [RESPONSES, MESSAGES, EMBEDDINGS])
def test_entries_that_are_not_ours_are_corrupt(protocol: Any) -> None:
    for generations in ([Generation("plain")], [Generation("", {"response": []})], [Generation("", {"response": {"output": 1}})]):
        with pytest.raises(CorruptEntryError):
            protocol.from_entry(generations, {})


def test_unfinished_responses_are_not_stored() -> None:
    with pytest.raises(ValueError):
        RESPONSES.to_entry({**_responses(RESPONSES_BODY), "status": "failed"})
    with pytest.raises(ValueError):
        MESSAGES.to_entry({**_message(MESSAGES_BODY), "stop_reason": None})


# ---------------------------------------------------------------------------------- streams
def assemble(protocol: Any, events: list[tuple[str | None, dict[str, Any]]]) -> dict[str, Any]:
    assembler = protocol.assembler({})
    for name, data in events:
        assembler.add(name, json.loads(json.dumps(data)))  # as parsed off the wire
    assert assembler.complete
    return assembler.response()  # type: ignore[no-any-return]


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-100, 100) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
anthropic_block = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, text),
    st.builds(
        lambda i, n, v: {"type": "tool_use", "id": i, "name": n, "input": v},
        st.text(min_size=1, max_size=8),
        st.text(min_size=1, max_size=8),
        st.dictionaries(st.text(max_size=5), json_value, max_size=3),
    ),
    st.builds(lambda t, s: {"type": "thinking", "thinking": t, "signature": s}, text, st.text(min_size=1, max_size=10)),
    st.builds(lambda d: {"type": "redacted_thinking", "data": d}, st.text(max_size=10)),
)


@settings(max_examples=60, deadline=None)
@given(blocks=st.lists(anthropic_block, max_size=4), stop=st.sampled_from(["end_turn", "tool_use", "max_tokens"]))
def test_anthropic_replay_assembles_to_the_same_message(blocks: list[dict[str, Any]], stop: str) -> None:
    message = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": blocks,
        "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 5, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 1},
    }
    events = MESSAGES.replay(message, {})
    assert [n for n, _ in events][0] == "message_start" and events[-1][0] == "message_stop"
    assert assemble(MESSAGES, events) == message


output_item = st.one_of(
    st.builds(
        lambda i, texts: {
            "id": i, "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": t, "annotations": [], "logprobs": []} for t in texts],
        },
        st.text(min_size=1, max_size=6),
        st.lists(text, min_size=1, max_size=2),
    ),
    st.builds(
        lambda i, a: {"id": i, "type": "function_call", "status": "completed", "call_id": "c" + i, "name": "f", "arguments": a},
        st.text(min_size=1, max_size=6),
        text,
    ),
)


@settings(max_examples=60, deadline=None)
@given(items=st.lists(output_item, max_size=3), status=st.sampled_from(["completed", "incomplete"]))
def test_responses_replay_assembles_to_the_same_response(items: list[dict[str, Any]], status: str) -> None:
    response = {**_responses(RESPONSES_BODY), "output": items, "status": status}
    events = RESPONSES.replay(response, {})
    assert events[0][0] == "response.created"
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    deltas = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    assert deltas == "".join(p["text"] for i in items if i["type"] == "message" for p in i["content"])
    assert assemble(RESPONSES, events) == response


def test_chat_replay_assembles_to_the_same_completion() -> None:
    response = fake_openai.build_chat_completion({**CHAT_BODY, "n": 2}, "chatcmpl-1", 1)
    events = CHAT.replay(response, {"stream_options": {"include_usage": True}})
    assert events[-1][1]["usage"] == response["usage"]
    assert assemble(CHAT, events) == response


@pytest.mark.parametrize("build", ["anthropic", "responses"])
def test_fake_server_streams_assemble_to_its_unstreamed_answer(build: str) -> None:
    if build == "anthropic":
        protocol, body = MESSAGES, MESSAGES_BODY
        events = fake_anthropic.stream_message(body, "msg_1")
        expected = _message(body)
    else:
        protocol, body = RESPONSES, RESPONSES_BODY
        events = fake_responses.stream_response(body, "resp_1", 1700000000)
        expected = _responses(body)
    assert assemble(protocol, events) == expected


def test_an_error_event_means_the_stream_is_not_stored() -> None:
    assembler = MESSAGES.assembler({})
    for name, data in MESSAGES.replay(_message(MESSAGES_BODY), {})[:-1]:
        assembler.add(name, data)
    assembler.add("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    assert not assembler.complete


# ------------------------------------------------------------------------- usage and errors
def test_usage_counts_anthropic_cache_tokens() -> None:
    usage = MESSAGES.usage(
        {"model": "claude", "usage": {"input_tokens": 10, "output_tokens": 4, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 50}}
    )
    assert (usage.input_tokens, usage.output_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (160, 4, 100, 50)
    assert RESPONSES.usage({"usage": {"input_tokens": 7, "output_tokens": 2}}).input_tokens == 7
    assert CHAT.usage({"usage": {"prompt_tokens": 7, "completion_tokens": 2}}).output_tokens == 2


def test_error_bodies() -> None:
    assert MESSAGES.error(429, "slow down") == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    assert RESPONSES.error(400, "bad")["error"]["type"] == "invalid_request_error"
    assert set(PROTOCOLS) == {"chat.completions", "completions", "embeddings", "responses", "anthropic.messages"}


def test_responses_input_text_parts_are_embedded() -> None:
    from llm_cache.semantic.partition import split_prompt

    parts = {"role": "user", "content": [{"type": "input_text", "text": "capital of France?"}, {"type": "input_image", "image_url": "https://x/a.png"}]}
    identity = ident(RESPONSES, {**RESPONSES_BODY, "input": [parts]})
    key = split_prompt(identity.prompt, identity.llm_string)
    assert key.text == "capital of France?" and "input_image" in key.context


def test_responses_item_with_a_null_role_is_a_role_less_item() -> None:
    call = {"type": "function_call_output", "call_id": "c", "output": "x"}
    with_null = ident(RESPONSES, {**RESPONSES_BODY, "input": [{**call, "role": None}]})
    assert with_null == ident(RESPONSES, {**RESPONSES_BODY, "input": [call]})
    assert json.loads(with_null.prompt)[0]["role"] == "~function_call_output"


def test_a_failed_response_stream_is_not_stored() -> None:
    events = RESPONSES.replay(_responses(RESPONSES_BODY), {})[:-1]
    failed = {**_responses(RESPONSES_BODY), "status": "failed", "error": {"code": "server_error", "message": "x"}}
    assembler = RESPONSES.assembler({})
    for name, data in events:
        assembler.add(name, data)
    assert not assembler.complete  # no response.completed yet
    assembler.add("response.failed", {"type": "response.failed", "response": failed})
    assert not assembler.complete
