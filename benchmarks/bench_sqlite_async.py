"""What moving SQLiteCache's async lookups off the event loop costs.

    python benchmarks/bench_sqlite_async.py            # 7 rounds, ~1 minute on 2 cores
    python benchmarks/bench_sqlite_async.py --rounds 3 # a smoke run

``SQLiteCache.alookup`` runs its read in a worker thread (``asyncio.to_thread``), so the
event loop never waits on file I/O. Until then the read ran inline on the loop; the
``inline`` rows reproduce that with a subclass whose ``_alookup`` calls ``_lookup``
directly. Both run side by side, in the same process, on the same file:

* hit p50: one ``await cache.alookup(...)`` at a time (a lone request's latency), the
  median over rounds of each round's median;
* throughput: 64 concurrent lookups (``asyncio.gather``) repeated, hits per second, the
  median over rounds.

Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from _timing import fmt_us, markdown_table  # noqa: E402

from llm_cache import Generation, SQLiteCache  # noqa: E402

LLM_STRING = '{"model":"gpt-4o-mini","provider":"openai","temperature":0}'
ENTRIES = 1000
CONCURRENCY = 64


class InlineSQLiteCache(SQLiteCache):
    """The previous behaviour: the async read runs on the event loop itself."""

    async def _alookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        return self._lookup(prompt, llm_string)


def prompt_of(i: int) -> str:
    return f"Question number {i}: tell me something interesting about the number {i * 7919 % 100_003}."


async def hit_latency(cache: SQLiteCache, calls: int) -> float:
    """Median seconds of one awaited hit."""
    samples = []
    for i in range(calls):
        prompt = prompt_of(i % ENTRIES)
        start = time.perf_counter()
        result = await cache.alookup(prompt, LLM_STRING)
        samples.append(time.perf_counter() - start)
        assert result is not None
    return statistics.median(samples)


async def throughput(cache: SQLiteCache, batches: int) -> float:
    """Hits per second with CONCURRENCY lookups in flight."""
    start = time.perf_counter()
    for b in range(batches):
        results = await asyncio.gather(
            *(cache.alookup(prompt_of((b * CONCURRENCY + i) % ENTRIES), LLM_STRING) for i in range(CONCURRENCY))
        )
        assert all(r is not None for r in results)
    return batches * CONCURRENCY / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()

    path = os.path.join(tempfile.mkdtemp(prefix="llm-cache-bench-"), "async.db")
    with SQLiteCache(path) as writer:
        for i in range(ENTRIES):
            writer.update(prompt_of(i), LLM_STRING, [Generation(text="An answer " * 20)])
    kinds = {"worker thread (now)": SQLiteCache, "inline on the loop (before)": InlineSQLiteCache}
    p50: dict[str, list[float]] = {k: [] for k in kinds}
    rate: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for name, kind in kinds.items():  # interleaved, so load changes hit both alike
            with kind(path) as cache:

                async def run() -> tuple[float, float]:
                    await hit_latency(cache, 50)  # warm: connections, statement cache
                    return await hit_latency(cache, args.calls), await throughput(cache, args.batches)

                latency, per_second = asyncio.run(run())
            p50[name].append(latency)
            rate[name].append(per_second)
    rows = [
        [name, fmt_us(statistics.median(p50[name])), f"{statistics.median(rate[name]):,.0f}/s"] for name in kinds
    ]
    now, before = (statistics.median(p50[k]) for k in kinds)
    print(markdown_table(["SQLiteCache.alookup", "hit p50", f"throughput ({CONCURRENCY} concurrent)"], rows))
    print(f"\nhit p50 ratio (now / before): {now / before:.1f}x; {args.rounds} rounds, {ENTRIES} entries")


if __name__ == "__main__":
    main()
