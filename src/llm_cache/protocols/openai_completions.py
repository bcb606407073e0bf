"""OpenAI (legacy) completions (``POST /v1/completions``) as a protocol (no I/O).

Identity: the prompt is the ``prompt`` string; a list of prompts is its canonical JSON
with ``"batch": true`` in the llm_string (one entry for the whole list, never matched by
meaning). Every other field but :data:`~._openai_common.OPENAI_NOT_KEYED` is keyed.
Entries, streams and usage: :mod:`._choices`.
"""

from __future__ import annotations

from ._choices import ChoicesProtocol

__all__ = ["COMPLETIONS"]

COMPLETIONS = ChoicesProtocol(
    name="completions", prompt_field="prompt", object_name="text_completion", id_prefix="cmpl-"
)
