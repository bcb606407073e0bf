"""``llm-cache demo``: the walk-through of caching LLM calls."""

from __future__ import annotations

import argparse


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser("demo", help="walk through caching LLM calls (miss, hit, cache=False)")
    parser.add_argument(
        "--database", default=".llm_cache.db", help="SQLite file for the SQLite part (default: %(default)s)"
    )
    parser.add_argument(
        "--latency", type=float, default=1.0,
        help="simulated latency in seconds of the built-in server (default: %(default)s)",
    )
    parser.add_argument(
        "--model", default=None,
        help="the model to ask (default: $LLM_CACHE_DEMO_MODEL, else the first model the server "
        "at $OPENAI_BASE_URL lists, else gpt-3.5-turbo-instruct)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(database_path=args.database, latency=args.latency, model=args.model)
    return 0
