"""Semantic-cache precision and recall: every figure of docs/semantic.md, in one run.

    python benchmarks/eval_semantic.py                       # ~15 min on 2 busy cores (embedding)
    python benchmarks/eval_semantic.py --vectors-cache /tmp/llmc-vectors   # reuse embeddings

The protocol is :mod:`llm_cache.semantic.evaluation`'s (the issue's): every first question
of a pairs file in ONE cache, every second question looked up; right / wrong / other
hits. Data come from ../shared/data/eval (QQP and MRPC are measured with, never shipped):

1. the guard ablation on qqp_dev (first 4,000 pairs) and traps_dev: precision, recall,
   should-miss hit rate for no guard, each guard alone, the default set and "strict";
2. the default threshold, derived on traps_dev ONLY (CC BY 4.0): among thresholds whose
   should-hit recall is at least 40% (the issue's target), the lowest one with the
   smallest should-miss hit rate;
3. that threshold measured on qqp_dev, msr-para-train/val and traps_dev per category;
4. GPTCache's own table (positive / negative / miss) on gptcache_mock_data.json;
5. the stream protocol (llm_cache.semantic.stream_eval; ``--stream-only`` runs just this):
   the Banking77 dev stream (3,080 queries, random.Random(0).shuffle of banking77_train),
   CLINC150 validation (3,100 with out-of-scope), QQP (first 4,000 pairs) and traps_dev as
   streams, static thresholds against ``max_error_rate``; with ``--plot FILE.png`` (needs
   matplotlib) the curves of the two intent streams.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before onnxruntime is imported: offline
import onnxruntime  # noqa: E402,F401  (loaded before usearch: see stores/local.py)

from llm_cache.semantic import evaluation as ev  # noqa: E402
from llm_cache.semantic.cache import DEFAULT_THRESHOLD  # noqa: E402
from llm_cache.semantic.embeddings import LocalEmbeddings  # noqa: E402
from llm_cache.semantic.guards import GUARDS, resolve_guards  # noqa: E402

DATA = os.environ.get("LLM_CACHE_EVAL_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "eval"))
GRID = [round(0.80 + 0.01 * i, 2) for i in range(19)]  # 0.80 .. 0.98
CONFIGS: dict[str, object] = {
    "none": None,
    **{name: [name] for name in GUARDS},
    "default": "default",
    "strict (default + edits)": ["default", "edits"],
}


def vectors_for(pairs: list[ev.Pair], embedding: LocalEmbeddings, cache_dir: str | None, name: str) -> tuple[np.ndarray, np.ndarray]:
    digest = hashlib.sha256("\x00".join(p.a + "\x01" + p.b for p in pairs).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"{name}-{digest}.npz") if cache_dir else None
    if path and os.path.exists(path):
        data = np.load(path)
        return data["a"], data["b"]
    a = ev.embed_texts(embedding, [p.a for p in pairs], progress=True, label=f"{name}: first texts")
    b = ev.embed_texts(embedding, [p.b for p in pairs], progress=True, label=f"{name}: second texts")
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        np.savez(path, a=a, b=b)
    return a, b


def neighbours_for(name: str, file: str, limit: int | None, embedding: LocalEmbeddings, cache_dir: str | None):  # type: ignore[no-untyped-def]
    pairs = ev.load_pairs(os.path.join(DATA, file), limit)
    vectors = vectors_for(pairs, embedding, cache_dir, name)
    return pairs, ev.collect_neighbours(pairs, embedding, vectors=vectors, progress=True)


def fmt(x: float) -> str:
    return "-" if x != x else f"{x:.3f}"


def derive_default(traps_outcomes: list[ev.Outcome]) -> tuple[float, list[ev.Metrics]]:
    table = ev.threshold_table(traps_outcomes, GRID)
    eligible = [m for m in table if m.recall >= 0.40]
    best_rate = min(m.miss_hit_rate for m in eligible)
    chosen = min(m.threshold for m in eligible if m.miss_hit_rate == best_rate)
    return chosen, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors-cache", default=None, help="directory to keep embeddings between runs")
    parser.add_argument("--qqp-limit", type=int, default=4000)
    parser.add_argument("--stream-only", action="store_true", help="run section 5 only")
    parser.add_argument("--plot", default=None, help="write the stream curves to this PNG (needs matplotlib)")
    args = parser.parse_args()
    embedding = LocalEmbeddings()
    if args.stream_only:
        return stream_section(args, embedding)

    qqp = neighbours_for("qqp_dev", "qqp_dev.jsonl", args.qqp_limit, embedding, args.vectors_cache)
    traps = neighbours_for("traps_dev", "traps_dev.jsonl", None, embedding, args.vectors_cache)

    print("## 1. Guard ablation (threshold = the column; P = precision, R = recall, M = should-miss hit rate)\n")
    show = [0.86, 0.88, 0.90, 0.92, 0.94]
    outcomes: dict[tuple[str, str], list[ev.Outcome]] = {}
    for data_name, (pairs, neighbours) in (("qqp_dev[:4000]", qqp), ("traps_dev", traps)):
        print(f"### {data_name}\n")
        print("| guards | " + " | ".join(f"{t:.2f}" for t in show) + " |")
        print("|---|" + "---|" * len(show))
        for config, spec in CONFIGS.items():
            result = ev.decide(pairs, neighbours, resolve_guards(spec))  # type: ignore[arg-type]
            outcomes[(data_name, config)] = result
            cells = []
            for t in show:
                m = ev.metrics_at(result, t)
                cells.append(f"P {fmt(m.precision)} R {fmt(m.recall)} M {fmt(m.miss_hit_rate)}")
            print(f"| {config} | " + " | ".join(cells) + " |")
        print()

    chosen, traps_table = derive_default(outcomes[("traps_dev", "default")])
    print("## 2. Default threshold, derived on traps_dev with the default guards\n")
    print(ev.format_table(traps_table))
    print(
        f"\nrule: among thresholds with should-hit recall >= 0.40, the lowest with the smallest should-miss "
        f"hit rate -> {chosen:.2f} (DEFAULT_THRESHOLD in the package: {DEFAULT_THRESHOLD})\n"
    )

    print(f"## 3. At the default ({DEFAULT_THRESHOLD}, default guards) and without guards\n")
    print("| data | guards | right | wrong | other | precision | recall | should-miss hit rate |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [("qqp_dev[:4000]", qqp), ("traps_dev", traps)]
    for name, file in (("msr-para-train", "msr-para-train.tsv"), ("msr-para-val", "msr-para-val.tsv")):
        rows.append((name, neighbours_for(name, file, None, embedding, args.vectors_cache)))
    for name, (pairs, neighbours) in rows:
        for config in ("none", "default"):
            result = ev.decide(pairs, neighbours, resolve_guards(CONFIGS[config]))  # type: ignore[arg-type]
            m = ev.metrics_at(result, DEFAULT_THRESHOLD)
            print(f"| {name} | {config} | {m.right} | {m.wrong} | {m.other} | {fmt(m.precision)} | {fmt(m.recall)} | {fmt(m.miss_hit_rate)} |")
    best = ev.best_threshold(ev.threshold_table(outcomes[("qqp_dev[:4000]", "default")], GRID), 0.92)
    print("\nqqp_dev, default guards: lowest threshold reaching precision 0.92: "
          + (f"{best.threshold:.2f} (recall {best.recall:.3f})" if best else "none in 0.80-0.98"))

    print(f"\n### traps_dev by category at {DEFAULT_THRESHOLD} (default guards; no guards in brackets)\n")
    print("| category | pairs | should hit? | hits | hit rate |")
    print("|---|---|---|---|---|")
    plain = ev.by_category(outcomes[("traps_dev", "none")], DEFAULT_THRESHOLD)
    for category, m in ev.by_category(outcomes[("traps_dev", "default")], DEFAULT_THRESHOLD).items():
        n = m.duplicates + m.non_duplicates
        p = plain[category]
        print(f"| {category} | {n} | {'yes' if m.duplicates else 'no'} | {m.right + m.wrong} ({p.right + p.wrong}) "
              f"| {(m.right + m.wrong) / n:.3f} ({(p.right + p.wrong) / n:.3f}) |")

    print("\n## 4. GPTCache's own table on gptcache_mock_data.json (all pairs are duplicates)\n")
    mock = neighbours_for("gptcache_mock", "gptcache_mock_data.json", None, embedding, args.vectors_cache)
    for config in ("none", "default"):
        result = ev.decide(mock[0], mock[1], resolve_guards(CONFIGS[config]))  # type: ignore[arg-type]
        print(f"### guards: {config}\n")
        print(ev.format_table(ev.threshold_table(result, [0.70, 0.75, 0.80, 0.85, 0.90, DEFAULT_THRESHOLD, 0.95]), gptcache_style=True))
        print()
    return stream_section(args, embedding)


STREAM_GRID = [round(0.70 + 0.01 * i, 2) for i in range(29)]  # 0.70 .. 0.98
ERROR_RATES = [0.01, 0.02, 0.05]


def stream_section(args: argparse.Namespace, embedding: LocalEmbeddings) -> int:
    from llm_cache.semantic import stream_eval as se

    print("## 5. The stream protocol (guards off for both kinds of rows: the plain-cosine baseline)\n")
    def intents(file: str, limit: int | None) -> tuple[list[se.StreamItem], list[str]]:
        path = os.path.join(DATA, file)
        return se.load_stream(path, seed=0, limit=limit), [i.text for i in se.load_stream(path, seed=None)]

    def pairs(file: str, limit: int | None) -> tuple[list[se.StreamItem], list[str]]:
        loaded = ev.load_pairs(os.path.join(DATA, file), limit)
        return se.stream_from_pairs(loaded, seed=0), [i.text for i in se.stream_from_pairs(loaded, seed=None)]

    streams = {
        "banking77 dev (3,080)": intents("banking77_train.jsonl", 3080),
        "clinc150_val (3,100)": intents("clinc150_val.jsonl", None),
        f"qqp_dev[:{args.qqp_limit}] as a stream": pairs("qqp_dev.jsonl", args.qqp_limit),
        "traps_dev as a stream": pairs("traps_dev.jsonl", None),
    }
    curves = {}
    for name, (items, texts) in streams.items():
        vectors = se.cached_vectors(texts, embedding, args.vectors_cache, progress=True)
        # Pairs streams are long (QQP: 7,885 texts) and measured, not compared: a coarser grid.
        grid = STREAM_GRID if "stream" not in name else STREAM_GRID[::4]
        rows = se.evaluate_stream(items, embedding=se.PrecomputedEmbeddings(embedding, vectors), thresholds=grid, error_rates=ERROR_RATES)
        curves[name] = rows
        print(f"### {name}\n")
        print(se.format_stream_table(rows))
        print()
        static_p50 = [r.lookup_p50_ms for r in rows if r.name.startswith("threshold")]
        for row in rows:
            if not row.name.startswith("max_error_rate"):
                continue
            delta = float(row.name.split()[1])
            ratios = []
            for label, limit in (("at <= realised error", row.error_rate), ("at <= max_error_rate", delta)):
                best = se.best_static_at(rows, limit)
                ratios.append(f"{row.correct_hit_rate / best.correct_hit_rate:.2f}x the best static {label} ({best.name}: {best.correct_hit_rate:.1%} at {best.error_rate:.2%})" if best and best.right else f"no static threshold {label}")
            ratio = "; ".join(ratios)
            print(f"- {row.name}: error of hits {row.error_rate:.2%}, correct hits {row.correct_hit_rate:.1%} = {ratio}; "
                  f"{row.explorations} explorations; lookup p50 {row.lookup_p50_ms:.2f} ms against {sorted(static_p50)[len(static_p50) // 2]:.2f} ms (static, median of the grid)")
        print()
    if args.plot:
        plot(curves, args.plot)
    return 0


def plot(curves: dict[str, list], path: str) -> None:  # type: ignore[type-arg]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in curves if not n.startswith(("qqp", "traps"))]
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.2))
    for ax, name in zip(axes, names):
        static = [r for r in curves[name] if r.name.startswith("threshold") and r.right + r.wrong]
        ax.plot([100 * r.error_rate for r in static], [100 * r.correct_hit_rate for r in static], "o-", ms=3, label="static threshold 0.70-0.98")
        for r in static[::5]:
            ax.annotate(r.name.split()[1], (100 * r.error_rate, 100 * r.correct_hit_rate), fontsize=7, xytext=(3, -8), textcoords="offset points")
        bounded = [r for r in curves[name] if r.name.startswith("max_error_rate")]
        ax.plot([100 * r.error_rate for r in bounded], [100 * r.correct_hit_rate for r in bounded], "s", ms=7, color="C3", label="max_error_rate (learned)")
        for r in bounded:
            ax.annotate(f"δ={r.name.split()[1]}", (100 * r.error_rate, 100 * r.correct_hit_rate), fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.set_xlim(0, 8)
        ax.set_xlabel("error rate of hits (%)")
        ax.set_ylabel("correct-hit rate (% of queries)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
