"""SQLiteCache beyond the contract: processes, schema, statistics."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from llm_cache import ConfigurationError, Generation, SQLiteCache
from llm_cache.caches.sqlite import _HIT_FLUSH_COUNT, _HIT_FLUSH_SECONDS

LLM = '{"model":"m"}'


def _hammer(path: str, process: int, threads: int, per_thread: int) -> int:
    """Write and read back entries from several threads; return the number of store errors."""
    cache = SQLiteCache(path, strict=True)
    failures: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for i in range(per_thread):
                prompt = f"p{process}-t{thread}-{i}"
                cache.update(prompt, LLM, [Generation(prompt)])
                cache.update("shared", LLM, [Generation(f"from {prompt}")])  # contended row
                assert cache.lookup(prompt, LLM) == [Generation(prompt)]
                assert cache.lookup("shared", LLM) is not None
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    cache.close()
    return len(failures)


@pytest.mark.slow
def test_many_threads_in_many_processes_on_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SQLiteCache(path).close()  # create the schema once, as an application would
    processes, threads, per_thread = 4, 8, 30
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        failures = pool.starmap(_hammer, [(path, p, threads, per_thread) for p in range(processes)])
    assert failures == [0] * processes
    cache = SQLiteCache(path)
    missing = [
        (p, t, i)
        for p in range(processes)
        for t in range(threads)
        for i in range(per_thread)
        if cache.lookup(f"p{p}-t{t}-{i}", LLM) != [Generation(f"p{p}-t{t}-{i}")]
    ]
    assert missing == []
    assert cache.count() == processes * threads * per_thread + 1


def test_new_file_from_several_processes_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "fresh.db")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.starmap(_hammer, [(path, p, 2, 5) for p in range(4)]) == [0, 0, 0, 0]


def test_schema_version_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    SQLiteCache(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE llm_cache_meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(ConfigurationError, match="schema version 99"):
        SQLiteCache(path)


def test_a_table_of_another_layout_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with sqlite3.connect(path) as conn:  # an earlier development layout, stamped version 1
        conn.executescript(
            "CREATE TABLE llm_cache_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO llm_cache_meta VALUES ('schema_version', '1');"
            "CREATE TABLE llm_cache (namespace TEXT NOT NULL, key BLOB NOT NULL, prompt TEXT NOT NULL,"
            " llm_string TEXT NOT NULL, response TEXT NOT NULL, created_at REAL NOT NULL,"
            " expires_at REAL, hit_count INTEGER NOT NULL DEFAULT 0, last_hit_at REAL);"
        )
    with pytest.raises(ConfigurationError, match=r"without the columns \['id'\].*delete this one"):
        SQLiteCache(path)


def test_hit_counts_and_entries(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.db")
    cache.update("popular", LLM, [Generation("a")])
    cache.update("rare", LLM, [Generation("b")])
    for _ in range(5):
        cache.lookup("popular", LLM)
    cache.lookup("rare", LLM)
    entries = list(cache.entries())
    assert [(e.prompt, e.hit_count) for e in entries] == [("popular", 5), ("rare", 1)]
    assert entries[0].last_hit_at is not None
    cache.close()
    reopened = SQLiteCache(tmp_path / "c.db")
    assert [e.hit_count for e in reopened.entries()] == [5, 1]


def test_hit_counts_are_flushed_in_batches(tmp_path: Path) -> None:
    # A clock that moves only when told: the time-based flush (every _HIT_FLUSH_SECONDS)
    # fires when this test says so, not when a loaded machine happens to be slow.
    now = [1000.0]
    cache = SQLiteCache(tmp_path / "c.db", clock=lambda: now[0])
    cache.update("p", LLM, [Generation("a")])

    def stored() -> int:
        with sqlite3.connect(tmp_path / "c.db") as conn:
            return int(conn.execute("SELECT hit_count FROM llm_cache").fetchone()[0])

    def hits(n: int) -> None:
        for _ in range(n):
            assert cache.lookup("p", LLM) is not None

    hits(_HIT_FLUSH_COUNT - 1)
    assert cache._flusher is None and stored() == 0  # buffered, nothing written yet
    hits(1)  # the batch is full: a background thread writes it
    assert cache._flusher is not None
    cache._flusher.join()
    assert stored() == _HIT_FLUSH_COUNT
    first = cache._flusher
    hits(_HIT_FLUSH_COUNT - 1)
    assert cache._flusher is first and stored() == _HIT_FLUSH_COUNT
    hits(1)
    assert cache._flusher is not first
    cache._flusher.join()
    assert stored() == 2 * _HIT_FLUSH_COUNT
    hits(3)
    now[0] += _HIT_FLUSH_SECONDS  # a small batch is written once it is old enough
    hits(1)
    cache._flusher.join()
    assert stored() == 2 * _HIT_FLUSH_COUNT + 4
    hits(5)
    cache.close()  # and what is left at close
    assert stored() == 2 * _HIT_FLUSH_COUNT + 9


def test_purge_expired_and_count(tmp_path: Path) -> None:
    now = [1000.0]
    cache = SQLiteCache(tmp_path / "c.db", ttl=10, clock=lambda: now[0])
    cache.update("a", LLM, [Generation("a")])
    now[0] += 5
    cache.update("b", LLM, [Generation("b")])
    now[0] += 6
    assert cache.count() == 1
    assert cache.purge_expired() == 1
    assert cache.lookup("b", LLM) == [Generation("b")]


def test_closed_cache_says_so(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.db")
    cache.close()
    with pytest.raises(ConfigurationError, match="closed"):  # a usage error, not a silent miss
        cache.lookup("x", LLM)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        SQLiteCache(tmp_path / "c.db", ttl=-1)
    with pytest.raises(ConfigurationError, match="namespace"):
        SQLiteCache(tmp_path / "c.db", namespace="")


def test_namespaces_sharing_a_file_never_see_each_other(tmp_path: Path) -> None:
    a, b = SQLiteCache(tmp_path / "c.db", namespace="a"), SQLiteCache(tmp_path / "c.db", namespace="b")
    a.update("p", LLM, [Generation("from a")])
    assert b.lookup("p", LLM) is None
    b.update("p", LLM, [Generation("from b")])
    assert a.lookup("p", LLM) == [Generation("from a")]
    assert (a.count(), b.count()) == (1, 1)


def test_a_row_id_collision_is_a_miss_not_a_wrong_answer(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.db")
    cache.update("p", LLM, [Generation("right")])
    # Force another pair onto the same row id, as a 64-bit collision would.
    other_id = cache._row_id("other prompt", LLM)
    cache._conn().execute("UPDATE llm_cache SET id = ? WHERE prompt = 'p'", (other_id,))
    assert cache.lookup("other prompt", LLM) is None


def test_background_flushes_reuse_one_connection(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.db")
    cache.update("p", LLM, [Generation("a")])
    for _ in range(5):
        for _ in range(1100):
            cache.lookup("p", LLM)
        assert cache._flusher is not None
        cache._flusher.join()
    assert len(cache._connections) == 2  # this thread's and the flusher's
    cache.close()
    assert [e.hit_count for e in SQLiteCache(tmp_path / "c.db").entries()] == [5500]
