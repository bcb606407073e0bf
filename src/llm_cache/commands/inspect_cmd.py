"""``llm-cache inspect``: list a cache's entries (named inspect_cmd so that it does not
shadow the standard library's ``inspect``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, Iterable

from ._common import add_cache_argument, add_limit_argument

if TYPE_CHECKING:
    from ..caches.base import CacheEntry


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="list a cache's entries",
        description=(
            "List the entries of a cache (read-only), most hit first where the store keeps hit "
            "counts: hits, creation time, kind (chat, completion; with the wire API when the entry "
            "names it, e.g. chat openai.chat.completions), model, prompt and answer."
        ),
    )
    add_cache_argument(parser)
    add_limit_argument(parser)
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per line: the export format plus kind and api"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..inspection import count_entries, iter_entries
    from ._common import entries_phrase, open_cache

    with open_cache(args.cache, namespace=args.namespace, read_only=True) as cache:
        shown = print_entries(iter_entries(cache), limit=args.limit, as_json=args.json)
        total = count_entries(cache) if shown and args.limit > 0 and shown >= args.limit else shown
    if shown == 0:
        print("no entries", file=sys.stderr)
    elif total > shown:
        print(f"{shown} of {entries_phrase(total)} shown (--limit 0 for all)", file=sys.stderr)
    return 0


def kind_label(entry: "CacheEntry") -> str:
    """``chat``, ``completion``, or e.g. ``chat openai.chat.completions`` when the API is known."""
    from ..inspection import entry_kind

    kind, api = entry_kind(entry)
    return kind if api is None else f"{kind} {api}"


def json_row(entry: "CacheEntry", **extra: Any) -> str:
    """The export form of ``entry`` with its kind and API (what ``--json`` prints)."""
    from ..inspection import entry_kind

    kind, api = entry_kind(entry)
    return json.dumps({**entry.to_json(), "kind": kind, "api": api, **extra}, ensure_ascii=False)


def answer_cell(entry: "CacheEntry", width: int = 40) -> str:
    from ._common import one_line

    answer = entry.generations[0].text if entry.generations else ""
    extra = f" (+{len(entry.generations) - 1})" if len(entry.generations) > 1 else ""
    return one_line(answer, width) + extra


def print_entries(entries: Iterable["CacheEntry"], *, limit: int, as_json: bool) -> int:
    """Print entries as a table (or JSONL); returns how many were printed."""
    from ..inspection import entry_model
    from ._common import format_time, one_line, prompt_text
    from ._output import print_table

    rows: list[list[Any]] = []
    for entry in entries:
        if limit > 0 and len(rows) >= limit:
            break
        if as_json:
            print(json_row(entry))
            rows.append([])
            continue
        hits = "-" if entry.hit_count is None else str(entry.hit_count)
        rows.append(
            [
                hits,
                format_time(entry.created_at),
                kind_label(entry),
                one_line(entry_model(entry) or "?", 24),
                one_line(prompt_text(entry.prompt), 48),
                answer_cell(entry),
            ]
        )
    if rows and not as_json:
        print_table(["hits", "created", "kind", "model", "prompt", "answer"], rows, right=("hits",))
    return len(rows)
