"""Server-sent events: parse an upstream stream, and replay a cached response as one.

No I/O here. :class:`SSEParser` splits a byte stream into the ``data:`` payloads of its
events; :func:`replay_sse` serialises the chunks of :func:`llm_cache.streaming.replay_chunks`
as the event stream an OpenAI client expects, ``data: [DONE]`` last. Assembling a stream
into the full response is :class:`llm_cache.streaming.StreamAssembler` (re-exported here).
"""

from __future__ import annotations

import json
from typing import Any

from ..streaming import StreamAssembler, replay_chunks, split_pieces

__all__ = [
    "DONE_EVENT",
    "SSEParser",
    "StreamAssembler",
    "format_event",
    "replay_sse",
    "split_pieces",
]

DONE_EVENT = b"data: [DONE]\n\n"


def format_event(data: str | bytes) -> bytes:
    """One SSE event carrying ``data`` (a JSON text)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return b"data: " + data + b"\n\n"


class SSEParser:
    """Incremental parser: feed bytes, get the ``data`` payload of each complete event.

    Multi-line data is joined with ``\\n`` as the SSE spec says; comments and other fields
    (``event:``, ``id:``, ``retry:``) are ignored, since OpenAI-style streams carry
    everything in ``data``.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        events: list[str] = []
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
                    events.append(b"\n".join(self._data).decode("utf-8"))
                    self._data = []
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)

    def close(self) -> list[str]:
        """Flush an event left without its blank line at the end of the stream."""
        events = self.feed(b"\n\n") if self._buffer or self._data else []
        return events


def replay_sse(endpoint: str, body: dict[str, Any], include_usage: bool) -> bytes:
    """The whole SSE stream replaying ``body`` (a chat or text completion), ``[DONE]`` included.

    Built in one piece: a replay has nothing to wait for, so it is sent as one body.
    """
    dumps = json.dumps
    out = [
        b"data: " + dumps(chunk, ensure_ascii=False).encode("utf-8") + b"\n\n"
        for chunk in replay_chunks(endpoint, body, include_usage)
    ]
    out.append(DONE_EVENT)
    return b"".join(out)
