"""Server-sent events: parse an upstream stream, assemble it, and replay a cached response.

No I/O here. Three pieces:

* :class:`SSEParser` splits a byte stream into the ``data:`` payloads of its events;
* :class:`StreamAssembler` folds ``chat.completion.chunk`` / ``text_completion`` chunks
  into the response the same request would have got without ``stream`` (content
  concatenated, tool-call arguments joined by index, logprobs lists concatenated);
* :func:`replay_sse` turns a (cached) response back into the event stream an OpenAI
  client expects: per choice a role chunk, content pieces, a chunk with
  ``finish_reason``; then, if the client asked with ``stream_options.include_usage``,
  a chunk with ``usage`` and no choices; then ``data: [DONE]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

__all__ = [
    "DONE_EVENT",
    "SSEParser",
    "StreamAssembler",
    "format_event",
    "replay_sse",
    "split_pieces",
]

DONE_EVENT = b"data: [DONE]\n\n"

_MAX_PIECES = 256  # longer texts are replayed in fewer, larger pieces
_PIECE_RE = re.compile(r"\s*\S+\s*|\s+")


def format_event(data: str | bytes) -> bytes:
    """One SSE event carrying ``data`` (a JSON text)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return b"data: " + data + b"\n\n"


class SSEParser:
    """Incremental parser: feed bytes, get the ``data`` payload of each complete event.

    Multi-line data is joined with ``\\n`` as the SSE spec says; comments and other fields
    (``event:``, ``id:``, ``retry:``) are ignored, since OpenAI-style streams carry
    everything in ``data``.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        events: list[str] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return events
            line = self._buffer[:newline]
            self._buffer = self._buffer[newline + 1 :]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data).decode("utf-8"))
                    self._data = []
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)

    def close(self) -> list[str]:
        """Flush an event left without its blank line at the end of the stream."""
        events = self.feed(b"\n\n") if self._buffer or self._data else []
        return events


def _concat_logprobs(target: dict[str, Any], piece: dict[str, Any]) -> None:
    for name, value in piece.items():
        if isinstance(value, list):
            target.setdefault(name, [])
            if isinstance(target[name], list):
                target[name].extend(value)
        elif name not in target or target[name] is None:
            target[name] = value


class _Choice:
    __slots__ = (
        "content",
        "extra",
        "finish_reason",
        "function_call",
        "index",
        "logprobs",
        "refusal",
        "role",
        "text",
        "tool_calls",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.role: str | None = None
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}
        self.text: list[str] = []
        self.logprobs: dict[str, Any] | None = None
        self.finish_reason: Any = None

    def add_delta(self, delta: dict[str, Any]) -> None:
        for name, value in delta.items():
            if name == "role":
                if value:
                    self.role = value
            elif name == "content":
                if isinstance(value, str):
                    self.content.append(value)
            elif name == "refusal":
                if isinstance(value, str):
                    self.refusal.append(value)
            elif name == "tool_calls" and isinstance(value, list):
                for position, call in enumerate(value):
                    if isinstance(call, dict):
                        self._add_tool_call(call, position)
            elif name == "function_call" and isinstance(value, dict):
                if self.function_call is None:
                    self.function_call = {"name": "", "arguments": ""}
                for key in ("name", "arguments"):
                    if isinstance(value.get(key), str):
                        self.function_call[key] += value[key]
            elif value is not None:
                previous = self.extra.get(name)
                if isinstance(value, str) and isinstance(previous, str):
                    self.extra[name] = previous + value  # e.g. streamed reasoning_content
                else:
                    self.extra[name] = value

    def _add_tool_call(self, call: dict[str, Any], position: int) -> None:
        index = call.get("index", position)
        slot = self.tool_calls.get(index)
        if slot is None:
            slot = self.tool_calls[index] = {
                "id": None,
                "type": "function",
                "function": {"name": "", "arguments": ""},
            }
        if call.get("id"):
            slot["id"] = call["id"]
        if call.get("type"):
            slot["type"] = call["type"]
        function = call.get("function")
        if isinstance(function, dict):
            for key in ("name", "arguments"):
                if isinstance(function.get(key), str):
                    slot["function"][key] += function[key]

    def add_logprobs(self, logprobs: Any) -> None:
        if isinstance(logprobs, dict):
            if self.logprobs is None:
                self.logprobs = {}
            _concat_logprobs(self.logprobs, logprobs)

    def chat_choice(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role or "assistant"}
        content = "".join(self.content)
        has_call = bool(self.tool_calls) or self.function_call is not None
        # A non-streamed answer that only calls tools has content null, not "".
        message["content"] = content if content or not has_call else None
        message["refusal"] = "".join(self.refusal) or None
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        if self.function_call is not None:
            message["function_call"] = self.function_call
        message.update(self.extra)
        return {
            "index": self.index,
            "message": message,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }

    def text_choice(self) -> dict[str, Any]:
        return {
            "text": "".join(self.text),
            "index": self.index,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


class StreamAssembler:
    """Fold streamed chunks into the equivalent non-streamed response."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.envelope: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.choices: dict[int, _Choice] = {}
        self.error: Any = None

    def add(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            return
        if chunk.get("error") is not None:
            self.error = chunk["error"]
            return
        for name, value in chunk.items():
            if name in ("choices", "usage", "object"):
                continue
            if value is not None or name not in self.envelope:
                self.envelope[name] = value
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        for raw in chunk.get("choices") or ():
            if not isinstance(raw, dict):
                continue
            index = raw.get("index", 0)
            if not isinstance(index, int):
                continue
            choice = self.choices.get(index)
            if choice is None:
                choice = self.choices[index] = _Choice(index)
            delta = raw.get("delta")
            if isinstance(delta, dict):
                choice.add_delta(delta)
            text = raw.get("text")
            if isinstance(text, str):
                choice.text.append(text)
            choice.add_logprobs(raw.get("logprobs"))
            if raw.get("finish_reason") is not None:
                choice.finish_reason = raw["finish_reason"]

    @property
    def complete(self) -> bool:
        """Every choice finished and no error chunk was seen."""
        return (
            self.error is None
            and bool(self.choices)
            and all(c.finish_reason is not None for c in self.choices.values())
        )

    def response(self) -> dict[str, Any]:
        """The assembled non-streamed response."""
        chat = self.endpoint == "chat.completions"
        body: dict[str, Any] = {}
        for name in ("id", "object", "created", "model"):
            if name == "object":
                body["object"] = "chat.completion" if chat else "text_completion"
            elif name in self.envelope:
                body[name] = self.envelope[name]
        for name, value in self.envelope.items():
            body.setdefault(name, value)
        ordered = [self.choices[i] for i in sorted(self.choices)]
        body["choices"] = [c.chat_choice() if chat else c.text_choice() for c in ordered]
        if self.usage is not None:
            body["usage"] = self.usage
        return body


def split_pieces(text: str) -> list[str]:
    """Split text into word-sized pieces that concatenate back to exactly ``text``."""
    pieces = _PIECE_RE.findall(text)
    if len(pieces) > _MAX_PIECES:
        size = -(-len(pieces) // _MAX_PIECES)
        pieces = ["".join(pieces[i : i + size]) for i in range(0, len(pieces), size)]
    return pieces


_CHAT_DELTA_DONE = frozenset({"role", "content", "refusal", "tool_calls", "function_call"})


def _chat_deltas(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    first: dict[str, Any] = {"role": message.get("role") or "assistant", "content": ""}
    if "refusal" in message:
        first["refusal"] = None
    yield first
    for name, value in message.items():  # provider extras, e.g. reasoning_content, annotations
        if name not in _CHAT_DELTA_DONE and value is not None:
            yield {name: value}
    for i, call in enumerate(message.get("tool_calls") or ()):
        if isinstance(call, dict):
            yield {"tool_calls": [{"index": i, **call}]}
    if isinstance(message.get("function_call"), dict):
        yield {"function_call": message["function_call"]}
    content = message.get("content")
    if isinstance(content, str):
        for piece in split_pieces(content):
            yield {"content": piece}
    if isinstance(message.get("refusal"), str):
        yield {"refusal": message["refusal"]}


def replay_sse(endpoint: str, body: dict[str, Any], include_usage: bool) -> bytes:
    """The whole SSE stream replaying ``body`` (a chat or text completion), ``[DONE]`` included.

    Built in one piece: a replay has nothing to wait for, so it is sent as one body.
    """
    chat = endpoint == "chat.completions"
    envelope: dict[str, Any] = {}
    for name, value in body.items():
        if name in ("choices", "usage"):
            continue
        envelope[name] = value
    envelope["object"] = "chat.completion.chunk" if chat else "text_completion"
    if include_usage:
        envelope["usage"] = None

    dumps = json.dumps
    out: list[bytes] = []

    def emit(choices: list[dict[str, Any]]) -> None:
        chunk = dict(envelope)
        chunk["choices"] = choices
        out.append(b"data: " + dumps(chunk, ensure_ascii=False).encode("utf-8") + b"\n\n")

    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", 0)
        if chat:
            raw_message = choice.get("message")
            message: dict[str, Any] = raw_message if isinstance(raw_message, dict) else {}
            for delta in _chat_deltas(message):
                emit([{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}])
            emit(
                [
                    {
                        "index": index,
                        "delta": {},
                        "logprobs": choice.get("logprobs"),
                        "finish_reason": choice.get("finish_reason"),
                    }
                ]
            )
        else:
            raw_text = choice.get("text")
            text = raw_text if isinstance(raw_text, str) else ""
            for piece in split_pieces(text):
                emit([{"text": piece, "index": index, "logprobs": None, "finish_reason": None}])
            emit(
                [
                    {
                        "text": "",
                        "index": index,
                        "logprobs": choice.get("logprobs"),
                        "finish_reason": choice.get("finish_reason"),
                    }
                ]
            )
    if include_usage:
        chunk = dict(envelope)
        chunk["choices"] = []
        chunk["usage"] = body.get("usage")
        out.append(b"data: " + dumps(chunk, ensure_ascii=False).encode("utf-8") + b"\n\n")
    out.append(DONE_EVENT)
    return b"".join(out)
