"""``llm-cache eval --stream FILE.jsonl``: the stream protocol (:mod:`llm_cache.semantic.stream_eval`)
for static thresholds and for error-bounded caches (``max_error_rate``)."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_stream_arguments", "run_stream_command"]


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("stream protocol (--stream)")
    group.add_argument(
        "--stream", metavar="FILE.jsonl", default=None,
        help="run the stream protocol on labelled queries (JSON lines with text and intent; 'oos' = out of scope) "
        "instead of pairs: each query looked up in one cache, stored on a miss with its intent as the answer",
    )
    group.add_argument(
        "--error-rates", default="0.01,0.02,0.05",
        help="max_error_rate values to run (comma-separated; '' for none; default: %(default)s)",
    )
    group.add_argument("--seed", type=int, default=0, help="random.Random(SEED).shuffle of the stream, and exploration draws (default: %(default)s)")
    group.add_argument("--no-shuffle", action="store_true", help="keep the file's order")
    group.add_argument("--vectors-cache", default=None, metavar="DIR", help="keep the stream's embeddings in DIR between runs")
    group.add_argument("--no-prior", action="store_true", help="error-bounded caches start from nothing, not the shipped prior")


def run_stream_command(args: argparse.Namespace) -> int:
    from ..errors import ConfigurationError
    from ..semantic import evaluation as ev
    from ..semantic import stream_eval as se
    from ..semantic.embeddings import LocalEmbeddings

    try:
        error_rates = [float(x) for x in args.error_rates.split(",") if x.strip()]
    except ValueError as exc:
        raise ConfigurationError(f"bad --error-rates {args.error_rates!r}: use comma-separated numbers such as 0.01,0.02") from exc
    # The pairs default (0.80-0.98) misses where streams of short queries reach 2% error.
    grid = "0.70:0.98:0.02" if args.threshold_grid == "0.80:0.98:0.01" else args.threshold_grid
    thresholds = ev.threshold_grid(grid)
    items = se.load_stream(args.stream, seed=None if args.no_shuffle else args.seed, limit=args.limit)
    progress = not args.no_progress and sys.stderr.isatty()
    model = LocalEmbeddings()
    # Vectors of the whole file in file order: one cache file serves every draw and limit.
    everything = [i.text for i in se.load_stream(args.stream, seed=None)]
    embedding = se.PrecomputedEmbeddings(model, se.cached_vectors(everything, model, args.vectors_cache, progress))
    guards = None if args.guards in ("none", "None", "") else args.guards.split(",") if "," in args.guards else args.guards
    rows = se.evaluate_stream(
        items, embedding=embedding, thresholds=thresholds, error_rates=error_rates, guards=guards,
        seed=args.seed, progress=progress, prior=None if args.no_prior else "default",
    )
    labels = {i.label for i in items if i.label not in se.OUT_OF_SCOPE}
    ceiling = 1 - len(labels) / len(items) - sum(i.label in se.OUT_OF_SCOPE for i in items) / len(items)
    if args.json:
        print(json.dumps({"stream": args.stream, "queries": len(items), "guards": args.guards, "ceiling": ceiling,
                          "rows": [r.as_dict() for r in rows]}, indent=2))
        return 0
    print(f"{args.stream}: {len(items)} queries, {len(labels)} labels, guards: {args.guards}, "
          f"ceiling of the correct-hit rate {ceiling:.1%}")
    print(se.format_stream_table(rows))
    for line in se.comparisons(rows):
        print(line)
    return 0
