"""``llm-cache demo``: the "How to cache LLM calls" walk-through, end to end.

It runs against the OpenAI-compatible server at OPENAI_BASE_URL when that is set
(OPENAI_API_KEY is sent if set; local servers such as llama.cpp's need none), and
otherwise against the built-in test server with simulated latency, and says which on
screen, with the model it used: ``--model``, else LLM_CACHE_DEMO_MODEL, else the first
model the server lists at ``/v1/models`` (OpenAI's own API and the built-in server:
``gpt-3.5-turbo-instruct``).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, Iterator, TextIO
from urllib.parse import urlsplit

from .caches.base import BaseCache
from .caches.memory import InMemoryCache
from .caches.sqlite import SQLiteCache
from .globals import set_llm_cache
from .llms.openai import OpenAI

__all__ = ["run_demo", "choose_model", "MODEL_ENV", "DEFAULT_MODEL"]

DEMO_PROMPT = "Tell me a joke"
DEMO_NAMESPACE = "demo"
#: The environment variable that chooses the demo's model (``--model`` wins over it).
MODEL_ENV = "LLM_CACHE_DEMO_MODEL"
#: The model used with OpenAI's own API and with the built-in test server.
DEFAULT_MODEL = "gpt-3.5-turbo-instruct"
# Sent when OPENAI_API_KEY is unset: the SDK needs a key, local servers ignore it.
_PLACEHOLDER_KEY = "no-key-needed"


def choose_model(base_url: str, api_key: str, requested: str | None) -> tuple[str, str]:
    """(model, why it was chosen) for the server at ``base_url``: ``requested`` if given,
    else the first model the server lists at ``/v1/models`` (OpenAI's own API, or a server
    that lists none: :data:`DEFAULT_MODEL`). Used by the demo and ``examples/summarize.py``."""
    if requested:
        return requested, "chosen with --model or " + MODEL_ENV
    if urlsplit(base_url).hostname == "api.openai.com":
        return DEFAULT_MODEL, f"the default; choose another with --model or {MODEL_ENV}"
    try:
        import openai

        listed = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=1, timeout=30).models.list()
        first = next((m.id for m in listed.data), None)
    except Exception as exc:  # any failure: the demo still runs with the default
        return DEFAULT_MODEL, f"the default: listing the server's models failed ({type(exc).__name__})"
    if not first:
        return DEFAULT_MODEL, "the default: the server lists no models"
    return first, f"the first model the server lists; choose another with --model or {MODEL_ENV}"


@contextlib.contextmanager
def _provider(latency: float, model: str | None, out: TextIO) -> Iterator[tuple[str, str, str]]:
    """Yield (base_url, api_key, model) for the demo's provider."""
    requested = model or os.environ.get(MODEL_ENV) or None
    base_url = os.environ.get("OPENAI_BASE_URL")
    if base_url:
        api_key = os.environ.get("OPENAI_API_KEY") or _PLACEHOLDER_KEY
        chosen, why = choose_model(base_url, api_key, requested)
        print(f"Provider: {base_url} (from OPENAI_BASE_URL)\nModel:    {chosen} ({why})", file=out)
        yield base_url, api_key, chosen
        return
    from .testing.fake_openai import FakeOpenAIServer

    chosen = requested or DEFAULT_MODEL
    with FakeOpenAIServer(latency=latency) as server:
        print(
            f"Provider: llm-cache's built-in OpenAI-compatible TEST server at {server.base_url},\n"
            f"          answering with canned text after a simulated {latency:g} s of latency.\n"
            "          Set OPENAI_BASE_URL (and OPENAI_API_KEY if the server needs one) to run\n"
            "          this against a real OpenAI-compatible server.\n"
            f"Model:    {chosen}",
            file=out,
        )
        yield server.base_url, "demo-key-not-secret", chosen


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


def run_demo(
    database_path: str = ".llm_cache.db",
    latency: float = 1.0,
    out: TextIO | None = None,
    model: str | None = None,
) -> None:
    """Print the walk-through: InMemoryCache, SQLiteCache, a model with ``cache=False``,
    then the map-reduce summary. ``model`` (else $LLM_CACHE_DEMO_MODEL, else see the
    module docstring) is the model asked."""
    import sys

    out = out or sys.stdout
    print(f"llm-cache demo: the same prompt twice, {DEMO_PROMPT!r}, on each cache.", file=out)
    with _provider(latency, model, out) as (base_url, api_key, model):
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
    print(
        f"\nDone (model {model}): hits come from the cache in microseconds; "
        "cache=False always asks the provider.",
        file=out,
    )
