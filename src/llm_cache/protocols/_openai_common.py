"""What the OpenAI APIs share: the fields never keyed, the error body, usage (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Usage, int_field

#: Request fields of the OpenAI APIs that never change the answer (on top of
#: :data:`llm_cache.keys.NON_OUTPUT_PARAMS`, which already drops ``stream``,
#: ``stream_options``, ``user``, API keys and transport settings). ``metadata`` and
#: ``safety_identifier`` label a request for the account's dashboards; ``prompt_cache_*``
#: route the provider's own prompt cache; ``store`` (chat completions) keeps a copy for
#: the dashboard. Anything not listed is keyed: a field we do not know may change the answer.
OPENAI_NOT_KEYED = frozenset(
    {
        "stream",
        "stream_options",
        "timeout",
        "extra_headers",
        "user",
        "metadata",
        "store",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
    }
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout",
}


def openai_error(status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``, the body the ``openai`` SDK reads."""
    error_type = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": error_type, "param": None, "code": kind}}


def openai_usage(response: Mapping[str, Any]) -> Usage:
    """Usage of a chat/completions/embeddings (``prompt_tokens``) or Responses (``input_tokens``) body."""
    usage = response.get("usage")
    if not isinstance(usage, Mapping):
        return Usage(model=_model(response))
    if "input_tokens" in usage:
        details = usage.get("input_tokens_details")
        return Usage(
            input_tokens=int_field(usage, "input_tokens"),
            output_tokens=int_field(usage, "output_tokens"),
            cache_read_input_tokens=int_field(details, "cached_tokens"),
            model=_model(response),
        )
    details = usage.get("prompt_tokens_details")
    return Usage(
        input_tokens=int_field(usage, "prompt_tokens"),
        output_tokens=int_field(usage, "completion_tokens"),
        cache_read_input_tokens=int_field(details, "cached_tokens"),
        model=_model(response),
    )


def _model(response: Mapping[str, Any]) -> str | None:
    model = response.get("model")
    return model if isinstance(model, str) else None
