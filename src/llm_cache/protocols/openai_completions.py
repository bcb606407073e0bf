"""OpenAI (legacy) completions (``POST /v1/completions``) as a protocol (no I/O).

Identity: the prompt is the ``prompt`` string; a list of prompts is its canonical JSON
with ``"batch": true`` in the llm_string (one entry for the whole list, never matched by
meaning). Every other field but :data:`~._openai_common.OPENAI_NOT_KEYED` is keyed.
Entries, streams and usage: :mod:`._choices`.
"""

from __future__ import annotations

from typing import Any

from ._choices import ChoicesProtocol

__all__ = ["COMPLETIONS", "merge_prompt_responses"]

COMPLETIONS = ChoicesProtocol(
    name="completions", prompt_field="prompt", object_name="text_completion", id_prefix="cmpl-"
)


def merge_prompt_responses(responses: list[dict[str, Any]]) -> dict[str, Any]:
    """One completions response for a list of prompts, from one response per prompt (in
    prompt order): what OpenAI answers to the list, for servers that take one prompt per
    request (llama.cpp).

    Choices are numbered prompt-major as OpenAI numbers them (prompt ``i``'s choices come
    after those of the prompts before it); the envelope (id, created, model, ...) is the
    first response's; usage counts are summed when every response has them.
    """
    if not responses:
        raise ValueError("no responses to merge")
    merged = {k: v for k, v in responses[0].items() if k not in ("choices", "usage")}
    choices: list[Any] = []
    for response in responses:
        own = response.get("choices")
        if not isinstance(own, list):
            raise ValueError("a response without choices")
        ordered = sorted(own, key=lambda c: c.get("index", 0) if isinstance(c, dict) and isinstance(c.get("index"), int) else 0)
        for choice in ordered:
            choices.append({**choice, "index": len(choices)} if isinstance(choice, dict) else choice)
    merged["choices"] = choices
    usages = [r.get("usage") for r in responses]
    if all(isinstance(u, dict) for u in usages):
        total: dict[str, int] = {}
        for usage in usages:
            for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
                value = usage.get(name)  # type: ignore[union-attr]
                if isinstance(value, int) and not isinstance(value, bool):
                    total[name] = total.get(name, 0) + value
        merged["usage"] = total
    return merged
