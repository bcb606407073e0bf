"""``llm-cache stats``: entries, size, hit rate, top prompts, tokens and cost saved of a cache."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ._common import add_cache_argument, format_bytes, format_time, one_line, prompt_text


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "stats",
        help="entries, size, hit rate, top prompts, tokens and cost saved of a cache",
        description=(
            "Summarise a cache's stored entries (read-only: the store is not changed). The hit "
            "rate is estimated from the hit counts the store keeps (SQLite does): hits / (hits + "
            "entries), each entry having cost one miss. Tokens saved = for each entry, the tokens "
            "its first call used (from the usage stored with it) times its hits; cost saved prices "
            "them at list prices (--prices FILE to use your own; needs the 'proxy' extra's table)."
        ),
    )
    add_cache_argument(parser)
    parser.add_argument(
        "--top", type=int, default=5, metavar="N", help="show the N most hit prompts (default: %(default)s)"
    )
    parser.add_argument(
        "--prices",
        metavar="FILE",
        help='JSON price table {"model": {"input": 0.15, "output": 0.6}} in USD per 1M tokens '
        "(default: the built-in OpenAI list prices)",
    )
    parser.add_argument("--json", action="store_true", help="print the statistics as one JSON object")
    parser.set_defaults(handler=_run)


def _price_table(path: str | None) -> Any:
    """The proxy's price table (its built-in list prices, or ``path``); None when the proxy
    extra is missing and no file was given (the cost is then not estimated)."""
    try:
        from ..proxy.metrics import PriceTable
    except ImportError:
        if path:
            from .._imports import require

            require("starlette", "proxy", "stats --prices")
        return None
    return PriceTable.from_file(path) if path else PriceTable()


def _money(usd: float) -> str:
    """``$12.35``; small amounts with enough digits to be seen (``$0.0000045``)."""
    if usd == 0 or usd >= 0.01:
        return f"${usd:,.2f}"
    if usd < 1e-9:
        return "$0.00"
    digits = 1 - math.floor(math.log10(usd))  # two significant digits
    return f"${usd:.{digits}f}"


def _run(args: argparse.Namespace) -> int:
    from ..inspection import iter_entries, list_namespaces, size_on_disk, summarize
    from ..urls import redact_url
    from ._common import entries_phrase, open_cache

    prices = _price_table(args.prices)
    elsewhere: list[tuple[str, int, int | None]] = []
    with open_cache(args.cache, namespace=args.namespace, read_only=True) as cache:
        summary = summarize(iter_entries(cache), top=max(0, args.top), prices=prices)
        summary.size_bytes = size_on_disk(cache)
        namespace = getattr(cache, "namespace", None)
        if summary.entries == 0:
            # Nothing here: say where the entries are (after the demo, under "demo").
            elsewhere = [row for row in list_namespaces(cache) if row[0] != namespace and row[1]]
    if args.json:
        data = {"cache": redact_url(args.cache), "namespace": namespace, **summary.as_dict()}
        if elsewhere:
            data["other_namespaces"] = {ns: count for ns, count, _ in elsewhere}
        print(json.dumps(data))
        return 0
    rate = summary.hit_rate
    cost = "-" if summary.cost_saved is None else f"{_money(summary.cost_saved)} (estimated at list prices)"
    lines = [
        f"cache:        {redact_url(args.cache)}" + (f" (namespace {namespace!r})" if namespace else ""),
        f"entries:      {summary.entries}",
        f"size on disk: {format_bytes(summary.size_bytes)}"
        + (" (whole store, all namespaces)" if summary.size_bytes else ""),
        f"hits:         {summary.hits if summary.hits_known or not summary.entries else 'not recorded by this store'}",
        f"hit rate:     {'-' if rate is None else f'{rate:.1%}'} (estimated from stored hit counts)",
        f"tokens saved: {summary.tokens_saved:,} (from stored usage of {summary.entries_with_usage} of "
        f"{summary.entries} entries)",
        f"cost saved:   {cost}",
        f"created:      {format_time(summary.oldest)} .. {format_time(summary.newest)}",
    ]
    if summary.models:
        models = sorted(summary.models.items(), key=lambda item: -item[1])
        lines.append("models:       " + ", ".join(f"{name} ({count})" for name, count in models[:8]))
    if summary.top:
        lines.append("top prompts:")
        lines.extend(f"  {hits:>6}  {one_line(prompt_text(prompt), 70)}" for hits, prompt in summary.top)
    if elsewhere:
        where = ", ".join(f"{ns!r} ({entries_phrase(count)})" for ns, count, _ in elsewhere[:8])
        lines.append(f"no entries in namespace {namespace!r}; this store has: {where}")
        lines.append(f"  e.g. llm-cache stats --cache {redact_url(args.cache)} --namespace {elsewhere[0][0]}")
    print("\n".join(lines))
    return 0
