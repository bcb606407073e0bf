"""Anthropic Messages (``POST /v1/messages``) as a protocol (no I/O).

Identity:

* ``prompt``: the canonical JSON of ``messages`` (:func:`llm_cache.keys.messages_prompt`):
  text, images (by URL or inline data), documents, tool uses, tool results and thinking
  blocks as sent. The last user message's ``text`` blocks are what a semantic cache embeds.
* ``llm_string``: every other field (``model``, ``max_tokens``, ``system`` as a string or
  blocks, ``tools``, ``tool_choice``, ``thinking``, ``temperature``, ``stop_sequences``,
  unknown fields...) plus ``provider: "anthropic"`` and ``api: "messages"``.
* Never keyed: ``stream``, ``metadata`` (``user_id`` labels the end user),
  and ``cache_control`` markers, top-level or on a content block, a system block or a tool:
  they steer Anthropic's prompt cache (cost and latency), not the answer. The markers are
  removed only where the API defines them, so a tool schema with a property named
  ``cache_control`` is still keyed whole.

Entry: one Generation: ``text`` is the text blocks joined, ``message`` is
``{"role": "assistant", "content": [blocks]}``, ``generation_info`` holds
``finish_reason`` (the ``stop_reason``), ``response`` (the body without its content) and
``created_at``. Only responses with a ``stop_reason`` are stored.

Stream: named SSE events ``message_start``, per block ``content_block_start``,
``content_block_delta`` (``text_delta``, ``input_json_delta``, ``thinking_delta``,
``signature_delta``, ``citations_delta``) and ``content_block_stop``, then
``message_delta`` (stop reason and final usage) and ``message_stop``; ``ping`` events
are ignored. Usage counts ``cache_creation_input_tokens`` and ``cache_read_input_tokens``.
Errors: ``{"type": "error", "error": {"type": ..., "message": ...}}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import CorruptEntryError
from ..generation import Generation
from ..keys import messages_prompt
from ..streaming import split_pieces
from .base import Event, RequestIdentity, Uncacheable, Usage, first_info, int_field, keyed_params, llm_string_of, stamp

__all__ = ["MESSAGES", "MessagesAssembler", "MessagesProtocol", "anthropic_error"]

_NOT_KEYED = frozenset({"messages", "stream", "metadata", "cache_control", "timeout", "extra_headers"})

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error(status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    """Anthropic's error body (``kind`` overrides the type derived from ``status``)."""
    error_type = kind or _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _unmarked(block: Any) -> Any:
    if isinstance(block, dict) and "cache_control" in block:
        block = {k: v for k, v in block.items() if k != "cache_control"}
    if isinstance(block, dict) and block.get("type") == "tool_result" and isinstance(block.get("content"), list):
        block = {**block, "content": [_unmarked(b) for b in block["content"]]}
    return block


def _unmarked_messages(messages: list[Any]) -> list[Any]:
    out = []
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            message = {**message, "content": [_unmarked(b) for b in message["content"]]}
        out.append(message)
    return out


def _text_of(content: Any) -> str:
    return "".join(
        b["text"] for b in content or () if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
    )


class MessagesAssembler:
    """Folds the named events of one stream into the Message the request gets unstreamed."""

    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self.blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}
        self.stopped = False
        self.error: Any = None

    def add(self, name: str | None, data: Any) -> None:
        if not isinstance(data, dict):
            return
        kind = data.get("type", name)
        if kind == "message_start" and isinstance(data.get("message"), dict):
            self.message = dict(data["message"])
            self.message["usage"] = dict(self.message.get("usage") or {})
        elif kind == "content_block_start" and isinstance(data.get("content_block"), dict):
            index = data.get("index")
            if isinstance(index, int):
                self.blocks[index] = dict(data["content_block"])
        elif kind == "content_block_delta":
            self._delta(data.get("index"), data.get("delta"))
        elif kind == "content_block_stop":
            index = data.get("index")
            pieces = self._json.pop(index, None) if isinstance(index, int) else None
            if pieces is not None and index in self.blocks:
                joined = "".join(pieces)
                try:
                    self.blocks[index]["input"] = json.loads(joined) if joined else {}
                except ValueError:
                    self.error = {"message": "a tool input that is not JSON"}
        elif kind == "message_delta" and self.message is not None:
            delta = data.get("delta")
            if isinstance(delta, dict):
                self.message.update(delta)
            usage = data.get("usage")
            if isinstance(usage, dict):
                self.message["usage"].update({k: v for k, v in usage.items() if v is not None})
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "error":
            self.error = data.get("error", data)

    def _delta(self, index: Any, delta: Any) -> None:
        block = self.blocks.get(index) if isinstance(index, int) else None
        if block is None or not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + str(delta.get("text", ""))
        elif kind == "input_json_delta":
            self._json.setdefault(index, []).append(str(delta.get("partial_json", "")))
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + str(delta.get("thinking", ""))
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))

    @property
    def complete(self) -> bool:
        return (
            self.error is None
            and self.stopped
            and self.message is not None
            and self.message.get("stop_reason") is not None
        )

    def response(self) -> dict[str, Any]:
        if self.message is None:
            raise ValueError("the stream has no message_start")
        message = dict(self.message)
        message["content"] = [self.blocks[i] for i in sorted(self.blocks)]
        return _ordered(message)


def _ordered(message: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's field order (id, type, role, model, content, stop_reason, ...)."""
    out: dict[str, Any] = {k: message[k] for k in ("id", "type", "role", "model", "content") if k in message}
    out.update((k, v) for k, v in message.items() if k not in out)
    return out


@dataclass(frozen=True)
class MessagesProtocol:
    """See the module docstring."""

    name: str = "anthropic.messages"
    provider: str = "anthropic"
    api: str = "messages"

    def identify(self, body: Mapping[str, Any], namespace: str | None) -> RequestIdentity | Uncacheable:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return Uncacheable("'messages' is not a list")
        params = keyed_params(body, _NOT_KEYED)
        system = params.get("system")
        if isinstance(system, list):
            params["system"] = [_unmarked(b) for b in system]
        tools = params.get("tools")
        if isinstance(tools, list):
            params["tools"] = [_unmarked(t) for t in tools]
        try:
            prompt = messages_prompt(_unmarked_messages(messages))
            llm_string = llm_string_of(self.provider, self.api, namespace, params)
        except (ValueError, TypeError) as exc:
            return Uncacheable(str(exc))
        return RequestIdentity(self.name, prompt, llm_string, True)

    def to_entry(self, response: dict[str, Any], created_at: float | None = None) -> list[Generation]:
        content = response.get("content")
        if response.get("type") != "message" or not isinstance(content, list) or response.get("stop_reason") is None:
            raise ValueError("not a finished Anthropic message")
        envelope = {k: v for k, v in response.items() if k != "content"}
        info = stamp({"finish_reason": response.get("stop_reason"), "response": envelope}, created_at)
        message = {"role": "assistant", "content": content}
        return [Generation(text=_text_of(content), generation_info=info, message=message)]

    def from_entry(self, generations: list[Generation], request: Mapping[str, Any]) -> dict[str, Any]:
        envelope = first_info(generations).get("response")
        message = generations[0].message
        if not isinstance(envelope, dict) or envelope.get("type") != "message" or not isinstance(message, dict):
            raise CorruptEntryError("stored entry is not an Anthropic message")
        content = message.get("content")
        if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
            raise CorruptEntryError("stored Anthropic message without content blocks")
        return _ordered({**envelope, "content": content})

    def assembler(self, request: Mapping[str, Any] | None = None) -> MessagesAssembler:
        return MessagesAssembler()

    def replay(self, response: dict[str, Any], request: Mapping[str, Any]) -> list[Event]:
        events: list[Event] = []

        def emit(kind: str, **fields: Any) -> None:
            events.append((kind, {"type": kind, **fields}))

        raw_usage = response.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        start = {k: v for k, v in response.items() if k not in ("content", "stop_reason", "stop_sequence", "usage")}
        start = _ordered({**start, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 0}})
        emit("message_start", message=start)
        for index, block in enumerate(response.get("content") or ()):
            if isinstance(block, dict):
                _replay_block(emit, index, block)
        delta_usage = {k: v for k, v in usage.items() if k in _DELTA_USAGE}
        emit("message_delta", delta={"stop_reason": response.get("stop_reason"), "stop_sequence": response.get("stop_sequence")}, usage=delta_usage)
        emit("message_stop")
        return events

    def usage(self, response: Mapping[str, Any]) -> Usage:
        usage = response.get("usage")
        created, read = int_field(usage, "cache_creation_input_tokens"), int_field(usage, "cache_read_input_tokens")
        model = response.get("model")
        return Usage(
            input_tokens=int_field(usage, "input_tokens") + created + read,
            output_tokens=int_field(usage, "output_tokens"),
            cache_creation_input_tokens=created,
            cache_read_input_tokens=read,
            model=model if isinstance(model, str) else None,
        )

    def error(self, status: int, message: str, kind: str | None = None) -> dict[str, Any]:
        return anthropic_error(status, message, None)


# What a final message_delta reports (the SDK's MessageDeltaUsage).
_DELTA_USAGE = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "server_tool_use")


def _replay_block(emit: Any, index: int, block: dict[str, Any]) -> None:
    kind = block.get("type")
    if kind == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        if block.get("citations") is not None:
            start["citations"] = []
        emit("content_block_start", index=index, content_block=start)
        for citation in block.get("citations") or ():
            emit("content_block_delta", index=index, delta={"type": "citations_delta", "citation": citation})
        for piece in split_pieces(block.get("text") or ""):
            emit("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
    elif kind in ("tool_use", "server_tool_use") and isinstance(block.get("input"), dict):
        emit("content_block_start", index=index, content_block={**block, "input": {}})
        arguments = json.dumps(block["input"], ensure_ascii=False, separators=(",", ":")) if block["input"] else ""
        for piece in _json_pieces(arguments):
            emit("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": piece})
    elif kind == "thinking":
        emit("content_block_start", index=index, content_block={"type": "thinking", "thinking": "", "signature": ""})
        for piece in split_pieces(block.get("thinking") or ""):
            emit("content_block_delta", index=index, delta={"type": "thinking_delta", "thinking": piece})
        if block.get("signature"):
            emit("content_block_delta", index=index, delta={"type": "signature_delta", "signature": block["signature"]})
    else:  # redacted_thinking, tool results run by the provider, ...: the block as it is
        emit("content_block_start", index=index, content_block=block)
    emit("content_block_stop", index=index)


def _json_pieces(text: str, size: int = 64) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


MESSAGES = MessagesProtocol()
