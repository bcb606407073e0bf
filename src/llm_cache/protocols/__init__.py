"""The wire protocols llm-cache speaks, one module per API, none doing I/O.

============================  ==============================  ==========================
protocol                      module                          path
============================  ==============================  ==========================
``chat.completions``          :mod:`.openai_chat`             ``POST /v1/chat/completions``
``completions``               :mod:`.openai_completions`      ``POST /v1/completions``
``embeddings``                :mod:`.openai_embeddings`       ``POST /v1/embeddings``
``responses``                 :mod:`.openai_responses`        ``POST /v1/responses``
``anthropic.messages``        :mod:`.anthropic_messages`      ``POST /v1/messages``
============================  ==============================  ==========================

Each is a :class:`~.base.WireProtocol`: request -> cache identity, response <-> stored
entry, stream events <-> response, usage, error body. The proxy, the SDK wrappers and the
models are shells that do the I/O, so one request meets one key whichever way it comes.
"""

from __future__ import annotations

from .anthropic_messages import MESSAGES
from .base import Event, RequestIdentity, StreamAssembler, Uncacheable, Usage, WireProtocol, entry_created_at
from .openai_chat import CHAT
from .openai_completions import COMPLETIONS
from .openai_embeddings import EMBEDDINGS
from .openai_responses import RESPONSES

__all__ = [
    "CHAT",
    "COMPLETIONS",
    "EMBEDDINGS",
    "MESSAGES",
    "PROTOCOLS",
    "RESPONSES",
    "Event",
    "RequestIdentity",
    "StreamAssembler",
    "Uncacheable",
    "Usage",
    "WireProtocol",
    "entry_created_at",
]

#: Every protocol by name.
PROTOCOLS: dict[str, WireProtocol] = {p.name: p for p in (CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES, MESSAGES)}
