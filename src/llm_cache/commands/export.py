"""``llm-cache export``: write a cache's entries to a JSONL file."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import IO

from ._common import add_cache_argument, add_progress_argument


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a cache's entries to a JSONL file",
        description=(
            "Write every live entry of the cache's namespace to FILE (the cache is opened "
            "read-only), one JSON object per line: "
            '{"prompt", "llm_string", "generations", "created_at", "expires_at", "hit_count", '
            '"last_hit_at"}. FILE "-" is standard output. Read it back with llm-cache import.'
        ),
    )
    add_cache_argument(parser)
    parser.add_argument("file", metavar="FILE.jsonl", help='the file to write ("-" for standard output)')
    add_progress_argument(parser)
    parser.set_defaults(handler=_run)


def _open_output(path: str) -> IO[str]:
    """``path + ".partial"`` opened for writing; an error names the output file, not the cache."""
    from ..errors import ConfigurationError

    if os.path.isdir(path):
        raise ConfigurationError(f"cannot write the export file {path!r}: it is a directory; name a file in it")
    partial = path + ".partial"
    try:
        return open(partial, "w", encoding="utf-8")
    except OSError as exc:
        directory = os.path.dirname(os.path.abspath(path))
        reason = f"the directory {directory!r} does not exist" if not os.path.isdir(directory) else exc.strerror
        raise ConfigurationError(f"cannot write the export file {path!r}: {reason}") from None


def _run(args: argparse.Namespace) -> int:
    from ..errors import ConfigurationError
    from ..inspection import count_entries, iter_entries
    from ._common import Progress, entries_phrase, open_cache

    to_stdout = args.file == "-"
    partial = args.file + ".partial"
    written = 0
    with contextlib.ExitStack() as stack:
        # Written beside the target and renamed at the end: an export that fails half-way never
        # leaves a truncated file under the name a later import would trust. Opened before the
        # cache, so that a wrong output path is reported as such.
        out = sys.stdout if to_stdout else stack.enter_context(_open_output(args.file))
        completed = False
        try:
            with open_cache(args.cache, namespace=args.namespace, read_only=True) as cache:
                total = count_entries(cache)
                with Progress("export", total, enabled=Progress.wanted(args.progress), unit="entries") as progress:
                    for entry in iter_entries(cache):
                        try:
                            out.write(_line(entry.to_json()))
                        except OSError as exc:  # disk full, ...: the file's fault, not the cache's
                            raise ConfigurationError(f"writing {args.file!r} failed: {exc.strerror or exc}") from None
                        progress.advance()
                    written = progress.count
            completed = True
        finally:
            if not to_stdout:
                stack.close()
                if completed:
                    os.replace(partial, args.file)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(partial)
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
