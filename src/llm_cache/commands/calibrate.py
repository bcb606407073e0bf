"""``llm-cache calibrate``: choose a semantic cache's threshold on your own labelled pairs."""

from __future__ import annotations

import argparse
import os
import sys
import time


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from .eval import add_eval_arguments

    parser = subparsers.add_parser(
        "calibrate",
        help="pick the semantic threshold reaching a target precision and store it in DATA_DIR",
        description=(
            "Run the same measurement as 'llm-cache eval' and store the lowest threshold whose precision "
            "reaches --target-precision in DATA_DIR/semantic_config.json, which SemanticCache(data_dir=DATA_DIR) "
            "reads when no threshold is passed. Nothing is written if no threshold reaches the target."
        ),
    )
    parser.add_argument("--data-dir", required=True, help="the semantic cache's directory")
    add_eval_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the choice without writing it")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..semantic import evaluation as ev
    from ..semantic.cache import CONFIG_FILE, write_config
    from .eval import measure

    pairs, _, table, best = measure(args)
    print(ev.format_table(table))
    if best is None:
        print(
            f"\nno threshold in {args.threshold_grid} reaches precision {args.target_precision} on these pairs; "
            "nothing written (try a wider --threshold-grid, stricter --guards, or a lower target)",
            file=sys.stderr,
        )
        return 1
    print(
        f"\nchosen threshold {best.threshold:.2f}: precision {best.precision:.3f}, recall {best.recall:.3f} "
        f"on {len(pairs)} pairs"
    )
    if args.dry_run:
        return 0
    write_config(
        args.data_dir,
        threshold=best.threshold,
        calibration={
            "pairs_file": os.path.basename(args.pairs),
            "pairs": len(pairs),
            "guards": args.guards,
            "target_precision": args.target_precision,
            "precision": round(best.precision, 4),
            "recall": round(best.recall, 4),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    print(f"stored in {os.path.join(args.data_dir, CONFIG_FILE)}")
    return 0
