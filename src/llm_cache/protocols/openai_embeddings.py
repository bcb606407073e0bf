"""OpenAI embeddings (``POST /v1/embeddings``) as a protocol (no I/O).

Identity: the prompt is the ``input`` string, or the canonical JSON of a list input with
``"batch": true`` in the llm_string; every other field (``model``, ``dimensions``,
``encoding_format``, ...) but ``user`` is keyed. Never matched by meaning.

Entry: one Generation with empty ``text`` whose ``generation_info["response"]`` is the
whole body (plus ``created_at``). Embeddings do not stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import CorruptEntryError
from ..generation import Generation
from ..keys import canonical_json
from ._openai_common import OPENAI_NOT_KEYED, openai_error, openai_usage
from .base import Event, RequestIdentity, Uncacheable, Usage, first_info, keyed_params, llm_string_of, stamp

__all__ = ["EMBEDDINGS", "EmbeddingsProtocol"]


@dataclass(frozen=True)
class EmbeddingsProtocol:
    """See the module docstring."""

    name: str = "embeddings"
    provider: str = "openai"

    def identify(self, body: Mapping[str, Any], namespace: str | None) -> RequestIdentity | Uncacheable:
        value = body.get("input")
        extra: dict[str, Any] = {}
        try:
            if isinstance(value, str):
                prompt = value
            elif isinstance(value, list) and value:
                prompt = canonical_json(value)
                extra["batch"] = True
            else:
                return Uncacheable("no usable 'input'")
            params = keyed_params(body, OPENAI_NOT_KEYED | {"input"})
            llm_string = llm_string_of(self.provider, self.name, namespace, params, **extra)
        except (ValueError, TypeError) as exc:
            return Uncacheable(str(exc))
        return RequestIdentity(self.name, prompt, llm_string, False)

    def to_entry(self, response: dict[str, Any], created_at: float | None = None) -> list[Generation]:
        if not isinstance(response.get("data"), list):
            raise ValueError("an embeddings response without data")
        return [Generation(text="", generation_info=stamp({"response": response}, created_at))]

    def from_entry(self, generations: list[Generation], request: Mapping[str, Any]) -> dict[str, Any]:
        body = first_info(generations).get("response")
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise CorruptEntryError("stored embeddings entry without its response")
        return body

    def assembler(self, request: Mapping[str, Any] | None = None) -> Any:
        raise ValueError("embeddings do not stream")

    def replay(self, response: dict[str, Any], request: Mapping[str, Any]) -> list[Event]:
        raise ValueError("embeddings do not stream")

    def usage(self, response: Mapping[str, Any]) -> Usage:
        return openai_usage(response)

    def error(self, status: int, message: str, kind: str | None = None) -> dict[str, Any]:
        return openai_error(status, message, kind)


EMBEDDINGS = EmbeddingsProtocol()
