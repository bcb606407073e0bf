"""``llm-cache inspect``: list a cache's entries (named inspect_cmd so that it does not
shadow the standard library's ``inspect``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Iterable

from ._common import add_cache_argument, add_limit_argument

if TYPE_CHECKING:
    from ..caches.base import CacheEntry


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="list a cache's entries",
        description="List the entries of a cache, most hit first where the store keeps hit counts.",
    )
    add_cache_argument(parser)
    add_limit_argument(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per line, the export format")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..inspection import iter_entries
    from ._common import open_cache

    with open_cache(args.cache, namespace=args.namespace) as cache:
        shown = print_entries(iter_entries(cache), limit=args.limit, as_json=args.json)
    if not args.json and shown == 0:
        print("no entries", file=sys.stderr)
    return 0


def print_entries(entries: Iterable[CacheEntry], *, limit: int, as_json: bool) -> int:
    """Print entries as a table (or JSONL); returns how many were printed. Shared with search."""
    from ..inspection import entry_model
    from ._common import format_time, one_line, prompt_text

    shown = 0
    for entry in entries:
        if limit > 0 and shown >= limit:
            break
        if shown == 0 and not as_json:
            print(f"{'hits':>6}  {'created':16}  {'model':20}  {'prompt':40}  answer")
        shown += 1
        if as_json:
            print(json.dumps(entry.to_json(), ensure_ascii=False))
            continue
        hits = "-" if entry.hit_count is None else str(entry.hit_count)
        answer = entry.generations[0].text if entry.generations else ""
        extra = f" (+{len(entry.generations) - 1})" if len(entry.generations) > 1 else ""
        print(
            f"{hits:>6}  {format_time(entry.created_at):16}  {one_line(entry_model(entry) or '?', 20):20}  "
            f"{one_line(prompt_text(entry.prompt), 40):40}  {one_line(answer, 40)}{extra}"
        )
    return shown
