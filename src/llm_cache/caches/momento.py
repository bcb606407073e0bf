"""MomentoCache: LLM generations in a Momento serverless cache, through the official SDK.

Design choices, each for a reason:

* **Keys.** ``{cache_key_hex}`` without a namespace; ``{namespace}:{generation}:{cache_key_hex}``
  with one. The value is one JSON document holding the full prompt, the llm_string and
  the encoded generations, and a hit must match both texts exactly (a hash collision is a
  miss). Values are UTF-8 JSON, never pickles.
* **TTL.** Momento has no items without a TTL (and a hard limit of 24 hours per item).
  ``ttl=None`` means "the cache client's default TTL", the one given to ``CacheClient``
  (``from_client_params`` makes ``ttl`` that default). Every write sets the TTL with the
  value, in the same ``Set`` call.
* **clear().** Without a namespace the Momento cache is this object's own: ``clear()``
  flushes it (``FlushCache``), so give it a cache that holds nothing else. With a
  namespace, several users can share one Momento cache and ``clear()`` must leave the
  others alone; Momento has no key scan, so the namespace has a *generation counter*
  (``{namespace}:__generation__``) that is part of every key. ``clear()`` increments it
  atomically (``Increment``, O(1)); entries of older generations are never read again
  and expire by their TTL. The counter's own TTL is 24 hours (Momento's maximum) or the
  entry TTL if that is longer, so it always outlives the entries it guards. Should it
  ever expire or be evicted, it restarts at 0: readers then miss (entries of the newest
  generation become unreachable); an entry from before the first ``clear()`` cannot come
  back, because it has expired by then.
* **Reading the generation costs a round trip**, so it is kept in memory and re-read
  after ``generation_refresh`` seconds (default 1 s). A ``clear()`` through this object
  is seen by it at once; other processes (or other MomentoCache objects) see it within
  ``generation_refresh`` seconds. ``generation_refresh=0`` reads it on every call (two
  round trips per lookup, no delay).
* **Errors.** The SDK answers with result objects (``Hit``/``Miss``/``Error``), not
  exceptions; an ``Error`` is raised here as the SDK's own exception (``inner_exception``)
  so that the one fail-open policy in :mod:`llm_cache.caches.base` counts it, logs it and
  turns it into a miss (or raises it in strict mode). Nothing is swallowed here.
* **Async.** ``alookup``/``aupdate``/``aclear`` use ``CacheClientAsync`` (grpc.aio) when
  the cache knows the configuration and credentials (always with ``from_client_params``,
  or pass them to the constructor). A grpc.aio channel belongs to the event loop that
  made it, so there is one async client per running loop, made on first use. Given only
  a sync ``CacheClient``, the async methods run the sync ones in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import warnings
import weakref
from datetime import timedelta
from typing import Any

from .._imports import require
from .._deadline import validate_timeout
from .._ttl import validate_ttl
from ..errors import CacheBackendError, ConfigurationError, CorruptEntryError
from ..generation import Generation, decode_generations, encode_generations
from ..keys import cache_key_hex
from .base import BaseCache, logger

momento = require("momento", "momento", "MomentoCache")
# Imported after the check above, which turns a missing SDK into the pip line.
from momento import responses as _r  # noqa: E402
from momento.errors import (  # noqa: E402
    InternalServerException,
    SdkException,
    ServerUnavailableException,
    TimeoutException,
)

__all__ = ["MomentoCache"]

#: Momento's hard per-item TTL limit; the namespace generation counter lives this long.
_MAX_TTL = timedelta(hours=24)
_GENERATION_SUFFIX = "__generation__"
# Errors that say "Momento is not answering right now" rather than "this cannot work".
_TRANSIENT = (ServerUnavailableException, TimeoutException, InternalServerException)


class MomentoCache(BaseCache):
    """Cache generations in a Momento cache.

    Args:
        cache_client: a ``momento.CacheClient``.
        cache_name: the Momento cache to use (created when missing if ``ensure_cache_exists``).
        ttl: seconds (or a ``timedelta``) an entry lives; ``None`` uses the client's default TTL.
        namespace: share one Momento cache between several users; ``clear()`` then removes
            only this namespace. Without a namespace ``clear()`` flushes the whole Momento
            cache, which must therefore be dedicated to this object.
        strict: raise store errors instead of treating them as misses.
        ensure_cache_exists: create the cache now if it does not exist ("already exists" is
            fine). Turn it off for an API key without control-plane permission, or when
            many processes start at once (Momento allows 5 control-plane calls a second).
            A refusal (bad key, no permission) raises :class:`CacheBackendError`; an outage
            at that moment is counted and logged like any store error (raised if ``strict``).
        configuration, credential_provider: what ``cache_client`` was built with; when given,
            the async methods use a native ``CacheClientAsync`` built from them.
        generation_refresh: seconds a namespace's generation is trusted before it is read
            again (see the module docstring).

    Example::

        from datetime import timedelta
        from momento import CacheClient, Configurations, CredentialProvider
        client = CacheClient(Configurations.InRegion.Default.latest(),
                             CredentialProvider.from_environment_variables_v2(),
                             default_ttl=timedelta(hours=1))
        set_llm_cache(MomentoCache(client, "llm-cache"))
        # or simply:
        set_llm_cache(MomentoCache.from_client_params("llm-cache", ttl=3600))
    """

    def __init__(
        self,
        cache_client: Any,
        cache_name: str,
        *,
        ttl: float | timedelta | None = None,
        namespace: str | None = None,
        strict: bool = False,
        ensure_cache_exists: bool = True,
        configuration: Any = None,
        credential_provider: Any = None,
        generation_refresh: float = 1.0,
    ) -> None:
        super().__init__(strict=strict)
        if not isinstance(cache_client, momento.CacheClient):
            raise ConfigurationError(
                f"cache_client must be a momento.CacheClient, not {type(cache_client).__name__}; "
                "or use MomentoCache.from_client_params(cache_name, ttl)"
            )
        if not isinstance(cache_name, str) or not cache_name.strip():
            raise ConfigurationError("cache_name must be a non-empty string")
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ConfigurationError("namespace must be a non-empty string or None")
        if (
            isinstance(generation_refresh, bool)
            or not isinstance(generation_refresh, (int, float))
            or generation_refresh < 0
        ):
            raise ConfigurationError("generation_refresh must be a number of seconds >= 0")
        self.client = cache_client
        self.cache_name = cache_name
        self.ttl = validate_ttl(_seconds(ttl))
        self.namespace = namespace
        self.generation_refresh = float(generation_refresh)
        self._ttl_td = None if self.ttl is None else timedelta(seconds=self.ttl)
        self._generation_ttl = max(_MAX_TTL, self._ttl_td or _MAX_TTL)
        self._generation_key = f"{namespace}:{_GENERATION_SUFFIX}" if namespace is not None else ""
        # The generation cached in memory, when it was read, and a counter of this object's
        # clears: a read that raced a clear must not put the older generation back.
        self._generation: int | None = None
        self._generation_read_at = 0.0
        self._clears = 0
        self._generation_lock = threading.Lock()
        self._owns_client = False
        self._configuration = configuration
        self._credential_provider = credential_provider
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]
        self._async_clients = weakref.WeakKeyDictionary()
        self._async_lock = threading.Lock()
        if (configuration is None) != (credential_provider is None):
            raise ConfigurationError("pass both configuration and credential_provider, or neither")
        if ensure_cache_exists:
            self._create_cache()

    def __repr__(self) -> str:
        return f"MomentoCache(cache_name={self.cache_name!r}, namespace={self.namespace!r}, ttl={self.ttl!r})"

    @classmethod
    def from_client_params(
        cls,
        cache_name: str,
        ttl: float | timedelta,
        *,
        api_key: str | None = None,
        configuration: Any = None,
        credential_provider: Any = None,
        endpoint: str | None = None,
        auth_token: str | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> "MomentoCache":
        """Build the Momento clients and the cache in one call.

        Args:
            cache_name: the Momento cache (created when missing).
            ttl: seconds (or a ``timedelta``): the client's default TTL and each entry's TTL.
            api_key: a Momento API key; defaults to the ``MOMENTO_API_KEY`` environment
                variable (then ``MOMENTO_AUTH_TOKEN``, LangChain's older name). A v2 key
                also needs ``endpoint`` (or ``MOMENTO_ENDPOINT``), as the SDK's
                ``CredentialProvider.from_api_key_v2`` does; a legacy key names its
                endpoints itself.
            configuration: a ``momento.Configuration``; default
                ``Configurations.InRegion.Default.latest()`` (1.1 s deadline, so an
                unreachable service costs about a second before the breaker opens; use
                ``Configurations.Laptop.latest()`` far from the Momento region).
            credential_provider: a ready ``momento.CredentialProvider`` instead of a key
                (e.g. ``CredentialProvider.for_momento_local()``).
            endpoint: the Momento endpoint for a v2 API key.
            auth_token: older name of ``api_key``.
            timeout: seconds each Momento call may take (the configuration's client
                timeout); ``None`` keeps the configuration's own (1.1 s for the default).
            **kwargs: passed to :class:`MomentoCache` (``namespace``, ``strict``, ...).
        """
        ttl_seconds = validate_ttl(_seconds(ttl))
        if ttl_seconds is None:
            raise ConfigurationError("from_client_params needs a ttl: Momento items always have one")
        if credential_provider is not None and (api_key or auth_token):
            raise ConfigurationError("pass api_key or credential_provider, not both")
        if credential_provider is None:
            credential_provider = _credential_provider(api_key or auth_token, endpoint)
        if configuration is None:
            configuration = momento.Configurations.InRegion.Default.latest()
        if timeout is not None:
            configuration = configuration.with_client_timeout(timedelta(seconds=validate_timeout(timeout)))
        client = momento.CacheClient(configuration, credential_provider, timedelta(seconds=ttl_seconds))
        try:
            cache = cls(
                client,
                cache_name,
                ttl=ttl_seconds,
                configuration=configuration,
                credential_provider=credential_provider,
                **kwargs,
            )
        except BaseException:
            _close_sync(client)
            raise
        cache._owns_client = True
        return cache

    # -- keys and values (no I/O: shared by the sync and async paths) ---------------------
    def key_for(self, prompt: str, llm_string: str, generation: int | None = None) -> str:
        """The Momento key of an entry (for debugging; uses the generation last read)."""
        digest = cache_key_hex(prompt, llm_string)
        if self.namespace is None:
            return digest
        if generation is None:
            generation = self._generation or 0
        return f"{self.namespace}:{generation}:{digest}"

    @staticmethod
    def _encode(prompt: str, llm_string: str, generations: list[Generation]) -> bytes:
        # One JSON document; the generations part is the shared codec's output verbatim.
        text = (
            '{"prompt":' + json.dumps(prompt, ensure_ascii=False)
            + ',"llm_string":' + json.dumps(llm_string, ensure_ascii=False)
            + ',"generations":' + encode_generations(generations) + "}"
        )  # fmt: skip
        return text.encode("utf-8", "surrogatepass")

    @staticmethod
    def _decode(raw: bytes, prompt: str, llm_string: str) -> list[Generation] | None:
        try:
            data = json.loads(raw.decode("utf-8", "surrogatepass"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptEntryError(f"stored value is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or "generations" not in data:
            raise CorruptEntryError("stored value is not an llm-cache entry")
        if data.get("prompt") != prompt or data.get("llm_string") != llm_string:
            return None  # a hash collision (or a foreign value): a miss, never a wrong answer
        return decode_generations(json.dumps(data["generations"]))

    def _generation_fresh(self) -> int | None:
        if self._generation is not None and time.monotonic() - self._generation_read_at < self.generation_refresh:
            return self._generation
        return None

    def _generation_read(self, clears_before: int, value: int, read_at: float) -> int:
        with self._generation_lock:
            if self._clears != clears_before:
                # This object cleared while the read was in flight: its own value is newer.
                return self._generation if self._generation is not None else value
            self._generation, self._generation_read_at = value, read_at
            return value

    def _generation_bumped(self, value: int) -> None:
        with self._generation_lock:
            self._clears += 1
            self._generation, self._generation_read_at = value, time.monotonic()

    @staticmethod
    def _parse_generation(response: Any) -> int:
        if isinstance(response, _r.CacheGet.Miss):
            return 0
        if isinstance(response, _r.CacheGet.Hit):
            try:
                return int(response.value_string)
            except ValueError as exc:
                raise CacheBackendError(
                    f"the namespace generation counter holds {response.value_bytes[:40]!r}, not a number"
                ) from exc
        raise _error(response)

    # -- sync operations -----------------------------------------------------------------------
    def _key(self, prompt: str, llm_string: str) -> str:
        if self.namespace is None:
            return cache_key_hex(prompt, llm_string)
        generation = self._generation_fresh()
        if generation is None:
            clears, read_at = self._clears, time.monotonic()
            value = self._parse_generation(self.client.get(self.cache_name, self._generation_key))
            generation = self._generation_read(clears, value, read_at)
        return self.key_for(prompt, llm_string, generation)

    def _lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        response = self.client.get(self.cache_name, self._key(prompt, llm_string))
        if isinstance(response, _r.CacheGet.Hit):
            return self._decode(response.value_bytes, prompt, llm_string)
        if isinstance(response, _r.CacheGet.Miss):
            return None
        raise _error(response)

    def _update(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        value = self._encode(prompt, llm_string, generations)
        response = self.client.set(self.cache_name, self._key(prompt, llm_string), value, ttl=self._ttl_td)
        if not isinstance(response, _r.CacheSet.Success):
            raise _error(response)

    def _clear(self) -> None:
        if self.namespace is None:
            response = self.client.flush_cache(self.cache_name)
            if not isinstance(response, _r.CacheFlush.Success):
                raise _error(response)
            return
        response = self.client.increment(self.cache_name, self._generation_key, 1, ttl=self._generation_ttl)
        if not isinstance(response, _r.CacheIncrement.Success):
            raise _error(response)
        self._generation_bumped(response.value)

    def _create_cache(self) -> None:
        response = self.client.create_cache(self.cache_name)
        if isinstance(response, (_r.CreateCache.Success, _r.CreateCache.CacheAlreadyExists)):
            return
        if not self.strict and isinstance(_error(response), _TRANSIENT):
            # An outage at start-up must not stop the application any more than one later
            # would: count it and go on; calls fail open until Momento answers again.
            self.stats.errors += 1
            logger.warning(
                "llm-cache: MomentoCache could not reach Momento to create cache %r, continuing "
                "without the cache until it answers: %s",
                self.cache_name,
                response,
            )
            return
        raise CacheBackendError(
            f"MomentoCache could not create the Momento cache {self.cache_name!r}: {response}. "
            "If the API key may not manage caches, create it beforehand and pass ensure_cache_exists=False"
        )

    # -- async operations ------------------------------------------------------------------------
    def _async_client(self) -> Any:
        """This event loop's ``CacheClientAsync``, or ``None`` when only a sync client is known."""
        if self._configuration is None:
            return None
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            with self._async_lock:
                # A client holds its loop alive (the weak key never dies while the value
                # refers to it), so drop the clients of loops that have ended.
                for old_loop in [l for l in self._async_clients if l.is_closed()]:
                    del self._async_clients[old_loop]
                client = self._async_clients.get(loop)
                if client is None:
                    # The SDK needs a default TTL; every set below passes one explicitly when
                    # this cache has a ttl, and otherwise relies on this value.
                    default_ttl = self._ttl_td or _sync_default_ttl(self.client) or _MAX_TTL
                    client = momento.CacheClientAsync(self._configuration, self._credential_provider, default_ttl)
                    self._async_clients[loop] = client
        return client

    async def _akey(self, client: Any, prompt: str, llm_string: str) -> str:
        if self.namespace is None:
            return cache_key_hex(prompt, llm_string)
        generation = self._generation_fresh()
        if generation is None:
            clears, read_at = self._clears, time.monotonic()
            value = self._parse_generation(await client.get(self.cache_name, self._generation_key))
            generation = self._generation_read(clears, value, read_at)
        return self.key_for(prompt, llm_string, generation)

    async def _alookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        client = self._async_client()
        if client is None:
            return await super()._alookup(prompt, llm_string)
        response = await client.get(self.cache_name, await self._akey(client, prompt, llm_string))
        if isinstance(response, _r.CacheGet.Hit):
            return self._decode(response.value_bytes, prompt, llm_string)
        if isinstance(response, _r.CacheGet.Miss):
            return None
        raise _error(response)

    async def _aupdate(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        client = self._async_client()
        if client is None:
            return await super()._aupdate(prompt, llm_string, generations)
        value = self._encode(prompt, llm_string, generations)
        key = await self._akey(client, prompt, llm_string)
        response = await client.set(self.cache_name, key, value, ttl=self._ttl_td)
        if not isinstance(response, _r.CacheSet.Success):
            raise _error(response)

    async def _aclear(self) -> None:
        client = self._async_client()
        if client is None:
            return await super()._aclear()
        if self.namespace is None:
            response = await client.flush_cache(self.cache_name)
            if not isinstance(response, _r.CacheFlush.Success):
                raise _error(response)
            return
        response = await client.increment(self.cache_name, self._generation_key, 1, ttl=self._generation_ttl)
        if not isinstance(response, _r.CacheIncrement.Success):
            raise _error(response)
        self._generation_bumped(response.value)

    # -- lifecycle ---------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the async client of the running event loop (call before the loop ends)."""
        client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.__aexit__(None, None, None)

    def close(self) -> None:
        """Close the sync client if this object made it (``from_client_params``).

        Async clients of event loops that are gone are dropped; close the current loop's
        one with :meth:`aclose` from inside that loop.
        """
        self._async_clients = weakref.WeakKeyDictionary()
        if self._owns_client:
            self._owns_client = False
            _close_sync(self.client)


# -- helpers --------------------------------------------------------------------------------------
def _seconds(ttl: float | timedelta | None) -> float | None:
    return ttl.total_seconds() if isinstance(ttl, timedelta) else ttl


def _error(response: Any) -> Exception:
    """The exception to raise for a Momento response that is not a success."""
    inner = getattr(response, "inner_exception", None)
    if isinstance(inner, Exception):
        return inner
    return CacheBackendError(f"unexpected Momento response: {response!r}")


def _close_sync(client: Any) -> None:
    client.__exit__(None, None, None)


def _sync_default_ttl(client: Any) -> timedelta | None:
    # The SDK keeps the default TTL on its data clients only; read it if it is there.
    for data_client in getattr(client, "_data_clients", ()):
        ttl = getattr(data_client, "_default_ttl", None)
        if isinstance(ttl, timedelta):
            return ttl
    return None


def _credential_provider(api_key: str | None, endpoint: str | None) -> Any:
    """A ``CredentialProvider`` from a key argument or the environment."""
    key = api_key or os.environ.get("MOMENTO_API_KEY") or os.environ.get("MOMENTO_AUTH_TOKEN")
    if not key:
        raise ConfigurationError(
            "MomentoCache needs a Momento API key: pass api_key=... or set MOMENTO_API_KEY "
            "(or pass credential_provider=...)"
        )
    endpoint = endpoint or os.environ.get("MOMENTO_ENDPOINT")
    provider_cls = momento.CredentialProvider
    try:
        if endpoint:
            from_v2 = getattr(provider_cls, "from_api_key_v2", None)
            if from_v2 is None:
                raise ConfigurationError(
                    "this momento SDK does not know v2 API keys (endpoint=...): "
                    "pip install -U 'llm-cache[momento]'"
                )
            return from_v2(key, endpoint)
        # A legacy key names its endpoints itself. from_string is deprecated only in favour
        # of v2 keys; for a legacy key it is the SDK's parser, so its warning is noise here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return provider_cls.from_string(key)
    except (SdkException, ValueError, KeyError) as exc:
        # SdkException for a key the SDK rejects; ValueError/KeyError from a base64 key
        # whose JSON is not what the SDK expects.
        detail = exc.message if isinstance(exc, SdkException) else type(exc).__name__
        hint = "" if endpoint else " (a v2 API key also needs endpoint=... or MOMENTO_ENDPOINT)"
        raise ConfigurationError(f"the Momento API key was not accepted: {detail}{hint}") from exc
