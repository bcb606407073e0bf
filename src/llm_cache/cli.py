"""The ``llm-cache`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from . import __version__
from .errors import LLMCacheError

__all__ = ["main", "build_parser"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(database_path=args.database, latency=args.latency)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-cache", description="Cache LLM calls: exact and semantic caches, a caching proxy and tools."
    )
    parser.add_argument("--version", action="version", version=f"llm-cache {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log cache events to stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", help="walk through caching LLM calls (miss, hit, cache=False)")
    demo.add_argument("--database", default=".llm_cache.db", help="SQLite file for the SQLite part (default: %(default)s)")
    demo.add_argument(
        "--latency", type=float, default=1.0,
        help="simulated latency in seconds of the built-in server (default: %(default)s)",
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llm-cache`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except LLMCacheError as exc:
        print(f"llm-cache: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
