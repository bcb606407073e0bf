"""What identifies a proxied request in the cache, and the per-request cache controls.

No I/O here. The key is the protocol layer's (:mod:`llm_cache.protocols`), the same an
SDK wrapper computes for the same request, so entries are shared between them:

* ``prompt``: for chat and Anthropic Messages the canonical messages, for completions and
  embeddings the prompt/input string (a list as canonical JSON), for the Responses API
  the input items;
* ``llm_string``: :func:`~llm_cache.keys.make_llm_string` of ``provider``, ``api``, the
  namespace and every other request field except those that never change an answer
  (``stream``, ``stream_options``, ``user``, ``metadata``, Anthropic ``cache_control``
  markers...), so a streamed and a non-streamed request share one entry; everything
  else (``model``, ``temperature``, ``tools``, unknown fields...) is part of the key,
  because a field we do not know may change the answer.
* the namespace isolates tenants. By default it starts with a hash of the client's API
  key (``sha256``, never the key itself; ``Authorization``, ``api-key`` or Anthropic's
  ``x-api-key``), so two keys never see each other's entries; ``share_across_keys`` drops
  that part. A namespace request header adds a caller-chosen partition on top
  (:func:`~._protocols.layer_namespace` says how it meets an SDK wrapper's ``namespace``).
  A body field can never change it (:mod:`llm_cache.protocols.base` escapes such names).

Putting the namespace inside the llm_string (rather than opening one cache object per
tenant) works the same for every backend, the semantic cache included (it partitions on
the llm_string), and costs one cache connection pool whatever the number of keys.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..protocols.base import RequestIdentity
from ._protocols import ENDPOINTS, layer_namespace, protocol_of

__all__ = [
    "ENDPOINTS",
    "CacheDirectives",
    "RequestKey",
    "api_key_of",
    "key_namespace",
    "parse_cache_control",
    "request_key",
    "valid_namespace",
]

_MAX_NAMESPACE = 128
_NAMESPACE_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


@dataclass(frozen=True, slots=True)
class RequestKey:
    """The cache identity of one request."""

    endpoint: str
    prompt: str
    llm_string: str
    semantic: bool = False  # may be matched by meaning (see RequestIdentity)

    @property
    def flight_key(self) -> tuple[str, str]:
        """Key of the in-flight map (the namespace is inside ``llm_string``)."""
        return (self.prompt, self.llm_string)


@dataclass(frozen=True, slots=True)
class CacheDirectives:
    """What the client's ``Cache-Control`` asks for.

    * ``no_store``: neither look up nor store (the response says ``X-Cache: BYPASS``);
    * ``no_cache``: do not answer from the cache, call upstream and store the answer;
    * ``max_age``: accept a cached entry only if it is at most this many seconds old;
    * ``only_if_cached``: answer from the cache or fail with 504, never call upstream.
    """

    no_store: bool = False
    no_cache: bool = False
    max_age: float | None = None
    only_if_cached: bool = False


_DEFAULT_DIRECTIVES = CacheDirectives()
_MAX_DELTA_SECONDS = 2**31


def parse_cache_control(value: str | None) -> CacheDirectives:
    """Parse a request ``Cache-Control`` header; unknown or malformed directives are ignored."""
    if not value:
        return _DEFAULT_DIRECTIVES
    no_store = no_cache = only_if_cached = False
    max_age: float | None = None
    for part in value.split(","):
        name, _, arg = part.strip().partition("=")
        name = name.strip().lower()
        if name == "no-store":
            no_store = True
        elif name == "no-cache":
            no_cache = True
        elif name == "only-if-cached":
            only_if_cached = True
        elif name == "max-age":
            digits = arg.strip().strip('"')
            if not (digits.isascii() and digits.isdigit()):
                continue  # RFC 9111: an invalid max-age is ignored, not an error
            # RFC 9111 1.2.2: a delta-seconds too large to represent counts as 2**31 (and
            # 400 digits would overflow a float).
            seconds = (
                _MAX_DELTA_SECONDS if len(digits) > 10 else min(int(digits), _MAX_DELTA_SECONDS)
            )
            max_age = float(seconds) if max_age is None else min(max_age, float(seconds))
    if max_age == 0:
        no_cache = True  # max-age=0 accepts nothing cached: a refresh
    return CacheDirectives(
        no_store=no_store, no_cache=no_cache, max_age=max_age, only_if_cached=only_if_cached
    )


def api_key_of(headers: Mapping[str, str]) -> str | None:
    """The client's API key: ``Authorization: Bearer``, or Azure's ``api-key`` header."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return auth.strip() or None
    return headers.get("api-key") or headers.get("x-api-key") or None


def key_namespace(api_key: str | None) -> str:
    """A stable, non-reversible tenant id for an API key (128 bits of sha256)."""
    if api_key is None:
        return "anon"
    digest = hashlib.sha256(b"llm-cache-proxy-key\x00" + api_key.encode("utf-8", "surrogatepass"))
    return "k" + digest.hexdigest()[:32]


def valid_namespace(value: str) -> bool:
    """Whether a namespace header value is acceptable (printable ASCII, at most 128 chars)."""
    return 0 < len(value) <= _MAX_NAMESPACE and _NAMESPACE_RE.match(value) is not None


def request_key(endpoint: str, body: Mapping[str, Any], namespace: str) -> RequestKey | None:
    """The cache key of a parsed request body, or ``None`` if it cannot be cached.

    ``None`` (the request is passed through uncached) when the protocol finds nothing to
    key (a missing or malformed prompt field, a value with no canonical JSON form such as
    NaN, a Responses ``background`` request...); the upstream then judges the request.
    """
    identity = protocol_of(endpoint).identify(body, layer_namespace(namespace))
    if not isinstance(identity, RequestIdentity):
        return None
    return RequestKey(endpoint, identity.prompt, identity.llm_string, identity.semantic)
