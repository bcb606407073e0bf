"""OpenAI streaming at the JSON level, shared by the proxy and the SDK wrapper (no I/O).

* :class:`StreamAssembler` folds ``chat.completion.chunk`` / ``text_completion`` chunks into
  the response the same request would have got without ``stream`` (content concatenated,
  tool-call and function-call arguments joined by index, provider extras such as
  ``reasoning_content`` kept and concatenated, logprobs lists concatenated);
* :func:`replay_chunks` turns a (cached) full response back into the chunks a provider
  would have streamed;
* :func:`split_pieces` cuts a text into the word-sized pieces a replay sends.

The proxy (:mod:`llm_cache.proxy.sse`) serialises the chunks as server-sent events; the SDK
wrapper (:mod:`llm_cache.integrations.openai_client`) builds the SDK's chunk types from them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from typing import Any

__all__ = ["StreamAssembler", "replay_chunks", "split_pieces"]

_MAX_PIECES = 256  # longer texts are replayed in fewer, larger pieces
_PIECE_RE = re.compile(r"\s*\S+\s*|\s+")


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
    """Fold streamed chunks (JSON dicts) into the equivalent non-streamed response.

    Args:
        endpoint: ``"chat.completions"`` or ``"completions"``.
        envelope_fields: the top-level chunk fields kept in the response; ``None`` keeps
            every one but ``choices``, ``usage`` and ``object`` (the proxy passes through what
            an OpenAI-compatible server sends). The SDK wrapper keeps only those a full response
            shares with its chunks, so that per-chunk fields such as ``obfuscation`` (random
            padding) are not stored.
    """

    def __init__(self, endpoint: str, envelope_fields: Collection[str] | None = None) -> None:
        self.endpoint = endpoint
        self.envelope_fields = envelope_fields
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
        fields = self.envelope_fields
        for name, value in chunk.items():
            if name in ("choices", "usage", "object") or (
                fields is not None and name not in fields
            ):
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


def replay_chunks(endpoint: str, body: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """The chunks (JSON dicts) a provider would have streamed for ``body``, a chat or text completion.

    Per choice a role chunk, provider extras, tool calls, the content in word-sized pieces
    (:func:`split_pieces`), a refusal, then a chunk with ``finish_reason`` and the stored
    logprobs; then, when ``include_usage``, a chunk with ``usage`` and no choices (every chunk
    then carries ``"usage": null`` as OpenAI's do). ``[DONE]`` is the transport's business.
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

    out: list[dict[str, Any]] = []

    def emit(choice: dict[str, Any]) -> None:
        chunk = dict(envelope)
        chunk["choices"] = [choice]
        out.append(chunk)

    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", 0)
        if chat:
            raw_message = choice.get("message")
            message: dict[str, Any] = raw_message if isinstance(raw_message, dict) else {}
            for delta in _chat_deltas(message):
                emit({"index": index, "delta": delta, "logprobs": None, "finish_reason": None})
            emit(
                {
                    "index": index,
                    "delta": {},
                    "logprobs": choice.get("logprobs"),
                    "finish_reason": choice.get("finish_reason"),
                }
            )
        else:
            raw_text = choice.get("text")
            text = raw_text if isinstance(raw_text, str) else ""
            for piece in split_pieces(text):
                emit({"text": piece, "index": index, "logprobs": None, "finish_reason": None})
            emit(
                {
                    "text": "",
                    "index": index,
                    "logprobs": choice.get("logprobs"),
                    "finish_reason": choice.get("finish_reason"),
                }
            )
    if include_usage:
        chunk = dict(envelope)
        chunk["choices"] = []
        chunk["usage"] = body.get("usage")
        out.append(chunk)
    return out
