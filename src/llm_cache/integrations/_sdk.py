"""The shell shared by the SDK wrappers (openai, anthropic): cache I/O around a protocol.

Everything about a wire API (keys, stored shape, streams) is in :mod:`llm_cache.protocols`;
this module only does the I/O: cache lookups and writes, the SDK call, coalescing, and
streams (a miss's live stream recorded while it is read; a hit replayed as the SDK's own
event objects). Sync and async share all of it but the awaits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from ..caches.base import BaseCache
from ..errors import ConfigurationError
from ..globals import resolve_cache, validate_cache_setting
from ..generation import Generation
from ..llms.coalesce import COALESCER
from ..protocols.base import StreamAssembler, Uncacheable, WireProtocol, plain_json

__all__ = [
    "AsyncCachedStream",
    "AsyncEndpoint",
    "CachedStream",
    "Passthrough",
    "SDKApi",
    "SyncEndpoint",
    "request_body",
]

logger = logging.getLogger("llm_cache")

# SDK call options that are not part of the request body the server sees.
_CALL_OPTIONS = frozenset({"extra_headers", "extra_query", "timeout", "extra_body"})


class UncacheableResponse(Exception):
    """A response that cannot be stored; coalesced waiters then make their own call."""


def materialise(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Top-level one-shot iterables (generators of messages or token ids) as lists, so that
    building the key does not use up what the SDK must still send."""
    out = {}
    for name, value in kwargs.items():
        one_shot = isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping, list, tuple))
        if one_shot and not hasattr(value, "model_dump"):
            value = list(value)
        out[name] = value
    return out


def request_body(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body an SDK call sends: its keywords as plain JSON, ``extra_body`` merged in
    (as the SDK does), call options (headers, timeout) left out. ``ConfigurationError`` if
    a value has no JSON form, or for ``extra_query`` (query parameters are not part of the
    body; the proxy passes such requests through uncached too)."""
    if kwargs.get("extra_query"):
        raise ConfigurationError("a request with extra_query is not cached")
    try:
        body = plain_json({k: v for k, v in kwargs.items() if k not in _CALL_OPTIONS})
        extra = kwargs.get("extra_body")
        if isinstance(extra, Mapping):
            body.update(plain_json(extra))
    except TypeError as exc:
        raise ConfigurationError(str(exc)) from exc
    return body


@dataclass(frozen=True)
class SDKApi:
    """One cached SDK method: its protocol, and how the SDK's objects are made and read.

    ``build_response(data)`` makes the SDK's response object from JSON, ``build_event(data)``
    one streamed event (``None``: the method does not stream), ``dump(obj)`` reads an SDK
    object back as JSON.
    """

    protocol: WireProtocol
    build_response: Callable[[dict[str, Any]], Any]
    build_event: Callable[[dict[str, Any]], Any] | None
    dump: Callable[[Any], dict[str, Any]]
    streams: bool = True

    @property
    def name(self) -> str:
        return self.protocol.name

    def key(self, kwargs: Mapping[str, Any], namespace: str | None) -> tuple[str, str]:
        """``(prompt, llm_string)`` for a request; ConfigurationError if it cannot be keyed."""
        identity = self.protocol.identify(request_body(kwargs), namespace)
        if isinstance(identity, Uncacheable):
            raise ConfigurationError(identity.reason)
        return identity.prompt, identity.llm_string

    def to_generations(self, response: Any) -> list[Generation]:
        try:
            return self.protocol.to_entry(self.dump(response))
        except (ValueError, TypeError, AttributeError) as exc:
            raise UncacheableResponse(str(exc)) from exc

    def generations_from_dict(self, data: dict[str, Any]) -> list[Generation]:
        return self.protocol.to_entry(data)

    def answer(self, generations: Sequence[Generation] | None, kwargs: Mapping[str, Any], streaming: bool) -> Any:
        """The stored answer as the SDK's response, or as the list of its stream's events;
        None when there is none or it cannot be rebuilt, which is then a miss."""
        if not generations:
            return None
        try:
            data = self.protocol.from_entry(list(generations), kwargs)
            response = self.build_response(data)  # validates the entry, streamed or not
            if not streaming:
                return response
            assert self.build_event is not None
            return [self.build_event(event) for _, event in self.protocol.replay(data, kwargs)]
        except Exception as exc:  # a stored value of the wrong shape: a miss, never the caller's error
            logger.warning("llm-cache: cached %s entry unusable, treated as a miss: %s", self.name, exc)
            return None

    def assembler(self) -> "SDKAssembler":
        return SDKAssembler(self)


class SDKAssembler:
    """The protocol's stream assembler, fed the SDK's event objects."""

    def __init__(self, api: SDKApi) -> None:
        self._api = api
        self._inner: StreamAssembler = _assembler_of(api.protocol)

    def add(self, event: Any) -> None:
        data = self._api.dump(event) if hasattr(event, "model_dump") else dict(event)
        self._inner.add(data.get("type") if isinstance(data.get("type"), str) else None, data)

    @property
    def complete(self) -> bool:
        return self._inner.complete

    def response(self) -> dict[str, Any]:
        return self._inner.response()


# Envelope fields a chat/completions response shares with its chunks. Per-chunk fields
# such as ``obfuscation`` (random padding) are deliberately not stored.
_CHUNK_ENVELOPE = ("id", "created", "model", "system_fingerprint", "service_tier")


def _assembler_of(protocol: Any) -> StreamAssembler:
    if protocol.name in ("chat.completions", "completions"):
        return protocol.assembler(None, envelope_fields=_CHUNK_ENVELOPE)  # type: ignore[no-any-return]
    return protocol.assembler(None)  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------------------
# Replayed and recorded streams
# ----------------------------------------------------------------------------------------
class CachedStream:
    """A cache hit of a streamed call: iterates the SDK's event objects.

    Behaves like the SDK's ``Stream`` for reading (``for event in stream``, ``next()``,
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
    """Async :class:`CachedStream`, like the SDK's ``AsyncStream``."""

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


class RecordingStream:
    """A miss's SDK stream, passed through event by event while it is assembled; stored
    when read to the end. Other attributes (``response``, ...) are the SDK stream's."""

    def __init__(self, stream: Any, assembler: SDKAssembler, on_complete: Callable[[dict[str, Any]], None]) -> None:
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

    def __enter__(self) -> "RecordingStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class AsyncRecordingStream:
    """Async :class:`RecordingStream`."""

    def __init__(self, stream: Any, assembler: SDKAssembler, on_complete: Callable[[dict[str, Any]], Any]) -> None:
        self._stream = stream
        self._iterator = stream.__aiter__()
        self._assembler = assembler
        self._on_complete = on_complete
        self._done = False

    def __aiter__(self) -> "AsyncRecordingStream":
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

    async def __aenter__(self) -> "AsyncRecordingStream":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# ----------------------------------------------------------------------------------------
# Endpoints
# ----------------------------------------------------------------------------------------
class Passthrough:
    """An SDK resource with some attributes replaced (``chat`` with a cached ``completions``)."""

    def __init__(self, resource: Any, **overrides: Any) -> None:
        self._resource = resource
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)


class EndpointBase:
    """A cached SDK resource; ``owner`` has ``resolve_cache()`` and ``namespace``."""

    def __init__(self, owner: Any, api: SDKApi, resource: Any) -> None:
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

    def _streaming(self, kwargs: Mapping[str, Any]) -> bool:
        return kwargs.get("stream") is True and self._api.streams

    def _streamed_entry(self, response: dict[str, Any]) -> list[Generation] | None:
        """The entry of an assembled stream; None (logged) when it cannot be stored."""
        try:
            return self._api.generations_from_dict(response)
        except ValueError as exc:
            logger.warning("llm-cache: streamed %s response not cached: %s", self._api.name, exc)
            return None


class SyncEndpoint(EndpointBase):
    """``create`` of a sync SDK resource, cached."""

    def create(self, **kwargs: Any) -> Any:
        """The SDK's ``create``, answered from the cache when the same request was seen."""
        kwargs = materialise(kwargs)
        plan = self._plan(kwargs)
        if plan is None:
            return self._resource.create(**kwargs)
        cache, prompt, llm_string = plan
        api = self._api
        streaming = self._streaming(kwargs)
        epoch = COALESCER.completions  # read before the lookup: see llms.base._Batch
        answer = api.answer(cache.lookup(prompt, llm_string), kwargs, streaming)
        if answer is not None:
            return CachedStream(answer) if streaming else answer
        if streaming:
            return self._stream(cache, prompt, llm_string, kwargs)
        key = (cache, prompt, llm_string)
        owned, waiting = COALESCER.claim([key])
        if waiting:
            try:
                generations = waiting[key].result()
            except UncacheableResponse:
                return self._resource.create(**kwargs)
            answer = api.answer(generations, kwargs, False)
            return answer if answer is not None else self._resource.create(**kwargs)
        try:
            if COALESCER.completions != epoch:  # someone finished a call since our lookup
                hit = cache.lookup(prompt, llm_string)
                answer = api.answer(hit, kwargs, False)
                if answer is not None:
                    COALESCER.resolve(key, hit)  # type: ignore[arg-type]
                    return answer
            response = self._resource.create(**kwargs)
            try:
                generations = api.to_generations(response)
            except UncacheableResponse as exc:
                logger.warning("llm-cache: %s response not cached: %s", api.name, exc)
                raise
            cache.update(prompt, llm_string, generations)
        except UncacheableResponse as exc:
            COALESCER.fail(owned, exc)
            return response
        except BaseException as exc:
            COALESCER.fail(owned, exc)
            raise
        COALESCER.resolve(key, generations)
        return response

    def _stream(self, cache: BaseCache, prompt: str, llm_string: str, kwargs: dict[str, Any]) -> Any:
        def store(response: dict[str, Any]) -> None:
            generations = self._streamed_entry(response)
            if generations is not None:
                cache.update(prompt, llm_string, generations)

        return RecordingStream(self._resource.create(**kwargs), self._api.assembler(), store)


class AsyncEndpoint(EndpointBase):
    """``create`` of an async SDK resource, cached."""

    async def create(self, **kwargs: Any) -> Any:
        """The SDK's ``create``, answered from the cache when the same request was seen."""
        kwargs = materialise(kwargs)
        plan = self._plan(kwargs)
        if plan is None:
            return await self._resource.create(**kwargs)
        cache, prompt, llm_string = plan
        api = self._api
        streaming = self._streaming(kwargs)
        epoch = COALESCER.completions
        answer = api.answer(await cache.alookup(prompt, llm_string), kwargs, streaming)
        if answer is not None:
            return AsyncCachedStream(answer) if streaming else answer
        if streaming:
            return await self._stream(cache, prompt, llm_string, kwargs)
        key = (cache, prompt, llm_string)
        owned, waiting = COALESCER.claim([key])
        if waiting:
            try:
                generations = await asyncio.wrap_future(waiting[key])
            except UncacheableResponse:
                return await self._resource.create(**kwargs)
            answer = api.answer(generations, kwargs, False)
            return answer if answer is not None else await self._resource.create(**kwargs)
        try:
            if COALESCER.completions != epoch:
                hit = await cache.alookup(prompt, llm_string)
                answer = api.answer(hit, kwargs, False)
                if answer is not None:
                    COALESCER.resolve(key, hit)  # type: ignore[arg-type]
                    return answer
            response = await self._resource.create(**kwargs)
            try:
                generations = api.to_generations(response)
            except UncacheableResponse as exc:
                logger.warning("llm-cache: %s response not cached: %s", api.name, exc)
                raise
            await cache.aupdate(prompt, llm_string, generations)
        except UncacheableResponse as exc:
            COALESCER.fail(owned, exc)
            return response
        except BaseException as exc:
            COALESCER.fail(owned, exc)
            raise
        COALESCER.resolve(key, generations)
        return response

    async def _stream(self, cache: BaseCache, prompt: str, llm_string: str, kwargs: dict[str, Any]) -> Any:
        async def store(response: dict[str, Any]) -> None:
            generations = self._streamed_entry(response)
            if generations is not None:
                await cache.aupdate(prompt, llm_string, generations)

        stream = await self._resource.create(**kwargs)
        return AsyncRecordingStream(stream, self._api.assembler(), store)


class CachedClient:
    """What every cached SDK client shares (``CachedOpenAI``, ``CachedAnthropic``): the
    cache setting, the namespace, the wrapped client, and every attribute not cached passed
    through to it."""

    def _wrap(self, client: Any, cache: BaseCache | bool | None, namespace: str | None) -> Any:
        """Validate and keep the arguments; the SDK client to wrap (unwrapped if it is
        already one of ours)."""
        validate_cache_setting(cache)
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ConfigurationError("namespace must be a non-empty string or None")
        if isinstance(client, type(self)):
            client = client.wrapped
        self.wrapped: Any = client
        self.cache = cache
        self.namespace = namespace
        return client

    def resolve_cache(self) -> BaseCache | None:
        """The cache this client uses right now, following the ``cache`` argument's rules."""
        return resolve_cache(self.cache, owner="cached_client(cache=True)")

    def with_options(self, **options: Any) -> Any:
        """The SDK's ``with_options``, still cached."""
        return type(self)(self.wrapped.with_options(**options), self.cache, namespace=self.namespace)  # type: ignore[call-arg]

    def __getattr__(self, name: str) -> Any:
        wrapped = self.__dict__.get("wrapped")
        if wrapped is None:  # not yet (or never) initialised: no recursion through __getattr__
            raise AttributeError(name)
        return getattr(wrapped, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.wrapped).__name__}, cache={self.cache!r}, namespace={self.namespace!r})"
