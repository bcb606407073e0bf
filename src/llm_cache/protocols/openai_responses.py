"""The OpenAI Responses API (``POST /v1/responses``) as a protocol (no I/O).

Identity:

* ``prompt``: the canonical JSON of ``input`` as a list of items. A string input is the
  one user message it stands for (``[{"role": "user", "content": "..."}]``); items without
  a ``role`` (``function_call``, ``function_call_output``, ``reasoning``, ...) get
  ``"role": "~<type>"`` so the list has the shape of chat messages: the last user text is
  what a semantic cache embeds, the other items are its context.
* ``llm_string``: every other field (``model``, ``instructions``, ``tools``,
  ``tool_choice``, ``text`` (structured output), ``reasoning``, ``previous_response_id``,
  ``include``, ``max_output_tokens``, ``temperature``, unknown fields...) except
  ``stream``, ``stream_options``, ``user``, ``metadata``, ``safety_identifier`` and
  ``prompt_cache_*``. ``store: false`` is keyed (``store: true`` is the default and is
  dropped): a replayed id must be retrievable upstream exactly when the client asked
  for a stored response.
* Uncacheable: ``background: true`` (the answer is fetched later by id) and
  ``conversation`` (each call appends to a conversation held upstream: a replay would not).

Entry: one Generation whose ``text`` is the output text (for ``llm-cache inspect`` and
search) and whose ``generation_info["response"]`` is the whole response body, plus
``created_at``. Only ``completed`` and ``incomplete`` responses are stored. Replayed
responses keep the upstream's ``id``, ``created_at`` and the echoed request fields of the
request that was stored (``metadata`` included, which is not keyed).

Stream: typed events, each also named by its SSE ``event:`` field: ``response.created``,
``response.in_progress``, per output item ``response.output_item.added``, its content
(``response.content_part.added``, ``response.output_text.delta``...,
``response.output_text.done``, ``response.content_part.done``; function calls
``response.function_call_arguments.delta``/``.done``), ``response.output_item.done``, and
last ``response.completed`` (or ``response.incomplete``) carrying the full response, which
is what the assembler keeps. ``sequence_number`` counts from 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import CorruptEntryError
from ..generation import Generation
from ..keys import canonical_json
from ..streaming import split_pieces
from ._openai_common import OPENAI_NOT_KEYED, openai_error, openai_usage
from .base import Event, RequestIdentity, Uncacheable, Usage, first_info, keyed_params, llm_string_of, stamp

__all__ = ["RESPONSES", "ResponsesAssembler", "ResponsesProtocol", "output_text"]

_NOT_KEYED = (OPENAI_NOT_KEYED - {"store"}) | {"input"}
_STORED_STATUSES = ("completed", "incomplete")
_FINAL_EVENTS = {"response.completed", "response.incomplete"}


def _items(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        return None
    items = []
    for item in value:
        if not isinstance(item, dict):
            return None
        role = item.get("role")
        if role is None:
            item = {**item, "role": "~" + str(item.get("type", "item"))}
        elif not isinstance(role, str) or role.startswith("~"):
            return None  # would be mistaken for a role-less item (one-to-one keys)
        items.append(item)
    return items


def output_text(response: Mapping[str, Any]) -> str:
    """The concatenated ``output_text`` parts of a response's message items."""
    texts = []
    for item in response.get("output") or ():
        if isinstance(item, dict) and item.get("type") == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
    return "".join(texts)


class ResponsesAssembler:
    """Keeps the response of the final ``response.completed`` / ``response.incomplete`` event."""

    def __init__(self) -> None:
        self._response: dict[str, Any] | None = None
        self.error: Any = None

    def add(self, name: str | None, data: Any) -> None:
        if not isinstance(data, dict):
            return
        kind = data.get("type", name)
        if kind in _FINAL_EVENTS and isinstance(data.get("response"), dict):
            self._response = data["response"]
        elif kind in ("error", "response.failed"):
            self.error = data

    @property
    def complete(self) -> bool:
        return (
            self.error is None
            and self._response is not None
            and self._response.get("status") in _STORED_STATUSES
        )

    def response(self) -> dict[str, Any]:
        if self._response is None:
            raise ValueError("the stream has not ended")
        return self._response


@dataclass(frozen=True)
class ResponsesProtocol:
    """See the module docstring."""

    name: str = "responses"
    provider: str = "openai"

    def identify(self, body: Mapping[str, Any], namespace: str | None) -> RequestIdentity | Uncacheable:
        if body.get("background") is True:
            return Uncacheable("background responses are fetched later by id")
        if body.get("conversation") is not None:
            return Uncacheable("a conversation held upstream grows with each call")
        items = _items(body.get("input"))
        if items is None:
            return Uncacheable("'input' is neither a string nor a list of items")
        skip = _NOT_KEYED | {"background"} if body.get("background") is False else _NOT_KEYED
        params = keyed_params(body, skip)
        if params.get("store") is True:
            del params["store"]  # the default
        try:
            prompt = canonical_json(items)
            llm_string = llm_string_of(self.provider, self.name, namespace, params)
        except (ValueError, TypeError) as exc:
            return Uncacheable(str(exc))
        return RequestIdentity(self.name, prompt, llm_string, True)

    def to_entry(self, response: dict[str, Any], created_at: float | None = None) -> list[Generation]:
        if response.get("status") not in _STORED_STATUSES or not isinstance(response.get("output"), list):
            raise ValueError(f"a response with status {response.get('status')!r} is not stored")
        return [Generation(text=output_text(response), generation_info=stamp({"response": response}, created_at))]

    def from_entry(self, generations: list[Generation], request: Mapping[str, Any]) -> dict[str, Any]:
        body = first_info(generations).get("response")
        if not isinstance(body, dict) or not isinstance(body.get("output"), list):
            raise CorruptEntryError("stored entry is not a Responses API response")
        if body.get("object") != "response" or not isinstance(body.get("id"), str):
            raise CorruptEntryError("stored entry is not a Responses API response")
        return body

    def assembler(self, request: Mapping[str, Any] | None = None) -> ResponsesAssembler:
        return ResponsesAssembler()

    def replay(self, response: dict[str, Any], request: Mapping[str, Any]) -> list[Event]:
        events: list[Event] = []

        def emit(kind: str, **fields: Any) -> None:
            events.append((kind, {"type": kind, "sequence_number": len(events), **fields}))

        started = {k: v for k, v in response.items() if k != "output_text"}
        started.update(status="in_progress", output=[], usage=None)
        if "incomplete_details" in started:
            started["incomplete_details"] = None
        emit("response.created", response=started)
        emit("response.in_progress", response=started)
        for index, item in enumerate(response.get("output") or ()):
            if isinstance(item, dict):
                _replay_item(emit, index, item)
        final = "response.incomplete" if response.get("status") == "incomplete" else "response.completed"
        emit(final, response=response)
        return events

    def usage(self, response: Mapping[str, Any]) -> Usage:
        return openai_usage(response)

    def error(self, status: int, message: str, kind: str | None = None) -> dict[str, Any]:
        return openai_error(status, message, kind)


def _replay_item(emit: Any, index: int, item: dict[str, Any]) -> None:
    item_id = item.get("id", "")
    kind = item.get("type")
    where = {"item_id": item_id, "output_index": index}
    if kind == "message":
        emit("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []})
        for position, part in enumerate(item.get("content") or ()):
            if not isinstance(part, dict):
                continue
            at = {**where, "content_index": position}
            if part.get("type") == "output_text":
                text = part.get("text") or ""
                emit("response.content_part.added", **at, part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
                for piece in split_pieces(text):
                    emit("response.output_text.delta", **at, delta=piece, logprobs=[])
                for number, annotation in enumerate(part.get("annotations") or ()):
                    emit("response.output_text.annotation.added", **at, annotation_index=number, annotation=annotation)
                emit("response.output_text.done", **at, text=text, logprobs=part.get("logprobs") or [])
            elif part.get("type") == "refusal":
                refusal = part.get("refusal") or ""
                emit("response.content_part.added", **at, part={"type": "refusal", "refusal": ""})
                for piece in split_pieces(refusal):
                    emit("response.refusal.delta", **at, delta=piece)
                emit("response.refusal.done", **at, refusal=refusal)
            else:
                emit("response.content_part.added", **at, part=part)
            emit("response.content_part.done", **at, part=part)
    elif kind == "function_call":
        arguments = item.get("arguments") or ""
        emit("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "arguments": ""})
        for piece in split_pieces(arguments):
            emit("response.function_call_arguments.delta", **where, delta=piece)
        emit("response.function_call_arguments.done", **where, arguments=arguments, name=item.get("name"))
    else:  # reasoning, tool calls run by the provider, ...: the item as it is
        emit("response.output_item.added", output_index=index, item=item)
    emit("response.output_item.done", output_index=index, item=item)


RESPONSES = ResponsesProtocol()
