"""How the proxy keeps an upstream response in the cache contract (no I/O).

An upstream JSON response becomes a list of :class:`~llm_cache.generation.Generation`,
so every backend (and ``llm-cache stats`` / ``inspect``) handles it like any other entry:

* one Generation per choice: ``text`` is the completion text or the chat message content
  (``""`` for a tool call), ``message`` the full chat message, and
  ``generation_info["choice"]`` the rest of the choice (``index``, ``finish_reason``,
  ``logprobs``, ...);
* the first Generation's ``generation_info["proxy"]`` holds the envelope::

      {"v": 1, "endpoint": "chat.completions", "created_at": 1718000000.25,
       "layout": "choices", "response": {"id": ..., "object": ..., "created": ...,
       "model": ..., "system_fingerprint": ..., "usage": {...}}}

  ``created_at`` is when the proxy stored the entry (wall clock), used for
  ``Cache-Control: max-age`` and the ``Age`` header.
* responses without choices (embeddings) keep the whole body in ``response`` with
  ``layout: "body"`` and one empty-text Generation.

Replays keep the upstream's ``id`` and ``created``: they describe the response that was
generated, and a client can tell a replay by ``X-Cache``/``Age`` (and by a repeated id).

Values read back are untrusted: every field is type-checked and a bad shape raises
:class:`~llm_cache.errors.CorruptEntryError`, which the caller treats as a miss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..errors import CorruptEntryError
from ..generation import Generation

__all__ = [
    "STORE_VERSION",
    "CachedResponse",
    "generations_to_response",
    "response_to_generations",
    "stored_created_at",
]

STORE_VERSION = 1


@dataclass(slots=True)
class CachedResponse:
    """A response as read from the cache."""

    body: dict[str, Any]
    created_at: float
    similarity: float | None = None  # set for semantic hits

    @property
    def usage(self) -> dict[str, Any] | None:
        usage = self.body.get("usage")
        return usage if isinstance(usage, dict) else None


def _choices_layout(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    if not all(isinstance(c, dict) for c in choices):
        return None
    return choices


def response_to_generations(
    endpoint: str, body: dict[str, Any], created_at: float | None = None
) -> list[Generation]:
    """Encode an upstream response body (a JSON object) as generations to store."""
    meta: dict[str, Any] = {
        "v": STORE_VERSION,
        "endpoint": endpoint,
        "created_at": time.time() if created_at is None else created_at,
    }
    choices = _choices_layout(body)
    if choices is None:
        meta["layout"] = "body"
        meta["response"] = body
        return [Generation(text="", generation_info={"proxy": meta})]

    meta["layout"] = "choices"
    meta["response"] = {k: v for k, v in body.items() if k != "choices"}
    generations = []
    for i, choice in enumerate(choices):
        rest = dict(choice)
        message = rest.pop("message", None)
        if isinstance(message, dict):
            content = message.get("content")
            text = content if isinstance(content, str) else ""
        else:
            message = None
            raw_text = rest.pop("text", "")
            text = raw_text if isinstance(raw_text, str) else ""
        info: dict[str, Any] = {"choice": rest}
        if i == 0:
            info["proxy"] = meta
        generations.append(Generation(text=text, generation_info=info, message=message))
    return generations


def stored_created_at(generations: list[Generation]) -> float | None:
    """When a proxy entry was stored, read without rebuilding it; ``None`` if not ours."""
    info = generations[0].generation_info if generations else None
    meta = info.get("proxy") if isinstance(info, dict) else None
    created = meta.get("created_at") if isinstance(meta, dict) else None
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        return None
    return float(created)


def generations_to_response(generations: list[Generation]) -> CachedResponse:
    """Rebuild the stored response; raise :class:`CorruptEntryError` if it is not ours."""
    first = generations[0].generation_info if generations else None
    meta = first.get("proxy") if isinstance(first, dict) else None
    if not isinstance(meta, dict) or meta.get("v") != STORE_VERSION:
        raise CorruptEntryError("not an llm-cache proxy entry (or a newer format)")
    envelope = meta.get("response")
    created_at = meta.get("created_at")
    if (
        not isinstance(envelope, dict)
        or isinstance(created_at, bool)
        or not isinstance(created_at, (int, float))
    ):
        raise CorruptEntryError("proxy entry without a response envelope or created_at")
    layout = meta.get("layout")
    if layout == "body":
        return CachedResponse(body=envelope, created_at=float(created_at))
    if layout != "choices":
        raise CorruptEntryError(f"unknown proxy entry layout {layout!r}")

    choices = []
    for generation in generations:
        info = generation.generation_info
        rest = info.get("choice") if isinstance(info, dict) else None
        if not isinstance(rest, dict):
            raise CorruptEntryError("proxy entry choice without its fields")
        choice = dict(rest)
        if generation.message is not None:
            choice["message"] = generation.message
        else:
            choice["text"] = generation.text
        choices.append(choice)
    # Envelope fields first, then choices, then usage: the order OpenAI answers in.
    body = {k: v for k, v in envelope.items() if k != "usage"}
    body["choices"] = choices
    if "usage" in envelope:
        body["usage"] = envelope["usage"]
    return CachedResponse(body=body, created_at=float(created_at))
