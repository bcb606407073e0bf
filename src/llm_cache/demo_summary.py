"""The demo's map-reduce section: summarise three chunks of the State of the Union, twice.

The map model goes through the global SQLite cache and the reduce model is built with
``cache=False``, as in LangChain's "How to cache LLM calls" notebook: the second run is
faster because its three map steps are answered by the cache, while the reduce step is
asked of the provider again (so, with a real model, its wording may change).

``llm-cache demo`` calls :func:`run_summary_demo` with the provider it chose.
"""

from __future__ import annotations

import textwrap
import time
from importlib import resources
from typing import Any, TextIO

from .caches.sqlite import SQLiteCache
from .chains import CharacterTextSplitter, Document, StepReport, load_summarize_chain
from .globals import get_llm_cache, set_llm_cache
from .llms.openai import OpenAI

__all__ = ["run_summary_demo", "state_of_the_union"]

SUMMARY_NAMESPACE = "demo-summary"
SUMMARY_CHUNKS = 3


def state_of_the_union() -> str:
    """The 2022 State of the Union address (a public-domain US government text), as
    shipped inside the package (``llm_cache/data/state_of_the_union.txt``)."""
    return (
        resources.files("llm_cache")
        .joinpath("data")
        .joinpath("state_of_the_union.txt")  # one name per call: Python 3.10's Traversable
        .read_text(encoding="utf-8")
    )


def _describe_steps(steps: list[StepReport], format_seconds: Any) -> str:
    """One line saying which steps hit, e.g.
    ``map: 3 hits (one call, 0.40 ms); reduce: sent to the provider (1.00 s)``."""
    parts = []
    for kind in ("map", "collapse", "reduce"):
        of_kind = [s for s in steps if s.kind == kind]
        if not of_kind:
            continue
        calls = {(s.round, s.seconds) for s in of_kind}
        seconds = format_seconds(sum(sec for _, sec in calls))
        if kind == "reduce":
            where = "hit" if of_kind[0].cached else "sent to the provider"
            parts.append(f"reduce: {where} ({seconds})")
            continue
        hits = sum(s.cached for s in of_kind)
        misses = len(of_kind) - hits
        counts = [
            f"{n} {word}{'' if n == 1 else ('es' if word == 'miss' else 's')}"
            for n, word in ((hits, "hit"), (misses, "miss"))
            if n
        ]
        how = "one call" if len(calls) == 1 else f"{len(calls)} calls"
        parts.append(f"{kind}: {', '.join(counts)} ({how}, {seconds})")
    return "; ".join(parts)


def run_summary_demo(
    base_url: str,
    api_key: str,
    model: str,
    database_path: str = ".llm_cache.db",
    out: TextIO | None = None,
) -> list[dict[str, Any]]:
    """Print the map-reduce section of ``llm-cache demo``; return both runs' results.

    Uses its own namespace (``demo-summary``) of the SQLite file at ``database_path``,
    cleared first so that the first run really calls the provider, as the global cache
    for the duration (the previous global cache is restored afterwards).
    """
    import sys

    # Imported here, not at the top: demo.py imports this module, and these helpers keep
    # the two sections looking the same.
    from .demo import _format_seconds, _section, _show

    out = out or sys.stdout
    text = state_of_the_union()
    splitter = CharacterTextSplitter()
    chunks = splitter.split_text(text)
    docs = [Document(page_content=chunk) for chunk in chunks[:SUMMARY_CHUNKS]]

    _section(f"Map-reduce summary of the State of the Union ({len(docs)} chunks), run twice", out)
    print(
        f"  CharacterTextSplitter(chunk_size={splitter.chunk_size}, "
        f"chunk_overlap={splitter.chunk_overlap}) cut the speech ({len(text):,} characters)\n"
        f"  into {len(chunks)} chunks; the first {len(docs)} are summarised one by one (map), "
        "then together (reduce).\n"
        f"  map model:    OpenAI(model_name={model!r}) through the global SQLiteCache\n"
        f"  reduce model: OpenAI(model_name={model!r}, cache=False)",
        file=out,
    )
    cache = SQLiteCache(database_path, namespace=SUMMARY_NAMESPACE)
    cache.clear()  # this namespace only, so that run 1 really asks the provider
    previous = get_llm_cache()
    set_llm_cache(cache)
    results: list[dict[str, Any]] = []
    try:
        llm = OpenAI(model_name=model, base_url=base_url, api_key=api_key)
        reduce_llm = OpenAI(model_name=model, base_url=base_url, api_key=api_key, cache=False)
        _ = (llm.client, reduce_llm.client)  # create the SDK clients before timing anything
        chain = load_summarize_chain(llm, chain_type="map_reduce", reduce_llm=reduce_llm)
        timings = []
        for run in (1, 2):
            start = time.perf_counter()
            result = chain.invoke({"input_documents": docs})
            timings.append(time.perf_counter() - start)
            results.append(result)
            _show(f"run {run}", timings[-1], result["output_text"], out)
            print(f"  {'':<22} {_describe_steps(result['steps'], _format_seconds)}", file=out)
    finally:
        set_llm_cache(previous)
        cache.close()

    map_hits = sum(1 for s in results[1]["steps"] if s.kind == "map" and s.cached)
    same = results[0]["output_text"] == results[1]["output_text"]
    ratio = timings[0] / timings[1] if timings[1] > 0 else float("inf")
    print(
        f"  Run 2 took {_format_seconds(timings[1])} instead of {_format_seconds(timings[0])} "
        f"({f'{ratio:.1f}x faster' if ratio >= 1 else 'not faster this time'}): "
        f"{map_hits} of {len(docs)} map steps came from the cache,\n"
        "  and the reduce step (cache=False) was sent to the provider again, "
        "so its answer may differ.\n"
        f"  Here the two summaries are {'identical' if same else 'different'}"
        + (" (this provider answered the same prompt the same way)." if same else ".")
        + "\n  Summary (run 2):",
        file=out,
    )
    summary = " ".join(results[1]["output_text"].split())
    print(
        textwrap.fill(summary, width=96, initial_indent="    ", subsequent_indent="    "), file=out
    )
    return results
