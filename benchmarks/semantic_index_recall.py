"""How often the local store's HNSW index finds a query's own question, per expansion_search.

    python benchmarks/bench_semantic.py --sizes 100000 --keep /tmp/sem100k   # build a directory
    python benchmarks/semantic_index_recall.py /tmp/sem100k/ours 64,128,256

Queries are traps_dev's 150 should-hit paraphrases; their questions are in the directory
(with the synthetic filler bench_semantic.py adds). "found" counts queries whose own
question is the first result; "exact" is the same count by brute force over the 150 real
questions only (the most the index can find).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before onnxruntime is imported: offline
import onnxruntime  # noqa: E402,F401  (loaded before usearch: see stores/local.py)

from llm_cache.semantic.embeddings import LocalEmbeddings
from llm_cache.semantic.partition import split_prompt
from llm_cache.semantic.stores.local import LocalVectorStore

LLM = '{"model":"gpt-4o-mini","provider":"openai","temperature":0}'  # as bench_semantic.py
DATA = os.environ.get("LLM_CACHE_EVAL_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "eval"))


def main() -> int:
    directory, efs = sys.argv[1], [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "64,128,256").split(",")]
    rows = [json.loads(line) for line in open(os.path.join(DATA, "traps_dev.jsonl"), encoding="utf-8")]
    probes = [(r["a"], r["b"]) for r in rows if r["same_answer"]][:150]
    embedding = LocalEmbeddings()
    queries = embedding.embed_array([b for _, b in probes])
    questions = embedding.embed_array([a for a, _ in probes])
    exact = sum(1 for i in range(len(probes)) if int(np.argmax(questions @ queries[i])) == i)
    partition = split_prompt("x", LLM).partition
    print("| expansion_search | found | exact | search+fetch |\n|---|---|---|---|")
    for ef in efs:
        store = LocalVectorStore(directory, dimension=384, expansion_search=ef)
        store.search(partition, queries[0], 4)  # load the snapshot (or build the index)
        found, start = 0, time.perf_counter()
        for i, (question, _) in enumerate(probes):
            result = store.search(partition, queries[i], 4)
            found += bool(result) and result[0].entry.text == question
        elapsed = (time.perf_counter() - start) / len(probes)
        print(f"| {ef} | {found} | {exact} | {elapsed * 1000:.2f} ms |", flush=True)
        store._closed = True  # leave the directory's snapshot as it was
    return 0


if __name__ == "__main__":
    sys.exit(main())
