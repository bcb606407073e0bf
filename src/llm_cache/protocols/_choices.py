"""The protocols whose responses are a list of ``choices``: chat completions and completions.

An entry is one :class:`~llm_cache.generation.Generation` per choice, in index order:
``text`` is the choice's text (chat: the message content, ``""`` for a tool call),
``message`` the assistant message (chat), ``generation_info`` holds ``finish_reason`` and
``choice`` (the rest of the choice: ``index``, ``logprobs``, ...); the first also holds
``response`` (the body without its choices: id, created, model, usage, ...) and
``created_at`` (when it was stored). The :mod:`llm_cache.llms` models write the same
shape without ``response``/``created_at``; such entries are rebuilt with a made-up id.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import CorruptEntryError
from ..generation import Generation
from ..keys import canonical_json, messages_prompt
from ..streaming import StreamAssembler as _ChunkAssembler
from ..streaming import replay_chunks
from ._openai_common import OPENAI_NOT_KEYED, openai_error, openai_usage
from .base import (
    Event,
    RequestIdentity,
    Uncacheable,
    Usage,
    first_info,
    keyed_params,
    llm_string_of,
    stamp,
)


class ChunkAssembler:
    """:class:`llm_cache.streaming.StreamAssembler` behind the protocol layer's interface."""

    def __init__(self, endpoint: str, envelope_fields: Collection[str] | None) -> None:
        self._inner = _ChunkAssembler(endpoint, envelope_fields=envelope_fields)

    def add(self, name: str | None, data: Any) -> None:
        self._inner.add(data)

    @property
    def complete(self) -> bool:
        return self._inner.complete

    def response(self) -> dict[str, Any]:
        return self._inner.response()


@dataclass(frozen=True)
class ChoicesProtocol:
    """Chat completions or completions (see the module docstring)."""

    name: str  # "chat.completions" or "completions"
    prompt_field: str  # "messages" or "prompt"
    object_name: str  # the response's "object"
    id_prefix: str  # of the ids made up for entries written by the models
    provider: str = "openai"

    # -- identity ------------------------------------------------------------------------
    def identify(self, body: Mapping[str, Any], namespace: str | None) -> RequestIdentity | Uncacheable:
        """Prompt: the canonical messages (chat), or the prompt string (a list of prompts as
        canonical JSON, with ``"batch": true`` in the llm_string so that it never meets the
        string that looks the same); llm_string: every other field but :data:`OPENAI_NOT_KEYED`."""
        value = body.get(self.prompt_field)
        try:
            if self.prompt_field == "messages":
                if not isinstance(value, list):
                    return Uncacheable("'messages' is not a list")
                prompt, semantic, batch = self.prompt_of(value), True, False
            elif isinstance(value, str):
                prompt, semantic, batch = value, True, False
            elif isinstance(value, list) and value:
                prompt, semantic, batch = canonical_json(value), False, True
            else:
                return Uncacheable(f"no usable {self.prompt_field!r}")
            llm_string = self.llm_string_for(body, namespace, batch=batch)
        except (ValueError, TypeError) as exc:  # ConfigurationError is a ValueError
            return Uncacheable(str(exc))
        return RequestIdentity(self.name, prompt, llm_string, semantic)

    def prompt_of(self, value: Any) -> str:
        """The prompt of one request's ``messages`` (chat) or one ``prompt`` string
        (completions); ``ConfigurationError`` (a ``ValueError``) for a malformed conversation.

        The :mod:`llm_cache.llms` models call this and :meth:`llm_string_for` (rather than
        :meth:`identify`) because they key each prompt of a batch on its own and compute the
        llm_string once for all of them.
        """
        if self.prompt_field != "messages":
            if not isinstance(value, str):
                raise TypeError(f"a completions prompt is a string, not {type(value).__name__}")
            return value
        if len(value) == 1:
            message = value[0]
            if type(message) is dict and len(message) == 2 and message.get("role") == "user":
                content = message.get("content")
                if type(content) is str:
                    # The canonical JSON of one user message, built directly: the commonest
                    # conversation then costs one string dump, not a sorted dump of a list of
                    # dicts (same bytes as messages_prompt; a test checks it).
                    return '[{"content":' + json.dumps(content, ensure_ascii=False) + ',"role":"user"}]'
        return messages_prompt(value)

    def llm_string_for(self, body: Mapping[str, Any], namespace: str | None, *, batch: bool = False) -> str:
        """The llm_string of a request body (its prompt field, if any, is ignored);
        ``ValueError``/``TypeError`` for values without a canonical JSON form."""
        params = keyed_params(body, OPENAI_NOT_KEYED | {self.prompt_field})
        if batch:
            return llm_string_of(self.provider, self.name, namespace, params, batch=True)
        return llm_string_of(self.provider, self.name, namespace, params)

    # -- entries -------------------------------------------------------------------------
    def to_entry(self, response: dict[str, Any], created_at: float | None = None) -> list[Generation]:
        choices = response.get("choices")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
            raise ValueError("the response has no choices")
        envelope = {k: v for k, v in response.items() if k != "choices"}
        generations = []
        ordered = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c.get("index"), int) else 0)
        for position, raw in enumerate(ordered):
            choice = dict(raw)
            info: dict[str, Any] = {"finish_reason": choice.get("finish_reason"), "choice": choice}
            if position == 0:
                info["response"] = envelope
                stamp(info, created_at)
            if self.prompt_field == "messages":
                message = choice.pop("message", None)
                if not isinstance(message, dict):
                    raise ValueError("a chat choice without a message")
                text = message.get("content")
                generations.append(
                    Generation(text=text if isinstance(text, str) else "", generation_info=info, message=message)
                )
            else:
                text = choice.pop("text", "")
                generations.append(Generation(text=text if isinstance(text, str) else "", generation_info=info))
        return generations

    def from_entry(self, generations: list[Generation], request: Mapping[str, Any]) -> dict[str, Any]:
        envelope = first_info(generations).get("response")
        if envelope is None:
            # Written by llm_cache.llms models, which keep the choices but not the envelope.
            digest = hashlib.sha256(generations[0].text.encode("utf-8", "surrogatepass")).hexdigest()
            envelope = {
                "id": self.id_prefix + "llmcache" + digest[:24],
                "object": self.object_name,
                "created": int(time.time()),
                "model": request.get("model"),
            }
        elif not isinstance(envelope, dict):
            raise CorruptEntryError("stored entry: the response envelope is not an object")
        choices = []
        for position, generation in enumerate(generations):
            info = generation.generation_info or {}
            choice = info.get("choice")
            if choice is None:
                choice = {
                    "index": position,
                    "finish_reason": info.get("finish_reason") or "stop",
                    "logprobs": info.get("logprobs"),
                }
            elif not isinstance(choice, dict):
                raise CorruptEntryError("stored entry: a choice is not an object")
            choice = dict(choice)
            if self.prompt_field == "messages":
                message = generation.message
                if message is None:
                    message = {"role": "assistant", "content": generation.text}
                elif not isinstance(message.get("content"), (str, list, type(None))):
                    raise CorruptEntryError("stored entry: message content is neither text nor parts")
                choice["message"] = message
            else:
                choice["text"] = generation.text
            choices.append(choice)
        # Envelope fields first, then choices, then usage: the order OpenAI answers in.
        body = {k: v for k, v in envelope.items() if k != "usage"}
        body["choices"] = choices
        if "usage" in envelope:
            body["usage"] = envelope["usage"]
        return body

    # -- streams -------------------------------------------------------------------------
    def assembler(
        self, request: Mapping[str, Any] | None = None, envelope_fields: Collection[str] | None = None
    ) -> ChunkAssembler:
        """Folds ``chat.completion.chunk`` / ``text_completion`` chunks; ``envelope_fields``
        limits the top-level chunk fields kept (``None``: all but choices/usage/object)."""
        return ChunkAssembler(self.name, envelope_fields)

    def replay(self, response: dict[str, Any], request: Mapping[str, Any]) -> list[Event]:
        """The chunks of :func:`llm_cache.streaming.replay_chunks`; a usage chunk when the
        request's ``stream_options`` asked for one."""
        return [(None, chunk) for chunk in replay_chunks(self.name, response, include_usage(request))]

    # -- usage and errors ----------------------------------------------------------------
    def usage(self, response: Mapping[str, Any]) -> Usage:
        return openai_usage(response)

    def error(self, status: int, message: str, kind: str | None = None) -> dict[str, Any]:
        return openai_error(status, message, kind)


def include_usage(request: Mapping[str, Any]) -> bool:
    """Whether a streamed request asked for a final usage chunk."""
    options = request.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


__all__ = ["ChoicesProtocol", "ChunkAssembler", "include_usage"]
