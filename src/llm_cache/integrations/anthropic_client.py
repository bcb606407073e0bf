"""Cache the official ``anthropic`` SDK client: ``cached_client(anthropic.Anthropic(...))``.

::

    import anthropic
    from llm_cache import SQLiteCache
    from llm_cache.integrations.anthropic_client import cached_client

    client = cached_client(anthropic.Anthropic(), cache=SQLiteCache("llm_cache.db"))
    ask = dict(model="claude-sonnet-4-5", max_tokens=256, messages=[{"role": "user", "content": "Hi"}])
    client.messages.create(**ask)
    client.messages.create(**ask)                    # hit: a Message, from the store
    with client.messages.stream(**ask) as stream:    # hit too, replayed as events
        print(stream.get_final_text())

What is cached: ``messages.create`` (``stream=True`` included) and ``messages.stream()`` on
``anthropic.Anthropic`` and ``anthropic.AsyncAnthropic`` (and subclasses such as the
Bedrock/Vertex clients); they return the SDK's own types (``Message``, a stream of
``RawMessageStreamEvent``, the SDK's own ``MessageStream`` helper). Everything else
(``messages.count_tokens``, ``beta``, ``messages.batches``, ...) is the wrapped client's
own attribute, uncached.

The key and the stored shape are :mod:`llm_cache.protocols.anthropic_messages`'s (the
proxy's ``/v1/messages`` uses the same, so an entry cached through either is a hit through
the other for the same request and namespace): the messages are the prompt; ``system``,
``tools``, ``thinking``, ``max_tokens`` and every other parameter are in the llm_string;
``metadata`` (``user_id``), ``cache_control`` markers, ``stream`` and call options
(``extra_headers``, ``timeout``) are not. ``messages.stream(output_format=...)`` (parsed
output) is passed to the SDK uncached.

Streams: a miss passes the SDK's events through as they arrive and stores the assembled
message once the stream has been read to its ``message_stop``; a hit is replayed as the
events ``message_start`` ... ``content_block_delta`` ... ``message_stop``, which the SDK's
``MessageStream`` helper accumulates as it does a live stream. ``cache``: the rules of
:func:`llm_cache.integrations.openai_client.cached_client`.
"""

from __future__ import annotations

import inspect
from typing import Any

from .._imports import require
from ..caches.base import BaseCache
from ..protocols import MESSAGES as _MESSAGES_PROTOCOL
from ._sdk import AsyncCachedStream, AsyncEndpoint, CachedClient, CachedStream, SDKApi, SyncEndpoint

__all__ = ["cached_client", "CachedAnthropic", "CachedStream", "AsyncCachedStream"]


def _anthropic() -> Any:
    return require("anthropic", "anthropic", "llm_cache.integrations.anthropic_client")


def _message(data: dict[str, Any]) -> Any:
    return _anthropic().types.Message.model_validate(data)


def _event(data: dict[str, Any]) -> Any:
    from anthropic._models import construct_type  # the SDK's own stream parser

    return construct_type(type_=_anthropic().types.RawMessageStreamEvent, value=data)


def _dump(obj: Any) -> dict[str, Any]:
    # What the server sent (the SDK constructs its objects from it), no made-up nulls.
    return obj.model_dump(mode="json", warnings=False, exclude_unset=True)  # type: ignore[no-any-return]


MESSAGES = SDKApi(_MESSAGES_PROTOCOL, build_response=_message, build_event=_event, dump=_dump)


def _helper_kwargs(kwargs: dict[str, Any]) -> bool:
    """Whether ``messages.stream(**kwargs)`` can be served from ``create(stream=True)``."""
    return kwargs.get("output_format") is None or type(kwargs["output_format"]).__name__ in ("NotGiven", "Omit")


def _manager(name: str, request: Any) -> Any:
    """The SDK's own stream manager (``with ... as stream``) around ``request``."""
    manager = getattr(_anthropic().lib.streaming, name)
    try:
        return manager(request, output_format=_anthropic().NOT_GIVEN)
    except TypeError:  # SDKs before structured outputs take the request alone
        return manager(request)


class _SyncMessages(SyncEndpoint):
    """``messages`` of an ``anthropic.Anthropic`` client: ``create`` and ``stream`` cached."""

    def stream(self, **kwargs: Any) -> Any:
        """The SDK's ``messages.stream()`` helper over the cached ``create(stream=True)``."""
        if not _helper_kwargs(kwargs):
            return self._resource.stream(**kwargs)
        kwargs.pop("output_format", None)
        return _manager("MessageStreamManager", lambda: self.create(stream=True, **kwargs))


class _AsyncMessages(AsyncEndpoint):
    """``messages`` of an ``anthropic.AsyncAnthropic`` client: ``create`` and ``stream`` cached."""

    def stream(self, **kwargs: Any) -> Any:
        """The SDK's ``messages.stream()`` helper over the cached ``create(stream=True)``."""
        if not _helper_kwargs(kwargs):
            return self._resource.stream(**kwargs)
        kwargs.pop("output_format", None)
        return _manager("AsyncMessageStreamManager", self.create(stream=True, **kwargs))


class CachedAnthropic(CachedClient):
    """An ``anthropic.Anthropic`` / ``anthropic.AsyncAnthropic`` client whose
    ``messages.create`` and ``messages.stream`` are cached (see the module docstring).

    Args:
        client: the SDK client to wrap, used as it is; every attribute this class does
            not cache is its own.
        cache: ``None`` (the global cache, looked up at each call), ``False``, ``True``
            (the global cache, which must be set) or an llm-cache cache object.
        namespace: partitions entries inside one cache (it becomes part of the llm_string).
    """

    def __init__(self, client: Any, cache: BaseCache | bool | None = None, *, namespace: str | None = None) -> None:
        client = self._wrap(client, cache, namespace)
        anthropic = _anthropic()
        if isinstance(client, anthropic.AsyncAnthropic):
            self.is_async = True
        elif isinstance(client, anthropic.Anthropic):
            self.is_async = False
        else:  # a duck-typed or cloud client: look through the SDK's decorators
            self.is_async = inspect.iscoroutinefunction(inspect.unwrap(client.messages.create))
        endpoint = _AsyncMessages if self.is_async else _SyncMessages
        self.messages = endpoint(self, MESSAGES, client.messages)


def cached_client(client: Any, cache: BaseCache | bool | None = None, *, namespace: str | None = None) -> CachedAnthropic:
    """Wrap an ``anthropic.Anthropic`` or ``anthropic.AsyncAnthropic`` client so that its
    ``messages.create`` and ``messages.stream`` are cached; see :class:`CachedAnthropic`."""
    return CachedAnthropic(client, cache, namespace=namespace)
