"""``llm-cache namespaces``: the namespaces of a cache's store, with entries and sizes."""

from __future__ import annotations

import argparse
import json

from ._common import add_cache_argument


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "namespaces",
        help="list the namespaces of a cache's store with entry counts and sizes",
        description=(
            "List every namespace of the store the URL names (read-only), with its live "
            "entries and the bytes of their prompts, settings and answers (for a semantic "
            "cache, with the vectors). Pass one to the other commands with --namespace NS."
        ),
    )
    add_cache_argument(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per namespace and line")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import sys

    from ..inspection import list_namespaces
    from ._common import format_bytes, open_cache
    from ._output import print_table

    with open_cache(args.cache, namespace=args.namespace, read_only=True) as cache:
        rows = list_namespaces(cache)
    if args.json:
        for name, count, size in rows:
            print(json.dumps({"namespace": name, "entries": count, "bytes": size}, ensure_ascii=False))
        return 0
    if not rows:
        print("no entries in any namespace", file=sys.stderr)
        return 0
    print_table(
        ["namespace", "entries", "size"],
        [[name, f"{count:,}", format_bytes(size)] for name, count, size in rows],
        right=("entries", "size"),
    )
    return 0
