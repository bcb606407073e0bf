"""Cache the official ``openai`` SDK client: ``cached_client(openai.OpenAI(...))``.

::

    import openai
    from llm_cache import SQLiteCache
    from llm_cache.integrations.openai_client import cached_client

    client = cached_client(openai.OpenAI(), cache=SQLiteCache("llm_cache.db"))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])  # hit
    client.models.list()                       # anything else goes to the SDK unchanged

What is cached: ``chat.completions.create``, ``completions.create``, ``embeddings.create``
and ``responses.create`` (the Responses API), on ``openai.OpenAI`` and ``openai.AsyncOpenAI``
(and their subclasses such as the Azure clients). They return the SDK's own types
(``ChatCompletion``, ``Completion``, ``CreateEmbeddingResponse``, ``Response``), rebuilt
with ``model_validate`` from stored JSON. Everything else (``with_raw_response``,
``chat.completions.parse``, ``responses.retrieve``, ...) is the wrapped client's own
attribute, uncached.

The key and the stored shape are the protocol layer's (:mod:`llm_cache.protocols`), so a
request cached here and the same request through the caching proxy (same namespace) meet
at one entry, and a ``ChatOpenAI`` model with the same parameters shares chat entries:

* ``prompt``: the canonical JSON of ``messages``, the completion ``prompt``, the
  embeddings ``input`` (a list as canonical JSON with ``"batch": true`` in the
  llm_string), or the Responses ``input`` as items;
* ``llm_string``: every other request keyword (model, temperature, n, tools, seed, the
  fields of ``extra_body``, ...) plus ``provider``/``api`` and the wrapper's ``namespace``.
  Left out because they never change the answer: ``stream``, ``stream_options``,
  ``timeout``, ``extra_headers``, ``user``, ``metadata``, ``safety_identifier``, the
  ``prompt_cache_*`` hints, and ``store`` except for the Responses API. The base URL is
  not part of the key (as for the models): give each provider its own ``namespace`` or
  cache when they serve different models under one name. A request keyword that is not
  JSON makes that one call bypass the cache, with a warning, rather than fail; so does a
  Responses request with ``background=True`` or a ``conversation``.

Streaming (``stream=True``): a miss passes the SDK's chunks through as they arrive while
assembling the whole response, and stores it once the stream has been read to its end (a
stream abandoned or broken half-way is not stored). A hit, whether stored from a stream or
not, is replayed as an iterator (async iterator for ``AsyncOpenAI``) of the SDK's own
``ChatCompletionChunk`` / ``Completion`` chunks (per choice a role chunk, tool calls, the
text in word-sized pieces, and a final chunk with ``finish_reason`` and the stored
logprobs, then a usage chunk when ``stream_options={"include_usage": True}`` asked for one),
or of the Responses API's typed events (``response.created`` ...
``response.output_text.delta`` ... ``response.completed``).
Replays are :class:`CachedStream` / :class:`AsyncCachedStream`, not ``openai.Stream``:
they iterate, close and work as context managers the same way, but have no HTTP
``response``.

Concurrent identical non-streaming misses in one process make one provider call (the
coalescer the models use); streams are never coalesced, so that no stream waits for
another's last chunk before its first.

``cache``: ``None`` uses the global cache (:func:`llm_cache.set_llm_cache`) at each call,
``False`` never caches, ``True`` requires a global cache, a cache object is used directly:
the models' rules. A store failure is the cache's fail-open policy's business (a logged
miss); a stored value that cannot be rebuilt into the SDK's type is a miss, and the fresh
answer replaces it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from .._imports import require
from ..caches.base import BaseCache
from ..protocols import CHAT as _CHAT_PROTOCOL
from ..protocols import COMPLETIONS as _COMPLETIONS_PROTOCOL
from ..protocols import EMBEDDINGS as _EMBEDDINGS_PROTOCOL
from ..protocols import RESPONSES as _RESPONSES_PROTOCOL
from ..protocols.base import WireProtocol
from ._sdk import AsyncCachedStream, AsyncEndpoint, CachedClient, CachedStream, Passthrough, SDKApi, SyncEndpoint

__all__ = ["cached_client", "CachedOpenAI", "CachedStream", "AsyncCachedStream"]

logger = logging.getLogger("llm_cache")


# ----------------------------------------------------------------------------------------
# The SDK's types <-> the protocol layer's JSON
# ----------------------------------------------------------------------------------------
def _openai_type(dotted: str) -> Any:
    target = require("openai", "openai", "cached_client").types
    for part in dotted.split("."):
        target = getattr(target, part)
    return target


def _sdk_object(type_name: str, data: dict[str, Any]) -> Any:
    """The SDK's response object for stored JSON.

    ``model_validate`` first. A response the SDK itself accepted can still fail it, because
    the SDK builds responses without validation (``construct``) and OpenAI-compatible servers
    send values outside OpenAI's literals (a ``finish_reason`` of ``"abort"``, say); a stored
    response whose only faults are such values is then built the SDK's way, or it could
    never be a hit.
    """
    type_ = _openai_type(type_name)
    try:
        return type_.model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        errors_of = getattr(exc, "errors", None)
        errors = errors_of() if callable(errors_of) else None
        # Forgiven: a value outside a literal, a missing nested detail, and a base64 ``embedding`` string (typed as a
        # list of floats; the SDK keeps the string when the caller asked for base64). A wrong
        # type anywhere else or a missing field means it is not a response at all: a miss.
        if not errors or not all(_forgivable(e) for e in errors):
            raise
        logger.debug("llm-cache: stored %s does not validate, built as the SDK builds it: %s", type_name, exc)
        return type_.construct(**data)


def _forgivable(error: Mapping[str, Any]) -> bool:
    if error.get("type") in ("literal_error", "enum"):
        return True
    location = error.get("loc") or ()
    if error.get("type") == "missing" and len(location) > 2:
        # A detail the SDK's newer types require and the server did not send (e.g.
        # usage.input_tokens_details.cache_write_tokens): the SDK itself accepts it.
        return True
    return "embedding" in location and isinstance(error.get("input"), str)


def _dump(obj: Any) -> dict[str, Any]:
    dump = getattr(obj, "model_dump", None)
    if not callable(dump):
        raise TypeError(f"the SDK returned a {type(obj).__name__}, not a response model")
    # warnings=False: a base64 embedding is a str in a field typed list[float] (see _forgivable).
    return dump(mode="json", warnings=False)  # type: ignore[no-any-return]


def _dump_chat(obj: Any) -> dict[str, Any]:
    return _without_message_nulls(_dump(obj))


def _without_message_nulls(data: dict[str, Any]) -> dict[str, Any]:
    # The SDK's message model dumps every optional field as null: stored without them.
    for choice in data.get("choices") or ():
        if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
            choice["message"] = {k: v for k, v in choice["message"].items() if v is not None}
    return data


def answer_body(response: Any, choices: Sequence[Any], usage: Mapping[str, int] | None) -> dict[str, Any]:
    """The JSON body of an SDK chat or completions ``response`` narrowed to ``choices``
    (renumbered from 0), with ``usage`` as its usage (left out when ``None`` or empty).

    That is the answer to one prompt of a batched completions request, or to one
    conversation whose missing choices came in further requests (servers that ignore
    ``n``): the :mod:`llm_cache.llms` models store their answers in this form, so that
    their entries are the ones this wrapper and the proxy store for the same request.
    """
    body = response.model_dump(mode="json", warnings=False, exclude={"choices", "usage"})
    body["choices"] = [{**_dump(choice), "index": i} for i, choice in enumerate(choices)]
    if usage:
        own = getattr(response, "usage", None)
        own_usage = _dump(own) if own is not None else None
        # The response's own usage (with its details) when it is this answer's alone.
        same = own_usage is not None and all(own_usage.get(k) == v for k, v in usage.items())
        body["usage"] = own_usage if same else dict(usage)
    return _without_message_nulls(body)


def _dump_sent(obj: Any) -> dict[str, Any]:
    # What the server sent (the SDK constructs its objects from it): no nulls made up for
    # the dozens of optional fields of a Response.
    return obj.model_dump(mode="json", warnings=False, exclude_unset=True)  # type: ignore[no-any-return]


def _chunk_builder(type_name: str) -> Any:
    # Chunks are built the way the SDK builds those it parses from a stream (``construct``,
    # unvalidated: a streamed completion chunk's finish_reason is null, which the Completion
    # model's validation rejects).
    return lambda data: _openai_type(type_name).construct(**data)


def _event_builder(union_name: str) -> Any:
    def build(data: dict[str, Any]) -> Any:
        from openai._models import construct_type  # the SDK's own stream parser

        return construct_type(type_=_openai_type(union_name), value=data)

    return build


def _api(protocol: WireProtocol, response_type: str, build_event: Any, dump: Any = _dump) -> SDKApi:
    return SDKApi(
        protocol,
        build_response=lambda data: _sdk_object(response_type, data),
        build_event=build_event,
        dump=dump,
        streams=build_event is not None,
    )


CHAT = _api(_CHAT_PROTOCOL, "chat.ChatCompletion", _chunk_builder("chat.ChatCompletionChunk"), _dump_chat)
COMPLETIONS = _api(_COMPLETIONS_PROTOCOL, "Completion", _chunk_builder("Completion"))
EMBEDDINGS = _api(_EMBEDDINGS_PROTOCOL, "CreateEmbeddingResponse", None)
RESPONSES = _api(_RESPONSES_PROTOCOL, "responses.Response", _event_builder("responses.ResponseStreamEvent"), _dump_sent)


# ----------------------------------------------------------------------------------------
# The wrapper
# ----------------------------------------------------------------------------------------
class CachedOpenAI(CachedClient):
    """An ``openai.OpenAI`` / ``openai.AsyncOpenAI`` client whose completions, chat
    completions and embeddings are cached (see the module docstring).

    Args:
        client: the SDK client to wrap; it is used as it is (its key, base URL, timeouts
            and retries) and every attribute this class does not cache is its own.
        cache: ``None`` (the global cache, looked up at each call), ``False``, ``True``
            (the global cache, which must be set) or an llm-cache cache object.
        namespace: partitions entries inside one cache (it becomes part of the llm_string),
            e.g. per provider or per tenant.

    ``cached.wrapped`` is the SDK client; ``with_options(...)`` and ``copy(...)`` return a
    new :class:`CachedOpenAI` around the SDK's result, with the same cache and namespace.
    """

    def __init__(
        self, client: Any, cache: BaseCache | bool | None = None, *, namespace: str | None = None
    ) -> None:
        client = self._wrap(client, cache, namespace)
        self._openai = require("openai", "openai", "cached_client")
        self.is_async = _is_async_client(self._openai, client)
        endpoint = AsyncEndpoint if self.is_async else SyncEndpoint
        self.chat = Passthrough(client.chat, completions=endpoint(self, CHAT, client.chat.completions))
        self.completions = endpoint(self, COMPLETIONS, client.completions)
        self.embeddings = endpoint(self, EMBEDDINGS, client.embeddings)
        responses = getattr(client, "responses", None)  # openai >= 1.66
        if responses is not None:
            self.responses = endpoint(self, RESPONSES, responses)

    def copy(self, **options: Any) -> "CachedOpenAI":
        """The SDK's ``copy``, still cached."""
        return CachedOpenAI(self.wrapped.copy(**options), self.cache, namespace=self.namespace)


def cached_client(
    client: Any, cache: BaseCache | bool | None = None, *, namespace: str | None = None
) -> CachedOpenAI:
    """Wrap an ``openai.OpenAI`` or ``openai.AsyncOpenAI`` client so that its
    ``chat.completions.create``, ``completions.create`` and ``embeddings.create`` are
    cached; see :class:`CachedOpenAI` for the arguments."""
    return CachedOpenAI(client, cache, namespace=namespace)


def _is_async_client(openai: Any, client: Any) -> bool:
    if isinstance(client, openai.AsyncOpenAI):
        return True
    if isinstance(client, openai.OpenAI):
        return False
    # A duck-typed client: look through decorators (the SDK wraps create in one).
    create = inspect.unwrap(client.chat.completions.create)
    return inspect.iscoroutinefunction(create)
