"""``llm-cache export``: write a cache's entries to a JSONL file."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from ._common import add_cache_argument, add_progress_argument


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a cache's entries to a JSONL file",
        description=(
            "Write every live entry of the cache's namespace to FILE, one JSON object per line: "
            '{"prompt", "llm_string", "generations", "created_at", "expires_at", "hit_count", '
            '"last_hit_at"}. FILE "-" is standard output. Read it back with llm-cache import.'
        ),
    )
    add_cache_argument(parser)
    parser.add_argument("file", metavar="FILE.jsonl", help='the file to write ("-" for standard output)')
    add_progress_argument(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..inspection import count_entries, iter_entries
    from ._common import Progress, entries_phrase, open_cache

    to_stdout = args.file == "-"
    with open_cache(args.cache, namespace=args.namespace) as cache:
        total = count_entries(cache)
        with contextlib.ExitStack() as stack:
            if to_stdout:
                out = sys.stdout
            else:
                # Written beside the target and renamed at the end: an export that fails half-way
                # never leaves a truncated file under the name a later import would trust.
                partial = args.file + ".partial"
                out = stack.enter_context(open(partial, "w", encoding="utf-8"))
            progress = stack.enter_context(
                Progress("export", total, enabled=Progress.wanted(args.progress), unit="entries")
            )
            for entry in iter_entries(cache):
                out.write(_line(entry.to_json()))
                progress.advance()
            written = progress.count
        if not to_stdout:
            os.replace(partial, args.file)
    print(f"exported {entries_phrase(written)} to {'stdout' if to_stdout else args.file}", file=sys.stderr)
    return 0


def _line(data: dict) -> str:  # type: ignore[type-arg]
    text = json.dumps(data, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (possible in a prompt) is not UTF-8: write this line as ASCII with
        # \\u escapes, which json.loads turns back into the same string.
        text = json.dumps(data)
    return text + "\n"
