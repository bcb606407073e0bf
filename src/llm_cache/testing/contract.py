"""The backend contract suite: every cache runs these tests.

A backend's test module subclasses :class:`CacheContract` and provides a fixture
``cache_factory`` returning ``factory(namespace: str = "default", ttl: float | None = None)``
that builds a fresh, empty cache of that backend, and optionally overrides:

* ``advance(cache, seconds)`` to let ``seconds`` of TTL pass (a fake clock's step for
  backends that take one; a real sleep for servers that expire entries themselves);
* ``corrupt(cache, prompt, llm_string)`` to overwrite a stored value with garbage;
* ``shares_namespaces``: whether two namespaces of this backend share a store (so that
  ``clear()`` isolation is meaningful).

:func:`tracked_factory` builds such a factory from a constructor and cleans up after it::

    @pytest.fixture
    def cache_factory(self, redis_url):
        base = uuid.uuid4().hex  # namespaces of their own, on a shared server
        with tracked_factory(lambda ns, ttl: RedisCache(redis_url=redis_url, namespace=f"{base}:{ns}", ttl=ttl)) as factory:
            yield factory

Load this module with ``pytest.register_assert_rewrite("llm_cache.testing.contract")``
before importing it so that failures show the compared values.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Callable, TypeVar

import pytest

from ..caches.base import BaseCache
from ..generation import Generation

__all__ = ["CacheContract", "CapsContract", "sample_generations", "tracked_factory"]

CacheFactory = Callable[..., BaseCache]
C = TypeVar("C", bound=BaseCache)
LLM = '{"model":"m","provider":"test","temperature":0}'


def sample_generations(tag: str = "a", n: int = 1) -> list[Generation]:
    return [
        Generation(text=f"{tag} answer {i} ✓", generation_info={"finish_reason": "stop", "i": i}, message=None)
        for i in range(n)
    ]


@contextlib.contextmanager
def tracked_factory(make: Callable[..., C], *, clear: bool = True) -> Iterator[Callable[..., C]]:
    """A ``cache_factory`` from ``make(namespace, ttl, **kwargs)``: each cache it made is
    cleared (when ``clear``) and closed when the ``with`` block ends."""
    made: list[C] = []

    def factory(namespace: str = "default", ttl: float | None = None, **kwargs: Any) -> C:
        cache = make(namespace, ttl, **kwargs)
        made.append(cache)
        return cache

    try:
        yield factory
    finally:
        for cache in made:
            if clear:
                cache.clear()
            cache.close()


class CacheContract:
    """The behaviour every cache backend must have. Subclass as ``TestXxxContract``."""

    shares_namespaces = True

    def advance(self, cache: BaseCache, seconds: float) -> None:
        pytest.skip("this backend's test module gives no way to move time")

    def corrupt(self, cache: BaseCache, prompt: str, llm_string: str) -> None:
        pytest.skip("this backend keeps live objects; a stored value cannot be corrupted")

    @pytest.fixture
    def cache(self, cache_factory: CacheFactory) -> BaseCache:
        return cache_factory()

    # -- lookup / update -----------------------------------------------------------------
    def test_miss_is_none(self, cache: BaseCache) -> None:
        assert cache.lookup("never stored", LLM) is None
        assert cache.stats.misses == 1

    def test_roundtrip_keeps_every_field(self, cache: BaseCache) -> None:
        generations = [
            Generation("plain"),
            Generation("info", generation_info={"finish_reason": "length", "nested": {"a": [1, 2.5, None]}}),
            Generation("", message={"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]}),
        ]
        cache.update("prompt", LLM, generations)
        assert cache.lookup("prompt", LLM) == generations
        assert cache.stats.hits == 1

    def test_update_replaces_and_leaves_nothing_stale(self, cache: BaseCache) -> None:
        cache.update("prompt", LLM, sample_generations("old", n=3))
        cache.update("prompt", LLM, sample_generations("new", n=1))
        assert cache.lookup("prompt", LLM) == sample_generations("new", n=1)

    def test_prompt_and_llm_string_both_matter(self, cache: BaseCache) -> None:
        cache.update("prompt", LLM, sample_generations("x"))
        assert cache.lookup("prompt ", LLM) is None
        assert cache.lookup("Prompt", LLM) is None
        assert cache.lookup("prompt", LLM.replace('"temperature":0', '"temperature":1')) is None
        assert cache.lookup("prompt", LLM) == sample_generations("x")

    def test_many_generations_keep_their_order(self, cache: BaseCache) -> None:
        cache.update("p", LLM, sample_generations("n", n=5))
        assert [g.text for g in cache.lookup("p", LLM) or []] == [f"n answer {i} ✓" for i in range(5)]

    def test_unicode_empty_and_large_prompts(self, cache: BaseCache) -> None:
        large = "word " * 50_000  # 250 kB
        for prompt in ["", "日本語のプロンプト 🎉", "quote ' \" and \\ backslash\n\ttab\x00nul", large]:
            cache.update(prompt, LLM, sample_generations(prompt[:5]))
        for prompt in ["", "日本語のプロンプト 🎉", "quote ' \" and \\ backslash\n\ttab\x00nul", large]:
            assert cache.lookup(prompt, LLM) == sample_generations(prompt[:5])

    def test_update_rejects_what_is_not_a_generation(self, cache: BaseCache) -> None:
        with pytest.raises(TypeError, match="Generation"):
            cache.update("p", LLM, ["just a string"])  # type: ignore[list-item]

    def test_update_with_no_generations_stores_nothing(self, cache: BaseCache) -> None:
        cache.update("p", LLM, [])
        assert cache.lookup("p", LLM) is None

    # -- clear ------------------------------------------------------------------------------
    def test_clear_removes_entries(self, cache: BaseCache) -> None:
        for i in range(20):
            cache.update(f"p{i}", LLM, sample_generations(str(i)))
        cache.clear()
        assert all(cache.lookup(f"p{i}", LLM) is None for i in range(20))
        cache.update("after", LLM, sample_generations("after"))
        assert cache.lookup("after", LLM) == sample_generations("after")

    def test_clear_leaves_other_namespaces_alone(self, cache_factory: CacheFactory) -> None:
        if not self.shares_namespaces:
            pytest.skip("each cache object of this backend has a store of its own")
        mine, theirs = cache_factory(namespace="mine"), cache_factory(namespace="theirs")
        mine.update("p", LLM, sample_generations("mine"))
        theirs.update("p", LLM, sample_generations("theirs"))
        assert mine.lookup("p", LLM) == sample_generations("mine")
        assert theirs.lookup("p", LLM) == sample_generations("theirs")
        mine.clear()
        assert mine.lookup("p", LLM) is None
        assert theirs.lookup("p", LLM) == sample_generations("theirs")

    # -- TTL and corruption ---------------------------------------------------------------------
    def test_ttl_expires_entries(self, cache_factory: CacheFactory) -> None:
        cache = cache_factory(ttl=0.5)
        cache.update("p", LLM, sample_generations("ttl"))
        assert cache.lookup("p", LLM) == sample_generations("ttl")
        self.advance(cache, 0.8)
        assert cache.lookup("p", LLM) is None

    def test_update_restarts_ttl(self, cache_factory: CacheFactory) -> None:
        cache = cache_factory(ttl=1.0)
        cache.update("p", LLM, sample_generations("1"))
        self.advance(cache, 0.6)
        cache.update("p", LLM, sample_generations("2"))
        self.advance(cache, 0.6)
        assert cache.lookup("p", LLM) == sample_generations("2")

    def test_corrupt_entry_is_a_miss(self, cache: BaseCache) -> None:
        cache.update("p", LLM, sample_generations("ok"))
        self.corrupt(cache, "p", LLM)
        assert cache.lookup("p", LLM) is None
        assert cache.stats.corrupt == 1
        cache.update("p", LLM, sample_generations("again"))  # and the entry can be rewritten
        assert cache.lookup("p", LLM) == sample_generations("again")

    # -- async ----------------------------------------------------------------------------------
    def test_async_roundtrip_and_clear(self, cache: BaseCache) -> None:
        async def scenario() -> None:
            assert await cache.alookup("p", LLM) is None
            await cache.aupdate("p", LLM, sample_generations("async", n=2))
            assert await cache.alookup("p", LLM) == sample_generations("async", n=2)
            # sync and async views agree
            assert cache.lookup("p", LLM) == sample_generations("async", n=2)
            results = await asyncio.gather(*(cache.alookup("p", LLM) for _ in range(10)))
            assert all(r == sample_generations("async", n=2) for r in results)
            await cache.aclear()
            assert await cache.alookup("p", LLM) is None

        asyncio.run(scenario())

    # -- threads --------------------------------------------------------------------------------
    def test_concurrent_threads_lose_nothing(self, cache: BaseCache) -> None:
        errors: list[BaseException] = []

        def worker(thread: int) -> None:
            try:
                for i in range(25):
                    prompt = f"t{thread}-{i}"
                    cache.update(prompt, LLM, sample_generations(prompt))
                    assert cache.lookup(prompt, LLM) == sample_generations(prompt)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert all(
            cache.lookup(f"t{t}-{i}", LLM) == sample_generations(f"t{t}-{i}") for t in range(8) for i in range(25)
        )
        assert cache.stats.errors == 0


def _usage_generations(tag: str, tokens: int, padding: int = 0) -> list[Generation]:
    """An entry whose stored provider usage says it cost ``tokens`` tokens."""
    return [
        Generation(
            text=f"{tag} answer" + "." * padding,
            generation_info={"usage": {"prompt_tokens": tokens // 2, "completion_tokens": tokens - tokens // 2, "total_tokens": tokens}},
        )
    ]


class CapsContract:
    """Size caps and eviction policies (``max_entries=``, ``policy=``): every backend that
    takes caps runs these. Subclass as ``TestXxxCaps`` and provide a fixture
    ``capped_factory`` returning ``factory(max_entries=None, max_bytes=None, policy="lru",
    evict_batch=None)`` that builds a fresh, empty, capped cache. Optional overrides:

    * ``tick(cache)``: let time pass between operations (a fake clock's step), so that last
      uses are ordered; the default does nothing (the wall clock is assumed to move);
    * ``flush(cache)``: write buffered hit statistics (``flush_hits()`` where the store has it);
    * ``stored(cache)``: entries physically stored, expired ones included (default ``count()``);
    * ``policies``: the policies the backend supports; ``supports_max_bytes``;
    * ``tracks_hits``: False for stores that keep no hit statistics (then "least recently
      used" means least recently written).
    """

    policies: tuple[str, ...] = ("lru", "lfu", "cost")
    supports_max_bytes = True
    tracks_hits = True

    def tick(self, cache: BaseCache) -> None:
        pass

    def flush(self, cache: BaseCache) -> None:
        flush = getattr(cache, "flush_hits", None)
        if flush is not None:
            flush()

    def stored(self, cache: BaseCache) -> int:
        return int(cache.count())  # type: ignore[attr-defined]

    def _write(self, cache: BaseCache, names: list[str], generations: Callable[[str], list[Generation]] | None = None) -> None:
        for name in names:
            self.tick(cache)
            cache.update(name, LLM, generations(name) if generations else sample_generations(name))

    def _hit(self, cache: BaseCache, names: list[str], times: int = 1) -> None:
        for _ in range(times):
            for name in names:
                self.tick(cache)
                assert cache.lookup(name, LLM) is not None, f"{name} should still be cached"
        self.flush(cache)

    def _survivors(self, cache: BaseCache, names: list[str]) -> set[str]:
        return {name for name in names if cache.lookup(name, LLM) is not None}

    def test_count_stays_within_one_batch_of_the_cap(self, capped_factory: Callable[..., BaseCache]) -> None:
        cache = capped_factory(max_entries=10, evict_batch=3)
        for i in range(60):
            self._write(cache, [f"e{i}"])
            assert self.stored(cache) <= 13, "the cap was passed by more than one batch"
        assert 10 <= self.stored(cache) <= 13
        assert cache.stats.errors == 0

    def test_lru_keeps_the_recently_used(self, capped_factory: Callable[..., BaseCache]) -> None:
        cache = capped_factory(max_entries=10, evict_batch=1, policy="lru")
        names = [f"e{i}" for i in range(10)]
        self._write(cache, names)
        if self.tracks_hits:
            self._hit(cache, names[:5])  # the first five written are now the most recently used
            kept = names[:5]
        else:
            kept = names[5:]  # no hit statistics: the last written are the most recent
        self._write(cache, [f"new{i}" for i in range(5)])  # 15 entries: past cap + batch
        survivors = self._survivors(cache, names)
        assert set(kept) <= survivors
        assert len(survivors) < len(names)  # and some of the others went
        assert 10 <= self.stored(cache) <= 11

    def test_lfu_keeps_the_most_hit(self, capped_factory: Callable[..., BaseCache]) -> None:
        if "lfu" not in self.policies:
            pytest.skip("this backend has no LFU policy")
        cache = capped_factory(max_entries=10, evict_batch=1, policy="lfu")
        names = [f"e{i}" for i in range(10)]
        self._write(cache, names)
        self._hit(cache, names[:4], times=3)  # the four most hit...
        self._hit(cache, names[4:])  # ...were not hit last: LRU would evict them
        self._write(cache, [f"new{i}" for i in range(6)])
        survivors = self._survivors(cache, names)
        assert set(names[:4]) <= survivors

    def test_cost_keeps_what_saves_most_tokens_per_byte(self, capped_factory: Callable[..., BaseCache]) -> None:
        if "cost" not in self.policies:
            pytest.skip("this backend has no cost-aware policy")
        cache = capped_factory(max_entries=6, evict_batch=1, policy="cost")
        # Equal hits; "cheap" entries are big and cost few tokens, "dear" ones small and costly.
        cheap = [f"cheap{i}" for i in range(3)]
        dear = [f"dear{i}" for i in range(3)]
        self._write(cache, dear, lambda name: _usage_generations(name, tokens=2000))
        self._write(cache, cheap, lambda name: _usage_generations(name, tokens=10, padding=3000))
        self._hit(cache, dear + cheap)  # the cheap ones were used last: LRU would keep them
        self._write(cache, ["n0"], lambda name: _usage_generations(name, tokens=10))
        self._write(cache, ["n1"], lambda name: _usage_generations(name, tokens=10))
        survivors = self._survivors(cache, cheap + dear)
        assert set(dear) <= survivors
        assert not set(cheap) <= survivors

    def test_max_bytes_bounds_the_payload(self, capped_factory: Callable[..., BaseCache]) -> None:
        if not self.supports_max_bytes:
            pytest.skip("this backend has no byte cap")
        cache = capped_factory(max_bytes=20_000)
        self._write(cache, [f"e{i}" for i in range(40)], lambda name: [Generation(text=name + "x" * 1000)])
        assert 10 <= self.stored(cache) < 25  # about 1.1 kB each: the cap holds ~18

    def test_evicted_entry_is_a_miss_not_an_error(self, capped_factory: Callable[..., BaseCache]) -> None:
        cache = capped_factory(max_entries=3, evict_batch=1)
        cache.strict = True  # a store error would raise
        self._write(cache, [f"e{i}" for i in range(10)])
        assert cache.lookup("e0", LLM) is None
        assert asyncio.run(cache.alookup("e1", LLM)) is None
        assert cache.stats.errors == 0 and cache.stats.corrupt == 0

    def test_async_writes_evict_too(self, capped_factory: Callable[..., BaseCache]) -> None:
        cache = capped_factory(max_entries=5, evict_batch=1)

        async def scenario() -> None:
            for i in range(20):
                self.tick(cache)
                await cache.aupdate(f"e{i}", LLM, sample_generations(str(i)))

        asyncio.run(scenario())
        assert 5 <= self.stored(cache) <= 6
        assert cache.lookup("e19", LLM) is not None
