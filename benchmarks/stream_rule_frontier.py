"""How far fixed rules over a query's nearest neighbours can go on a stream, chosen in hindsight.

    python benchmarks/stream_rule_frontier.py [--vectors-cache /tmp/llmc-vectors]

The stream protocol of ``llm-cache eval --stream`` (one cache, a miss stores the query's
intent, a hit is right iff the stored intent is the query's; hits between two out-of-scope
queries are unlabelled), simulated with exact (brute-force) search so that many rules can be
tried quickly. A rule sees what an error-bounded cache sees: the similarities and answers
of the 12 nearest cached entries. The family, every combination of

* ``top``: the nearest entry's similarity is at least ``top``;
* ``agree``: the ``agree`` nearest entries carry the same answer, each at least ``floor``;
* ``margin``: the nearest entry is at least ``margin`` more similar than the nearest
  entry with another answer (or than ``floor``, when there is none).

For each error level, the rule with the most correct hits among those whose realised error
is at most that level, and the best static threshold (``agree`` 1, ``margin`` 0, the rule
``SemanticCache(threshold=)`` applies) at the same level. The rules are chosen on the very
stream they are scored on, so the figures are an upper bound for any cache that decides
from this neighbour structure, not a result a cache can claim.

Nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from typing import Callable, Sequence

import numpy as np

from llm_cache.semantic import stream_eval as se

DATA = os.environ.get("LLM_CACHE_EVAL_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "eval"))
STREAMS = {
    "Banking77 dev stream": ("banking77_train.jsonl", 3080),
    "CLINC150 validation": ("clinc150_val.jsonl", None),
}
Rule = Callable[[Sequence[float], Sequence[str]], bool]


def rule(top: float, agree: int, floor: float, margin: float) -> Rule:
    def answers(sims: Sequence[float], labels: Sequence[str]) -> bool:
        if not sims or sims[0] < top:
            return False
        if agree > 1 and (len(sims) < agree or sims[agree - 1] < floor or any(x != labels[0] for x in labels[:agree])):
            return False
        other = next((s for s, label in zip(sims, labels) if label != labels[0]), floor)
        return sims[0] - max(other, floor) >= margin

    return answers


def simulate(similarity: np.ndarray, items: list[se.StreamItem], decide: Rule, k: int = 12) -> tuple[float, float]:
    """``(correct-hit rate, error rate of hits)`` of one rule on the stream."""
    stored: list[int] = []
    outcomes = {"right": 0, "wrong": 0, "unlabelled": 0}
    for q, item in enumerate(items):
        if stored:
            sims = similarity[q, stored]
            top = np.argsort(-sims)[:k]
            near = [items[stored[i]].label for i in top]
            if decide(sims[top].tolist(), near):
                outcomes[se.judge_hit(item, near[0])] += 1
                continue
        stored.append(q)
    right, wrong = outcomes["right"], outcomes["wrong"]
    return right / len(items), wrong / (right + wrong) if right + wrong else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors-cache", default=None, help="directory of embeddings kept by earlier evaluations")
    args = parser.parse_args()
    embedding = None
    if args.vectors_cache is None:
        from llm_cache.semantic.embeddings import LocalEmbeddings

        embedding = LocalEmbeddings()
    levels = (0.01, 0.015, 0.02, 0.025)
    print("| stream | error at most | best rule (top, agree, floor, margin) | its correct hits (error) | best static threshold | its correct hits (error) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, (file, limit) in STREAMS.items():
        path = os.path.join(DATA, file)
        items = se.load_stream(path, seed=0, limit=limit)
        vectors = se.cached_vectors([i.text for i in se.load_stream(path, seed=None)], embedding, args.vectors_cache)
        matrix = np.stack([vectors[i.text] for i in items]).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        similarity = matrix @ matrix.T
        grid = [
            params for params in itertools.product((0.45, 0.55, 0.65, 0.75), (1, 2, 3), (0.3, 0.5, 0.6), (0.0, 0.05, 0.1, 0.15, 0.2))
            if params[1] > 1 or params[2] == 0.3
        ]
        rules = [(simulate(similarity, items, rule(*params)), params) for params in grid]
        statics = [(simulate(similarity, items, rule(t / 100, 1, 0.0, 0.0)), t / 100) for t in range(60, 99)]
        for level in levels:
            best = max(((r, p) for r, p in rules if r[1] <= level), default=None)
            static = max(((r, t) for r, t in statics if r[1] <= level), default=None)
            if best is None or static is None:
                continue
            (correct, error), params = best
            (s_correct, s_error), threshold = static
            print(
                f"| {name} | {level:.1%} | {params} | {correct:.1%} ({error:.2%}) | {threshold:.2f} "
                f"| {s_correct:.1%} ({s_error:.2%}) | {correct / s_correct:.2f}x |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
