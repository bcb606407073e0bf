"""The vector-store contract suite: every :class:`~llm_cache.semantic.stores.base.VectorStore` runs it.

A store's test module subclasses :class:`VectorStoreContract` and provides a fixture
``store_factory`` returning ``factory(namespace: str | None = None, ttl: float | None = None)``
that builds an empty store of dimension :attr:`VectorStoreContract.dimension` (a fresh
namespace when ``namespace`` is None; two calls with the same namespace must see the same
entries). It may override:

* ``advance(store, seconds)``: let ``seconds`` pass for TTL purposes (a real sleep by default;
  a fake clock's step for stores built with one);
* ``supports_store_ttl``: False for a store without a ``ttl`` argument (the factory then
  never gets one);
* ``similarity_tolerance``: how far a reported similarity may be from the exact cosine
  (quantized indexes such as Redis's Q8 are approximate).

Vectors are small (32 dimensions), L2-normalised, and built so that the expected ranking is
unambiguous even for an approximate index.

Load this module with ``pytest.register_assert_rewrite("llm_cache.testing.vector_store_contract")``
before importing it so that failures show the compared values.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ..keys import cache_key_hex
from ..semantic.stores.base import Neighbour, SemanticEntry, VectorStore

__all__ = ["VectorStoreContract", "make_entry", "unit", "vector_at"]

StoreFactory = Callable[..., VectorStore]
LLM = '{"model":"m","temperature":0}'


def unit(values: Any) -> Any:
    """``values`` as a float32 vector of length 1."""
    import numpy as np

    array = np.asarray(values, dtype=np.float32)
    return (array / np.linalg.norm(array)).astype(np.float32)


def vector_at(cos: float, dimension: int = 32, axis: int = 0, other: int = 1) -> Any:
    """A unit vector whose cosine with the basis vector ``e[axis]`` is ``cos``."""
    import numpy as np

    v = np.zeros(dimension, dtype=np.float64)
    v[axis] = cos
    v[other] = np.sqrt(max(0.0, 1.0 - cos * cos))
    return v.astype(np.float32)


def make_entry(
    name: str,
    *,
    partition: str = "p1",
    response: str | None = None,
    created_at: float | None = None,
    expires_at: float | None = None,
    text: str | None = None,
) -> SemanticEntry:
    """An entry whose key is the real hex key of (``name``, LLM)."""
    return SemanticEntry(
        key=cache_key_hex(name, LLM),
        partition=partition,
        text=name if text is None else text,
        prompt=name,
        llm_string=LLM,
        response=response
        if response is not None
        else f'{{"v":1,"g":[{{"text":"answer to {name}"}}]}}',
        created_at=time.time() if created_at is None else created_at,
        expires_at=expires_at,
    )


class VectorStoreContract:
    """The behaviour every vector store must have. Subclass as ``TestXxxVectorStore``."""

    dimension = 32
    similarity_tolerance = 1e-4
    #: whether the store takes a ``ttl`` of its own (an upper bound on every entry's life);
    #: the base contract only requires honouring ``SemanticEntry.expires_at``.
    supports_store_ttl = True

    def advance(self, store: VectorStore, seconds: float) -> None:
        time.sleep(seconds)

    def now(self, store: VectorStore) -> float:
        """The store's clock (override together with ``advance`` for a fake clock)."""
        return time.time()

    @pytest.fixture
    def store(self, store_factory: StoreFactory) -> VectorStore:
        return store_factory()

    def assert_ranked(self, found: list[Neighbour], expected: list[tuple[str, float]]) -> None:
        assert [n.entry.prompt for n in found] == [name for name, _ in expected]
        for neighbour, (_, cos) in zip(found, expected):
            assert neighbour.similarity == pytest.approx(cos, abs=self.similarity_tolerance)
        sims = [n.similarity for n in found]
        assert sims == sorted(sims, reverse=True)

    # -- add / get ----------------------------------------------------------------------------
    def test_get_missing_is_none(self, store: VectorStore) -> None:
        assert store.get(cache_key_hex("never", LLM)) is None

    def test_roundtrip_keeps_every_field(self, store: VectorStore) -> None:
        entry = SemanticEntry(
            key=cache_key_hex("chat", LLM),
            partition="partition ünïcode ✓ :*?[]",
            text="the last user message, ünïcode ✓ 🙂\nsecond line",
            prompt='[{"role":"system","content":"be brief"},{"role":"user","content":"hi 🙂"}]',
            llm_string=LLM,
            response='{"v":1,"g":[{"text":"héllo ✓","generation_info":{"n":1.5}}]}',
            created_at=1_700_000_000.25,
            expires_at=None,
        )
        store.add(entry, unit(vector_at(1.0, self.dimension)))
        assert store.get(entry.key) == entry
        found = store.search(entry.partition, vector_at(1.0, self.dimension), k=1)
        assert [n.entry for n in found] == [entry]

    def test_long_texts(self, store: VectorStore) -> None:
        entry = make_entry(
            "long", text="x" * 100_000, response='{"v":1,"g":[{"text":"' + "y" * 200_000 + '"}]}'
        )
        store.add(entry, vector_at(1.0, self.dimension))
        assert store.get(entry.key) == entry

    def test_add_replaces_by_key(self, store: VectorStore) -> None:
        d = self.dimension
        store.add(make_entry("q", response="old"), vector_at(1.0, d))
        store.add(make_entry("q", response="new"), vector_at(0.5, d))
        got = store.get(make_entry("q").key)
        assert got is not None and got.response == "new"
        found = store.search("p1", vector_at(1.0, d), k=4)
        assert len(found) == 1  # one entry per key, never the old vector beside the new one
        assert found[0].entry.response == "new"
        assert found[0].similarity == pytest.approx(0.5, abs=self.similarity_tolerance)
        assert store.count() == 1

    # -- search -------------------------------------------------------------------------------
    def test_search_ranks_by_cosine_similarity(self, store: VectorStore) -> None:
        d = self.dimension
        for name, cos in [
            ("far", 0.1),
            ("near", 0.95),
            ("mid", 0.6),
            ("opposite", -0.7),
            ("close", 0.8),
        ]:
            store.add(make_entry(name), vector_at(cos, d))
        query = vector_at(1.0, d)
        self.assert_ranked(
            store.search("p1", query, k=3), [("near", 0.95), ("close", 0.8), ("mid", 0.6)]
        )
        everything = store.search("p1", query, k=10)
        self.assert_ranked(
            everything,
            [("near", 0.95), ("close", 0.8), ("mid", 0.6), ("far", 0.1), ("opposite", -0.7)],
        )

    def test_identical_vector_has_similarity_one(self, store: VectorStore) -> None:
        v = unit(list(range(1, self.dimension + 1)))
        store.add(make_entry("same"), v)
        [found] = store.search("p1", v, k=1)
        assert found.similarity == pytest.approx(1.0, abs=self.similarity_tolerance)
        assert found.similarity <= 1.0 + 1e-6

    def test_search_finds_the_nearest_among_many(self, store: VectorStore) -> None:
        import numpy as np

        rng = np.random.default_rng(7)
        vectors = rng.normal(size=(120, self.dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for i, v in enumerate(vectors):
            store.add(make_entry(f"e{i}"), v)
        for i in (0, 17, 119):
            found = store.search("p1", vectors[i], k=3)
            assert found[0].entry.prompt == f"e{i}"
            assert len(found) == 3
            exact = sorted(vectors @ vectors[i], reverse=True)[:3]
            for n, cos in zip(found, exact):
                assert n.similarity == pytest.approx(
                    float(cos), abs=max(self.similarity_tolerance, 1e-4) * 3
                )

    def test_empty_or_unknown_partition_finds_nothing(self, store: VectorStore) -> None:
        assert store.search("nothing here", vector_at(1.0, self.dimension), k=4) == []
        store.add(make_entry("a"), vector_at(1.0, self.dimension))
        assert store.search("other", vector_at(1.0, self.dimension), k=4) == []

    def test_k_larger_than_partition_returns_all(self, store: VectorStore) -> None:
        for i, cos in enumerate((0.9, 0.5)):
            store.add(make_entry(f"e{i}"), vector_at(cos, self.dimension))
        assert len(store.search("p1", vector_at(1.0, self.dimension), k=50)) == 2

    def test_partitions_never_mix(self, store: VectorStore) -> None:
        d = self.dimension
        # The other partition holds the exact query vector; it must not be seen from p1.
        store.add(make_entry("other-exact", partition="p2"), vector_at(1.0, d))
        store.add(make_entry("mine", partition="p1"), vector_at(0.3, d))
        store.add(make_entry("prefix", partition="p1x"), vector_at(1.0, d))
        found = store.search("p1", vector_at(1.0, d), k=4)
        assert [n.entry.prompt for n in found] == ["mine"]
        assert all(n.entry.partition == "p1" for n in found)
        assert [n.entry.prompt for n in store.search("p2", vector_at(1.0, d), k=4)] == [
            "other-exact"
        ]

    # -- delete / clear / count ---------------------------------------------------------------
    def test_delete_removes_from_get_and_search(self, store: VectorStore) -> None:
        d = self.dimension
        store.add(make_entry("keep"), vector_at(0.5, d))
        store.add(make_entry("drop"), vector_at(0.9, d))
        store.delete([make_entry("drop").key, cache_key_hex("never stored", LLM)])
        assert store.get(make_entry("drop").key) is None
        assert [n.entry.prompt for n in store.search("p1", vector_at(1.0, d), k=4)] == ["keep"]
        assert store.count() == 1
        store.delete([])  # nothing to do

    def test_count_and_clear(self, store: VectorStore) -> None:
        assert store.count() == 0
        for i in range(5):
            store.add(
                make_entry(f"e{i}", partition=f"p{i % 2}"), vector_at(0.1 * i, self.dimension)
            )
        assert store.count() == 5
        store.clear()
        assert store.count() == 0
        assert store.search("p0", vector_at(1.0, self.dimension), k=4) == []
        assert store.get(make_entry("e1").key) is None
        store.add(make_entry("after"), vector_at(1.0, self.dimension))  # usable after clear
        assert store.count() == 1

    def test_namespaces_are_isolated(self, store_factory: StoreFactory) -> None:
        d = self.dimension
        first, second = store_factory(), store_factory()
        first.add(make_entry("shared prompt", response="first"), vector_at(1.0, d))
        assert second.get(make_entry("shared prompt").key) is None
        assert second.search("p1", vector_at(1.0, d), k=4) == []
        second.add(make_entry("shared prompt", response="second"), vector_at(0.9, d))
        assert first.get(make_entry("shared prompt").key).response == "first"  # type: ignore[union-attr]
        second.clear()
        assert second.count() == 0
        assert first.count() == 1
        assert [n.entry.response for n in first.search("p1", vector_at(1.0, d), k=4)] == ["first"]

    def test_same_namespace_is_shared(self, store_factory: StoreFactory) -> None:
        first = store_factory(namespace=None)
        second = store_factory(namespace=first.namespace)
        first.add(make_entry("x"), vector_at(1.0, self.dimension))
        assert second.get(make_entry("x").key) is not None
        assert len(second.search("p1", vector_at(1.0, self.dimension), k=1)) == 1

    # -- expiry -------------------------------------------------------------------------------
    def test_expired_entries_are_never_returned(self, store: VectorStore) -> None:
        d = self.dimension
        now = self.now(store)
        store.add(make_entry("short", expires_at=now + 0.6), vector_at(0.99, d))
        store.add(make_entry("long", expires_at=now + 3600), vector_at(0.5, d))
        store.add(make_entry("forever"), vector_at(0.2, d))
        store.add(make_entry("dead on arrival", expires_at=now - 1), vector_at(1.0, d))
        assert store.get(make_entry("dead on arrival").key) is None
        assert [n.entry.prompt for n in store.search("p1", vector_at(1.0, d), k=4)] == [
            "short",
            "long",
            "forever",
        ]
        self.advance(store, 1.0)
        assert store.get(make_entry("short").key) is None
        assert store.get(make_entry("long").key) is not None
        assert [n.entry.prompt for n in store.search("p1", vector_at(1.0, d), k=4)] == [
            "long",
            "forever",
        ]
        # k counts live entries: the expired nearest one does not eat a slot
        assert [n.entry.prompt for n in store.search("p1", vector_at(1.0, d), k=1)] == ["long"]

    def test_store_ttl_bounds_entries(self, store_factory: StoreFactory) -> None:
        if not self.supports_store_ttl:
            pytest.skip("this store has no ttl of its own (entries' expires_at only)")
        store = store_factory(ttl=0.6)
        store.add(make_entry("a"), vector_at(1.0, self.dimension))
        got = store.get(make_entry("a").key)
        assert got is not None
        self.advance(store, 1.0)
        assert store.get(make_entry("a").key) is None
        assert store.search("p1", vector_at(1.0, self.dimension), k=4) == []

    def test_re_adding_restarts_expiry(self, store: VectorStore) -> None:
        d = self.dimension
        store.add(make_entry("a", expires_at=self.now(store) + 0.6), vector_at(1.0, d))
        self.advance(store, 1.0)
        assert store.get(make_entry("a").key) is None
        store.add(make_entry("a", expires_at=self.now(store) + 3600), vector_at(1.0, d))
        assert store.get(make_entry("a").key) is not None
        assert len(store.search("p1", vector_at(1.0, d), k=4)) == 1

    # -- async --------------------------------------------------------------------------------
    def test_async_twins(self, store: VectorStore) -> None:
        d = self.dimension

        async def scenario() -> None:
            await store.aadd(make_entry("a"), vector_at(0.9, d))
            await store.aadd(make_entry("b"), vector_at(0.4, d))
            got = await store.aget(make_entry("a").key)
            assert got is not None and got.prompt == "a"
            found = await store.asearch("p1", vector_at(1.0, d), 2)
            assert [n.entry.prompt for n in found] == ["a", "b"]
            results = await asyncio.gather(
                *(store.asearch("p1", vector_at(1.0, d), 1) for _ in range(10))
            )
            assert all([n.entry.prompt for n in r] == ["a"] for r in results)
            # the sync view agrees with what async wrote
            assert store.get(make_entry("b").key) is not None
            await store.adelete([make_entry("a").key])
            assert await store.aget(make_entry("a").key) is None
            await store.aclear()
            assert await store.asearch("p1", vector_at(1.0, d), 4) == []

        asyncio.run(scenario())
        # a second event loop works too (clients bound to the first one must not leak into it)
        asyncio.run(store.aadd(make_entry("c"), vector_at(1.0, d)))
        assert store.count() == 1

    # -- threads ------------------------------------------------------------------------------
    def test_concurrent_threads_lose_nothing(self, store: VectorStore) -> None:
        import numpy as np

        errors: list[BaseException] = []
        rng = np.random.default_rng(3)
        vectors = rng.normal(size=(4, 10, self.dimension)).astype(np.float32)

        def worker(t: int) -> None:
            try:
                for i in range(10):
                    entry = make_entry(f"t{t}-{i}", partition=f"p{t}")
                    store.add(entry, vectors[t, i] / np.linalg.norm(vectors[t, i]))
                    assert store.get(entry.key) == entry
            except BaseException as exc:  # noqa: BLE001 - surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert store.count() == 40
        for t in range(4):
            assert len(store.search(f"p{t}", vectors[t, 0], k=20)) == 10
