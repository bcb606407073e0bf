"""``llm-cache import``: load entries from a JSONL file (named import_cmd because
``import`` is a keyword)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import IO

from ._common import add_cache_argument, add_progress_argument


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "import",
        help="load entries from a JSONL file (as written by export)",
        description=(
            "Load entries from FILE (one JSON object per line, as llm-cache export writes) into "
            "the cache's namespace, replacing entries with the same prompt and llm_string. Each "
            "line is validated; bad lines (not JSON, not an entry, text that is not valid UTF-8, "
            "nesting too deep, longer than --max-line-bytes) are reported by number and skipped, "
            "a summary is printed at the end, and the exit status is 1 if there were any. Entries "
            "keep their creation time, expiry, hit count and last hit where the target store keeps "
            "them (SQLite; semantic caches keep the times); entries already expired are skipped. "
            "FILE \"-\" is standard input. The cache URL may name a new SQLite file or "
            "semantic:///DIR, which is then created."
        ),
    )
    add_cache_argument(parser)
    parser.add_argument("file", metavar="FILE.jsonl", help='the file to read ("-" for standard input)')
    parser.add_argument(
        "--max-line-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_LINE_BYTES,
        metavar="N",
        help=f"longer lines are reported and skipped without being read into memory (default {DEFAULT_MAX_LINE_BYTES})",
    )
    add_progress_argument(parser)
    parser.set_defaults(handler=_run)


_MAX_REPORTED = 50  # bad lines listed one by one; beyond this only counted
# A line is read whole before it is parsed: this bounds the memory one line can take.
DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024
_SKIP_CHUNK = 1024 * 1024


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive number of bytes")
    return value


def _lines(source: IO[bytes], limit: int) -> Iterator[tuple[bytes, bool]]:
    """``(line, too_long)`` for each line. A line of more than ``limit`` bytes (its newline
    included) is read past in chunks, never held whole in memory, and yielded as ``(b"", True)``."""
    while True:
        line = source.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit:
            yield line, False
            continue
        while not line.endswith(b"\n"):
            line = source.readline(_SKIP_CHUNK)
            if not line:
                break
        yield b"", True


def _run(args: argparse.Namespace) -> int:
    from ..errors import ConfigurationError
    from ..inspection import import_entry, parse_entry_line
    from ._common import Progress, entries_phrase, open_cache

    from_stdin = args.file == "-"
    if not from_stdin and not os.path.isfile(args.file):
        raise ConfigurationError(f"no such file: {args.file}")
    imported = expired = bad = 0
    with contextlib.ExitStack() as stack:
        # Read as bytes so that a line that is not UTF-8 is one bad line, not the end of the import.
        source = sys.stdin.buffer if from_stdin else stack.enter_context(open(args.file, "rb"))
        total = None if from_stdin else os.path.getsize(args.file)
        # The cache may be a new SQLite file: import is the one command that may create it.
        cache = stack.enter_context(open_cache(args.cache, namespace=args.namespace, must_exist=False))
        progress = stack.enter_context(
            Progress("import", total, enabled=Progress.wanted(args.progress), unit="entries")
        )
        for number, (raw, too_long) in enumerate(_lines(source, args.max_line_bytes), start=1):
            if not too_long and not raw.strip():
                progress.advance(len(raw), items=0)
                continue
            try:
                if too_long:
                    raise ConfigurationError(f"longer than --max-line-bytes ({args.max_line_bytes} bytes)")
                entry = parse_entry_line(raw.decode("utf-8"))
            except (ConfigurationError, UnicodeDecodeError) as exc:
                bad += 1
                if bad <= _MAX_REPORTED:
                    reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
                    print(f"line {number}: {reason}", file=sys.stderr)
                progress.advance(len(raw), items=0)
                continue
            if import_entry(cache, entry):
                imported += 1
            else:
                expired += 1
            progress.advance(len(raw))
    if bad > _MAX_REPORTED:
        print(f"... and {bad - _MAX_REPORTED} more bad lines", file=sys.stderr)
    summary = f"imported {entries_phrase(imported)}"
    if expired:
        summary += f", skipped {expired} expired"
    if bad:
        summary += f", {bad} bad line{'s' if bad != 1 else ''} skipped"
    print(summary, file=sys.stderr)
    return 1 if bad else 0
