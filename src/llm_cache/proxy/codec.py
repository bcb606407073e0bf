"""How the proxy keeps an upstream response in the cache contract (no I/O).

The stored shape is the protocol layer's (:mod:`llm_cache.protocols`): the one the SDK
wrappers (and, for chat, the :mod:`llm_cache.llms` models) write, so an entry stored by
any of them is a hit for the others. Per protocol:

* chat / completions: one Generation per choice (``text``, ``message``,
  ``generation_info`` with ``finish_reason`` and ``choice``); the first also holds
  ``response`` (the body without its choices: id, created, model, usage...);
* embeddings and the Responses API: the whole body in ``generation_info["response"]``;
* Anthropic Messages: ``message`` holds the content blocks, ``response`` the rest.

The first Generation's ``generation_info["created_at"]`` is when the entry was stored
(wall clock), used for ``Cache-Control: max-age``, ``--ttl`` and the ``Age`` header; an
entry without it (written by a model) has an unknown age.

Replays keep the upstream's ``id`` and ``created``: they describe the response that was
generated, and a client can tell a replay by ``X-Cache``/``Age`` (and by a repeated id).
Values read back are untrusted: a bad shape raises
:class:`~llm_cache.errors.CorruptEntryError`, which the caller treats as a miss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..generation import Generation
from ..protocols.base import entry_created_at
from ._protocols import protocol_of

__all__ = [
    "CachedResponse",
    "generations_to_response",
    "response_to_generations",
    "stored_created_at",
]

_NO_REQUEST: Mapping[str, Any] = {}


@dataclass(slots=True)
class CachedResponse:
    """A response as read from the cache."""

    body: dict[str, Any]
    created_at: float | None
    similarity: float | None = None  # set for semantic hits


def response_to_generations(
    endpoint: str, body: dict[str, Any], created_at: float | None = None
) -> list[Generation]:
    """Encode an upstream response body as generations to store; ``ValueError`` if it
    cannot be stored (no choices, an unfinished message...)."""
    return protocol_of(endpoint).to_entry(body, created_at)


def stored_created_at(generations: list[Generation]) -> float | None:
    """When an entry was stored, read without rebuilding it; ``None`` if unknown."""
    return entry_created_at(generations)


def generations_to_response(
    generations: list[Generation], endpoint: str, request: Mapping[str, Any] = _NO_REQUEST
) -> CachedResponse:
    """Rebuild the stored response; raise :class:`CorruptEntryError` if it is not usable."""
    body = protocol_of(endpoint).from_entry(generations, request)
    return CachedResponse(body=body, created_at=entry_created_at(generations))
