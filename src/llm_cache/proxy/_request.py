"""Request parsing and keying: the tenant partition and the cache key of a request body.

Both are pure functions of their inputs, memoised (bounded LRU) because repeats are the
hot path of a cache; see :class:`_RequestParsing`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._http import Refusal
from ._state import _ProxyState
from .keys import RequestKey, api_key_of, key_namespace, request_key, valid_namespace

# Memo limits: the parse memo only keeps small bodies, so it stays within a few MB.
_PARSE_MEMO_ENTRIES = 2048
_PARSE_MEMO_MAX_BODY = 16 * 1024
_NAMESPACE_MEMO_ENTRIES = 1024


@dataclass(slots=True)
class _Parsed:
    """A request body as the cache sees it (memoised by raw bytes: repeats are the hot path)."""

    body: dict[str, Any]
    key: RequestKey | None
    stream: bool
    include_usage: bool
    semantic: bool  # may be matched by meaning: chat, or a completion with one string prompt


class _RequestParsing(_ProxyState):
    """Mixin of :class:`~.app.CachingProxy`: who is asking, and for what."""

    def tenant(self, headers: Mapping[str, str]) -> str:
        """The tenant partition of a request to any ``/v1`` endpoint, cached or not.

        The one place where the caller is checked: its API key (printable ASCII, and one of
        the proxy's client keys when it has them) and the namespace header. Raises
        :class:`~._http.Refusal` (401 or 400) for a request that may not go further.

        The key check is a pure function of the credential headers, so a credential that
        passed it is remembered with its tenant (the bounded memo that already held the
        tenant per credential; a refused one is never remembered and is checked again on
        every request, in full). The memo is keyed by the whole credential, so only a
        caller who presents an admitted key finds it there; any other key gets the full,
        constant-time client-key check.
        """
        credential = (
            headers.get("authorization"),
            headers.get("api-key"),
            headers.get("x-api-key"),
        )
        key_tenant = self._namespace_memo.get_recent(credential)
        if key_tenant is None:
            key_tenant = self._admit(headers)
            self._namespace_memo.put(credential, key_tenant)
        named = headers.get(self.namespace_header)
        if named is not None and not valid_namespace(named):
            raise Refusal(
                400,
                f"the {self.namespace_header} header must be 1-128 printable ASCII characters without spaces",
                "invalid_namespace",
            )
        if self.share_across_keys:
            return "shared" if named is None else "n:" + named
        return key_tenant if named is None else key_tenant + "/n:" + named

    def _admit(self, headers: Mapping[str, str]) -> str:
        """Check the caller's API key (see :meth:`tenant`); its tenant id if it passes."""
        key = api_key_of(headers)
        if key is not None and not _printable(key):
            raise Refusal(
                401,
                "the API key must be printable ASCII (Authorization: Bearer <key>, api-key or x-api-key)",
                "invalid_api_key",
            )
        if self.client_keys is not None and not self.client_keys.verify(key):
            raise Refusal(
                401,
                "this proxy needs one of its own client keys as the API key "
                "(Authorization: Bearer <key>, or x-api-key); ask its operator for one",
                "invalid_api_key",
            )
        return key_namespace(key)

    def namespace(self, headers: Mapping[str, str]) -> str | None:
        """The tenant partition of a request, ``None`` if the namespace header is invalid.

        Does not check the API key: only :meth:`tenant` admits a request (and only it fills
        the memo that lets a key skip the check).
        """
        named = headers.get(self.namespace_header)
        if named is not None and not valid_namespace(named):
            return None
        parts = [] if self.share_across_keys else [key_namespace(api_key_of(headers))]
        if named is not None:
            parts.append("n:" + named)
        return "/".join(parts) if parts else "shared"

    def _parse(self, endpoint: str, raw: bytes, namespace: str) -> _Parsed:
        """The body and cache key of a request (``key`` ``None``: valid JSON, not cacheable).

        Raises :class:`~._http.Refusal` (400) for what no upstream should be asked and no
        store could hold: a body that is not a JSON object, nesting too deep for the
        parser, text with unpaired surrogates (``"\\ud800"``), a ``stream_options`` that
        is not an object.
        """
        memo_key = (endpoint, namespace, raw)
        memoise = len(raw) <= _PARSE_MEMO_MAX_BODY
        if memoise:
            parsed = self._parse_memo.get_recent(memo_key)
            if parsed is not None:
                return parsed  # type: ignore[no-any-return]
        try:
            body = json.loads(raw)
        except RecursionError:
            raise _bad_body("the request body is nested too deeply") from None
        except (ValueError, UnicodeDecodeError):
            raise _bad_body("the request body is not valid JSON (UTF-8)") from None
        if not isinstance(body, dict):
            raise _bad_body("the request body must be a JSON object")
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise Refusal(
                400, "stream_options must be an object", "invalid_value", param="stream_options"
            )
        try:
            key = request_key(endpoint, body, namespace)
        except RecursionError:
            raise _bad_body("the request body is nested too deeply") from None
        except (ValueError, TypeError):
            key = None  # e.g. NaN or a malformed message: let the upstream judge it
        if key is not None and not (_encodable(key.prompt) and _encodable(key.llm_string)):
            # A store cannot hold it (SQLite, Redis and PostgreSQL all reject it), and a
            # failed write would count against the store's breaker for every client.
            raise _bad_body(
                "the request holds text with an unpaired UTF-16 surrogate (such as \\ud800), "
                "which is not valid Unicode; send valid UTF-8 text"
            )
        stream = body.get("stream") is True and endpoint != "embeddings"
        include_usage = (
            stream and isinstance(options, dict) and options.get("include_usage") is True
        )
        semantic = key is not None and key.semantic
        parsed = _Parsed(body, key, stream, include_usage, semantic)
        if memoise:
            self._parse_memo.put(memo_key, parsed)  # shared: never mutate parsed.body
        return parsed


def _bad_body(message: str) -> Refusal:
    return Refusal(400, message, "invalid_request_body")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(value: str) -> bool:
    return value.isascii() and value.isprintable()
