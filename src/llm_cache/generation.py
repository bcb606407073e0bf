"""Generations and their JSON codec.

A store is a trust boundary: values are JSON, decoded with :func:`json.loads`
and checked field by field. Nothing read from a store is ever unpickled or
evaluated, and a value that does not have the expected shape raises
:class:`~llm_cache.errors.CorruptEntryError`, which every backend turns into a miss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import CorruptEntryError

__all__ = [
    "Generation",
    "LLMResult",
    "encode_generations",
    "decode_generations",
    "generations_from_payload",
    "loads_stored",
]

# Bumped when the stored JSON shape changes; older readers treat a newer value as corrupt (a miss).
CODEC_VERSION = 1


@dataclass(frozen=True, slots=True)
class Generation:
    """One output of a model for one prompt.

    ``text`` is the completion text (for chat, the assistant message content, ``""`` when
    the model only called tools); ``generation_info`` carries provider details such as
    ``finish_reason``; ``message`` is the full assistant message dict for chat models.
    """

    text: str
    generation_info: dict[str, Any] | None = None
    message: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form; keys with ``None`` values are left out."""
        data: dict[str, Any] = {"text": self.text}
        if self.generation_info is not None:
            data["generation_info"] = self.generation_info
        if self.message is not None:
            data["message"] = self.message
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "Generation":
        """Build a Generation from untrusted data, checking every field's type."""
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise CorruptEntryError("a generation must be an object with a string 'text'")
        info = data.get("generation_info")
        message = data.get("message")
        if info is not None and not isinstance(info, dict):
            raise CorruptEntryError("'generation_info' must be an object or null")
        if message is not None and not isinstance(message, dict):
            raise CorruptEntryError("'message' must be an object or null")
        return cls(text=data["text"], generation_info=info, message=message)


@dataclass(slots=True)
class LLMResult:
    """What ``generate`` returns: every generation for every prompt, in prompt order.

    ``cached[i]`` tells whether prompt ``i`` was answered without a provider call of its
    own (a cache hit, or a concurrent identical request's answer); ``llm_output`` holds the
    provider's token usage for the calls that were made.
    """

    generations: list[list[Generation]]
    cached: list[bool] = field(default_factory=list)
    llm_output: dict[str, Any] | None = None

    @property
    def texts(self) -> list[str]:
        """The first generation's text of each prompt."""
        return [gens[0].text if gens else "" for gens in self.generations]


def encode_generations(generations: Sequence[Generation]) -> str:
    """Serialise generations to compact JSON (the value every store keeps)."""
    return json.dumps(
        {"v": CODEC_VERSION, "g": [g.to_dict() for g in generations]},
        separators=(",", ":"),
        ensure_ascii=False,
    )


_scan_once = getattr(json.JSONDecoder(), "scan_once", None)


def loads_stored(raw: str | bytes) -> Any:
    """``json.loads(raw)``, a few µs sooner for the values llm-cache writes.

    json.loads detects the encoding and strips surrounding whitespace (two regex calls)
    before it scans. Our values are UTF-8 with no surrounding whitespace, so scan them
    directly; any other input (whitespace, a BOM, extra data, invalid JSON) goes to
    json.loads itself, so the result, or the error, is always exactly json.loads's.
    Raises :class:`CorruptEntryError` for anything that is not JSON.
    """
    try:
        if _scan_once is not None:
            try:
                text = raw.decode("utf-8", "surrogatepass") if isinstance(raw, bytes) else raw
                data, end = _scan_once(text, 0)
                if end == len(text):
                    return data
            except (StopIteration, ValueError):  # UnicodeDecodeError, JSONDecodeError included
                pass
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptEntryError(f"stored value is not valid JSON: {exc}") from exc


def generations_from_payload(data: Any) -> list[Generation]:
    """The generations of an already parsed stored value (``{"v": 1, "g": [...], ...}``)."""
    if not isinstance(data, dict) or data.get("v") != CODEC_VERSION:
        raise CorruptEntryError("stored value has an unknown format version")
    items = data.get("g")
    if not isinstance(items, list) or not items:
        raise CorruptEntryError("stored value holds no generations")
    return [Generation.from_dict(item) for item in items]


def decode_generations(raw: str | bytes) -> list[Generation]:
    """Parse a stored value; raise :class:`CorruptEntryError` if it is not one of ours."""
    return generations_from_payload(loads_stored(raw))
