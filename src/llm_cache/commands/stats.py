"""``llm-cache stats``: entries, size, hit rate, top prompts and tokens saved of a cache."""

from __future__ import annotations

import argparse
import json

from ._common import add_cache_argument, format_bytes, format_time, one_line, prompt_text


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "stats",
        help="entries, size, hit rate, top prompts and tokens saved of a cache",
        description=(
            "Summarise a cache's stored entries. The hit rate is estimated from the hit counts "
            "the store keeps (SQLite does): hits / (hits + entries), each entry having cost one "
            "miss. Tokens saved = for each entry, the tokens its first call used (from the usage "
            "stored with it, where present) times its hits."
        ),
    )
    add_cache_argument(parser)
    parser.add_argument(
        "--top", type=int, default=5, metavar="N", help="show the N most hit prompts (default: %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print the statistics as one JSON object")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..inspection import iter_entries, size_on_disk, summarize
    from ..urls import redact_url
    from ._common import open_cache

    with open_cache(args.cache, namespace=args.namespace) as cache:
        summary = summarize(iter_entries(cache), top=max(0, args.top))
        summary.size_bytes = size_on_disk(cache)
        namespace = getattr(cache, "namespace", None)
    if args.json:
        print(json.dumps({"cache": redact_url(args.cache), "namespace": namespace, **summary.as_dict()}))
        return 0
    rate = summary.hit_rate
    lines = [
        f"cache:        {redact_url(args.cache)}" + (f" (namespace {namespace!r})" if namespace else ""),
        f"entries:      {summary.entries}",
        f"size on disk: {format_bytes(summary.size_bytes)}"
        + (" (whole file, all namespaces)" if summary.size_bytes else ""),
        f"hits:         {summary.hits if summary.hits_known else 'not recorded by this store'}",
        f"hit rate:     {'-' if rate is None else f'{rate:.1%}'} (estimated from stored hit counts)",
        f"tokens saved: {summary.tokens_saved} (from stored usage of {summary.entries_with_usage} of "
        f"{summary.entries} entries)",
        f"created:      {format_time(summary.oldest)} .. {format_time(summary.newest)}",
    ]
    if summary.models:
        models = sorted(summary.models.items(), key=lambda item: -item[1])
        lines.append("models:       " + ", ".join(f"{name} ({count})" for name, count in models[:8]))
    if summary.top:
        lines.append("top prompts:")
        lines.extend(f"  {hits:>6}  {one_line(prompt_text(prompt), 70)}" for hits, prompt in summary.top)
    print("\n".join(lines))
    return 0
