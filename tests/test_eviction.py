"""The eviction policy module (pure) and caps on the local semantic store."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_cache import Generation, SQLiteCache
from llm_cache.embeddings import ArrayEmbeddings
from llm_cache.errors import ConfigurationError
from llm_cache.eviction import (
    Caps,
    EntryStats,
    estimate_tokens,
    parse_size,
    select_victims,
    sqlite_tokens_sql,
    tokens_of,
    usage_tokens,
)
from llm_cache.generation import encode_generations
from llm_cache.semantic.cache import SemanticCache
from llm_cache.semantic.stores.local import LocalVectorStore
from llm_cache.testing.contract import LLM, CapsContract


# -- the policy, without any store ----------------------------------------------------------
def test_lru_lfu_and_cost_rank_as_documented() -> None:
    stats = [
        EntryStats("old-popular", size=100, hits=9, last_used=1.0),
        EntryStats("recent-unpopular", size=100, hits=0, last_used=5.0),
        EntryStats("middle", size=100, hits=3, last_used=3.0),
    ]
    assert select_victims(stats, "lru", remove_entries=1) == ["old-popular"]
    assert select_victims(stats, "lfu", remove_entries=1) == ["recent-unpopular"]
    assert select_victims(stats, "lfu", remove_entries=2) == ["recent-unpopular", "middle"]
    costly = [
        EntryStats("big-cheap", size=10_000, hits=5, last_used=9.0, tokens=50),  # 6*50/10000 = 0.03
        EntryStats("small-dear", size=200, hits=1, last_used=1.0, tokens=1000),  # 2*1000/200 = 10
        EntryStats("unknown", size=400, hits=1, last_used=2.0),  # estimate 100 tokens: 2*100/400 = 0.5
    ]
    assert select_victims(costly, "cost", remove_entries=2) == ["big-cheap", "unknown"]


def test_ties_go_least_recently_used_first() -> None:
    stats = [EntryStats(i, size=10, hits=1, last_used=float(10 - i), tokens=5) for i in range(5)]
    assert select_victims(stats, "lfu", remove_entries=2) == [4, 3]
    assert select_victims(stats, "cost", remove_entries=2) == [4, 3]


def test_bytes_target_takes_as_many_as_needed() -> None:
    stats = [EntryStats(i, size=100 * (i + 1), last_used=float(i)) for i in range(5)]
    assert select_victims(stats, "lru", remove_bytes=250) == [0, 1]  # 100 + 200 >= 250
    assert select_victims(stats, "lru", remove_entries=3, remove_bytes=50) == [0, 1, 2]
    assert select_victims(stats, "lru") == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 5000), st.integers(0, 50), st.floats(0, 1e6), st.none() | st.integers(0, 10**5)), max_size=60),
    st.sampled_from(["lru", "lfu", "cost"]),
    st.integers(0, 70),
    st.integers(0, 100_000),
)
def test_victims_are_the_fewest_lowest_ranked(rows: list[Any], policy: str, n: int, nbytes: int) -> None:
    stats = [EntryStats(i, size, hits, last, tokens) for i, (size, hits, last, tokens) in enumerate(rows)]
    victims = select_victims(stats, policy, remove_entries=n, remove_bytes=nbytes)
    assert len(set(victims)) == len(victims)
    freed = sum(stats[v].size for v in victims)  # type: ignore[index]
    if len(victims) < len(stats):  # targets met, and not one entry more than needed
        assert len(victims) >= n and freed >= nbytes
        if victims:
            assert len(victims) - 1 < n or freed - stats[victims[-1]].size < nbytes  # type: ignore[index]
    survivors = [s for s in stats if s.key not in set(victims)]
    from llm_cache.eviction import _value

    if victims and survivors:  # every victim ranks at or below every survivor
        assert max(_value(stats[v], policy) for v in victims) <= min(_value(s, policy) for s in survivors)  # type: ignore[index]


def test_caps_trigger_one_batch_past_and_say_what_to_remove() -> None:
    caps = Caps(max_entries=100, max_bytes=10_000)
    assert caps.entries_batch == 5 and caps.bytes_batch == 500
    assert not caps.over(105, 10_500) and caps.over(106, 0) and caps.over(0, 10_501)
    assert caps.excess(106, 9_000) == (6, 0) and caps.excess(50, 12_000) == (0, 2_000)
    assert Caps(max_entries=10, batch=4).entries_batch == 4
    assert not Caps().enabled
    for bad in ({"max_entries": 0}, {"max_bytes": -1}, {"policy": "fifo"}, {"max_entries": True}, {"batch": 0}):
        with pytest.raises(ConfigurationError):
            Caps(**bad)


def test_parse_size() -> None:
    assert parse_size("500000") == 500_000
    assert parse_size("64k") == parse_size("64KB") == parse_size("64KiB") == 65_536
    assert parse_size("1.5GB") == int(1.5 * 1024**3)
    for bad in ("", "x", "-5", "0", "nan"):
        with pytest.raises(ConfigurationError):
            parse_size(bad)


def test_usage_is_read_where_writers_put_it_and_estimated_otherwise() -> None:
    assert usage_tokens({"response": {"usage": {"total_tokens": 42}}}) == 42
    assert usage_tokens({"proxy": {"response": {"usage": {"input_tokens": 3, "output_tokens": 4}}}}) == 7
    assert usage_tokens({"token_usage": {"prompt_tokens": 1, "completion_tokens": 2}}) == 3
    assert usage_tokens({"usage": "garbage"}) is None and usage_tokens(None) is None
    assert tokens_of([Generation("a"), Generation("b", generation_info={"usage": {"total_tokens": 9}})]) == 9
    assert estimate_tokens(400) == 100 and estimate_tokens(1) == 1


def test_sqlite_expression_reads_the_same_usage_as_python() -> None:
    conn = sqlite3.connect(":memory:")
    infos = [
        {"response": {"usage": {"total_tokens": 42}}},
        {"proxy": {"response": {"usage": {"total_tokens": 7}}}},
        {"usage": {"total_tokens": 5}},
        {"token_usage": {"total_tokens": 3}},
        {"finish_reason": "stop"},
        None,
    ]
    for info in infos:
        response = encode_generations([Generation("t", generation_info=info)])
        (sql,) = conn.execute(f"SELECT {sqlite_tokens_sql('?1')}", (response,)).fetchone()
        assert sql == usage_tokens(info)
    assert conn.execute(f"SELECT {sqlite_tokens_sql('?1')}", ("{not json",)).fetchone() == (None,)


# -- SQLite: usage accounting by triggers ------------------------------------------------------
def test_sqlite_usage_follows_every_writer_and_old_files(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    uncapped = SQLiteCache(path)
    for i in range(20):
        uncapped.update(f"p{i}", LLM, [Generation("x" * 10)])
    uncapped.update("p0", LLM, [Generation("y" * 50)])  # a replacement changes the bytes
    uncapped.close()
    with sqlite3.connect(path) as conn:
        truth = conn.execute(
            "SELECT count(*), sum(length(CAST(prompt AS BLOB)) + length(CAST(llm_string AS BLOB)) "
            "+ length(CAST(response AS BLOB))) FROM llm_cache"
        ).fetchone()
        # A file written before caps existed: no usage table, no triggers.
        conn.execute("DROP TABLE llm_cache_usage")
        for name in ("insert", "delete", "update"):
            conn.execute(f"DROP TRIGGER llm_cache_usage_{name}")
    capped = SQLiteCache(path, max_entries=5, evict_batch=1)
    assert capped.usage() == tuple(truth)  # filled from the rows on first open
    capped.update("new", LLM, [Generation("z")])
    assert capped.usage()[0] == 5
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM llm_cache").fetchone()[0] == 5


def test_sqlite_expired_entries_are_swept_on_write(tmp_path: Path) -> None:
    now = [1000.0]
    cache = SQLiteCache(tmp_path / "c.db", ttl=10, clock=lambda: now[0])
    for i in range(100):
        cache.update(f"old{i}", LLM, [Generation("x")])
    now[0] += 20
    for i in range(156):  # the 256th write of this object sweeps
        cache.update(f"new{i}", LLM, [Generation("x")])
    assert cache.usage()[0] == 156


def test_sqlite_lru_sees_hits_still_in_the_buffer(tmp_path: Path) -> None:
    now = [1000.0]
    cache = SQLiteCache(tmp_path / "c.db", max_entries=4, evict_batch=1, clock=lambda: now[0])
    for i in range(4):
        now[0] += 1
        cache.update(f"p{i}", LLM, [Generation("x")])
    now[0] += 1
    assert cache.lookup("p0", LLM) is not None  # buffered, not flushed
    for i in range(4, 6):
        now[0] += 1
        cache.update(f"p{i}", LLM, [Generation("x")])
    assert cache.lookup("p0", LLM) is not None and cache.lookup("p1", LLM) is None


# -- the local semantic store ------------------------------------------------------------------
class HashEmbeddings(ArrayEmbeddings):
    """Unrelated texts get unrelated vectors (32 random dimensions): no accidental semantic hits."""

    dimension = 32

    def embed_array(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            v = np.random.default_rng(seed).normal(size=self.dimension).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows) if rows else np.zeros((0, self.dimension), dtype=np.float32)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class TestLocalSemanticCaps(CapsContract):
    def tick(self, cache: SemanticCache) -> None:  # type: ignore[override]
        cache._clock.now += 1.0  # type: ignore[attr-defined]

    def flush(self, cache: SemanticCache) -> None:  # type: ignore[override]
        cache.store.flush_hits()  # type: ignore[attr-defined]

    def stored(self, cache: SemanticCache) -> int:  # type: ignore[override]
        return cache.store.usage()[0]  # type: ignore[attr-defined]

    @pytest.fixture
    def capped_factory(self, tmp_path: Path) -> Iterator[Callable[..., SemanticCache]]:
        made: list[SemanticCache] = []

        def factory(**caps: Any) -> SemanticCache:
            cache = SemanticCache(HashEmbeddings(), data_dir=tmp_path / f"d{len(made)}", clock=FakeClock(), **caps)
            made.append(cache)
            return cache

        yield factory
        for cache in made:
            cache.close()


def test_evicted_ids_leave_another_process_index(tmp_path: Path) -> None:
    """Two store objects on one directory stand in for two processes: entries evicted by
    one are gone from the other's HNSW index (searched, not just filtered by SQLite)."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(400, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    from llm_cache.semantic.stores.base import SemanticEntry

    def entry(i: int) -> SemanticEntry:
        return SemanticEntry(f"k{i}", "part", f"t{i}", f"t{i}", LLM, '{"v":1,"g":[{"text":"a"}]}', float(i))

    reader = LocalVectorStore(tmp_path, dimension=16, exact_limit=8)
    writer = LocalVectorStore(tmp_path, dimension=16, exact_limit=8, max_entries=100, evict_batch=10)
    for i in range(300):
        writer.add(entry(i), vectors[i])
        if i == 150:
            assert reader.search("part", vectors[0], k=1)  # the reader builds its index now
    assert writer.usage()[0] <= 110
    index = reader._indexes["part"].index
    reader.search("part", vectors[299], k=1)  # syncs: evicted ids are removed from the index
    live = {k for (k,) in reader._conn().execute("SELECT id FROM semantic_entries")}
    evicted = set(range(1, 301)) - live
    assert len(evicted) >= 190 and len(index) == len(live)
    assert not any(index.contains(k) for k in evicted)
    hit = reader.search("part", vectors[10], k=1)  # an evicted entry: never returned
    assert not hit or hit[0].entry.key != "k10"
    writer.close()
    reader.close()


def test_old_directories_get_hit_columns_and_usage(tmp_path: Path) -> None:
    store = LocalVectorStore(tmp_path, dimension=4)
    from llm_cache.semantic.stores.base import SemanticEntry

    for i in range(3):
        store.add(SemanticEntry(f"k{i}", "p", "t", "t", LLM, "{}", 1.0), np.eye(4)[i % 4])
    store.close()
    with sqlite3.connect(tmp_path / "semantic.db") as conn:
        conn.execute("DROP TABLE semantic_usage")
        conn.execute("DROP TRIGGER semantic_usage_insert")
        conn.execute("DROP TRIGGER semantic_usage_delete")
        conn.execute("ALTER TABLE semantic_entries DROP COLUMN last_hit_at")
        conn.execute("ALTER TABLE semantic_entries DROP COLUMN hit_count")
    again = LocalVectorStore(tmp_path, dimension=4, max_entries=2, evict_batch=1)
    assert again.usage()[0] == 3
    again.record_hit("k0")
    again.flush_hits()
    assert again.prune().evicted == 1 and again.get("k0") is not None
    again.close()


def test_semantic_cache_refuses_caps_for_a_store_it_did_not_make() -> None:
    store = LocalVectorStore(None, dimension=32)
    with pytest.raises(ConfigurationError, match="pass them to the store"):
        SemanticCache(HashEmbeddings(), store=store, max_entries=5)
    store.close()


def test_prune_dry_run_and_older_than(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = SemanticCache(HashEmbeddings(), data_dir=tmp_path, clock=clock, ttl=100)
    for i in range(10):
        clock.now += 10
        cache.update(f"q{i}", LLM, [Generation(f"a{i}")])
    clock.now += 50  # q0..q4 expired (written 150..110 s ago with a 100 s TTL)
    report = cache.prune(dry_run=True)
    assert (report.expired, report.remaining) == (5, 5) and cache.store.usage()[0] == 10  # type: ignore[attr-defined]
    report = cache.prune(older_than=75)
    assert (report.expired, report.old, report.remaining) == (5, 2, 3)
    assert cache.lookup("q9", LLM) is not None and cache.lookup("q5", LLM) is None
    cache.close()
