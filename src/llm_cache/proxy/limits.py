"""The proxy's limits against hostile or broken clients, with their defaults (no I/O).

One :class:`ProxyLimits` configures both layers:

* the app (:func:`~llm_cache.proxy.create_app`): request body size, concurrent upstream
  calls, the size of a response that is stored;
* the HTTP server (:mod:`._guard`, a uvicorn protocol): header size, header-read, idle
  keep-alive and body timeouts, concurrent connections.

``llm-cache serve`` exposes every field as a flag; docs/proxy.md lists what a client sees
when one is exceeded. The defaults are meant for a proxy on a private network in front of
OpenAI: generous for real requests (a chat request with a few base64 images fits in the
body limit), tight enough that idle or slow clients cannot hold the server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..errors import ConfigurationError

__all__ = ["ProxyLimits"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class ProxyLimits:
    """Limits of one proxy (see docs/proxy.md for what a client sees past each)."""

    #: Largest request body in bytes (413 past it, checked while reading, chunked included).
    max_body_bytes: int = 16 * MiB
    #: Largest request line + headers in bytes (431 past it).
    max_header_bytes: int = 32 * 1024
    #: Seconds from a request's first byte to the end of its headers (408 past it).
    header_timeout: float = 10.0
    #: Seconds an open connection may sit without a request (closed after it).
    idle_timeout: float = 5.0
    #: Seconds from the end of the headers to the end of the body (408 past it).
    body_timeout: float = 60.0
    #: Open client connections; the next one is answered 503 with Retry-After and closed.
    max_connections: int = 512
    #: Upstream calls at once (misses, pass-throughs); past it 503 with Retry-After.
    max_upstream: int = 256
    #: Largest upstream answer that is stored; larger ones are passed through unstored.
    max_stored_bytes: int = 8 * MiB
    #: Seconds a client is told to wait (``Retry-After``) when a cap is reached.
    retry_after: int = 1

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigurationError(f"limit {field.name} must be a number, not {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigurationError(f"limit {field.name} must be positive, not {value!r}")
