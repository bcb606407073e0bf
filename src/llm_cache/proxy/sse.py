"""Server-sent events: parse an upstream stream, and replay a cached response as one.

No I/O here. :class:`SSEParser` splits a byte stream into the ``data:`` payloads of its
events (and their names); :func:`replay_sse` serialises a protocol's replayed events
(:meth:`~llm_cache.protocols.base.WireProtocol.replay`) as the event stream its clients
expect. Assembling a stream into the full response is the protocol's assembler
(:class:`llm_cache.streaming.StreamAssembler` for chat and completions, re-exported here).
"""

from __future__ import annotations

from typing import Any

from ..streaming import StreamAssembler, split_pieces
from ._protocols import format_named, render_events

__all__ = [
    "DONE_EVENT",
    "SSEParser",
    "StreamAssembler",
    "format_event",
    "replay_sse",
    "split_pieces",
]

DONE_EVENT = b"data: [DONE]\n\n"


def format_event(data: str | bytes, name: str | None = None) -> bytes:
    """One SSE event carrying ``data`` (a JSON text), named when ``name`` is given."""
    return format_named(name, data)


class SSEParser:
    """Incremental parser: feed bytes, get the ``data`` payload of each complete event.

    Multi-line data is joined with ``\\n`` as the SSE spec says; comments and the ``id:``
    and ``retry:`` fields are ignored. OpenAI chat streams carry everything in ``data``;
    the Responses API and Anthropic also name each event (``event:``), which the parser
    reports when made with ``named=True``: :meth:`feed` then gives ``(name, data)`` pairs
    (the name ``None`` for an unnamed event).
    """

    def __init__(self, named: bool = False) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._named = named
        self._name: str | None = None

    def feed(self, chunk: bytes) -> list[Any]:
        self._buffer += chunk
        events: list[Any] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return events
            line = self._buffer[:newline]
            self._buffer = self._buffer[newline + 1 :]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    data = b"\n".join(self._data).decode("utf-8")
                    events.append((self._name, data) if self._named else data)
                    self._data = []
                self._name = None
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            elif self._named and line.startswith(b"event:"):
                self._name = line[6:].strip().decode("utf-8") or None

    def close(self) -> list[Any]:
        """Flush an event left without its blank line at the end of the stream."""
        events = self.feed(b"\n\n") if self._buffer or self._data else []
        return events


def replay_sse(endpoint: str, body: dict[str, Any], include_usage: bool = False) -> bytes:
    """The whole SSE stream replaying ``body`` in ``endpoint``'s protocol (``[DONE]`` last
    for chat and text completions; a usage chunk when ``include_usage``).

    Built in one piece: a replay has nothing to wait for, so it is sent as one body.
    """
    request = {"stream_options": {"include_usage": True}} if include_usage else {}
    return render_events(endpoint, body, request)
