"""Anthropic Messages for the built-in fake server (:mod:`.fake_openai`).

``POST /v1/messages`` (``x-api-key`` required, Anthropic-style error bodies) answers
deterministically from the model, the last user text, ``system``, ``temperature``, a
forced ``tool_choice`` (``any`` or a named tool: a ``tool_use`` block) and ``thinking``
(a thinking block first); ``max_tokens`` and ``stop_sequences`` cut the text.
``cache_control`` markers are reported as cache-creation tokens, the way Anthropic
bills a prompt-cache write. ``stream: true`` sends named SSE events ``message_start`` ...
``content_block_delta`` ... ``message_stop`` (with a ``ping``).
``POST /v1/messages/count_tokens`` counts input words. Built independently of
:mod:`llm_cache.protocols`.
"""

from __future__ import annotations

import json
from typing import Any

from .fake_openai import _count_tokens, _digest, _stream_pieces, _value_for_schema, _words, generate_text

__all__ = ["PATH", "COUNT_PATH", "AnthropicRequestError", "build_message", "count_tokens", "error_body", "stream_message"]

PATH = "/v1/messages"
COUNT_PATH = "/v1/messages/count_tokens"

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}


class AnthropicRequestError(Exception):
    """A request the fake rejects, answered as Anthropic's error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(status: int, message: str) -> dict[str, Any]:
    """``{"type": "error", "error": {"type": ..., "message": ...}}``."""
    return {"type": "error", "error": {"type": _TYPES.get(status, "api_error"), "message": message}}


def check_headers(headers: dict[str, str]) -> None:
    """Anthropic wants ``x-api-key`` (the SDK also sends ``anthropic-version``)."""
    if not headers.get("x-api-key") and not headers.get("authorization"):
        raise AnthropicRequestError(401, "x-api-key header is required")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str))
    return ""


def _marked_tokens(body: dict[str, Any]) -> int:
    """Input words up to and including the last block with a cache_control marker."""
    blocks: list[Any] = list(body["system"]) if isinstance(body.get("system"), list) else []
    for message in body["messages"]:
        blocks.extend(message["content"] if isinstance(message.get("content"), list) else [])
    marked = [i for i, b in enumerate(blocks) if isinstance(b, dict) and b.get("cache_control")]
    if not marked:
        return 0
    return sum(_count_tokens(_text([b])) for b in blocks[: marked[-1] + 1])


def _validated(body: dict[str, Any]) -> tuple[str, int, list[dict[str, Any]]]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise AnthropicRequestError(400, "model: Field required")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise AnthropicRequestError(400, "max_tokens: Field required (a positive integer)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise AnthropicRequestError(400, "messages: a non-empty list of messages is required")
    return model, max_tokens, messages


def _forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and isinstance(t.get("name"), str)]
    choice = body.get("tool_choice")
    if not tools or not isinstance(choice, dict):
        return None
    if choice.get("type") == "any":
        return tools[0]
    if choice.get("type") == "tool":
        for tool in tools:
            if tool["name"] == choice.get("name"):
                return tool
        raise AnthropicRequestError(400, f"tool_choice: unknown tool {choice.get('name')!r}")
    return None


def build_message(body: dict[str, Any], mid: str) -> dict[str, Any]:
    """The full (non-streamed) Message for a ``POST /v1/messages`` body."""
    model, max_tokens, messages = _validated(body)
    prompt = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    system = body.get("system")
    request_hex = _digest({"api": "messages", "model": model, "messages": messages, "system": _text(system) if isinstance(system, list) else system, "temperature": body.get("temperature")})
    words = _words(prompt)
    content: list[dict[str, Any]] = []
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        content.append({"type": "thinking", "thinking": f"The user asks: {' '.join(words[:6])}", "signature": f"sig{request_hex[:24]}"})
    tool = _forced_tool(body)
    stop_sequence = None
    if tool is not None:
        arguments = _value_for_schema(tool.get("input_schema") or {"type": "object"}, request_hex, words)
        content.append({"type": "tool_use", "id": f"toolu_{request_hex[:20]}", "name": tool["name"], "input": arguments})
        stop_reason, out_tokens = "tool_use", _count_tokens(json.dumps(arguments))
    else:
        text = generate_text(prompt, request_hex)
        stop_reason = "end_turn"
        for stop in body.get("stop_sequences") or ():
            if isinstance(stop, str) and stop and stop in text:
                text, stop_reason, stop_sequence = text[: text.index(stop)], "stop_sequence", stop
                break
        if _count_tokens(text) > max_tokens:
            text, stop_reason, stop_sequence = " ".join(_words(text)[:max_tokens]), "max_tokens", None
        content.append({"type": "text", "text": text})
        out_tokens = _count_tokens(text)
    written = _marked_tokens(body)
    input_tokens = sum(_count_tokens(_text(m.get("content"))) for m in messages) + _count_tokens(_text(system) if isinstance(system, list) else system or "")
    return {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": input_tokens - written,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": 0,
            "output_tokens": out_tokens,
        },
    }


def stream_message(body: dict[str, Any], mid: str) -> list[tuple[str, dict[str, Any]]]:
    """The named events of a streamed ``POST /v1/messages``, as (event name, data)."""
    final = build_message(body, mid)
    usage = final["usage"]
    events: list[tuple[str, dict[str, Any]]] = []

    def send(kind: str, **payload: Any) -> None:
        events.append((kind, {"type": kind, **payload}))

    start = {**final, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
    send("message_start", message=start)
    send("ping")
    for index, block in enumerate(final["content"]):
        if block["type"] == "text":
            send("content_block_start", index=index, content_block={"type": "text", "text": ""})
            for piece in _stream_pieces(block["text"]):
                send("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
        elif block["type"] == "tool_use":
            send("content_block_start", index=index, content_block={**block, "input": {}})
            arguments = json.dumps(block["input"])
            middle = len(arguments) // 2
            for piece in (arguments[:middle], arguments[middle:]):
                send("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": piece})
        else:  # thinking
            send("content_block_start", index=index, content_block={"type": "thinking", "thinking": "", "signature": ""})
            send("content_block_delta", index=index, delta={"type": "thinking_delta", "thinking": block["thinking"]})
            send("content_block_delta", index=index, delta={"type": "signature_delta", "signature": block["signature"]})
        send("content_block_stop", index=index)
    send("message_delta", delta={"stop_reason": final["stop_reason"], "stop_sequence": final["stop_sequence"]}, usage={"output_tokens": usage["output_tokens"]})
    send("message_stop")
    return events


def count_tokens(body: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/messages/count_tokens``: input words."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise AnthropicRequestError(400, "messages: a non-empty list of messages is required")
    system = body.get("system")
    return {"input_tokens": sum(_count_tokens(_text(m.get("content"))) for m in messages if isinstance(m, dict)) + _count_tokens(_text(system) if isinstance(system, list) else system or "")}


# ------------------------------------------------------------------- serving (fake_openai)
def answer(handler: Any, path: str, body: dict[str, Any], seq: int, created: int) -> None:
    """Serve ``POST /v1/messages`` (and ``/count_tokens``) on a fake_openai request handler."""
    headers = {name.lower(): value for name, value in handler.headers.items()}
    try:
        check_headers(headers)
        if path == COUNT_PATH:
            handler._send_json(200, count_tokens(body))
            return
        mid = f"msg_fake{seq:08d}"
        if body.get("stream"):
            events = stream_message(body, mid)
            handler._send_stream([f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events])
        else:
            handler._send_json(200, build_message(body, mid))
    except AnthropicRequestError as exc:
        handler._send_json(exc.status, error_body(exc.status, exc.message))
