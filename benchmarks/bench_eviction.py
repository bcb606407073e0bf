"""Size caps: what a full, capped cache costs against an uncapped one, and bytes per entry.

    python benchmarks/bench_eviction.py [--entries 100000] [--cap 50000] [--samples 2000]
                                        [--backends sqlite,semantic] [--bytes-entries 5000]
                                        [--servers]

For SQLite and the local semantic store, two caches side by side on the same entries:
uncapped, and ``max_entries=cap`` (LRU, the default batch of cap/20). Each is filled with
``--entries`` entries one ``update`` at a time; then both look up ``--samples`` entries
still present, taking turns query by query (so the machine's load falls on both alike):

* **insert rate at the cap**: entries per second over the writes made after the capped
  cache was full (writes ``cap..entries``; the same writes for the uncapped run), so it
  includes every eviction batch;
* **hit p50 / p99**: per lookup, of entries present in both (an exact hit; for the
  semantic cache, the exact-match path: no embedding);
* for the semantic cache, **vector-search lookups**: a paraphrase's text (not stored) whose
  vector lies near the entry's, so the lookup searches the HNSW index; with the cap the
  index holds half the entries.

The semantic cache embeds with a table of random 384-d unit vectors (no model), so the
figures are the store's. Then **bytes per entry** of each backend for ``--bytes-entries``
typical entries (a 200-character prompt, a 600-character answer with usage): the file (with
WAL and, for the semantic store, the saved index) over the count; the payload bytes the
caps count; for memory, Python heap (tracemalloc); with ``--servers``, Redis (``used_memory``
growth) and PostgreSQL (``pg_total_relation_size``), started by the script unless
REDIS_URL / POSTGRES_URL are set.

Nothing is asserted; figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _timing import fmt_us, markdown_table  # noqa: E402

from llm_cache import Generation, InMemoryCache, SQLiteCache  # noqa: E402
from llm_cache.embeddings import ArrayEmbeddings  # noqa: E402

LLM = '{"model":"gpt-4o-mini","provider":"openai","temperature":0}'
D = 384


def prompt(i: int) -> str:
    return f"Question {i}: " + ("please explain how the thing number %d works, briefly. " % i) * 3


def paraphrase(i: int) -> str:
    """A different text whose (table) vector lies near entry ``i``'s: a semantic hit."""
    return prompt(i).replace("briefly", "in short")


def answer(i: int) -> list[Generation]:
    text = f"Answer {i}. " + "It works by doing the right steps in the right order, as measured. " * 9
    usage = {"prompt_tokens": 45, "completion_tokens": 140, "total_tokens": 185}
    return [Generation(text=text, generation_info={"finish_reason": "stop", "usage": usage})]


class TableEmbeddings(ArrayEmbeddings):
    """Random unit vectors looked up by text: an embedding that costs (almost) nothing."""

    dimension = D

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        m = rng.normal(size=(n, D)).astype(np.float32)
        m /= np.linalg.norm(m, axis=1, keepdims=True)
        # Paraphrase i sits at cosine ~0.97 from entry i: a hit at the default threshold.
        near = m + rng.normal(scale=0.012, size=(n, D)).astype(np.float32)
        near /= np.linalg.norm(near, axis=1, keepdims=True)
        self.vectors = np.concatenate([m, near])
        self.index = {prompt(i): i for i in range(n)}
        self.index.update({paraphrase(i): n + i for i in range(n)})

    def embed_array(self, texts: list[str]) -> np.ndarray:
        return self.vectors[[self.index.get(t, 0) for t in texts]]


def make(kind: str, where: str, cap: int | None, embeddings: Any) -> Any:
    if kind == "sqlite":
        return SQLiteCache(os.path.join(where, "cache.db"), max_entries=cap)
    from llm_cache.semantic.cache import SemanticCache

    return SemanticCache(embeddings, data_dir=where, max_entries=cap)


def fill(cache: Any, args: argparse.Namespace) -> dict[str, float]:
    """Write every entry one ``update`` at a time; the insert rates before and at the cap."""
    n, full = args.entries, args.cap
    start = time.perf_counter()
    for i in range(full):
        cache.update(prompt(i), LLM, answer(i))
    at_cap = time.perf_counter()
    for i in range(full, n):
        cache.update(prompt(i), LLM, answer(i))
    end = time.perf_counter()
    return {"insert_first": full / (at_cap - start), "insert_at_cap": (n - full) / (end - at_cap)}


def timed_lookups(caches: list[Any], texts: list[str]) -> list[tuple[list[float], int]]:
    """Per cache, sorted lookup times of ``texts`` and how many hit. The caches take turns
    query by query, so a change in the machine's load falls on all of them alike."""
    for text in texts[:200]:  # warm the page cache, statement caches and index pages
        for cache in caches:
            cache.lookup(text, LLM)
    times: list[list[float]] = [[] for _ in caches]
    found = [0] * len(caches)
    for text in texts:
        for j, cache in enumerate(caches):
            t = time.perf_counter()
            hit = cache.lookup(text, LLM)
            times[j].append(time.perf_counter() - t)
            found[j] += hit is not None
    return [(sorted(t), f) for t, f in zip(times, found)]


def run(kind: str, args: argparse.Namespace, embeddings: Any) -> dict[str, dict[str, float]]:
    """Uncapped and capped caches of ``kind``, filled one after the other, then timed together."""
    where = [tempfile.mkdtemp(prefix=f"bench-evict-{kind}-") for _ in range(2)]
    caches = [make(kind, where[0], None, embeddings), make(kind, where[1], args.cap, embeddings)]
    try:
        results = [fill(cache, args) for cache in caches]
        # Entries written last are present in both (LRU keeps the most recent).
        rng = np.random.default_rng(1)
        picks = [int(i) for i in rng.integers(args.entries - args.cap // 2, args.entries, size=args.samples)]
        for result, (times, found) in zip(results, timed_lookups(caches, [prompt(i) for i in picks])):
            assert found == len(picks), "an entry expected in both caches is missing"
            result.update(hit_p50=times[len(times) // 2], hit_p99=times[int(len(times) * 0.99)])
        if kind == "semantic":
            # The vector-search path: the text differs, so the exact lookup misses first.
            # HNSW is approximate: on random vectors a few neighbours are not found.
            for result, (times, found) in zip(results, timed_lookups(caches, [paraphrase(i) for i in picks])):
                result.update(semantic_hit_p50=times[len(times) // 2], semantic_found=found)
        for result, cache in zip(results, caches):
            result["stored"] = cache.usage()[0] if kind == "sqlite" else cache.store.usage()[0]
        return {"uncapped": results[0], "capped": results[1]}
    finally:
        for cache, path in zip(caches, where):
            cache.close()
            shutil.rmtree(path, ignore_errors=True)


def dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def bytes_per_entry(args: argparse.Namespace, embeddings: Any) -> list[list[str]]:
    n = args.bytes_entries
    rows: list[list[str]] = []

    def row(name: str, total: int, payload: int | None, note: str) -> None:
        rows.append([name, f"{total / n:,.0f}", "-" if payload is None else f"{payload / n:,.0f}", note])

    where = tempfile.mkdtemp(prefix="bench-bytes-")
    try:
        cache = SQLiteCache(os.path.join(where, "c.db"))
        for i in range(n):
            cache.update(prompt(i), LLM, answer(i))
        payload = cache.usage()[1]
        cache._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cache.close()
        row("SQLiteCache", dir_bytes(where), payload, "file after checkpoint")
        shutil.rmtree(where)

        from llm_cache.semantic.cache import SemanticCache

        os.makedirs(where)
        sem = SemanticCache(embeddings, data_dir=where)
        for i in range(n):
            sem.update(prompt(i), LLM, answer(i))
        payload = sem.store.usage()[1]
        sem.lookup("not cached", LLM)  # builds the partition's index, saved by close()
        sem.close()
        row("SemanticCache (local)", dir_bytes(where), payload, "SQLite + saved int8 HNSW index, 384-d")
        shutil.rmtree(where)
    finally:
        shutil.rmtree(where, ignore_errors=True)

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    mem = InMemoryCache()
    for i in range(n):
        mem.update(prompt(i), LLM, answer(i))
    heap = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    row("InMemoryCache", heap, None, "Python heap (tracemalloc)")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    mem2 = InMemoryCache(max_bytes=10**12)  # a byte cap keeps per-entry statistics
    for i in range(n):
        mem2.update(prompt(i), LLM, answer(i))
    heap = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    row("InMemoryCache(max_bytes=)", heap, mem2._bytes, "with per-entry statistics")
    del mem, mem2

    if args.servers:
        rows.extend(server_bytes(n))
    return rows


def server_bytes(n: int) -> list[list[str]]:
    from sqlalchemy import create_engine, text

    from llm_cache.caches.redis import RedisCache
    from llm_cache.caches.sql import SQLAlchemyCache
    from llm_cache.testing.servers import PostgresServer, RedisServer

    rows = []
    with RedisServer.from_env_or_start() as redis_server:
        client = redis_server.client()
        ns = f"bench-bytes-{os.getpid()}"
        before = client.info("memory")["used_memory"]
        cache = RedisCache(redis_url=redis_server.url, namespace=ns)
        for i in range(n):
            cache.update(prompt(i), LLM, answer(i))
        used = client.info("memory")["used_memory"] - before
        cache.clear()
        cache.close()
        rows.append(["RedisCache", f"{used / n:,.0f}", "-", "used_memory growth"])
    with PostgresServer.from_env_or_start() as pg:
        engine = create_engine(pg.url)
        cache = SQLAlchemyCache(engine, namespace=f"bench-bytes-{os.getpid()}")
        size_sql = text("SELECT pg_total_relation_size('llm_cache_full')")
        with engine.connect() as conn:
            before = conn.execute(size_sql).scalar_one()
        for i in range(n):
            cache.update(prompt(i), LLM, answer(i))
        with engine.connect() as conn:
            size = conn.execute(size_sql).scalar_one() - before
        cache.clear()
        cache.close()
        engine.dispose()
        rows.append(["SQLAlchemyCache (PostgreSQL)", f"{size / n:,.0f}", "-", "pg_total_relation_size growth"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--cap", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--backends", default="sqlite,semantic")
    parser.add_argument("--bytes-entries", type=int, default=5000)
    parser.add_argument("--servers", action="store_true", help="also measure Redis and PostgreSQL bytes per entry")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 0 < args.cap < args.entries:
        parser.error("--cap must be between 0 and --entries")
    embeddings = TableEmbeddings(args.entries)
    results: dict[str, Any] = {}
    rows = []
    for kind in args.backends.split(","):
        results[kind] = run(kind, args, embeddings)
        free, capped = results[kind]["uncapped"], results[kind]["capped"]
        rows.append(
            [
                kind,
                f"{free['hit_p50'] * 1e6:.1f} / {capped['hit_p50'] * 1e6:.1f} µs",
                f"{capped['hit_p50'] / free['hit_p50']:.2f}",
                f"{fmt_us(free['hit_p99'])} / {fmt_us(capped['hit_p99'])}",
                f"{free['insert_at_cap']:,.0f} / {capped['insert_at_cap']:,.0f}",
                f"{capped['insert_at_cap'] / free['insert_at_cap']:.2f}",
                f"{free['stored']:,} / {capped['stored']:,}",
            ]
        )
        if kind == "semantic":
            p50_free, p50_capped = free["semantic_hit_p50"], capped["semantic_hit_p50"]
            rows.append(
                ["semantic: vector-search lookup", f"{p50_free * 1e6:.1f} / {p50_capped * 1e6:.1f} µs", f"{p50_capped / p50_free:.2f}"]
                + ["-"] * 3
                + [f"found {free['semantic_found']:,} / {capped['semantic_found']:,} of {args.samples:,}"]
            )
    print(f"entries {args.entries:,}, cap {args.cap:,} (LRU, batch {max(1, args.cap // 20):,}), {args.samples:,} hits")
    print(
        markdown_table(
            ["backend", "hit p50 uncapped / capped", "ratio", "hit p99", "inserts/s at cap: uncapped / capped", "ratio", "entries kept"],
            rows,
        )
    )
    table = bytes_per_entry(args, embeddings)
    print(f"\nbytes per entry ({args.bytes_entries:,} entries: 200-char prompt, 600-char answer with usage)")
    print(markdown_table(["backend", "bytes/entry", "payload bytes/entry (what max_bytes counts)", "measured as"], table))
    if args.json:
        print(json.dumps({"runs": results, "bytes": table}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
