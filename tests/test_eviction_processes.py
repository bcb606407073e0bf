"""Caps and policies under four processes writing at once (SQLite file, local semantic store).

Each writer checks, after every write, that the namespace never holds more than the cap plus
one eviction batch, and the entries the policy should keep (the recently hit for LRU, the most
hit for LFU) are still there at the end.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from llm_cache import Generation, SQLiteCache
from llm_cache.testing.contract import LLM

pytestmark = pytest.mark.slow

CAP, BATCH, WRITERS, WRITES, HOT = 200, 10, 4, 300, 5


def _open(kind: str, where: str, policy: str) -> Any:
    if kind == "sqlite":
        return SQLiteCache(where, max_entries=CAP, evict_batch=BATCH, policy=policy)
    from llm_cache.semantic.cache import SemanticCache
    from test_eviction import HashEmbeddings

    return SemanticCache(HashEmbeddings(), data_dir=where, max_entries=CAP, evict_batch=BATCH, policy=policy)


def _stored(kind: str, cache: Any) -> int:
    return cache.usage()[0] if kind == "sqlite" else cache.store.usage()[0]


def _flush(kind: str, cache: Any) -> None:
    (cache if kind == "sqlite" else cache.store).flush_hits()


def _writer(kind: str, where: str, policy: str, worker: int, start: Any, results: Any) -> None:
    cache = _open(kind, where, policy)
    most = 0
    start.wait()
    for i in range(WRITES):
        cache.update(f"w{worker}-{i}", LLM, [Generation(f"answer {worker} {i}")])
        most = max(most, _stored(kind, cache))
        if policy == "lru" and i % 10 == 0:  # keep the hot entries recently used
            for h in range(HOT):
                assert cache.lookup(f"hot{h}", LLM) is not None, f"hot{h} was evicted under LRU"
            _flush(kind, cache)
    cache.close()
    results.put((worker, most))


def _run(kind: str, where: str, policy: str) -> list[int]:
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(kind, where, policy, w, start, results)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    start.set()
    found = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return [most for _, most in found]


@pytest.mark.parametrize("kind", ["sqlite", "semantic"])
@pytest.mark.parametrize("policy", ["lru", "lfu"])
def test_four_writers_keep_the_cap_and_the_policy(tmp_path: Path, kind: str, policy: str) -> None:
    where = str(tmp_path / ("cache.db" if kind == "sqlite" else "semantic"))
    cache = _open(kind, where, policy)
    for h in range(HOT):
        cache.update(f"hot{h}", LLM, [Generation(f"hot answer {h}")])
    if policy == "lfu":  # the most hit entries; nothing else is hit afterwards
        for _ in range(20):
            for h in range(HOT):
                assert cache.lookup(f"hot{h}", LLM) is not None
        _flush(kind, cache)

    most = _run(kind, where, policy)

    assert max(most) <= CAP + BATCH, f"a writer saw {max(most)} entries, cap {CAP} + batch {BATCH}"
    assert CAP <= _stored(kind, cache) <= CAP + BATCH
    for h in range(HOT):
        assert cache.lookup(f"hot{h}", LLM) is not None, f"hot{h} should have survived {policy}"
    # The triggers' count matches the rows, and (semantic) every row is in the index' source.
    db = where if kind == "sqlite" else str(Path(where) / "semantic.db")
    table = "llm_cache" if kind == "sqlite" else "semantic_entries"
    with sqlite3.connect(db) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == _stored(kind, cache)
    cache.close()
