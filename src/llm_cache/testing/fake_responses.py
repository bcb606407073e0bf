"""The OpenAI Responses API for the built-in fake server (:mod:`.fake_openai`).

Deterministic like the rest of the server: the answer depends on the model, the input
(its last user text), ``instructions``, ``temperature``/``seed``, ``tools`` with a forced
``tool_choice``, ``text.format`` and ``reasoning``; ``max_output_tokens`` cuts it (status
``incomplete``). ``stream: true`` sends the typed events (``event:`` and ``data:`` lines)
``response.created`` ... ``response.output_text.delta`` ... ``response.completed``.

``background: true`` answers ``queued``; ``GET /v1/responses/{id}`` then gives the
finished response and ``DELETE /v1/responses/{id}`` removes it (responses with
``store: false`` are not kept). Built independently of :mod:`llm_cache.protocols`, so
that tests of the protocol layer check it against something it did not produce.
"""

from __future__ import annotations

import json
from typing import Any

from .fake_openai import (
    _apply_limits,
    _count_tokens,
    _digest,
    _RequestError,
    _sampling_key,
    _stream_pieces,
    _value_for_schema,
    _words,
    generate_text,
)

__all__ = ["build_response", "stream_response", "PATH"]

PATH = "/v1/responses"


def _part_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and p.get("type") in ("input_text", "text") and isinstance(p.get("text"), str)
        )
    return ""


def _input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    value = body.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
        return value
    raise _RequestError(400, "'input' must be a string or a non-empty list of items", "input")


def _forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    functions = [t for t in tools if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)]
    if not functions:
        raise _RequestError(400, "'tools' must hold function tools with a name", "tools")
    choice = body.get("tool_choice")
    if choice == "required":
        return functions[0]
    if isinstance(choice, dict) and choice.get("type") == "function":
        for function in functions:
            if function["name"] == choice.get("name"):
                return function
        raise _RequestError(400, f"tool_choice names an unknown function: {choice.get('name')!r}", "tool_choice")
    return None


def build_response(body: dict[str, Any], rid: str, created: int) -> dict[str, Any]:
    """The full (non-streamed) ``response`` object for a ``POST /v1/responses`` body."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _RequestError(400, "'model' is required", "model")
    items = _input_items(body)
    sampling = _sampling_key(body)
    prompt = next((_part_text(i.get("content")) for i in reversed(items) if i.get("role") == "user"), "")
    request_hex = _digest({"api": "responses", "model": model, "input": items, "instructions": body.get("instructions"), **sampling})
    words = _words(prompt)
    output: list[dict[str, Any]] = []
    status, incomplete = "completed", None
    if isinstance(body.get("reasoning"), dict):
        output.append({"id": f"rs_{request_hex[:16]}", "type": "reasoning", "summary": []})
    tool = _forced_tool(body)
    text_format = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if tool is not None:
        arguments = json.dumps(_value_for_schema(tool.get("parameters") or {"type": "object"}, request_hex, words))
        output.append({
            "id": f"fc_{request_hex[:16]}", "type": "function_call", "status": "completed",
            "arguments": arguments, "call_id": f"call_{request_hex[16:32]}", "name": tool["name"],
        })
        out_tokens = _count_tokens(arguments)
    else:
        text, finish = _apply_limits(generate_text(prompt, request_hex), body.get("max_output_tokens"), [])
        if finish == "length":
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        if isinstance(text_format, dict) and text_format.get("type") == "json_schema":
            text = json.dumps(_value_for_schema(text_format.get("schema") or {"type": "object"}, request_hex, words))
        elif isinstance(text_format, dict) and text_format.get("type") == "json_object":
            text = json.dumps({"answer": text})
        output.append({
            "id": f"msg_{request_hex[:16]}", "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        })
        out_tokens = _count_tokens(text)
    in_tokens = sum(_count_tokens(_part_text(i.get("content"))) for i in items)
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": bool(body.get("background")),
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": {
            "input_tokens": in_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": out_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": in_tokens + out_tokens,
        },
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def stream_response(body: dict[str, Any], rid: str, created: int) -> list[tuple[str, dict[str, Any]]]:
    """The typed events of a streamed ``POST /v1/responses``, as (event name, data)."""
    final = build_response(body, rid, created)
    events: list[tuple[str, dict[str, Any]]] = []

    def send(kind: str, payload: dict[str, Any]) -> None:
        events.append((kind, {"type": kind, **payload, "sequence_number": len(events)}))

    start = {**final, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    send("response.created", {"response": start})
    send("response.in_progress", {"response": start})
    for position, item in enumerate(final["output"]):
        ids = {"item_id": item["id"], "output_index": position}
        if item["type"] == "message":
            send("response.output_item.added", {"output_index": position, "item": {**item, "status": "in_progress", "content": []}})
            text = item["content"][0]["text"]
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            send("response.content_part.added", {**ids, "content_index": 0, "part": empty})
            for piece in _stream_pieces(text):
                send("response.output_text.delta", {**ids, "content_index": 0, "delta": piece, "logprobs": []})
            send("response.output_text.done", {**ids, "content_index": 0, "text": text, "logprobs": []})
            send("response.content_part.done", {**ids, "content_index": 0, "part": item["content"][0]})
        elif item["type"] == "function_call":
            send("response.output_item.added", {"output_index": position, "item": {**item, "status": "in_progress", "arguments": ""}})
            send("response.function_call_arguments.delta", {**ids, "delta": item["arguments"]})
            send("response.function_call_arguments.done", {**ids, "arguments": item["arguments"]})
        else:
            send("response.output_item.added", {"output_index": position, "item": item})
        send("response.output_item.done", {"output_index": position, "item": item})
    send("response.incomplete" if final["status"] == "incomplete" else "response.completed", {"response": final})
    return events


# ------------------------------------------------------------------- serving (fake_openai)
_STORES_LOCK = __import__("threading").Lock()


def _kept(owner: Any) -> dict[str, dict[str, Any]]:
    """The responses a server keeps for ``GET /v1/responses/{id}`` (created on first use)."""
    with _STORES_LOCK:
        kept: dict[str, dict[str, Any]] = owner.__dict__.setdefault("_kept_responses", {})
    return kept


def _events(events: list[tuple[str, dict[str, Any]]]) -> list[bytes]:
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]


def answer(handler: Any, path: str, body: dict[str, Any], seq: int, created: int) -> None:
    """Serve ``POST /v1/responses`` on a fake_openai request handler."""
    rid = f"resp_fake{seq:08d}"
    kept = _kept(handler.server.owner)
    if body.get("stream"):
        events = stream_response(body, rid, created)
        final = events[-1][1]["response"]
        handler._send_stream(_events(events))
    else:
        final = build_response(body, rid, created)
        shown = {**final, "status": "queued", "output": [], "usage": None} if body.get("background") else final
        handler._send_json(200, shown)
    if body.get("store", True) is not False:
        kept[rid] = final


def by_id(handler: Any, path: str) -> None:
    """``GET`` / ``DELETE /v1/responses/{id}``."""
    rid = path[len(PATH) + 1 :]
    kept = _kept(handler.server.owner)
    response = kept.get(rid)
    if response is None:
        handler._send_error_json(404, f"No response found with id '{rid}'.", "response_id")
    elif handler.command == "DELETE":
        kept.pop(rid, None)
        handler._send_json(200, {"id": rid, "object": "response.deleted", "deleted": True})
    else:
        handler._send_json(200, response)
