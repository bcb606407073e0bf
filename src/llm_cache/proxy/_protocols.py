"""The proxy's side of the protocol layer: which path speaks which protocol, and the
per-protocol bits of HTTP (error bodies, SSE framing, replays). No I/O.

Everything about a wire API itself (keys, stored entries, stream assembly and replay,
usage) is :mod:`llm_cache.protocols`'s; this module only frames it for HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..protocols import PROTOCOLS
from ..protocols.anthropic_messages import anthropic_error
from ..protocols.base import WireProtocol

__all__ = [
    "ANTHROPIC",
    "ENDPOINTS",
    "NAMED_EVENTS",
    "error_for",
    "error_protocol",
    "layer_namespace",
    "protocol_of",
    "render_events",
    "stream_error",
]

#: Cacheable endpoints: path after ``/v1`` -> protocol name (used in keys and metrics).
ENDPOINTS: dict[str, str] = {
    "/chat/completions": "chat.completions",
    "/completions": "completions",
    "/embeddings": "embeddings",
    "/responses": "responses",
    "/messages": "anthropic.messages",
}

ANTHROPIC = "anthropic.messages"
#: Protocols whose events carry an SSE ``event:`` name, and no ``data: [DONE]`` at the end.
NAMED_EVENTS = frozenset({"responses", ANTHROPIC})
#: Protocols whose streamed requests may carry OpenAI's ``stream_options.include_usage``.
USAGE_CHUNK = frozenset({"chat.completions", "completions"})

_DONE_EVENT = b"data: [DONE]\n\n"


def protocol_of(endpoint: str) -> WireProtocol:
    """The protocol of a cached endpoint."""
    return PROTOCOLS[endpoint]


def layer_namespace(namespace: str) -> str | None:
    """The protocol layer's namespace for a proxy partition.

    ``"shared"`` (shared across keys, no namespace header) is no namespace at all, and
    ``"n:<name>"`` (shared, with a namespace header) is ``<name>``: the namespace an SDK
    wrapper is given (``cached_client(..., namespace="<name>")``), so that the proxy and
    the wrappers meet at one entry. Partitions of one API key (``k<hash>...``) stay as they are.
    """
    if namespace == "shared":
        return None
    if namespace.startswith("n:"):
        return namespace[2:]
    return namespace


def error_protocol(path: str) -> str:
    """The protocol whose error body the proxy's own errors on ``path`` (after ``/v1``) take:
    Anthropic's for the Messages API and everything under it (``/messages/count_tokens``,
    ``/messages/batches``, ...), whether cached or passed through; else OpenAI's."""
    return ANTHROPIC if path == "/messages" or path.startswith("/messages/") else "openai"


def error_for(endpoint: str, status: int, message: str, code: str, type_: str = "upstream_error") -> dict[str, Any]:
    """The proxy's own error body in the protocol of ``endpoint`` (a cached endpoint, or
    :func:`error_protocol` of a path): Anthropic's, or OpenAI's."""
    if endpoint == ANTHROPIC:
        return anthropic_error(status, message)
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def format_named(name: str | None, data: str | bytes) -> bytes:
    """One SSE event, with its ``event:`` line when it has a name."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if name is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + name.encode("utf-8") + b"\ndata: " + data + b"\n\n"


def stream_error(endpoint: str, body: dict[str, Any]) -> bytes:
    """A failure reported inside an already started stream."""
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    if endpoint == ANTHROPIC:
        return format_named("error", data)
    if endpoint == "responses":
        raw = body.get("error")
        error: dict[str, Any] = raw if isinstance(raw, dict) else {}
        event = {"type": "error", "code": error.get("code"), "message": error.get("message"), "param": None, "sequence_number": 0}
        return format_named("error", json.dumps(event, ensure_ascii=False, separators=(",", ":")))
    return format_named(None, data)


def render_events(endpoint: str, response: dict[str, Any], request: Mapping[str, Any]) -> bytes:
    """The whole SSE stream replaying ``response`` (``data: [DONE]`` last for OpenAI chat
    and completions). Built in one piece: a replay has nothing to wait for."""
    dumps = json.dumps
    out = [
        format_named(name, dumps(data, ensure_ascii=False, separators=(",", ":")))
        for name, data in protocol_of(endpoint).replay(response, request)
    ]
    if endpoint not in NAMED_EVENTS:
        out.append(_DONE_EVENT)
    return b"".join(out)
