"""``llm-cache search``: find entries whose prompt (or answer) contains a text."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterator

from ._common import add_cache_argument, add_limit_argument


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "search",
        help="find entries whose prompt contains QUERY",
        description=(
            "List entries whose prompt contains QUERY (case-insensitive substring; with "
            "--answers, the answers are searched too), read-only. Each row shows the kind "
            "(chat, completion, and the wire API when known) and the matched text with QUERY "
            "highlighted; the last line says how many of the cache's entries matched. With --fts, "
            "the store's own full-text search ranks the matches (SQLAlchemyCache on PostgreSQL "
            "with a tsvector column; QUERY then uses websearch syntax: words, \"phrases\", or, -excluded)."
        ),
    )
    add_cache_argument(parser)
    parser.add_argument("query", metavar="QUERY", help="text to look for")
    parser.add_argument("--answers", action="store_true", help="also search the cached answers")
    parser.add_argument("--fts", action="store_true", help="use the store's full-text search (PostgreSQL)")
    add_limit_argument(parser)
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per line: the export format plus kind, api and match"
    )
    parser.set_defaults(handler=_run)


_BEFORE, _AFTER = 30, 50  # characters of context shown around a match


def snippet(text: str, start: int, end: int) -> tuple[str, int, int]:
    """The text around ``text[start:end]`` on one line, and the match's span in it."""
    lo, hi = max(0, start - _BEFORE), min(len(text), end + _AFTER)
    piece = text[lo:hi].translate({ord("\n"): " ", ord("\r"): " ", ord("\t"): " "})
    prefix = "…" if lo > 0 else ""
    suffix = "…" if hi < len(text) else ""
    return prefix + piece + suffix, start - lo + len(prefix), end - lo + len(prefix)


def _run(args: argparse.Namespace) -> int:
    from ..inspection import count_entries, find_match, iter_entries
    from ._common import entries_phrase, open_cache

    rows: list[list[Any]] = []
    matched = 0
    with open_cache(args.cache, namespace=args.namespace, read_only=True) as cache:
        if args.fts:
            found: Iterator[Any] = _full_text(cache, args.query, args.limit)
        else:
            found = iter_entries(cache)
        scanned = 0
        for entry in found:
            scanned += 1
            where = find_match(args.query, entry, answers=args.answers)
            if where is None:
                if args.fts:  # the store matched it by its own rules: show the prompt
                    where = ("prompt", entry.prompt, 0, 0)
                else:
                    continue
            matched += 1
            if args.limit > 0 and len(rows) >= args.limit:
                continue  # keep counting: the summary says how many matched in all
            rows.append(_row(entry, where, as_json=args.json))
        total = scanned if not args.fts else count_entries(cache)
    if matched == 0:
        print(f"no entries match {args.query!r} (of {entries_phrase(total)})", file=sys.stderr)
        return 1
    _print(rows, as_json=args.json)
    shown = f"{len(rows)} shown, " if len(rows) < matched else ""
    print(f"{shown}{matched} of {entries_phrase(total)} matched {args.query!r}", file=sys.stderr)
    return 0


def _row(entry: Any, where: tuple[str, str, int, int], *, as_json: bool) -> list[Any]:
    from ..inspection import entry_model
    from ._common import one_line
    from ._output import highlight
    from .inspect_cmd import answer_cell, json_row, kind_label

    field, text, start, end = where
    piece, lo, hi = snippet(text, start, end)
    if as_json:
        match = {"field": field, "text": piece, "start": lo, "end": hi}
        return [json_row(entry, match=match)]
    hits = "-" if entry.hit_count is None else str(entry.hit_count)
    label = "" if field == "prompt" else "answer: "
    cell = highlight(label + piece, [(lo + len(label), hi + len(label))] if hi > lo else [])
    return [hits, kind_label(entry), one_line(entry_model(entry) or "?", 24), cell, answer_cell(entry, 32)]


def _print(rows: list[list[Any]], *, as_json: bool) -> None:
    from ._output import print_table

    if as_json:
        for row in rows:
            print(row[0])
        return
    print_table(["hits", "kind", "model", "match", "answer"], rows, right=("hits",))


def _full_text(cache, query: str, limit: int):  # type: ignore[no-untyped-def]
    """Entries found by the backend's ``search(query, limit=...)``, best first."""
    from ..errors import ConfigurationError
    from ..inspection import Entry

    search = getattr(cache, "search", None)
    if not callable(search):
        raise ConfigurationError(
            f"{type(cache).__name__} has no full-text search: drop --fts for a substring search"
        )
    for hit in search(query, limit=limit if limit > 0 else 1000):
        if hit.generations:  # None: expired or removed since it matched
            yield Entry(hit.prompt, hit.llm_string, list(hit.generations))
