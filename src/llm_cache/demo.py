"""``llm-cache demo``: the "How to cache LLM calls" walk-through, end to end.

It runs against OPENAI_BASE_URL / OPENAI_API_KEY when both are set, and otherwise
against the built-in OpenAI-compatible test server with simulated latency, and says
which on screen.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, Iterator, TextIO

from .caches.base import BaseCache
from .caches.memory import InMemoryCache
from .caches.sqlite import SQLiteCache
from .globals import set_llm_cache
from .llms.openai import OpenAI

__all__ = ["run_demo"]

DEMO_PROMPT = "Tell me a joke"
DEMO_NAMESPACE = "demo"


@contextlib.contextmanager
def _provider(latency: float, out: TextIO) -> Iterator[tuple[str, str, str]]:
    """Yield (base_url, api_key, model) for the demo's provider."""
    base_url, api_key = os.environ.get("OPENAI_BASE_URL"), os.environ.get("OPENAI_API_KEY")
    model = os.environ.get("LLM_CACHE_DEMO_MODEL", "gpt-3.5-turbo-instruct")
    if base_url and api_key:
        print(f"Provider: {base_url} (from OPENAI_BASE_URL), model {model}", file=out)
        yield base_url, api_key, model
        return
    from .testing.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(latency=latency) as server:
        print(
            f"Provider: llm-cache's built-in OpenAI-compatible TEST server at {server.base_url},\n"
            f"          answering with canned text after a simulated {latency:g} s of latency.\n"
            "          Set OPENAI_BASE_URL and OPENAI_API_KEY to run this against a real provider.",
            file=out,
        )
        yield server.base_url, "demo-key-not-secret", model


def _timed(call: Callable[[], str]) -> tuple[float, str]:
    start = time.perf_counter()
    text = call()
    return time.perf_counter() - start, text


def _show(label: str, seconds: float, text: str, out: TextIO) -> None:
    answer = " ".join(text.split())
    if len(answer) > 70:
        answer = answer[:67] + "..."
    print(f"  {label:<22} {_format_seconds(seconds):>10}   {answer!r}", file=out)


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 0.1 else f"{seconds * 1000:.2f} ms"


def _section(title: str, out: TextIO) -> None:
    print(f"\n== {title} ==", file=out)


def _miss_then_hit(cache: BaseCache, llm: OpenAI, out: TextIO) -> None:
    set_llm_cache(cache)
    try:
        seconds, text = _timed(lambda: llm(DEMO_PROMPT))
        _show("first call (miss)", seconds, text, out)
        seconds, text = _timed(lambda: llm(DEMO_PROMPT))
        _show("second call (hit)", seconds, text, out)
        print(f"  cache stats: {cache.stats.hits} hit, {cache.stats.misses} miss", file=out)
    finally:
        set_llm_cache(None)


def run_demo(database_path: str = ".llm_cache.db", latency: float = 1.0, out: TextIO | None = None) -> None:
    """Print the walk-through: InMemoryCache, SQLiteCache, then a model with ``cache=False``."""
    import sys

    out = out or sys.stdout
    print(f"llm-cache demo: the same prompt twice, {DEMO_PROMPT!r}, on each cache.", file=out)
    with _provider(latency, out) as (base_url, api_key, model):
        # The demo's first import of the openai SDK takes about a second; do it before timing.
        make = lambda **kw: OpenAI(model_name=model, n=2, best_of=2, base_url=base_url, api_key=api_key, **kw)  # noqa: E731
        make().client

        _section("InMemoryCache()", out)
        _miss_then_hit(InMemoryCache(), make(), out)

        _section(f"SQLiteCache(database_path={database_path!r})", out)
        sqlite_cache = SQLiteCache(database_path, namespace=DEMO_NAMESPACE)
        sqlite_cache.clear()  # only the demo's own namespace, so the first call is a real miss
        _miss_then_hit(sqlite_cache, make(), out)
        sqlite_cache.close()

        _section("OpenAI(..., cache=False) with a global cache set", out)
        set_llm_cache(InMemoryCache())
        try:
            uncached = make(cache=False)
            for attempt in (1, 2):
                seconds, text = _timed(lambda: uncached(DEMO_PROMPT))
                _show(f"call {attempt} (no cache)", seconds, text, out)
        finally:
            set_llm_cache(None)

        from .demo_summary import run_summary_demo

        run_summary_demo(base_url, api_key, model, database_path, out)
    print("\nDone: hits come from the cache in microseconds; cache=False always asks the provider.", file=out)
