"""A small, deterministic, OpenAI-compatible HTTP server for tests and demos.

It speaks enough of the OpenAI wire format for the official ``openai`` SDK (sync,
async and streaming) to talk to it: ``/v1/completions``, ``/v1/chat/completions``,
``/v1/embeddings`` and ``/v1/models``; the Responses API (``/v1/responses``, see
:mod:`.fake_responses`) and, for the ``anthropic`` SDK, Anthropic Messages
(``/v1/messages``, see :mod:`.fake_anthropic`). It uses only the standard library, because
``llm-cache demo`` and the test-suite must be able to start it with no extra
installed::

    with FakeOpenAIServer(latency=0.2) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        assert server.request_count == 1

Answers are deterministic: the text depends only on the model, the prompt or
messages, the choice index, ``temperature`` and ``seed`` (``max_tokens`` and ``stop``
then truncate it), so a cache in front of it can be checked for correctness.
Ids and ``created`` are *not* deterministic: every served request gets a fresh id,
which lets a test tell a replay from the cache (same id) from a new call.

Generic answers embed a short hash of the request, so two different requests
always get different text. Jokes and summary lead-ins come from lists of eight:
the choices of one request never repeat each other, but two different requests
can occasionally get the same joke or summary.

Embeddings are served as floats or, when asked, as base64 of little-endian
float32; note that the ``openai`` SDK asks for base64 unless the caller passes
``encoding_format`` (and decodes it back to floats itself).

Run it by hand with ``python -m llm_cache.testing.fake_openai --port 8000``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import json
import math
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..semantic.embeddings import DocumentEmbeddings

__all__ = ["FakeOpenAIServer", "ToyEmbeddings", "main"]

#: Model ids listed by ``GET /v1/models``. Requests may name any model.
MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "fake-model",
)

JOKES: tuple[str, ...] = (
    "Why do programmers prefer dark mode? Because light attracts bugs.",
    "Why did the cache go to therapy? It had too many unresolved misses.",
    "There are 10 kinds of people: those who understand binary and those who don't.",
    "I would tell you a UDP joke, but you might not get it.",
    "Why was the math book sad? It had too many problems.",
    "Why did the scarecrow win an award? He was outstanding in his field.",
    "Parallel lines have so much in common. It's a shame they'll never meet.",
    "I told my computer I needed a break, and it went to sleep.",
)

SUMMARY_LEADS: tuple[str, ...] = (
    "In short:",
    "Summary:",
    "TL;DR:",
    "Briefly:",
    "The gist:",
    "In brief:",
    "Key point:",
    "Overall:",
)

_ECHO_WORDS = 12  # how much of the prompt a generic answer repeats
_SUMMARY_WORDS = 40
_MAX_N = 128
_MAX_DIMENSIONS = 16384
_INJECTED_RETRY_AFTER_MS = "10"  # lets SDK retries of injected failures run fast

_MODEL_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/embeddings")
# Served by sibling modules: the Responses API (fake_responses) and Anthropic (fake_anthropic).
_SIBLING_PATHS = ("/v1/responses", "/v1/messages", "/v1/messages/count_tokens")


def _sibling(path: str) -> Any:
    """The sibling module serving ``path``, or None (imported here: they import this module)."""
    if path == "/v1/responses" or path.startswith("/v1/responses/"):
        from . import fake_responses

        return fake_responses
    if path in ("/v1/messages", "/v1/messages/count_tokens"):
        from . import fake_anthropic

        return fake_anthropic
    return None

_ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("invalid_request_error", "conflict"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


class _RequestError(Exception):
    """An error answered to the client as an OpenAI-style error body."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


def _error_body(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """Return ``{"error": {...}}`` shaped like OpenAI's, which the SDK reads for its exceptions."""
    err_type, default_code = _ERROR_TYPES.get(status, ("server_error", "server_error"))
    return {
        "error": {
            "message": message,
            "type": err_type,
            "param": param,
            "code": code or default_code,
        }
    }


# --------------------------------------------------------------------------- text


def _words(text: str) -> list[str]:
    return text.split()


def _count_tokens(text: str) -> int:
    """Token count used in ``usage``: whitespace-separated words."""
    return len(text.split())


def _digest(key: Any) -> str:
    """Hex SHA-256 of a canonical JSON rendering, so equal requests hash equally."""
    canonical = json.dumps(
        key, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _pick(options: tuple[str, ...], seed_hex: str, offset: int = 0) -> str:
    return options[(int(seed_hex[:8], 16) + offset) % len(options)]


def _summary_source(prompt: str) -> str:
    """Return the text to summarise: what follows the instruction containing "summar".

    A trailing cue line such as ``CONCISE SUMMARY:``, quotes wrapped around the text and
    lead-ins of earlier summaries (when summaries are summarised) are dropped, so the
    answer reads like a summary of the text itself.
    """
    at = prompt.lower().find("summar")
    rest = prompt[at:]
    # "Summarize this: <text>" or "Summarise the following\n<text>"
    match = re.search(r"[:\n]", rest)
    if match is None:
        # "Please summarise. <text>": skip the instruction's own sentence.
        match = re.search(r"[.!?](\s|$)", rest)
    source = rest[match.end() :].strip() if match else ""
    lines = source.rstrip().splitlines()
    if len(lines) > 1 and lines[-1].rstrip().endswith(":"):
        source = "\n".join(lines[:-1]).strip()
    source = source.strip().strip('"').strip()
    return source or prompt.strip()


def _strip_lead(text: str) -> str:
    for lead in SUMMARY_LEADS:
        if text.startswith(lead):
            return text[len(lead) :].lstrip()
    return text


def _summary(prompt: str, request_hex: str, index: int) -> str:
    """A lead-in plus the first sentence of each of the first paragraphs, at most 40 words."""
    lead = _pick(SUMMARY_LEADS, request_hex, index)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", _summary_source(prompt)) if p.strip()]
    firsts = [_strip_lead(re.split(r"(?<=[.!?])\s+", p)[0]) for p in paragraphs[:3]]
    if len(firsts) == 1:  # one paragraph: its first two sentences
        firsts = [_strip_lead(s) for s in re.split(r"(?<=[.!?])\s+", paragraphs[0])[:2]]
    words = _words(" ".join(firsts))
    if not words:
        return f"{lead} there is nothing to summarise."
    return f"{lead} {' '.join(words[:_SUMMARY_WORDS])}"


def _echo_answer(prompt: str, seed_hex: str) -> str:
    words = _words(prompt)
    echo = " ".join(words[:_ECHO_WORDS]) if words else "(empty prompt)"
    if len(words) > _ECHO_WORDS:
        echo += " ..."
    return f"Answer {seed_hex[:8]}: {echo}"


def generate_text(prompt: str, request_hex: str, index: int = 0) -> str:
    """Return the readable, deterministic answer to ``prompt`` for choice ``index``.

    ``request_hex`` hashes everything that changes the text except the choice index.
    Jokes and summary lead-ins step through their lists by index, so the choices of
    one request (up to eight) never repeat each other.
    """
    lowered = prompt.lower()
    if "joke" in lowered:
        return _pick(JOKES, request_hex, index)
    if "summar" in lowered:
        return _summary(prompt, request_hex, index)
    return _echo_answer(prompt, _digest([request_hex, index]))


def _apply_limits(text: str, max_tokens: int | None, stops: list[str]) -> tuple[str, str]:
    """Cut ``text`` at the first stop sequence, then to ``max_tokens`` words.

    Returns the text and the OpenAI ``finish_reason`` ("length" when max_tokens cut it).
    """
    cuts = [text.find(s) for s in stops if s and s in text]
    if cuts:
        text = text[: min(cuts)]
    if max_tokens is not None and _count_tokens(text) > max_tokens:
        return " ".join(_words(text)[:max_tokens]), "length"
    return text, "stop"


def _stream_pieces(text: str) -> list[str]:
    """Split ``text`` word by word so the pieces concatenate back to exactly ``text``."""
    return re.findall(r"\S+\s*|\s+", text)


# ------------------------------------------------------------------ body parsing


def _get_int(
    body: dict[str, Any], name: str, default: int | None, low: int, high: int
) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _RequestError(400, f"'{name}' must be an integer between {low} and {high}", name)
    return value


def _get_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise _RequestError(400, f"'{name}' is required and must be a non-empty string", name)
    return value


def _get_stops(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise _RequestError(400, "'stop' must be a string or a list of strings", "stop")


def _sampling_key(body: dict[str, Any]) -> dict[str, Any]:
    """The sampling parameters that change the text (normalised so 1 and 1.0 agree)."""
    temperature = body.get("temperature")
    if temperature is not None and not isinstance(temperature, (int, float)):
        raise _RequestError(400, "'temperature' must be a number", "temperature")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _RequestError(400, "'seed' must be an integer", "seed")
    return {"temperature": None if temperature is None else float(temperature), "seed": seed}


def _get_prompts(body: dict[str, Any]) -> list[str]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return prompt
    # Token-id prompts are valid for OpenAI but meaningless here without a tokenizer.
    raise _RequestError(400, "'prompt' must be a string or a non-empty list of strings", "prompt")


def _message_text(message: dict[str, Any]) -> str:
    """Text of one chat message; content may be a string or a list of typed parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _get_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) for m in messages)
    ):
        raise _RequestError(
            400, "'messages' must be a non-empty list of message objects", "messages"
        )
    return messages


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _message_text(message)
    return _message_text(messages[-1])


# ------------------------------------------------------------- structured output


def _value_for_schema(schema: Any, seed_hex: str, words: list[str], depth: int = 0) -> Any:
    """A deterministic value fitting a simple JSON schema (tool arguments, json_schema output)."""
    if not isinstance(schema, dict) or depth > 6:
        return None
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        return schema["enum"][int(seed_hex[:8], 16) % len(schema["enum"])]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(combinator), list) and schema[combinator]:
            return _value_for_schema(schema[combinator][0], seed_hex, words, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    number = int(seed_hex[8:16], 16)
    if kind == "object":
        props = schema.get("properties") or {}
        return {
            name: _value_for_schema(sub, _digest([seed_hex, name]), words, depth + 1)
            for name, sub in props.items()
        }
    if kind == "array":
        return [_value_for_schema(schema.get("items", {}), seed_hex, words, depth + 1)]
    if kind == "integer":
        return number % 100
    if kind == "number":
        return round((number % 10000) / 100, 2)
    if kind == "boolean":
        return number % 2 == 0
    if kind == "null":
        return None
    return " ".join(words[:3]) if words else f"value-{seed_hex[:6]}"


def _tool_call_target(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function tool to call, or None when the model should answer in text.

    Only ``tool_choice="required"`` or a named function forces a call; "auto" and
    "none" answer with text so tests get a predictable shape.
    """
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    functions: list[dict[str, Any]] = [
        t["function"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    if not functions:
        raise _RequestError(400, "'tools' must be a list of function tools", "tools")
    choice = body.get("tool_choice")
    if choice == "required":
        return functions[0]
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        for function in functions:
            if function.get("name") == name:
                return function
        raise _RequestError(400, f"tool_choice names an unknown function: {name!r}", "tool_choice")
    return None


def _tool_call(function: dict[str, Any], seed_hex: str, words: list[str]) -> dict[str, Any]:
    arguments = _value_for_schema(function.get("parameters") or {"type": "object"}, seed_hex, words)
    return {
        "id": f"call_{seed_hex[:24]}",
        "type": "function",
        "function": {"name": function.get("name", "tool"), "arguments": json.dumps(arguments)},
    }


def _format_content(body: dict[str, Any], text: str, seed_hex: str, words: list[str]) -> str:
    """Wrap the answer as JSON when ``response_format`` asks for JSON."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return text
    if response_format.get("type") == "json_object":
        return json.dumps({"answer": text})
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
        return json.dumps(_value_for_schema(schema, seed_hex, words))
    return text


# -------------------------------------------------------------------- embeddings


def _hash_vector(seed: str, dim: int) -> list[float]:
    raw = hashlib.shake_256(seed.encode("utf-8")).digest(4 * dim)
    return [v / 2147483648.0 - 1.0 for v in struct.unpack(f"<{dim}I", raw)]


def embed_text(text: str, dim: int) -> list[float]:
    """Deterministic unit vector for ``text``, exactly representable as float32.

    A bag of per-word hash vectors plus a smaller whole-text vector: texts that share
    words come out similar (useful for semantic-cache tests), distinct texts differ.
    """
    acc = [0.0] * dim
    words = re.findall(r"[a-z0-9']+", text.lower())
    parts = [(f"w:{w}", 1.0) for w in words] + [(f"t:{text}", 0.5 if words else 1.0)]
    for seed, weight in parts:
        for i, v in enumerate(_hash_vector(seed, dim)):
            acc[i] += weight * v
    norm = math.sqrt(sum(v * v for v in acc)) or 1.0
    # Round through float32 so the "float" and "base64" encodings carry equal numbers.
    return list(struct.unpack(f"<{dim}f", struct.pack(f"<{dim}f", *(v / norm for v in acc))))


class ToyEmbeddings(DocumentEmbeddings):
    """Embeddings from :func:`embed_text` of the lower-cased text (the server's own vectors):
    rephrasings that share words match by meaning, with no model to load. For tests and demos."""

    def __init__(self, dimension: int = 64) -> None:
        self.dimension = dimension

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [embed_text(t.lower(), self.dimension) for t in texts]


def _encode_embedding(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


# ------------------------------------------------------------- response builders


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _completion_choices(body: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Choices of a /v1/completions request (prompt-major) and the prompt token count."""
    model = _get_str(body, "model")
    prompts = _get_prompts(body)
    n = _get_int(body, "n", 1, 1, _MAX_N) or 1
    _get_int(body, "best_of", None, 1, _MAX_N)  # accepted, no effect
    max_tokens = _get_int(body, "max_tokens", None, 0, 1 << 30)
    stops = _get_stops(body)
    sampling = _sampling_key(body)
    choices = []
    for p, prompt in enumerate(prompts):
        request_hex = _digest({"api": "completions", "model": model, "prompt": prompt, **sampling})
        for j in range(n):
            text, finish = _apply_limits(generate_text(prompt, request_hex, j), max_tokens, stops)
            if body.get("echo"):
                text = prompt + text
            choices.append(
                {"text": text, "index": p * n + j, "logprobs": None, "finish_reason": finish}
            )
    return choices, sum(_count_tokens(p) for p in prompts)


def _chat_choices(body: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Choices of a /v1/chat/completions request and the prompt token count."""
    model = _get_str(body, "model")
    messages = _get_messages(body)
    n = _get_int(body, "n", 1, 1, _MAX_N) or 1
    max_tokens = _get_int(body, "max_completion_tokens", None, 0, 1 << 30)
    if max_tokens is None:
        max_tokens = _get_int(body, "max_tokens", None, 0, 1 << 30)
    stops = _get_stops(body)
    sampling = _sampling_key(body)
    target = _tool_call_target(body)
    prompt = _last_user_text(messages)
    words = _words(prompt)
    request_hex = _digest({"api": "chat", "model": model, "messages": messages, **sampling})
    choices = []
    for j in range(n):
        seed_hex = _digest([request_hex, j])
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if target is not None:
            message["tool_calls"] = [_tool_call(target, seed_hex, words)]
            finish = "tool_calls"
        else:
            text, finish = _apply_limits(generate_text(prompt, request_hex, j), max_tokens, stops)
            message["content"] = _format_content(body, text, seed_hex, words)
        choices.append({"index": j, "message": message, "logprobs": None, "finish_reason": finish})
    prompt_tokens = sum(_count_tokens(_message_text(m)) for m in messages)
    return choices, prompt_tokens


def _choice_tokens(choice: dict[str, Any]) -> int:
    if "text" in choice:
        return _count_tokens(choice["text"])
    message = choice["message"]
    if message.get("tool_calls"):
        return sum(_count_tokens(c["function"]["arguments"]) for c in message["tool_calls"])
    return _count_tokens(message.get("content") or "")


def _envelope(obj: str, rid: str, created: int, model: str) -> dict[str, Any]:
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
    }


def build_completion(body: dict[str, Any], rid: str, created: int) -> dict[str, Any]:
    """The full (non-streaming) ``text_completion`` response."""
    choices, prompt_tokens = _completion_choices(body)
    completion_tokens = sum(_choice_tokens(c) for c in choices)
    response = _envelope("text_completion", rid, created, body["model"])
    response.update(choices=choices, usage=_usage(prompt_tokens, completion_tokens))
    return response


def build_chat_completion(body: dict[str, Any], rid: str, created: int) -> dict[str, Any]:
    """The full (non-streaming) ``chat.completion`` response."""
    choices, prompt_tokens = _chat_choices(body)
    completion_tokens = sum(_choice_tokens(c) for c in choices)
    response = _envelope("chat.completion", rid, created, body["model"])
    response.update(choices=choices, usage=_usage(prompt_tokens, completion_tokens))
    return response


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def stream_completion(body: dict[str, Any], rid: str, created: int) -> list[dict[str, Any]]:
    """The ``text_completion`` chunks of a streamed /v1/completions response."""
    full = build_completion(body, rid, created)
    with_usage = _include_usage(body)

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        out = _envelope("text_completion", rid, created, full["model"])
        out["choices"] = choices
        if with_usage:
            out["usage"] = None
        return out

    chunks = []
    for c in full["choices"]:
        for piece in _stream_pieces(c["text"]):
            chunks.append(
                chunk(
                    [{"text": piece, "index": c["index"], "logprobs": None, "finish_reason": None}]
                )
            )
        chunks.append(
            chunk(
                [
                    {
                        "text": "",
                        "index": c["index"],
                        "logprobs": None,
                        "finish_reason": c["finish_reason"],
                    }
                ]
            )
        )
    if with_usage:
        chunks.append({**chunk([]), "usage": full["usage"]})
    return chunks


def _chat_deltas(choice: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """The deltas of one streamed chat choice: role, then content words or tool calls, then {}."""
    message = choice["message"]
    yield {"role": "assistant", "content": "", "refusal": None}
    for i, call in enumerate(message.get("tool_calls") or []):
        yield {"tool_calls": [{"index": i, **call}]}
    for piece in _stream_pieces(message.get("content") or ""):
        yield {"content": piece}


def stream_chat_completion(body: dict[str, Any], rid: str, created: int) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` chunks of a streamed /v1/chat/completions response."""
    full = build_chat_completion(body, rid, created)
    with_usage = _include_usage(body)

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        out = _envelope("chat.completion.chunk", rid, created, full["model"])
        out["choices"] = choices
        if with_usage:
            out["usage"] = None
        return out

    chunks = []
    for c in full["choices"]:
        for delta in _chat_deltas(c):
            chunks.append(
                chunk(
                    [{"index": c["index"], "delta": delta, "logprobs": None, "finish_reason": None}]
                )
            )
        chunks.append(
            chunk(
                [
                    {
                        "index": c["index"],
                        "delta": {},
                        "logprobs": None,
                        "finish_reason": c["finish_reason"],
                    }
                ]
            )
        )
    if with_usage:
        chunks.append({**chunk([]), "usage": full["usage"]})
    return chunks


def build_embeddings(body: dict[str, Any], default_dim: int) -> dict[str, Any]:
    """The ``/v1/embeddings`` response: one unit vector per input string."""
    model = _get_str(body, "model")
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if (
        not isinstance(inputs, list)
        or not inputs
        or not all(isinstance(t, str) and t for t in inputs)
    ):
        # Token-id inputs are valid for OpenAI but meaningless without a tokenizer.
        raise _RequestError(
            400, "'input' must be a non-empty string or a list of non-empty strings", "input"
        )
    dim = _get_int(body, "dimensions", default_dim, 1, _MAX_DIMENSIONS) or default_dim
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise _RequestError(400, "'encoding_format' must be 'float' or 'base64'", "encoding_format")
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _encode_embedding(embed_text(t, dim), encoding),
        }
        for i, t in enumerate(inputs)
    ]
    tokens = sum(_count_tokens(t) for t in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _model_entry(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "fake-openai"}


# ---------------------------------------------------------------------- HTTP side


class _Handler(BaseHTTPRequestHandler):
    """Routes one connection's requests; HTTP/1.1 so SDK clients keep connections alive."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    # Headers and body go out in separate writes; with Nagle on, the client's delayed
    # ACK would add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server: _HTTPServer

    # -- plumbing

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr log (it would also be a place secrets could leak)."""

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Skip trailers up to the blank line.
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _send_json(
        self, status: int, payload: Any, extra_headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error_json(self, status: int, message: str, param: str | None = None) -> None:
        self._send_json(status, _error_body(status, message, param))

    def _send_sse(self, chunks: list[dict[str, Any]]) -> None:
        """Stream ``chunks`` as server-sent events, then ``data: [DONE]``."""
        events = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks]
        events.append(b"data: [DONE]\n\n")
        self._send_stream(events)

    def _send_stream(self, events: list[bytes]) -> None:
        """Send ready-made server-sent events (also named ones, for the sibling modules).

        HTTP/1.1 clients get chunked transfer encoding, which (unlike closing the
        socket) keeps the keep-alive connection reusable, as a real server would.
        HTTP/1.0 clients do not understand chunks, so they get the raw stream and a close.
        """
        chunked = self.request_version != "HTTP/1.0"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        try:
            for event in events:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event) if chunked else event)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up mid-stream

    # -- routing

    def do_GET(self) -> None:
        path = self._path()
        if path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [_model_entry(m) for m in MODELS]})
        elif path.startswith("/v1/models/") and path[len("/v1/models/") :] in MODELS:
            self._send_json(200, _model_entry(path[len("/v1/models/") :]))
        elif path.startswith("/v1/responses/"):
            _sibling(path).by_id(self, path)
        else:
            self._not_found_or_not_allowed(path)

    def do_POST(self) -> None:
        raw = self._read_body()  # always drain the body so the connection stays in sync
        path = self._path()
        if path not in _MODEL_PATHS and path not in _SIBLING_PATHS:
            self._not_found_or_not_allowed(path)
            return
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._send_error_json(400, "We could not parse the JSON body of your request.")
            return
        if not isinstance(body, dict):
            self._send_error_json(400, "The request body must be a JSON object.")
            return
        self._serve_model(path, body)

    def _other_method(self) -> None:
        self._read_body()
        self._not_found_or_not_allowed(self._path())

    def do_PUT(self) -> None:
        self._other_method()

    def do_DELETE(self) -> None:
        if self._path().startswith("/v1/responses/"):
            self._read_body()
            _sibling(self._path()).by_id(self, self._path())
            return
        self._other_method()

    def do_PATCH(self) -> None:
        self._other_method()

    def _not_found_or_not_allowed(self, path: str) -> None:
        if path in _MODEL_PATHS or path == "/v1/models":
            self._send_error_json(405, f"Method {self.command} not allowed on {path}")
        else:
            self._send_error_json(404, f"Unknown path: {self.command} {path}")

    def _serve_model(self, path: str, body: dict[str, Any]) -> None:
        owner = self.server.owner
        headers = {name.lower(): value for name, value in self.headers.items()}
        seq, failure = owner._record(path, body, headers)
        if owner.latency > 0:
            time.sleep(owner.latency)
        if failure is not None:
            status, message = failure
            error = _error_body(status, message, code="injected_failure")
            self._send_json(status, error, {"retry-after-ms": _INJECTED_RETRY_AFTER_MS})
            return
        quirk = owner._quirk(path, body)
        if quirk is not None:
            self._send_json(500, _error_body(500, quirk))
            return
        if owner.ignore_n and body.get("n", 1) != 1:
            body = {**{k: v for k, v in body.items() if k != "best_of"}, "n": 1}
        try:
            self._answer(path, body, seq)
        except _RequestError as err:
            self._send_error_json(err.status, err.message, err.param)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout) before the answer
        except Exception as err:  # a bug must still answer JSON
            self._send_error_json(500, f"fake server error: {type(err).__name__}")

    def _answer(self, path: str, body: dict[str, Any], seq: int) -> None:
        created = int(time.time())
        stream = bool(body.get("stream"))
        sibling = _sibling(path)
        if sibling is not None:
            sibling.answer(self, path, body, seq, created)
        elif path == "/v1/embeddings":
            self._send_json(200, build_embeddings(body, self.server.owner.embedding_dim))
        elif path == "/v1/completions":
            rid = f"cmpl-fake{seq:08d}"
            if stream:
                self._send_sse(stream_completion(body, rid, created))
            else:
                self._send_json(200, build_completion(body, rid, created))
        else:
            rid = f"chatcmpl-fake{seq:08d}"
            if stream:
                self._send_sse(stream_chat_completion(body, rid, created))
            else:
                self._send_json(200, build_chat_completion(body, rid, created))


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its owner and never prints tracebacks."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many concurrent SDK clients connect at once in load tests

    def __init__(self, address: tuple[str, int], owner: FakeOpenAIServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Drop errors such as a client resetting the connection, instead of printing to stderr."""


class FakeOpenAIServer:
    """A deterministic OpenAI-compatible server on a loopback port, served from a daemon thread.

    ``latency`` (seconds) is slept before answering every model request and may be
    changed while the server runs. ``request_count`` and ``requests`` record the model
    requests received (completions, chat, embeddings) whose body parsed as a JSON
    object, including ones answered with an injected failure or a validation 400;
    never ``/v1/models``, unknown paths or malformed JSON.

    Opt-in quirks imitate real OpenAI-compatible servers such as llama.cpp's and
    Ollama's (settable while running): ``one_prompt_per_request`` answers a completions
    request with more than one prompt with HTTP 500, as llama.cpp does; ``ignore_n``
    answers one choice per prompt whatever ``n`` asks.
    """

    def __init__(
        self,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        embedding_dim: int = 64,
        one_prompt_per_request: bool = False,
        ignore_n: bool = False,
    ) -> None:
        if embedding_dim < 1:
            raise ValueError("embedding_dim must be at least 1")
        self.latency = latency
        self.host = host
        self.port = port
        self.embedding_dim = embedding_dim
        self.one_prompt_per_request = one_prompt_per_request
        self.ignore_n = ignore_n
        self._lock = threading.Lock()
        self._count = 0
        self._seq = 0
        self._log: list[dict[str, Any]] = []
        self._failures: list[tuple[int, str]] = []
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakeOpenAIServer:
        """Bind and serve in a daemon thread; returns self. Starting twice is a no-op."""
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket and any kept-alive connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            # Idle keep-alive handler threads would otherwise wait for the client forever.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- properties

    @property
    def latency(self) -> float:
        """Seconds slept before answering each model request; settable while running."""
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        if value < 0:
            raise ValueError("latency must be >= 0")
        self._latency = float(value)

    @property
    def base_url(self) -> str:
        """The URL to give ``openai.OpenAI(base_url=...)``, e.g. ``http://127.0.0.1:54321/v1``."""
        if self._httpd is None and self.port == 0:
            raise RuntimeError("the server is not started, so it has no port yet")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def request_count(self) -> int:
        """Number of model requests received since start or the last :meth:`reset`."""
        with self._lock:
            return self._count

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of the log: ``{"path", "body", "headers"}``, header names lower-cased."""
        with self._lock:
            return copy.deepcopy(self._log)

    # -- control

    def reset(self) -> None:
        """Clear the request counter, the request log and any pending :meth:`fail_next` failures.

        Pending failures are cleared too so one test's unused failures cannot leak into the next.
        """
        with self._lock:
            self._count = 0
            self._log.clear()
            self._failures.clear()

    def fail_next(
        self, status: int = 500, count: int = 1, message: str = "injected failure"
    ) -> None:
        """Answer the next ``count`` model requests with ``status`` and an OpenAI error body."""
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        with self._lock:
            self._failures.extend([(status, message)] * count)

    # -- used by the handler

    def _record(
        self, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, tuple[int, str] | None]:
        """Count and log one model request; return its sequence number and any injected failure."""
        with self._lock:
            self._count += 1
            self._seq += 1
            self._log.append({"path": path, "body": body, "headers": headers})
            failure = self._failures.pop(0) if self._failures else None
            return self._seq, failure

    def _quirk(self, path: str, body: dict[str, Any]) -> str | None:
        """The error message of an opt-in quirk refusing this request, if one does."""
        prompt = body.get("prompt")
        if self.one_prompt_per_request and path == "/v1/completions" and isinstance(prompt, list) and len(prompt) > 1:
            return "one prompt per request (like llama.cpp's server)"
        return None

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C: ``python -m llm_cache.testing.fake_openai --port 8000 --latency 1.0``."""
    parser = argparse.ArgumentParser(
        prog="python -m llm_cache.testing.fake_openai", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds to wait before each model answer"
    )
    parser.add_argument("--embedding-dim", type=int, default=64)
    args = parser.parse_args(argv)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    previous_mask = None
    if hasattr(signal, "pthread_sigmask"):
        # Block the stop signals before any server thread exists (threads inherit the mask)
        # and wait for them with sigwait: a process-directed SIGINT may be delivered to any
        # thread that does not block it, and one delivered to a server thread never woke a
        # main thread parked in Event.wait() (the server then ran until killed). A signal
        # sent early, even before the line below is printed, stays pending until sigwait.
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = FakeOpenAIServer(
        args.latency, args.host, args.port, embedding_dim=args.embedding_dim
    ).start()
    try:
        print(
            f"Fake OpenAI server at {server.base_url} (latency {server.latency}s); Ctrl-C to stop",
            flush=True,
        )
        if hasattr(signal, "sigwait"):
            signal.sigwait(stop_signals)
        else:  # Windows: Ctrl-C raises KeyboardInterrupt in the main thread
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
    finally:
        server.stop()
        if previous_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
