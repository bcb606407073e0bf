"""Cache the official ``openai`` SDK client: ``cached_client(openai.OpenAI(...))``.

::

    import openai
    from llm_cache import SQLiteCache
    from llm_cache.integrations.openai_client import cached_client

    client = cached_client(openai.OpenAI(), cache=SQLiteCache("llm_cache.db"))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])  # hit
    client.models.list()                       # anything else goes to the SDK unchanged

What is cached: ``chat.completions.create``, ``completions.create`` and ``embeddings.create``,
on ``openai.OpenAI`` and ``openai.AsyncOpenAI`` (and their subclasses such as the Azure
clients). They return the SDK's own types (``ChatCompletion``, ``Completion``,
``CreateEmbeddingResponse``), rebuilt with ``model_validate`` from stored JSON.
Everything else (``responses``, ``with_raw_response``, ``chat.completions.parse``, ...)
is the wrapped client's own attribute, uncached.

The key (through :mod:`llm_cache.keys`):

* ``prompt``: the canonical JSON of ``messages`` (the same string
  :class:`~llm_cache.llms.ChatOpenAI` caches under), the completion ``prompt``, or the
  embeddings ``input``; a list prompt or input is its canonical JSON, with ``"batch": true``
  in the llm_string so that it can never meet the string prompt that looks the same.
* ``llm_string``: every other request keyword (model, temperature, n, tools, seed,
  ``extra_body``, ...) plus ``provider``/``api`` and the wrapper's ``namespace``. Left out
  because they never change the answer: ``stream``, ``stream_options``, ``timeout``,
  ``extra_headers``, ``user``, ``metadata``, ``store``, ``safety_identifier`` and the
  ``prompt_cache_*`` hints. The base URL is not part of the key (as for the models): give
  each provider its own ``namespace`` or cache when they serve different models under one name.
  A request keyword that is not JSON (a Python object the SDK would serialise itself)
  makes that one call bypass the cache, with a warning, rather than fail.

What is stored (JSON only): one :class:`~llm_cache.Generation` per choice, whose ``text``
is the choice's text, ``message`` the assistant message (chat), ``generation_info``
``{"finish_reason", "choice"}`` (the rest of the choice); the first one also carries
``"response"``, the response without its choices (id, created, model, usage, ...). This is
the shape the :mod:`llm_cache.llms` models write, so a ``ChatOpenAI`` and a wrapped client
with the same parameters share entries. Embeddings are one Generation with the whole
response in ``generation_info["response"]``.

Streaming (``stream=True``): a miss passes the SDK's chunks through as they arrive while
assembling the whole response, and stores it once the stream has been read to its end (a
stream abandoned or broken half-way is not stored). A hit, whether stored from a stream or
not, is replayed as an iterator (async iterator for ``AsyncOpenAI``) of the SDK's own
``ChatCompletionChunk`` / ``Completion`` chunks: per choice a role chunk, tool calls, the
text in word-sized pieces, and a final chunk with ``finish_reason`` and the stored
logprobs, then a usage chunk when ``stream_options={"include_usage": True}`` asked for one.
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

import asyncio
import inspect
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from .._imports import require
from ..caches.base import BaseCache
from ..errors import ConfigurationError
from ..generation import Generation
from ..globals import resolve_cache, validate_cache_setting
from ..keys import cache_key_hex, canonical_json, make_llm_string, messages_prompt
from ..llms.coalesce import COALESCER
from ..streaming import StreamAssembler, replay_chunks

__all__ = ["cached_client", "CachedOpenAI", "CachedStream", "AsyncCachedStream"]

logger = logging.getLogger("llm_cache")

# Request keywords that never change the answer (on top of keys.NON_OUTPUT_PARAMS).
# Anything unknown stays in the key: a wrong hit is far worse than a miss.
_NOT_IN_KEY = frozenset(
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
# Envelope fields a streamed response's chunks share with the full response. Per-chunk
# fields such as ``obfuscation`` (random padding) are deliberately not kept.
_CHUNK_ENVELOPE = ("id", "created", "model", "system_fingerprint", "service_tier")


class _Uncacheable(Exception):
    """A response that cannot be stored; coalesced waiters then make their own call."""


# ----------------------------------------------------------------------------------------
# Pure logic (no I/O): request → key, response ↔ generations, streams ↔ responses.
# Shared by the sync and async paths.
# ----------------------------------------------------------------------------------------
def _is_sentinel(value: Any) -> bool:
    # openai.NOT_GIVEN / openai.omit mean "not passed": they must not reach the key.
    return type(value).__name__ in ("NotGiven", "Omit") and type(value).__module__.startswith("openai")


def _to_json(value: Any) -> Any:
    """A request value as plain JSON data, for the key."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items() if not _is_sentinel(v)}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        # An SDK object passed back in, e.g. a ChatCompletionMessage appended to messages:
        # dumped the way the SDK serialises it for the request body.
        return dump(mode="json", exclude_unset=True)
    raise ConfigurationError(f"a request value of type {type(value).__name__} is not JSON")


def _materialise(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Top-level one-shot iterables (generators of messages or token ids) as lists, so that
    building the key does not use up what the SDK must still send."""
    out = {}
    for name, value in kwargs.items():
        one_shot = isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping, list, tuple))
        if one_shot and not hasattr(value, "model_dump"):
            value = list(value)
        out[name] = value
    return out


@dataclass(frozen=True)
class _Api:
    """One cached endpoint: how its requests are keyed and its responses stored."""

    name: str  # "chat.completions", "completions", "embeddings"
    prompt_field: str  # "messages", "prompt", "input"
    response_type: str  # attribute of openai.types
    chunk_type: str | None  # the type of streamed chunks, None if the endpoint does not stream

    def key(self, kwargs: Mapping[str, Any], namespace: str | None) -> tuple[str, str]:
        """``(prompt, llm_string)`` for a request; ConfigurationError if it cannot be keyed."""
        if self.prompt_field not in kwargs:
            raise ConfigurationError(f"no {self.prompt_field!r} in the request")
        raw_prompt = _to_json(kwargs[self.prompt_field])
        params: dict[str, Any] = {"provider": "openai", "api": self.name}
        if namespace is not None:
            params["namespace"] = namespace
        if self.prompt_field == "messages":
            if not isinstance(raw_prompt, list):
                raise ConfigurationError("messages must be a list")
            prompt = messages_prompt(raw_prompt)
        elif isinstance(raw_prompt, str):
            prompt = raw_prompt
        else:
            prompt = canonical_json(raw_prompt)
            params["batch"] = True
        call = {
            name: _to_json(value)
            for name, value in kwargs.items()
            if name != self.prompt_field and name not in _NOT_IN_KEY and not _is_sentinel(value)
        }
        return prompt, make_llm_string(params, call)

    # -- response → generations ---------------------------------------------------------
    def to_generations(self, response: Any) -> list[Generation]:
        dump = getattr(response, "model_dump", None)
        if not callable(dump):
            raise _Uncacheable(f"the SDK returned a {type(response).__name__}, not a response model")
        # warnings=False: a base64 embedding is a str in a field typed list[float] (see _forgivable).
        data = dump(mode="json", warnings=False)
        return self.generations_from_dict(data)

    def generations_from_dict(self, data: dict[str, Any]) -> list[Generation]:
        if self.name == "embeddings":
            return [Generation(text="", generation_info={"response": data})]
        choices = data.pop("choices", None)
        if not isinstance(choices, list) or not choices:
            raise _Uncacheable("the response has no choices")
        generations = []
        for position, choice in enumerate(sorted(choices, key=lambda c: c.get("index", 0))):
            choice = dict(choice)
            info: dict[str, Any] = {"finish_reason": choice.get("finish_reason"), "choice": choice}
            if position == 0:
                info["response"] = data
            if self.name == "chat.completions":
                message = {k: v for k, v in (choice.pop("message", None) or {}).items() if v is not None}
                text = message.get("content")
                generations.append(
                    Generation(text=text if isinstance(text, str) else "", generation_info=info, message=message)
                )
            else:
                text = choice.pop("text", "")
                generations.append(Generation(text=text if isinstance(text, str) else "", generation_info=info))
        return generations

    # -- generations → response ----------------------------------------------------------
    def response_dict(
        self, generations: Sequence[Generation], kwargs: Mapping[str, Any], key: str
    ) -> dict[str, Any]:
        """The stored response as the API's JSON; KeyError/TypeError/ValueError if unusable."""
        first = generations[0].generation_info or {}
        envelope = first.get("response")
        if self.name == "embeddings":
            if not isinstance(envelope, dict):
                raise ValueError("stored embeddings entry without its response")
            return envelope
        if not isinstance(envelope, dict):
            # Written by llm_cache.llms models, which keep the choices but not the envelope.
            envelope = {
                "id": ("chatcmpl-" if self.name == "chat.completions" else "cmpl-") + "llmcache" + key[:24],
                "object": "chat.completion" if self.name == "chat.completions" else "text_completion",
                "created": int(time.time()),
                "model": kwargs.get("model"),
            }
        choices = []
        for position, generation in enumerate(generations):
            info = generation.generation_info or {}
            choice = info.get("choice")
            if not isinstance(choice, dict):
                choice = {
                    "index": position,
                    "finish_reason": info.get("finish_reason") or "stop",
                    "logprobs": info.get("logprobs"),
                }
            choice = dict(choice)
            if self.name == "chat.completions":
                choice["message"] = (
                    generation.message
                    if generation.message is not None
                    else {"role": "assistant", "content": generation.text}
                )
            else:
                choice["text"] = generation.text
            choices.append(choice)
        return {**envelope, "choices": choices}



CHAT = _Api("chat.completions", "messages", "chat.ChatCompletion", "chat.ChatCompletionChunk")
COMPLETIONS = _Api("completions", "prompt", "Completion", "Completion")
EMBEDDINGS = _Api("embeddings", "input", "CreateEmbeddingResponse", None)


def _openai_type(openai: Any, dotted: str) -> Any:
    target = openai.types
    for part in dotted.split("."):
        target = getattr(target, part)
    return target


def _sdk_object(openai: Any, type_name: str, data: dict[str, Any]) -> Any:
    """The SDK's response object for stored JSON.

    ``model_validate`` first. A response the SDK itself accepted can still fail it, because
    the SDK builds responses without validation (``construct``) and OpenAI-compatible servers
    send values outside OpenAI's literals (a ``finish_reason`` of ``"abort"``, say); a stored
    response whose only faults are such values is then built the SDK's way, or it could
    never be a hit.
    """
    type_ = _openai_type(openai, type_name)
    try:
        return type_.model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        errors_of = getattr(exc, "errors", None)
        errors = errors_of() if callable(errors_of) else None
        # Forgiven: a value outside a literal, and a base64 ``embedding`` string (typed as a
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
    return "embedding" in location and isinstance(error.get("input"), str)


def _include_usage(kwargs: Mapping[str, Any]) -> bool:
    options = kwargs.get("stream_options")
    return isinstance(options, Mapping) and bool(options.get("include_usage"))


class _SDKStreamAssembler(StreamAssembler):
    """The shared :class:`~llm_cache.streaming.StreamAssembler`, fed the SDK's chunk objects.

    Keeps only the envelope fields a full response shares with its chunks, and gives the
    response a ``created`` if no chunk had one (the SDK's response types require it).
    """

    def __init__(self, api: _Api) -> None:
        super().__init__(api.name, envelope_fields=_CHUNK_ENVELOPE)

    def add(self, chunk: Any) -> None:
        super().add(chunk.model_dump(mode="json") if hasattr(chunk, "model_dump") else dict(chunk))

    def response(self) -> dict[str, Any]:
        response = super().response()
        response.setdefault("created", int(time.time()))
        return response


# ----------------------------------------------------------------------------------------
# Replayed streams
# ----------------------------------------------------------------------------------------
class CachedStream:
    """A cache hit of a ``stream=True`` call: iterates the SDK's chunk objects.

    Behaves like ``openai.Stream`` for reading (``for chunk in stream``, ``next()``,
    ``with``, ``close()``); it has no HTTP ``response`` (``response`` is ``None``).
    """

    response = None

    def __init__(self, chunks: Iterable[Any]) -> None:
        self._iterator = iter(chunks)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self._iterator)

    def close(self) -> None:
        self._iterator = iter(())

    def __enter__(self) -> "CachedStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncCachedStream:
    """Async :class:`CachedStream`, like ``openai.AsyncStream``."""

    response = None

    def __init__(self, chunks: Iterable[Any]) -> None:
        self._iterator = iter(chunks)

    def __aiter__(self) -> "AsyncCachedStream":
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._iterator)
        except StopIteration:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        self._iterator = iter(())

    async def __aenter__(self) -> "AsyncCachedStream":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _RecordingStream:
    """A miss's SDK stream, passed through chunk by chunk while it is assembled; stored
    when read to the end. Other attributes (``response``, ...) are the SDK stream's."""

    def __init__(
        self, stream: Any, assembler: StreamAssembler, on_complete: Callable[[dict[str, Any]], None]
    ) -> None:
        self._stream = stream
        self._iterator = iter(stream)
        self._assembler = assembler
        self._on_complete = on_complete
        self._done = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            chunk = next(self._iterator)
        except StopIteration:
            self._finish()
            raise
        except BaseException:
            self._done = True  # broken half-way: nothing is stored
            raise
        if not self._done:
            self._assembler.add(chunk)
        return chunk

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._assembler.complete:
            self._on_complete(self._assembler.response())

    def close(self) -> None:
        self._done = True
        self._stream.close()

    def __enter__(self) -> "_RecordingStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _AsyncRecordingStream:
    """Async :class:`_RecordingStream`."""

    def __init__(
        self, stream: Any, assembler: StreamAssembler, on_complete: Callable[[dict[str, Any]], Any]
    ) -> None:
        self._stream = stream
        self._iterator = stream.__aiter__()
        self._assembler = assembler
        self._on_complete = on_complete
        self._done = False

    def __aiter__(self) -> "_AsyncRecordingStream":
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._iterator.__anext__()
        except StopAsyncIteration:
            if not self._done:
                self._done = True
                if self._assembler.complete:
                    await self._on_complete(self._assembler.response())
            raise
        except BaseException:
            self._done = True
            raise
        if not self._done:
            self._assembler.add(chunk)
        return chunk

    async def close(self) -> None:
        self._done = True
        await self._stream.close()

    async def __aenter__(self) -> "_AsyncRecordingStream":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# ----------------------------------------------------------------------------------------
# The wrapper
# ----------------------------------------------------------------------------------------
class CachedOpenAI:
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
        validate_cache_setting(cache)
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ConfigurationError("namespace must be a non-empty string or None")
        if isinstance(client, CachedOpenAI):
            client = client.wrapped
        self._openai = require("openai", "openai", "cached_client")
        self.wrapped: Any = client
        self.cache = cache
        self.namespace = namespace
        self.is_async = _is_async_client(self._openai, client)
        endpoint = _AsyncEndpoint if self.is_async else _SyncEndpoint
        self.chat = _Passthrough(client.chat, completions=endpoint(self, CHAT, client.chat.completions))
        self.completions = endpoint(self, COMPLETIONS, client.completions)
        self.embeddings = endpoint(self, EMBEDDINGS, client.embeddings)

    def resolve_cache(self) -> BaseCache | None:
        """The cache this client uses right now, following the ``cache`` argument's rules."""
        return resolve_cache(self.cache, owner="cached_client(cache=True)")

    def with_options(self, **options: Any) -> "CachedOpenAI":
        """The SDK's ``with_options``, still cached."""
        return CachedOpenAI(self.wrapped.with_options(**options), self.cache, namespace=self.namespace)

    def copy(self, **options: Any) -> "CachedOpenAI":
        """The SDK's ``copy``, still cached."""
        return CachedOpenAI(self.wrapped.copy(**options), self.cache, namespace=self.namespace)

    def __getattr__(self, name: str) -> Any:
        wrapped = self.__dict__.get("wrapped")
        if wrapped is None:  # not yet (or never) initialised: no recursion through __getattr__
            raise AttributeError(name)
        return getattr(wrapped, name)

    def __repr__(self) -> str:
        return f"CachedOpenAI({type(self.wrapped).__name__}, cache={self.cache!r}, namespace={self.namespace!r})"


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


class _Passthrough:
    """An SDK resource with some attributes replaced (``chat`` with a cached ``completions``)."""

    def __init__(self, resource: Any, **overrides: Any) -> None:
        self._resource = resource
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)


class _EndpointBase:
    def __init__(self, owner: CachedOpenAI, api: _Api, resource: Any) -> None:
        self._owner = owner
        self._api = api
        self._resource = resource

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)

    def _plan(self, kwargs: dict[str, Any]) -> tuple[BaseCache, str, str] | None:
        """The cache and key for a request, or None when this call bypasses the cache."""
        cache = self._owner.resolve_cache()
        if cache is None:
            return None
        try:
            prompt, llm_string = self._api.key(kwargs, self._owner.namespace)
        except ConfigurationError as exc:
            logger.warning("llm-cache: %s call not cached: %s", self._api.name, exc)
            return None
        return cache, prompt, llm_string

    def _answer(
        self, generations: Sequence[Generation] | None, kwargs: Mapping[str, Any], prompt: str, llm_string: str,
        streaming: bool,
    ) -> Any:
        """The stored answer as the SDK's response (or replayed stream); None when there is
        none or it cannot be rebuilt, which is then a miss."""
        if not generations:
            return None
        openai = self._owner._openai
        try:
            data = self._api.response_dict(generations, kwargs, cache_key_hex(prompt, llm_string))
            response = _sdk_object(openai, self._api.response_type, data)
            if not streaming:
                return response
            # Chunks are built the way the SDK builds the ones it parses from a stream
            # (``construct``, unvalidated: a streamed completion chunk's finish_reason is null,
            # which the Completion model's validation rejects) from the response just checked.
            chunk_type = _openai_type(openai, self._api.chunk_type)  # type: ignore[arg-type]
            chunks = replay_chunks(self._api.name, data, _include_usage(kwargs))
            return [chunk_type.construct(**c) for c in chunks]
        except Exception as exc:  # a stored value of the wrong shape: a miss, never the caller's error
            logger.warning("llm-cache: cached %s entry unusable, treated as a miss: %s", self._api.name, exc)
            return None


class _SyncEndpoint(_EndpointBase):
    """``create`` of an ``openai.OpenAI`` resource, cached."""

    def create(self, **kwargs: Any) -> Any:
        """The SDK's ``create``, answered from the cache when the same request was seen."""
        kwargs = _materialise(kwargs)
        plan = self._plan(kwargs)
        if plan is None:
            return self._resource.create(**kwargs)
        cache, prompt, llm_string = plan
        streaming = kwargs.get("stream") is True and self._api.chunk_type is not None
        epoch = COALESCER.completions  # read before the lookup: see llms.base._Batch
        answer = self._answer(cache.lookup(prompt, llm_string), kwargs, prompt, llm_string, streaming)
        if answer is not None:
            return CachedStream(answer) if streaming else answer
        if streaming:
            return self._stream(cache, prompt, llm_string, kwargs)
        key = (cache, prompt, llm_string)
        owned, waiting = COALESCER.claim([key])
        if waiting:
            try:
                generations = waiting[key].result()
            except _Uncacheable:
                return self._resource.create(**kwargs)
            answer = self._answer(generations, kwargs, prompt, llm_string, False)
            return answer if answer is not None else self._resource.create(**kwargs)
        try:
            if COALESCER.completions != epoch:  # someone finished a call since our lookup
                hit = cache.lookup(prompt, llm_string)
                answer = self._answer(hit, kwargs, prompt, llm_string, False)
                if answer is not None:
                    COALESCER.resolve(key, hit)  # type: ignore[arg-type]
                    return answer
            response = self._resource.create(**kwargs)
            try:
                generations = self._api.to_generations(response)
            except _Uncacheable as exc:
                logger.warning("llm-cache: %s response not cached: %s", self._api.name, exc)
                raise
            cache.update(prompt, llm_string, generations)
        except _Uncacheable as exc:
            COALESCER.fail(owned, exc)
            return response
        except BaseException as exc:
            COALESCER.fail(owned, exc)
            raise
        COALESCER.resolve(key, generations)
        return response

    def _stream(self, cache: BaseCache, prompt: str, llm_string: str, kwargs: dict[str, Any]) -> Any:
        def store(response: dict[str, Any]) -> None:
            cache.update(prompt, llm_string, self._api.generations_from_dict(response))

        return _RecordingStream(self._resource.create(**kwargs), _SDKStreamAssembler(self._api), store)


class _AsyncEndpoint(_EndpointBase):
    """``create`` of an ``openai.AsyncOpenAI`` resource, cached."""

    async def create(self, **kwargs: Any) -> Any:
        """The SDK's ``create``, answered from the cache when the same request was seen."""
        kwargs = _materialise(kwargs)
        plan = self._plan(kwargs)
        if plan is None:
            return await self._resource.create(**kwargs)
        cache, prompt, llm_string = plan
        streaming = kwargs.get("stream") is True and self._api.chunk_type is not None
        epoch = COALESCER.completions
        answer = self._answer(await cache.alookup(prompt, llm_string), kwargs, prompt, llm_string, streaming)
        if answer is not None:
            return AsyncCachedStream(answer) if streaming else answer
        if streaming:
            return await self._stream(cache, prompt, llm_string, kwargs)
        key = (cache, prompt, llm_string)
        owned, waiting = COALESCER.claim([key])
        if waiting:
            try:
                generations = await asyncio.wrap_future(waiting[key])
            except _Uncacheable:
                return await self._resource.create(**kwargs)
            answer = self._answer(generations, kwargs, prompt, llm_string, False)
            return answer if answer is not None else await self._resource.create(**kwargs)
        try:
            if COALESCER.completions != epoch:
                hit = await cache.alookup(prompt, llm_string)
                answer = self._answer(hit, kwargs, prompt, llm_string, False)
                if answer is not None:
                    COALESCER.resolve(key, hit)  # type: ignore[arg-type]
                    return answer
            response = await self._resource.create(**kwargs)
            try:
                generations = self._api.to_generations(response)
            except _Uncacheable as exc:
                logger.warning("llm-cache: %s response not cached: %s", self._api.name, exc)
                raise
            await cache.aupdate(prompt, llm_string, generations)
        except _Uncacheable as exc:
            COALESCER.fail(owned, exc)
            return response
        except BaseException as exc:
            COALESCER.fail(owned, exc)
            raise
        COALESCER.resolve(key, generations)
        return response

    async def _stream(self, cache: BaseCache, prompt: str, llm_string: str, kwargs: dict[str, Any]) -> Any:
        async def store(response: dict[str, Any]) -> None:
            await cache.aupdate(prompt, llm_string, self._api.generations_from_dict(response))

        stream = await self._resource.create(**kwargs)
        return _AsyncRecordingStream(stream, _SDKStreamAssembler(self._api), store)
