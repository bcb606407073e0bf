"""Timing helpers shared by the benchmarks: medians of repeated runs, side by side."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from typing import Awaitable, Callable


def per_call_seconds(fn: Callable[[], object], calls: int, repeats: int = 15) -> list[float]:
    """Seconds per call of ``fn``: ``repeats`` samples, each the mean over ``calls`` calls.

    Averaging a block of calls keeps the timer's own cost (~50 ns) out of microsecond figures;
    taking many blocks lets the caller report a median that ignores scheduler noise.
    """
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        fn()  # warm caches, statement caches, lazy imports
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples.append((time.perf_counter() - start) / calls)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def per_call_seconds_async(fn: Callable[[], Awaitable[object]], calls: int, repeats: int = 15) -> list[float]:
    """Like :func:`per_call_seconds` for a coroutine function, in one event loop."""

    async def run() -> list[float]:
        await fn()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                await fn()
            samples.append((time.perf_counter() - start) / calls)
        return samples

    return asyncio.run(run())


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def fmt_us(seconds: float) -> str:
    micro = seconds * 1e6
    return f"{micro:.2f} µs" if micro < 10 else f"{micro:.1f} µs" if micro < 1000 else f"{micro / 1000:.2f} ms"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
