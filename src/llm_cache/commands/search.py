"""``llm-cache search``: find entries whose prompt contains a text."""

from __future__ import annotations

import argparse
import sys

from ._common import add_cache_argument, add_limit_argument


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "search",
        help="find entries whose prompt contains QUERY",
        description=(
            "List entries whose prompt contains QUERY (case-insensitive substring; with "
            "--answers, the answers are searched too). With --fts, the store's own full-text "
            "search ranks the matches (SQLAlchemyCache on PostgreSQL with a tsvector column; "
            "QUERY then uses websearch syntax: words, \"phrases\", or, -excluded)."
        ),
    )
    add_cache_argument(parser)
    parser.add_argument("query", metavar="QUERY", help="text to look for")
    parser.add_argument("--answers", action="store_true", help="also search the cached answers")
    parser.add_argument("--fts", action="store_true", help="use the store's full-text search (PostgreSQL)")
    add_limit_argument(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per line, the export format")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..inspection import iter_entries
    from ._common import open_cache, prompt_text
    from .inspect_cmd import print_entries

    needle = args.query.casefold()

    def matches(entry) -> bool:  # type: ignore[no-untyped-def]
        if needle in entry.prompt.casefold() or needle in prompt_text(entry.prompt).casefold():
            return True
        return args.answers and any(needle in g.text.casefold() for g in entry.generations)

    with open_cache(args.cache, namespace=args.namespace) as cache:
        if args.fts:
            found = _full_text(cache, args.query, args.limit)
        else:
            found = (e for e in iter_entries(cache) if matches(e))
        shown = print_entries(found, limit=args.limit, as_json=args.json)
    if shown == 0:
        print(f"no entries match {args.query!r}", file=sys.stderr)
        return 1
    return 0


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
