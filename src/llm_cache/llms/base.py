"""What every model shares: cache resolution, batches with partial hits, coalescing.

A model subclass supplies three things: the prompt string a given input is cached
under (``_cache_prompt``), its output-changing parameters (``_identifying_params``), and
the provider calls (``_call_provider`` / ``_acall_provider``) for a list of inputs that
missed. Everything else, sync and async, is here; the planning logic is shared and
does no I/O (:class:`_Batch`), so the two paths differ only where they wait.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any, AsyncIterator, Generic, Iterator, Sequence, TypeVar

from ..caches.base import BaseCache
from ..errors import ConfigurationError
from ..generation import Generation, LLMResult
from ..globals import resolve_cache, validate_cache_setting
from ..keys import make_llm_string
from .coalesce import COALESCER

__all__ = ["BaseLLM"]

InputT = TypeVar("InputT")

_CACHED_ATTRIBUTE = "_llm_string_cache"


class _Batch(Generic[InputT]):
    """The plan for one ``generate`` call: which prompts hit, which must be fetched."""

    def __init__(self, cache: BaseCache, inputs: Sequence[InputT], prompts: list[str], llm_string: str) -> None:
        self.cache = cache
        self.inputs = inputs
        self.prompts = prompts
        self.llm_string = llm_string
        self.generations: list[list[Generation] | None] = [None] * len(prompts)
        self.cached = [False] * len(prompts)
        self.epoch = COALESCER.completions  # read before the lookups: see _still_missing

    def record_lookups(self, hits: Sequence[list[Generation] | None]) -> dict[str, list[int]]:
        """Store the hits; return each missing prompt with the positions it fills."""
        missing: dict[str, list[int]] = {}
        for index, (prompt, hit) in enumerate(zip(self.prompts, hits)):
            if hit is None:
                missing.setdefault(prompt, []).append(index)
            else:
                self.generations[index] = hit
                self.cached[index] = True
        return missing

    def key(self, prompt: str) -> tuple[BaseCache, str, str]:
        return (self.cache, prompt, self.llm_string)

    def fill(self, positions: list[int], generations: list[Generation], cached: bool) -> None:
        for index in positions:
            self.generations[index] = generations
            self.cached[index] = cached

    def result(self, llm_output: dict[str, Any] | None) -> LLMResult:
        return LLMResult(generations=self.generations, cached=self.cached, llm_output=llm_output)  # type: ignore[arg-type]


class BaseLLM(ABC, Generic[InputT]):
    """Base of the models in :mod:`llm_cache.llms`.

    Args:
        cache: ``None`` uses the global cache if one is set (:func:`llm_cache.set_llm_cache`),
            ``False`` never caches, ``True`` requires a global cache, and a cache object is
            used directly.

    Changing a model's parameters after creation is supported (the cached llm_string
    is dropped on every attribute assignment).
    """

    provider: str = "base"

    def __init__(self, *, cache: BaseCache | bool | None = None) -> None:
        validate_cache_setting(cache)
        self.cache = cache

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "cache":
            validate_cache_setting(value)
        object.__setattr__(self, name, value)
        if name != _CACHED_ATTRIBUTE:
            self.__dict__.pop(_CACHED_ATTRIBUTE, None)

    # -- what subclasses implement -----------------------------------------------------
    @abstractmethod
    def _cache_prompt(self, value: InputT) -> str:
        """The prompt string this input is cached under (validating the input)."""

    @abstractmethod
    def _identifying_params(self) -> dict[str, Any]:
        """Every parameter that changes the output (never secrets or transport settings)."""

    @abstractmethod
    def _call_provider(
        self, inputs: list[InputT], kwargs: dict[str, Any]
    ) -> tuple[list[list[Generation]], dict[str, Any] | None]:
        """Call the provider for ``inputs``; return their generations and token usage."""

    @abstractmethod
    async def _acall_provider(
        self, inputs: list[InputT], kwargs: dict[str, Any]
    ) -> tuple[list[list[Generation]], dict[str, Any] | None]:
        """Async :meth:`_call_provider`."""

    # -- cache resolution and keys ---------------------------------------------------------
    def resolve_cache(self) -> BaseCache | None:
        """The cache this model uses right now, following the ``cache`` argument's rules."""
        return resolve_cache(self.cache, owner="this model was created with cache=True")

    def llm_string(self, **kwargs: Any) -> str:
        """The canonical description of this model and call, as used in cache keys."""
        if kwargs:
            return self._make_llm_string(kwargs)
        cached = self.__dict__.get(_CACHED_ATTRIBUTE)
        if cached is None:
            cached = self._make_llm_string({})
            object.__setattr__(self, _CACHED_ATTRIBUTE, cached)
        return cached

    def _make_llm_string(self, kwargs: dict[str, Any]) -> str:
        """The llm_string of a call with ``kwargs`` (a model on a wire protocol asks the
        protocol layer, so that its keys are the proxy's and the SDK wrappers')."""
        return make_llm_string(self._identifying_params(), kwargs)

    def _stream_key(self, value: InputT, kwargs: dict[str, Any]) -> tuple[str, str]:
        """``(prompt, llm_string)`` of a streamed call (the request a stream sends may
        differ from :meth:`generate`'s, e.g. one choice whatever ``n`` is)."""
        return self._cache_prompt(value), self.llm_string(**kwargs)

    # -- public calls ----------------------------------------------------------------------------
    def invoke(self, value: InputT, **kwargs: Any) -> str:
        """Return the first generation's text for one input."""
        return self.generate([value], **kwargs).generations[0][0].text

    __call__ = invoke

    async def ainvoke(self, value: InputT, **kwargs: Any) -> str:
        """Async :meth:`invoke`."""
        result = await self.agenerate([value], **kwargs)
        return result.generations[0][0].text

    def generate(self, inputs: Sequence[InputT], **kwargs: Any) -> LLMResult:
        """Every generation for every input. Hits come from the cache; only the misses
        go to the provider, in one call where the provider accepts a batch."""
        inputs = _as_list(inputs)
        cache = self.resolve_cache()
        if cache is None:
            generations, usage = self._call_provider(inputs, kwargs)
            return LLMResult(generations, [False] * len(inputs), usage)
        batch = _Batch(cache, inputs, [self._cache_prompt(v) for v in inputs], self.llm_string(**kwargs))
        missing = batch.record_lookups([cache.lookup(p, batch.llm_string) for p in batch.prompts])
        usage = None
        if missing:
            owned, waiting = COALESCER.claim(batch.key(p) for p in missing)
            owned_prompts = [key[1] for key in owned]
            try:
                usage = self._fetch_owned(batch, owned_prompts, missing, kwargs)
            except BaseException as exc:
                COALESCER.fail(owned, exc)
                raise
            for key, future in waiting.items():
                batch.fill(missing[key[1]], future.result(), cached=True)
        return batch.result(usage)

    async def agenerate(self, inputs: Sequence[InputT], **kwargs: Any) -> LLMResult:
        """Async :meth:`generate`: lookups, provider calls and waits never block the loop."""
        inputs = _as_list(inputs)
        cache = self.resolve_cache()
        if cache is None:
            generations, usage = await self._acall_provider(inputs, kwargs)
            return LLMResult(generations, [False] * len(inputs), usage)
        batch = _Batch(cache, inputs, [self._cache_prompt(v) for v in inputs], self.llm_string(**kwargs))
        if len(batch.prompts) == 1:
            hits = [await cache.alookup(batch.prompts[0], batch.llm_string)]
        else:
            hits = await asyncio.gather(*(cache.alookup(p, batch.llm_string) for p in batch.prompts))
        missing = batch.record_lookups(hits)
        usage = None
        if missing:
            owned, waiting = COALESCER.claim(batch.key(p) for p in missing)
            owned_prompts = [key[1] for key in owned]
            try:
                usage = await self._afetch_owned(batch, owned_prompts, missing, kwargs)
            except BaseException as exc:
                COALESCER.fail(owned, exc)
                raise
            for key, future in waiting.items():
                batch.fill(missing[key[1]], await asyncio.wrap_future(future), cached=True)
        return batch.result(usage)

    # -- fetching what this caller owns ----------------------------------------------------
    def _fetch_owned(
        self, batch: _Batch[InputT], prompts: list[str], missing: dict[str, list[int]], kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        to_fetch = prompts
        if COALESCER.completions != batch.epoch:
            hits = [batch.cache.lookup(p, batch.llm_string) for p in prompts]
            to_fetch = self._still_missing(batch, prompts, hits, missing)
        if not to_fetch:
            return None
        generations, usage = self._call_provider([batch.inputs[missing[p][0]] for p in to_fetch], kwargs)
        for prompt, gens in zip(to_fetch, generations):
            batch.cache.update(prompt, batch.llm_string, gens)
            self._publish(batch, prompt, missing[prompt], gens, cached=False)
        return usage

    async def _afetch_owned(
        self, batch: _Batch[InputT], prompts: list[str], missing: dict[str, list[int]], kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        to_fetch = prompts
        if COALESCER.completions != batch.epoch:
            hits = [await batch.cache.alookup(p, batch.llm_string) for p in prompts]
            to_fetch = self._still_missing(batch, prompts, hits, missing)
        if not to_fetch:
            return None
        generations, usage = await self._acall_provider([batch.inputs[missing[p][0]] for p in to_fetch], kwargs)
        for prompt, gens in zip(to_fetch, generations):
            await batch.cache.aupdate(prompt, batch.llm_string, gens)
            self._publish(batch, prompt, missing[prompt], gens, cached=False)
        return usage

    def _still_missing(
        self, batch: _Batch[InputT], prompts: list[str], hits: list[list[Generation] | None],
        missing: dict[str, list[int]],
    ) -> list[str]:
        """Between our lookup and our claim another caller finished some request, maybe
        this one: take what the second lookup found, return what still must be fetched."""
        to_fetch = []
        for prompt, hit in zip(prompts, hits):
            if hit is None:
                to_fetch.append(prompt)
            else:
                self._publish(batch, prompt, missing[prompt], hit, cached=True)
        return to_fetch

    @staticmethod
    def _publish(
        batch: _Batch[InputT], prompt: str, positions: list[int], generations: list[Generation], cached: bool
    ) -> None:
        batch.fill(positions, generations, cached)
        # Written to the cache before waiters are released, so a request that arrives
        # after this point finds the entry instead of calling the provider again.
        COALESCER.resolve(batch.key(prompt), generations)

    # -- streaming --------------------------------------------------------------------------
    def stream(self, value: InputT, **kwargs: Any) -> Iterator[str]:
        """Yield the answer's text in pieces. A hit is replayed from the cache; a miss is
        streamed from the provider and stored once it has been received completely."""
        cache = self.resolve_cache()
        prompt, llm_string = self._stream_key(value, kwargs)
        if cache is not None:
            hit = cache.lookup(prompt, llm_string)
            if hit is not None:
                yield from _replay(hit[0].text)
                return
        pieces: list[str] = []
        finish: dict[str, Any] = {}
        for piece in self._stream_provider(value, kwargs, finish):
            pieces.append(piece)
            yield piece
        entry = self._streamed_entry("".join(pieces), finish)
        if cache is not None and entry is not None:
            cache.update(prompt, llm_string, entry)

    async def astream(self, value: InputT, **kwargs: Any) -> AsyncIterator[str]:
        """Async :meth:`stream`."""
        cache = self.resolve_cache()
        prompt, llm_string = self._stream_key(value, kwargs)
        if cache is not None:
            hit = await cache.alookup(prompt, llm_string)
            if hit is not None:
                for piece in _replay(hit[0].text):
                    yield piece
                return
        pieces: list[str] = []
        finish: dict[str, Any] = {}
        async for piece in self._astream_provider(value, kwargs, finish):
            pieces.append(piece)
            yield piece
        entry = self._streamed_entry("".join(pieces), finish)
        if cache is not None and entry is not None:
            await cache.aupdate(prompt, llm_string, entry)

    def _stream_provider(self, value: InputT, kwargs: dict[str, Any], finish: dict[str, Any]) -> Iterator[str]:
        """Stream text pieces from the provider, noting in ``finish`` how the stream ended
        (what :meth:`_streamed_entry` needs)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    def _astream_provider(
        self, value: InputT, kwargs: dict[str, Any], finish: dict[str, Any]
    ) -> AsyncIterator[str]:
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    def _streamed_entry(self, text: str, finish: dict[str, Any]) -> list[Generation] | None:
        """The entry to store for a finished stream, ``None`` when it must not be stored."""
        # Only a stream that ended with text is replayable as text; a cut-off stream is not stored.
        if finish.get("finish_reason") not in ("stop", "length"):
            return None
        return [Generation(text=text, generation_info=finish or None)]


def _as_list(inputs: Sequence[InputT]) -> list[InputT]:
    if isinstance(inputs, (str, bytes)):
        raise ConfigurationError("generate() takes a list of prompts; use invoke() for a single prompt")
    return list(inputs)


def _replay(text: str) -> Iterator[str]:
    """Cut cached text into word-sized pieces, the way a provider would stream it."""
    start = 0
    for index, char in enumerate(text):
        if char == " " and index > start:
            yield text[start:index]
            start = index
    if start < len(text):
        yield text[start:]
