"""Fit the shipped prior of error-bounded semantic caches (semantic/data/bounded_prior.json).

    python benchmarks/fit_semantic_prior.py --vectors-cache /tmp/llmc-vectors

Data: ../shared/data/eval/clinc150_train.jsonl ONLY (CC BY 3.0, Clinc; Larson et al., 2019),
which may be fitted on and shipped with attribution (semantic/data/NOTICE). Neither of the
reported streams (Banking77, CLINC150 validation) is used.

Procedure: four streams of 3,100 queries drawn from the file (random.Random(100 + i)),
each run through a cache that never answers, so that every query with a candidate is
judged (its candidate's answer against its own intent). The outcomes are counted per
context class and similarity bin exactly as a cache counts them (llm_cache.semantic.bounded:
choose(), counts_fields()) and written as counter fields. A cache scales them down to at
most ``prior_weight`` pseudo-outcomes per decision, so its own traffic soon dominates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before onnxruntime is imported: offline
import onnxruntime  # noqa: E402,F401  (loaded before usearch: see stores/local.py)

from llm_cache.semantic import bounded
from llm_cache.semantic.embeddings import LocalEmbeddings
from llm_cache.semantic.learning import PRIOR_FILE
from llm_cache.semantic.stream_eval import StreamItem, cached_vectors, load_stream

DATA = os.environ.get("LLM_CACHE_EVAL_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "eval"))
SEEDS = (100, 101, 102, 103)
STREAM = 3100


def outcomes(items: list[StreamItem], vectors: dict[str, np.ndarray], policy: bounded.BoundPolicy) -> dict[str, float]:
    """Counter fields of every judged candidate of a never-answering cache (exact search)."""
    fields: dict[str, float] = {}
    matrix = np.zeros((len(items), len(next(iter(vectors.values())))), dtype=np.float32)
    labels: list[str] = []
    for m, item in enumerate(items):
        query = vectors[item.text]
        if m:
            sims = matrix[:m] @ query
            top = np.argsort(-sims)[: policy.k]
            answers = [labels[i] for i in top]
            chosen = bounded.choose([float(sims[i]) for i in top], answers, str.__eq__, policy.floor, policy.support)
            if chosen is not None:
                index, ctx = chosen
                for name, value in bounded.counts_fields(ctx, answers[index] != item.label).items():
                    fields[name] = fields.get(name, 0.0) + value
        matrix[m] = query
        labels.append(item.label)
    return fields


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors-cache", default=None, help="directory to keep embeddings between runs")
    parser.add_argument("--out", default=PRIOR_FILE)
    args = parser.parse_args()
    policy = bounded.BoundPolicy(0.02)
    path = os.path.join(DATA, "clinc150_train.jsonl")
    everything = load_stream(path, seed=None)
    vectors = cached_vectors([i.text for i in everything], LocalEmbeddings(), args.vectors_cache, progress=True)
    total: dict[str, float] = {}
    for seed in SEEDS:
        for name, value in outcomes(load_stream(path, seed=seed, limit=STREAM), vectors, policy).items():
            total[name] = total.get(name, 0.0) + value
    data = {
        "source": "CLINC150 train (CC BY 3.0, Clinc; Larson et al., 2019), streams of 3,100 queries, seeds "
        + ", ".join(map(str, SEEDS)),
        "made_by": "benchmarks/fit_semantic_prior.py",
        "policy": {"k": policy.k, "floor": policy.floor, "support": policy.support},
        "fields": {name: total[name] for name in sorted(total) if total[name]},
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=0, sort_keys=True)
        f.write("\n")
    judged = sum(v for k, v in total.items() if k.endswith(":n"))
    wrong = sum(v for k, v in total.items() if k.endswith(":w"))
    print(f"{args.out}: {judged:.0f} judged outcomes, {wrong:.0f} wrong, {len(data['fields'])} fields")
    return 0


if __name__ == "__main__":
    sys.exit(main())
