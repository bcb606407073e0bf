"""``llm-cache eval PAIRS``: precision and recall of the semantic cache across thresholds."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..semantic.guards import GUARDS  # pure Python, cheap: the help lists every guard


def add_eval_arguments(parser: argparse.ArgumentParser, pairs_optional: bool = False) -> None:
    """Arguments shared by ``eval`` and ``calibrate``."""
    parser.add_argument(
        "pairs", nargs="?" if pairs_optional else None,
        help="labelled pairs: JSON lines (a, b, label|same_answer), MRPC TSV or GPTCache JSON",
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N pairs")
    parser.add_argument(
        "--threshold-grid", default="0.80:0.98:0.01",
        help="thresholds to try: start:stop:step or a,b,c (default: %(default)s)",
    )
    parser.add_argument("--target-precision", type=float, default=0.92, help="precision to reach (default: %(default)s)")
    parser.add_argument(
        "--guards", default="default",
        help=f"'default', 'strict', 'none' or comma-separated names: {','.join(GUARDS)}",
    )
    parser.add_argument("-k", type=int, default=4, help="neighbours examined per lookup (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def measure(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """Run the protocol the arguments describe: ``(pairs, outcomes, table, best)``,
    shared by ``eval`` and ``calibrate``."""
    from ..semantic import evaluation as ev

    pairs, outcomes = ev.evaluate_file(
        args.pairs, guards=args.guards, limit=args.limit, k=args.k, progress=not args.no_progress and sys.stderr.isatty()
    )
    table = ev.threshold_table(outcomes, ev.threshold_grid(args.threshold_grid))
    return pairs, outcomes, table, ev.best_threshold(table, args.target_precision)


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "eval",
        help="measure semantic-cache precision/recall on labelled pairs",
        description=(
            "Store every first prompt of PAIRS in one semantic cache, look up every second prompt, and "
            "print precision, recall and F1 for each threshold (hits on another pair's answer are "
            "counted apart as 'other'), then the lowest threshold reaching the target precision."
        ),
    )
    add_eval_arguments(parser, pairs_optional=True)
    from ._eval_stream import add_stream_arguments

    add_stream_arguments(parser)
    parser.add_argument("--by-category", action="store_true", help="also break results down by the pairs' category")
    parser.add_argument(
        "--gptcache-table", action="store_true",
        help="print GPTCache's positive/negative/miss table instead (for all-duplicate sets such as its mock data)",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..semantic import evaluation as ev

    if args.stream is not None:
        from ._eval_stream import run_stream_command

        return run_stream_command(args)
    if args.pairs is None:
        raise SystemExit("llm-cache eval: give a PAIRS file, or --stream FILE.jsonl")

    pairs, outcomes, table, best = measure(args)
    if args.json:
        print(json.dumps({
            "pairs": len(pairs), "guards": args.guards, "rows": list(ev.iter_rows(table)),
            "target_precision": args.target_precision, "best": best.as_dict() if best else None,
        }, indent=2))
        return 0
    duplicates = sum(p.duplicate for p in pairs)
    print(f"{len(pairs)} pairs ({duplicates} duplicates), guards: {args.guards}, k={args.k}")
    print(ev.format_table(table, gptcache_style=args.gptcache_table))
    if not args.gptcache_table:
        if best is None:
            print(f"\nno threshold in the grid reaches precision {args.target_precision}")
        else:
            print(
                f"\nthreshold reaching precision >= {args.target_precision}: {best.threshold:.2f} "
                f"(precision {best.precision:.3f}, recall {best.recall:.3f}, F1 {best.f1:.3f})"
            )
    if args.by_category:
        at = best.threshold if best else table[len(table) // 2].threshold  # the grid's middle
        print(f"\nby category at threshold {at:.2f}:")
        rows = ev.by_category(outcomes, at)
        print("| category | pairs | right | wrong | other | hit rate |")
        print("|---|---|---|---|---|---|")
        for name, m in rows.items():
            n = m.duplicates + m.non_duplicates
            print(f"| {name} | {n} | {m.right} | {m.wrong} | {m.other} | {(m.right + m.wrong) / n:.3f} |")
    return 0
