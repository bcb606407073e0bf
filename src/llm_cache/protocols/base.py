"""What every wire protocol module shares: the identity of a request, usage, events (no I/O).

A protocol module (one per wire API) answers, for its API and nothing else:

* :meth:`~WireProtocol.identify`: a request body -> :class:`RequestIdentity` (the cache key
  and whether the request may be matched by meaning) or :class:`Uncacheable`;
* :meth:`~WireProtocol.to_entry` / :meth:`~WireProtocol.from_entry`: a response body <->
  the :class:`~llm_cache.generation.Generation` list a cache stores;
* :meth:`~WireProtocol.assembler` / :meth:`~WireProtocol.replay`: streamed events <-> a
  response body;
* :meth:`~WireProtocol.usage` and :meth:`~WireProtocol.error`: tokens for metrics and the
  protocol's own error body.

The cache key is the one every other part of llm-cache uses (:mod:`llm_cache.keys`):

* ``llm_string`` is :func:`~llm_cache.keys.make_llm_string` of
  ``{"provider": ..., "api": ..., "namespace": ns, **params}`` where ``params`` are the
  request's fields except the prompt and the fields that never change an answer. It is
  the form :class:`~llm_cache.llms.ChatOpenAI` writes, so the models, the SDK wrappers
  and the proxy meet at one key for one request.
* A request field whose name is one of those the key itself uses (``provider``, ``api``,
  ``namespace``, ``batch``) or starts with ``~`` is keyed as ``"~" + name``: a body field
  can never overwrite the namespace (another tenant's partition) or the API name, and the
  renaming is one-to-one, so two different bodies never share a key.

Events: a stream is a list of ``(event name or None, JSON object)`` pairs; the name is
the SSE ``event:`` field (Anthropic and the Responses API send one, chat completions do
not). Transport markers such as ``data: [DONE]`` are the transport's business.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, runtime_checkable

from ..errors import CorruptEntryError
from ..generation import Generation
from ..keys import make_llm_string

__all__ = [
    "Event",
    "RequestIdentity",
    "StreamAssembler",
    "Uncacheable",
    "Usage",
    "WireProtocol",
    "entry_created_at",
    "keyed_params",
    "llm_string_of",
    "plain_json",
]

#: One streamed event: (SSE event name or None, its JSON data).
Event = tuple[str | None, dict[str, Any]]

_RESERVED = frozenset({"provider", "api", "namespace", "batch"})


@dataclass(frozen=True, slots=True)
class RequestIdentity:
    """The cache identity of one request.

    ``prompt`` and ``llm_string`` are the cache contract's key. ``semantic`` says whether
    the request may be answered by meaning: its prompt then has the shape that
    :func:`llm_cache.semantic.partition.split_prompt` understands (a list of role
    messages), so the last user text is embedded and everything else (earlier turns,
    system/instructions, tools, settings: the rest of the prompt and the llm_string)
    forms the partition.
    """

    protocol: str
    prompt: str
    llm_string: str
    semantic: bool = False

    @property
    def flight_key(self) -> tuple[str, str]:
        """Key of an in-flight map (the namespace is inside ``llm_string``)."""
        return (self.prompt, self.llm_string)


@dataclass(frozen=True, slots=True)
class Uncacheable:
    """Why a request is passed through uncached (e.g. ``background: true``)."""

    reason: str

    def __bool__(self) -> bool:  # ``if identity:`` reads as "cacheable"
        return False


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one response, as metrics need them.

    ``input_tokens`` counts every input token billed, including Anthropic's cache writes
    and reads, which are also given on their own.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    model: str | None = None


@runtime_checkable
class StreamAssembler(Protocol):
    """Folds the events of one stream into the response the same request gets unstreamed."""

    def add(self, name: str | None, data: Any) -> None:
        """Take one event (its SSE name, its parsed JSON data)."""

    @property
    def complete(self) -> bool:
        """Whether the stream ended normally, so the response may be stored."""

    def response(self) -> dict[str, Any]:
        """The assembled response body."""


class WireProtocol(Protocol):
    """One wire API, without I/O (see the module docstring)."""

    @property
    def name(self) -> str:
        """The protocol's name in metrics and logs, e.g. ``"anthropic.messages"``."""

    def identify(self, body: Mapping[str, Any], namespace: str | None) -> RequestIdentity | Uncacheable:
        """The cache identity of a request body (plain JSON data), or why it has none."""

    def to_entry(self, response: dict[str, Any], created_at: float | None = None) -> list[Generation]:
        """A response body as the generations to store; ``ValueError`` if it cannot be stored."""

    def from_entry(self, generations: list[Generation], request: Mapping[str, Any]) -> dict[str, Any]:
        """The stored response body; :class:`CorruptEntryError` if the entry is unusable."""

    def assembler(self, request: Mapping[str, Any] | None = None) -> StreamAssembler:
        """A fresh assembler for one stream."""

    def replay(self, response: dict[str, Any], request: Mapping[str, Any]) -> list[Event]:
        """The events a provider would have streamed for ``response``."""

    def usage(self, response: Mapping[str, Any]) -> Usage:
        """The token usage of a response body."""

    def error(self, status: int, message: str, kind: str | None = None) -> dict[str, Any]:
        """The protocol's error body."""


# ---------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------
def _is_sentinel(value: Any) -> bool:
    # openai.NOT_GIVEN / anthropic.NOT_GIVEN / omit mean "not passed": never keyed.
    kind = type(value)
    return kind.__name__ in ("NotGiven", "Omit") and kind.__module__.startswith(("openai", "anthropic"))


def plain_json(value: Any) -> Any:
    """An SDK call's value as plain JSON data (SDK models dumped as the SDK sends them).

    Raises ``TypeError`` for a value with no JSON form.
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items() if not _is_sentinel(v)}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        # An SDK object passed back in, e.g. a message of an earlier answer.
        return dump(mode="json", exclude_unset=True)
    raise TypeError(f"a request value of type {type(value).__name__} is not JSON")


def keyed_params(body: Mapping[str, Any], skip: frozenset[str] | set[str]) -> dict[str, Any]:
    """The request fields that belong in the llm_string, reserved names escaped."""
    params: dict[str, Any] = {}
    for name, value in body.items():
        if name in skip:
            continue
        if name in _RESERVED or name.startswith("~"):
            name = "~" + name
        params[name] = value
    return params


def llm_string_of(
    provider: str, api: str, namespace: str | None, params: Mapping[str, Any], **extra: Any
) -> str:
    """The llm_string of a request (see the module docstring); ``ValueError``/``ConfigurationError``
    for values without a canonical JSON form (NaN, objects)."""
    head: dict[str, Any] = {"provider": provider, "api": api}
    if namespace is not None:
        head["namespace"] = namespace
    head.update(extra)
    return make_llm_string(head, params)


def entry_created_at(generations: Iterable[Generation]) -> float | None:
    """When an entry was stored (``generation_info["created_at"]`` of its first generation),
    read without rebuilding it; ``None`` when unknown (entries written by the models)."""
    for generation in generations:
        info = generation.generation_info
        created = info.get("created_at") if isinstance(info, dict) else None
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            return None
        return float(created)
    return None


def stamp(info: dict[str, Any], created_at: float | None) -> dict[str, Any]:
    """``info`` with the entry's storage time (now by default)."""
    info["created_at"] = time.time() if created_at is None else created_at
    return info


def first_info(generations: list[Generation]) -> dict[str, Any]:
    """The first generation's ``generation_info``; CorruptEntryError if there is none."""
    if not generations:
        raise CorruptEntryError("an entry without generations")
    info = generations[0].generation_info
    return info if isinstance(info, dict) else {}


def require_dict(value: Any, what: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, else :class:`CorruptEntryError`."""
    if not isinstance(value, dict):
        raise CorruptEntryError(f"stored entry: {what} is not an object")
    return value


def int_field(mapping: Mapping[str, Any] | None, name: str) -> int:
    """An integer usage field, 0 when missing or not an integer."""
    value = mapping.get(name) if isinstance(mapping, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
