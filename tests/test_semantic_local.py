"""SemanticCache on the local store: the cache contract, the semantic suite, the store itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

pytest.register_assert_rewrite("llm_cache.testing.semantic_contract")

from llm_cache import Generation  # noqa: E402
from llm_cache.errors import ConfigurationError  # noqa: E402
from llm_cache.semantic.cache import CONFIG_FILE, DEFAULT_THRESHOLD, SemanticCache, write_config  # noqa: E402
from llm_cache.semantic.stores import local as local_module  # noqa: E402
from llm_cache.semantic.stores.base import SemanticEntry  # noqa: E402
from llm_cache.semantic.stores.local import LocalVectorStore  # noqa: E402
from llm_cache.testing.semantic_contract import SemanticCacheContract, shared_embeddings  # noqa: E402

LLM = '{"model":"m","provider":"test","temperature":0}'


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _factory(made: list[SemanticCache], clock: FakeClock, data_dir: Path | None) -> Callable[..., SemanticCache]:
    def factory(namespace: str = "default", ttl: float | None = None, **kwargs: Any) -> SemanticCache:
        kwargs.setdefault("embedding", shared_embeddings())
        cache = SemanticCache(data_dir=data_dir, namespace=namespace, ttl=ttl, clock=clock, **kwargs)
        made.append(cache)
        return cache

    return factory


class _LocalHooks:
    def advance(self, cache: SemanticCache, seconds: float) -> None:  # type: ignore[override]
        cache._clock.now += seconds  # type: ignore[attr-defined]

    def corrupt(self, cache: SemanticCache, prompt: str, llm_string: str) -> None:  # type: ignore[override]
        from llm_cache.keys import cache_key_hex

        cache.store._conn().execute(  # type: ignore[attr-defined]
            "UPDATE semantic_entries SET response = ? WHERE key = ?", ("{not json", cache_key_hex(prompt, llm_string))
        )


class TestLocalSemanticInMemory(_LocalHooks, SemanticCacheContract):
    """``SemanticCache()``: a private temporary store per cache object."""

    shares_namespaces = False

    @pytest.fixture
    def cache_factory(self) -> Iterator[Callable[..., SemanticCache]]:
        made: list[SemanticCache] = []
        yield _factory(made, FakeClock(), None)
        for cache in made:
            cache.close()


class TestLocalSemanticDataDir(_LocalHooks, SemanticCacheContract):
    """``SemanticCache(data_dir=...)``: one directory shared by namespaces and processes."""

    @pytest.fixture
    def cache_factory(self, tmp_path: Path) -> Iterator[Callable[..., SemanticCache]]:
        made: list[SemanticCache] = []
        yield _factory(made, FakeClock(), tmp_path / "cache")
        for cache in made:
            cache.close()

    def process_source(self, cache: SemanticCache) -> str:  # type: ignore[override]
        return (
            "from llm_cache.semantic.cache import SemanticCache\n"
            f"def make_cache():\n    return SemanticCache(data_dir={cache.data_dir!r}, namespace={cache.namespace!r})\n"
        )


# ---------------------------------------------------------------------- the cache's own behaviour


def test_threshold_comes_from_argument_then_config_then_default(tmp_path: Path) -> None:
    embedding = shared_embeddings()
    with SemanticCache(embedding, data_dir=tmp_path) as cache:
        assert cache.threshold == DEFAULT_THRESHOLD
    write_config(tmp_path, threshold=0.88)
    with SemanticCache(embedding, data_dir=tmp_path) as cache:
        assert cache.threshold == 0.88
    with SemanticCache(embedding, data_dir=tmp_path, threshold=0.95) as cache:
        assert cache.threshold == 0.95
    (tmp_path / CONFIG_FILE).write_text('{"threshold": "high"}')
    with pytest.raises(ConfigurationError, match="threshold"):
        SemanticCache(embedding, data_dir=tmp_path)


def test_bad_arguments_are_explained(tmp_path: Path) -> None:
    embedding = shared_embeddings()
    with pytest.raises(ConfigurationError, match="either"):
        SemanticCache(embedding, data_dir=tmp_path, store=LocalVectorStore(None, dimension=384))
    with pytest.raises(ConfigurationError, match="unknown guard"):
        SemanticCache(embedding, guards=["numbers", "telepathy"])
    with pytest.raises(ConfigurationError, match="cosine"):
        SemanticCache(embedding, threshold=1.5)


def test_explain_shows_each_candidate_verdict() -> None:
    with SemanticCache(shared_embeddings(), threshold=0.8) as cache:
        cache.update("Remind me at 7am", LLM, [Generation("ok")])
        cache.update("How do I bake bread?", LLM, [Generation("knead")])
        verdicts = cache.explain("Remind me at 7pm", LLM)
        assert verdicts[0].text == "Remind me at 7am" and verdicts[0].verdict.startswith("guard numbers:")
        assert verdicts[1].verdict == "below threshold"
        assert cache.lookup("Remind me at 7pm", LLM) is None
        assert cache.semantic_stats["rejected_by_numbers"] == 1


def test_rejected_best_candidate_falls_through_to_the_next() -> None:
    with SemanticCache(shared_embeddings(), threshold=0.8) as cache:
        cache.update("Remind me at 7am", LLM, [Generation("morning")])
        cache.update("Please remind me at 7pm", LLM, [Generation("evening")])
        match = cache.lookup_with_score("Remind me at 7pm", LLM)
        assert match is not None and match.generations[0].text == "evening"


def test_store_errors_fail_open_and_strict_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from llm_cache.errors import CacheBackendError

    def broken(*args: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    with SemanticCache(shared_embeddings()) as cache:
        cache.update("What is the capital of France?", LLM, [Generation("Paris")])
        monkeypatch.setattr(cache.store, "get", broken)
        assert cache.lookup("What is the capital of France?", LLM) is None
        assert cache.lookup_with_score("What is the capital of France?", LLM) is None
        assert cache.stats.errors == 2
        cache.update("Anything?", LLM, [Generation("x")])  # writes still work
    with SemanticCache(shared_embeddings(), strict=True) as strict:
        monkeypatch.setattr(strict.store, "search", broken)
        with pytest.raises(CacheBackendError, match="disk I/O"):
            strict.lookup("anything", LLM)


# ---------------------------------------------------------------------- the store itself


def _unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _entry(i: int, partition: str = "p", expires_at: float | None = None) -> SemanticEntry:
    return SemanticEntry(
        key=f"{i:064x}", partition=partition, text=f"t{i}", prompt=f"t{i}", llm_string="{}",
        response='{"v":1,"g":[{"text":"x"}]}', created_at=0.0, expires_at=expires_at,
    )


@pytest.mark.parametrize("exact_limit", [1000, 8])
def test_search_matches_brute_force(tmp_path: Path, exact_limit: int) -> None:
    """Both paths (exact scan of a small partition, HNSW index of a large one) find the
    true nearest neighbours and report exact cosine similarities."""
    rng = np.random.default_rng(0)
    vectors = _unit(rng, 300)
    store = LocalVectorStore(tmp_path, dimension=16, exact_limit=exact_limit)
    store.add_many([_entry(i) for i in range(300)], vectors)
    store.add_many([_entry(1000 + i, partition="other") for i in range(50)], _unit(rng, 50))
    queries = vectors[:20] + 0.05 * _unit(rng, 20)
    for query in queries:
        query = query / np.linalg.norm(query)
        found = store.search("p", query, k=3)
        truth = np.argsort(-(vectors @ query))[:3]
        assert [n.entry.key for n in found][0] == _entry(int(truth[0])).key
        for n in found:
            i = int(n.entry.text[1:])
            assert n.entry.partition == "p"
            assert abs(n.similarity - float(vectors[i] @ query)) < 5e-3
    assert (len(store._indexes) == 1) == (exact_limit == 8)
    store.close()


def test_indexes_follow_other_writers_removals_and_clear(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vectors = _unit(rng, 40)
    a = LocalVectorStore(tmp_path, dimension=16, exact_limit=4)
    b = LocalVectorStore(tmp_path, dimension=16, exact_limit=4)  # another process, in effect
    a.add_many([_entry(i) for i in range(20)], vectors[:20])
    assert b.search("p", vectors[3], k=1)[0].entry.key == _entry(3).key  # b builds its index
    a.add_many([_entry(i) for i in range(20, 40)], vectors[20:])
    assert b.search("p", vectors[33], k=1)[0].entry.key == _entry(33).key  # incremental add
    a.delete([_entry(33).key])
    assert _entry(33).key not in [n.entry.key for n in b.search("p", vectors[33], k=3)]
    a.add(_entry(5), vectors[33])  # replace: same key, new vector
    assert b.search("p", vectors[33], k=1)[0].entry.key == _entry(5).key
    a.clear()
    assert b.search("p", vectors[5], k=3) == [] and b.count() == 0
    b.add(_entry(7), vectors[7])
    assert a.search("p", vectors[7], k=1)[0].entry.key == _entry(7).key
    a.close()
    b.close()


def test_snapshot_is_reused_and_changes_after_it_replayed(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    vectors = _unit(rng, 60)
    store = LocalVectorStore(tmp_path, dimension=16, exact_limit=4)
    store.add_many([_entry(i) for i in range(50)], vectors[:50])
    store.search("p", vectors[0], k=1)
    store.close()  # saves the index
    files = os.listdir(tmp_path / local_module.INDEX_DIR)
    assert len(files) == 1
    writer = LocalVectorStore(tmp_path, dimension=16, exact_limit=4)
    writer.add_many([_entry(i) for i in range(50, 60)], vectors[50:])  # after the snapshot
    writer.delete([_entry(10).key])
    reopened = LocalVectorStore(tmp_path, dimension=16, exact_limit=4)
    loaded = []
    original = reopened._from_snapshot

    def spy(conn: Any, partition: str) -> Any:
        loaded.append(original(conn, partition))
        return loaded[-1]

    reopened._from_snapshot = spy  # type: ignore[method-assign]
    assert reopened.search("p", vectors[55], k=1)[0].entry.key == _entry(55).key
    assert loaded and loaded[0] is not None  # built from the snapshot, not from scratch
    assert _entry(10).key not in [n.entry.key for n in reopened.search("p", vectors[10], k=3)]
    reopened.close()
    writer.close()
    assert len(os.listdir(tmp_path / local_module.INDEX_DIR)) == 1  # old snapshots removed


def test_pruned_removal_log_forces_a_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_module, "_REMOVED_KEEP", 3)
    monkeypatch.setattr(local_module, "_REMOVED_PRUNE_EVERY", 5)
    rng = np.random.default_rng(3)
    vectors = _unit(rng, 30)
    a = LocalVectorStore(tmp_path, dimension=16, exact_limit=4)
    b = LocalVectorStore(tmp_path, dimension=16, exact_limit=4)
    a.add_many([_entry(i) for i in range(30)], vectors)
    b.search("p", vectors[0], k=1)
    a.delete([_entry(i).key for i in range(10)])  # more than the log keeps
    found = [n.entry.key for n in b.search("p", vectors[2], k=5)]
    assert not {_entry(i).key for i in range(10)} & set(found)
    assert len(found) == 5
    a.close()
    b.close()


def test_expired_entries_are_not_returned_and_can_be_purged(tmp_path: Path) -> None:
    clock = FakeClock()
    rng = np.random.default_rng(4)
    vectors = _unit(rng, 3)
    store = LocalVectorStore(tmp_path, dimension=16, clock=clock)
    store.add(_entry(0, expires_at=clock.now + 10), vectors[0])
    store.add(_entry(1), vectors[1])
    assert store.get(_entry(0).key) is not None
    clock.now += 11
    assert store.get(_entry(0).key) is None
    assert _entry(0).key not in [n.entry.key for n in store.search("p", vectors[0], k=3)]
    assert store.purge_expired() == 1 and store.count() == 1
    store.close()


def test_dimension_is_fixed_per_directory(tmp_path: Path) -> None:
    LocalVectorStore(tmp_path, dimension=16).close()
    with pytest.raises(ConfigurationError, match="16-dimensional"):
        LocalVectorStore(tmp_path, dimension=384)


def test_index_is_int8_quantised_and_reports_memory() -> None:
    # Memory per entry at scale is measured by benchmarks/bench_semantic.py (1M entries);
    # a small index is dominated by fixed overhead and reserved capacity, so only the
    # quantisation is checked here.
    rng = np.random.default_rng(5)
    store = LocalVectorStore(None, dimension=384, exact_limit=16)
    store.add_many([_entry(i) for i in range(100)], _unit(rng, 100, 384))
    store.search("p", _unit(rng, 1, 384)[0], k=1)
    assert str(store._indexes["p"].index.dtype).lower().endswith("i8")
    assert store.memory_bytes() > 0
    store.close()
