"""Where a semantic lookup's time goes on a large directory, static and error-bounded.

    python benchmarks/bench_semantic.py --sizes "" --million --no-gptcache --keep /tmp/sem
    python benchmarks/semantic_lookup_breakdown.py /tmp/sem/1000000/ours [--rounds 3]

Opens a directory kept by bench_semantic.py (the real questions of traps_dev's should-hit
pairs plus synthetic filler) twice, as ``SemanticCache()`` (static threshold, the
defaults) and as ``SemanticCache(max_error_rate=0.02)``, and times for each of the 150
paraphrase probes, taking turns query by query so that the machine's load falls on all
alike:

* **embedding alone** (``LocalEmbeddings``, the cache's embedding memo emptied);
* **static lookup**: ``lookup()`` with its embedding, the probes that hit;
* **error-bounded lookup**: ``lookup()`` with its embedding, every probe: whether the
  decision is a hit or a miss the lookup does the same work up to it (search, the
  neighbours' answers grouped, the candidate's learned record read, the bound computed).
  The directory has no learned outcomes, so these lookups decide "miss";
* **search + fetch**: the store's ``search`` alone, with a precomputed vector.

Nothing is asserted; figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before onnxruntime is imported: offline
import onnxruntime  # noqa: E402,F401  (loaded before usearch: see stores/local.py)

from llm_cache.semantic.cache import SemanticCache
from llm_cache.semantic.embeddings import LocalEmbeddings
from llm_cache.semantic.partition import split_prompt

LLM = '{"model":"gpt-4o-mini","provider":"openai","temperature":0}'  # as bench_semantic.py
DATA = os.environ.get("LLM_CACHE_EVAL_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "eval"))


def timed(fn: object) -> float:
    gc.disable()
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    elapsed = time.perf_counter() - start
    gc.enable()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(os.path.join(DATA, "traps_dev.jsonl"), encoding="utf-8")]
    probes = [r["b"] for r in rows if r["same_answer"]][:150]
    embedding = LocalEmbeddings()
    static = SemanticCache(embedding, data_dir=args.directory)
    bounded = SemanticCache(embedding, data_dir=args.directory, max_error_rate=0.02)
    partition = split_prompt("x", LLM).partition
    vectors = {p: embedding.embed_array([p])[0] for p in probes}
    for p in probes[:20]:  # load the index (snapshot) and warm both caches
        static.lookup(p, LLM)
        bounded.lookup(p, LLM)
    samples: dict[str, list[float]] = {"embedding alone": [], "static lookup (hits)": [], "error-bounded lookup": [], "search + fetch": []}
    for _ in range(args.rounds):
        for p in probes:
            static._memo.clear()
            bounded._memo.clear()
            samples["embedding alone"].append(timed(lambda: embedding.embed_array([p])))
            hit = []
            elapsed = timed(lambda: hit.append(static.lookup(p, LLM)))
            if hit[0] is not None:
                samples["static lookup (hits)"].append(elapsed)
            samples["error-bounded lookup"].append(timed(lambda: bounded.lookup(p, LLM)))
            samples["search + fetch"].append(timed(lambda: static.store.search(partition, vectors[p], static.k)))
    embed_p50 = statistics.median(samples["embedding alone"])
    print(f"{args.directory}: {static.store.count():,} entries, {args.rounds} rounds of {len(probes)} probes")
    print("| measured | p50 | p99 | p50 / embedding alone |\n|---|---|---|---|")
    for name, values in samples.items():
        values.sort()
        p50 = statistics.median(values)
        print(f"| {name} ({len(values)}) | {p50 * 1e3:.2f} ms | {values[int(len(values) * 0.99)] * 1e3:.2f} ms | {p50 / embed_p50:.2f} |")
    static.close()
    bounded.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
