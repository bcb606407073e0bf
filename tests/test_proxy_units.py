"""The proxy's pure parts: keys and cache controls, the stored format, SSE assembly and
replay, metrics exposition. No sockets here; tests/test_proxy.py runs the proxy for real."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm_cache.errors import CorruptEntryError
from llm_cache.generation import Generation, decode_generations, encode_generations
from llm_cache.proxy.codec import generations_to_response, response_to_generations
from llm_cache.proxy.keys import (
    api_key_of,
    key_namespace,
    parse_cache_control,
    request_key,
    valid_namespace,
)
from llm_cache.proxy.metrics import Metrics, PriceTable
from llm_cache.proxy.sse import SSEParser, StreamAssembler, replay_sse, split_pieces
from llm_cache.testing import fake_openai

CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Tell me a joke about caches"}],
}


# -------------------------------------------------------------------------------- keys


def test_stream_and_transport_fields_are_not_in_the_key() -> None:
    base = request_key("chat.completions", CHAT, "ns")
    streamed = request_key(
        "chat.completions",
        {**CHAT, "stream": True, "stream_options": {"include_usage": True}, "user": "bob"},
        "ns",
    )
    assert base == streamed


@pytest.mark.parametrize(
    "change",
    [
        {"n": 2},
        {"temperature": 0.3},
        {"model": "gpt-4o"},
        {"seed": 1},
        {"max_tokens": 5},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"response_format": {"type": "json_object"}},
        {"some_future_parameter": True},
    ],
)
def test_output_changing_fields_are_in_the_key(change: dict[str, Any]) -> None:
    assert request_key("chat.completions", CHAT, "ns") != request_key(
        "chat.completions", {**CHAT, **change}, "ns"
    )


def test_namespace_and_endpoint_separate_keys() -> None:
    a = request_key("chat.completions", CHAT, "ns-a")
    b = request_key("chat.completions", CHAT, "ns-b")
    assert a is not None and b is not None and a.prompt == b.prompt and a.llm_string != b.llm_string
    completion = request_key("completions", {"model": "m", "prompt": "x"}, "ns")
    embedding = request_key("embeddings", {"model": "m", "input": "x"}, "ns")
    assert completion is not None and embedding is not None
    assert (
        completion.prompt == embedding.prompt == "x"
        and completion.llm_string != embedding.llm_string
    )
    llm_string = json.loads(a.llm_string)
    # the protocol layer's key: the one cached_client(..., namespace="ns-a") computes
    assert llm_string == {
        "provider": "openai",
        "api": "chat.completions",
        "namespace": "ns-a",
        "model": "gpt-4o-mini",
    }
    # a body field cannot take another tenant's namespace
    forged = request_key("chat.completions", {**CHAT, "namespace": "ns-b"}, "ns-a")
    assert forged is not None and json.loads(forged.llm_string)["namespace"] == "ns-a"


def test_uncacheable_bodies() -> None:
    assert request_key("chat.completions", {"model": "m"}, "ns") is None
    assert request_key("chat.completions", {"model": "m", "messages": "hi"}, "ns") is None
    assert request_key("completions", {"model": "m", "prompt": []}, "ns") is None
    assert request_key("chat.completions", {**CHAT, "temperature": float("nan")}, "ns") is None
    assert request_key("responses", {"model": "m", "input": "x", "background": True}, "ns") is None


def test_api_keys_are_hashed() -> None:
    assert api_key_of({"authorization": "Bearer sk-abc"}) == "sk-abc"
    assert api_key_of({"api-key": "azure-key"}) == "azure-key"
    assert api_key_of({}) is None
    ns = key_namespace("sk-abc")
    assert ns.startswith("k") and len(ns) == 33 and "abc" not in ns
    assert ns == key_namespace("sk-abc") != key_namespace("sk-abd")
    assert key_namespace(None) == "anon"
    assert (
        valid_namespace("team-a") and not valid_namespace("a b") and not valid_namespace("x" * 129)
    )


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, (False, False, None, False)),
        ("no-store", (True, False, None, False)),
        ("No-Cache", (False, True, None, False)),
        ("max-age=60", (False, False, 60.0, False)),
        ('max-age="30", max-age=10', (False, False, 10.0, False)),
        ("max-age=0", (False, True, 0.0, False)),
        ("max-age=soon", (False, False, None, False)),
        ("only-if-cached, max-age=5", (False, False, 5.0, True)),
    ],
)
def test_cache_control(header: str | None, expected: tuple[Any, ...]) -> None:
    d = parse_cache_control(header)
    assert (d.no_store, d.no_cache, d.max_age, d.only_if_cached) == expected


# ------------------------------------------------------------------------------- codec


def test_codec_round_trip_through_the_generation_codec() -> None:
    body = fake_openai.build_chat_completion({**CHAT, "n": 2}, "chatcmpl-1", 1700000000)
    generations = response_to_generations("chat.completions", body, created_at=123.5)
    assert [g.text for g in generations] == [c["message"]["content"] for c in body["choices"]]
    stored = decode_generations(encode_generations(generations))  # what a store keeps: JSON
    cached = generations_to_response(stored, "chat.completions")
    assert cached.body == body and cached.created_at == 123.5
    completion = fake_openai.build_completion({"model": "m", "prompt": ["a", "b"]}, "cmpl-1", 1)
    assert (
        generations_to_response(response_to_generations("completions", completion), "completions").body
        == completion
    )
    embeddings = fake_openai.build_embeddings({"model": "e", "input": ["a"]}, 8)
    assert (
        generations_to_response(response_to_generations("embeddings", embeddings), "embeddings").body
        == embeddings
    )


@pytest.mark.parametrize(
    "endpoint, generations",
    [
        ("embeddings", [Generation("plain text")]),  # a chat model's entry under embeddings
        ("embeddings", [Generation("", {"response": []})]),
        ("chat.completions", [Generation("", {"response": []})]),
        ("chat.completions", [Generation("", {"choice": "x"})]),
        ("chat.completions", [Generation("", None, {"role": "assistant", "content": 5})]),
        ("anthropic.messages", [Generation("hi", {"response": {"type": "message"}})]),
        ("responses", [Generation("hi", {"response": {"object": "response", "output": {}}})]),
    ],
)
def test_codec_rejects_what_is_not_usable(endpoint: str, generations: list[Generation]) -> None:
    with pytest.raises(CorruptEntryError):
        generations_to_response(generations, endpoint)


def test_an_entry_written_by_a_chat_model_is_usable() -> None:
    cached = generations_to_response([Generation("Hello")], "chat.completions", {"model": "m"})
    assert cached.body["choices"][0]["message"] == {"role": "assistant", "content": "Hello"}
    assert cached.created_at is None


# --------------------------------------------------------------------------------- SSE


def _sse_bytes(chunks: list[dict[str, Any]]) -> bytes:
    return (
        b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    )


def _parse_all(data: bytes, step: int) -> list[str]:
    parser = SSEParser()
    events: list[str] = []
    for i in range(0, len(data), step):
        events += parser.feed(data[i : i + step])
    return events + parser.close()


@pytest.mark.parametrize("step", [1, 7, 4096])
def test_sse_parser_reassembles_split_events(step: int) -> None:
    data = (
        b': comment\r\ndata: {"a": 1}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n'
    )
    assert _parse_all(data, step) == ['{"a": 1}', "line1\nline2", "[DONE]"]


def _assemble(endpoint: str, chunks: list[dict[str, Any]]) -> StreamAssembler:
    assembler = StreamAssembler(endpoint)
    for event in _parse_all(_sse_bytes(chunks), 50):
        if event != "[DONE]":
            assembler.add(json.loads(event))
    return assembler


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"n": 3},
        {"stream_options": {"include_usage": True}},
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}},
                    },
                }
            ],
            "tool_choice": "required",
        },
    ],
)
def test_assembled_stream_equals_the_plain_response(extra: dict[str, Any]) -> None:
    body = {**CHAT, **extra}
    plain = fake_openai.build_chat_completion(body, "chatcmpl-7", 1700000000)
    assembler = _assemble(
        "chat.completions", fake_openai.stream_chat_completion(body, "chatcmpl-7", 1700000000)
    )
    assert assembler.complete
    assembled = assembler.response()
    if "stream_options" not in extra:
        plain.pop("usage")
    assert assembled == plain


def test_assembled_completion_stream() -> None:
    body = {
        "model": "m",
        "prompt": ["one prompt", "two prompt"],
        "n": 2,
        "stream_options": {"include_usage": True},
    }
    plain = fake_openai.build_completion(body, "cmpl-9", 5)
    assembled = _assemble(
        "completions", fake_openai.stream_completion(body, "cmpl-9", 5)
    ).response()
    assert assembled == plain


def test_assembler_joins_fragments_and_extras() -> None:
    chunks = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "reasoning_content": "think "}}
            ],
        },
        {"id": "c", "choices": [{"index": 0, "delta": {"reasoning_content": "more"}}]},
        {
            "id": "c",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "f", "arguments": '{"a"'},
                            }
                        ]
                    },
                }
            ],
        },
        {
            "id": "c",
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
                    "logprobs": {"content": [{"token": "x"}]},
                }
            ],
        },
        {
            "id": "c",
            "choices": [
                {
                    "index": 0,
                    "delta": {},
                    "finish_reason": "tool_calls",
                    "logprobs": {"content": [{"token": "y"}]},
                }
            ],
        },
    ]
    assembler = _assemble("chat.completions", chunks)
    choice = assembler.response()["choices"][0]
    assert choice["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]
    assert choice["message"]["content"] is None
    assert choice["message"]["reasoning_content"] == "think more"
    assert choice["logprobs"] == {"content": [{"token": "x"}, {"token": "y"}]}


def test_incomplete_or_failed_streams_are_not_complete() -> None:
    chunks = fake_openai.stream_chat_completion(CHAT, "c", 1)
    assert not _assemble("chat.completions", chunks[:-1]).complete  # no finish_reason yet
    failed = _assemble("chat.completions", chunks + [{"error": {"message": "boom"}}])
    assert not failed.complete


@pytest.mark.parametrize("include_usage", [False, True])
def test_replay_round_trips(include_usage: bool) -> None:
    body = fake_openai.build_chat_completion({**CHAT, "n": 2}, "chatcmpl-3", 99)
    stream = replay_sse("chat.completions", body, include_usage)
    assert stream.endswith(b"data: [DONE]\n\n")
    events = [json.loads(e) for e in _parse_all(stream, 4096) if e != "[DONE]"]
    assert all(e["object"] == "chat.completion.chunk" and e["id"] == "chatcmpl-3" for e in events)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert ("usage" in events[-1] and events[-1]["choices"] == []) is include_usage
    assembler = StreamAssembler("chat.completions")
    for e in events:
        assembler.add(e)
    replayed = assembler.response()
    if not include_usage:
        body.pop("usage")
    assert replayed == body


def test_split_pieces() -> None:
    text = "  Hello,  world!\nNew line. "
    assert "".join(split_pieces(text)) == text and len(split_pieces(text)) > 2
    long = "word " * 5000
    pieces = split_pieces(long)
    assert "".join(pieces) == long and len(pieces) <= 256
    assert split_pieces("") == []


# ----------------------------------------------------------------------------- metrics


def test_prices_match_by_prefix() -> None:
    table = PriceTable()
    assert table.price("gpt-4o-mini-2024-07-18") == table.price("gpt-4o-mini") == (0.15, 0.60)
    assert table.price("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert table.price("llama-3") == (0.0, 0.0)
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)


def test_price_table_file(tmp_path: Any) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"my-model": {"input": 1.0, "output": 2.0}}))
    assert PriceTable.from_file(path).cost("my-model-v2", 1000, 1000) == pytest.approx(0.003)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError):
        PriceTable.from_file(path)


def test_metrics_exposition_format() -> None:
    metrics = Metrics()
    metrics.request("chat.completions", "hit", 0.0004)
    metrics.request("chat.completions", "hit", 0.003)
    metrics.upstream("chat.completions", 200, 0.2)
    metrics.upstream_error("embeddings", "connect_error")
    metrics.saved({"prompt_tokens": 10, "completion_tokens": 5}, "gpt-4o-mini")
    text = metrics.render({"hits": 2, "errors": 0}, False)
    lines = text.splitlines()
    assert 'llm_cache_proxy_requests_total{endpoint="chat.completions",cache="hit"} 2' in lines
    assert 'llm_cache_proxy_request_duration_seconds_bucket{cache="hit",le="0.0005"} 1' in lines
    assert 'llm_cache_proxy_request_duration_seconds_bucket{cache="hit",le="+Inf"} 2' in lines
    assert (
        'llm_cache_proxy_upstream_errors_total{endpoint="embeddings",kind="connect_error"} 1'
        in lines
    )
    assert 'llm_cache_proxy_tokens_saved_total{kind="prompt"} 10' in lines
    assert (
        "llm_cache_proxy_cache_hits_total 2" in lines
        and "llm_cache_proxy_cache_breaker_open 0" in lines
    )
    for line in lines:  # every sample line is "name{labels} number"
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1].replace("+Inf", "inf"))
    families = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(families) == len(set(families))
