"""The cache key: canonical llm_string and prompt, and their versioned hash.

This module is the only place that decides what identifies a cached call; backends
never invent their own keys. It does no I/O, so sync and async paths share it.

* ``llm_string``: canonical JSON (sorted keys, no whitespace) of everything that can
  change the output: provider, model, sampling parameters, tools, and every call-time
  keyword argument. Secrets and transport settings (API keys, timeouts, retries) are
  dropped here, so they can never reach a key, a log or a stored value.
* ``prompt``: the text for completion models; canonical JSON of the messages for chat.
* ``cache_key``: sha256 of a versioned, length-prefixed form of both. Stores keep the
  full prompt and llm_string beside it and compare them on every hit, so a collision
  is a miss, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping, Sequence

from .errors import ConfigurationError

__all__ = [
    "KEY_VERSION",
    "NON_OUTPUT_PARAMS",
    "canonical_json",
    "make_llm_string",
    "canonical_messages",
    "messages_prompt",
    "cache_key",
    "cache_key_hex",
]

KEY_VERSION = "llmc1"

# Parameters that never change what the model answers. Anything not listed here is kept,
# because a parameter we don't know about may well change the output (a wrong hit is far
# worse than a miss).
NON_OUTPUT_PARAMS = frozenset(
    {
        "api_key",
        "openai_api_key",
        "organization",
        "openai_organization",
        "project",
        "base_url",
        "api_base",
        "openai_api_base",
        "timeout",
        "request_timeout",
        "max_retries",
        "default_headers",
        "default_query",
        "extra_headers",
        "http_client",
        "stream",
        "stream_options",
        "cache",
        "callbacks",
        "user",
    }
)


def _reject_non_json(value: Any) -> Any:
    raise ConfigurationError(
        f"cannot build a cache key from a value of type {type(value).__name__}: "
        "pass JSON-compatible parameters (str, int, float, bool, None, list, dict)"
    )


def canonical_json(value: Any) -> str:
    """Serialise ``value`` deterministically: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_reject_non_json,
    )


def _normalise_params(params: Mapping[str, Any]) -> dict[str, Any]:
    # ``None`` means "the provider's default" whether passed or omitted, so both spellings
    # give one key. Tuples become lists through json.
    return {
        key: value
        for key, value in params.items()
        if value is not None and key not in NON_OUTPUT_PARAMS
    }


def make_llm_string(params: Mapping[str, Any], call_kwargs: Mapping[str, Any] | None = None) -> str:
    """Canonical JSON of a model's output-changing parameters plus call-time kwargs.

    Call-time kwargs override the model's own parameters of the same name, as they do
    in the request that is sent.
    """
    merged = dict(params)
    if call_kwargs:
        merged.update(call_kwargs)
    return canonical_json(_normalise_params(merged))


def canonical_messages(messages: Iterable[Any]) -> list[dict[str, Any]]:
    """Chat messages as plain dicts, from dicts or ``(role, content)`` pairs.

    Keys whose value is ``None`` are dropped so that ``{"name": None}`` and a missing
    name produce the same prompt.
    """
    result: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, Mapping):
            item = {k: v for k, v in message.items() if v is not None}
        elif isinstance(message, Sequence) and not isinstance(message, str) and len(message) == 2:
            item = {"role": message[0], "content": message[1]}
        else:
            raise ConfigurationError(
                "a chat message must be a dict like {'role': 'user', 'content': '...'} "
                f"or a (role, content) pair, not {message!r:.80}"
            )
        if not isinstance(item.get("role"), str):
            raise ConfigurationError(f"chat message without a string 'role': {message!r:.80}")
        result.append(item)
    if not result:
        raise ConfigurationError("a chat prompt needs at least one message")
    return result


def messages_prompt(messages: Iterable[Any]) -> str:
    """The prompt string under which a chat conversation is cached."""
    return canonical_json(canonical_messages(messages))


def cache_key(prompt: str, llm_string: str) -> bytes:
    """The 32-byte sha256 key of a (prompt, llm_string) pair.

    The prompt's length is part of the hashed text so that no two different pairs can
    concatenate to the same bytes.
    """
    text = f"{KEY_VERSION}:{len(prompt)}:{prompt}\x00{llm_string}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def cache_key_hex(prompt: str, llm_string: str) -> str:
    """:func:`cache_key` as 64 hex characters, for stores whose keys are text."""
    return cache_key(prompt, llm_string).hex()
