"""``llm-cache prune``: remove expired or old entries and evict a cache down to a size."""

from __future__ import annotations

import argparse
import json

from ._common import add_cache_argument


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "prune",
        help="remove expired or old entries, evict down to a size (--dry-run to see first)",
        description=(
            "Remove entries of one cache namespace: expired ones (--expired), ones written more "
            "than S seconds ago (--older-than), and, by the eviction policy, as many as it takes to "
            "be within --max-entries / --max-bytes (default: the caps in the cache URL, "
            "?max_entries=&max_bytes=&policy=). Works on SQLite, SQL tables, the local semantic "
            "store and memory caches; Redis expires and evicts by itself (see docs/operations.md)."
        ),
    )
    add_cache_argument(parser)
    parser.add_argument("--expired", action="store_true", help="remove entries whose TTL has passed")
    parser.add_argument(
        "--older-than", type=float, metavar="S", help="remove entries written more than S seconds ago"
    )
    parser.add_argument("--max-entries", type=_positive, metavar="N", help="evict down to N entries")
    parser.add_argument(
        "--max-bytes", type=_size, metavar="B", help="evict down to B payload bytes (e.g. 500000, 64MB, 2GiB)"
    )
    parser.add_argument(
        "--policy", choices=("lru", "lfu", "cost"), help="which entries to evict (default: the URL's, else lru)"
    )
    parser.add_argument("--dry-run", action="store_true", help="remove nothing; report what would be removed")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(handler=_run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _size(text: str) -> int:
    from ..errors import ConfigurationError
    from ..eviction import parse_size

    try:
        return parse_size(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    from ..errors import ConfigurationError
    from ..urls import redact_url
    from ._common import entries_phrase, open_cache

    if args.older_than is not None and args.older_than < 0:
        raise ConfigurationError("--older-than takes a number of seconds, 0 or more")
    with open_cache(args.cache, namespace=args.namespace) as cache:
        prune = getattr(cache, "prune", None)
        if prune is None:
            raise ConfigurationError(
                f"{type(cache).__name__} cannot be pruned: it expires and evicts entries itself "
                "(Redis: set maxmemory and maxmemory-policy, see docs/operations.md)"
            )
        caps = getattr(cache, "caps", None)
        capped = args.max_entries is not None or args.max_bytes is not None or bool(caps and caps.enabled)
        if not (args.expired or args.older_than is not None or capped):
            raise ConfigurationError(
                "nothing to prune: give --expired, --older-than S, --max-entries N or --max-bytes B "
                "(or caps in the URL)"
            )
        report = prune(
            expired=args.expired,
            older_than=args.older_than,
            max_entries=args.max_entries,
            max_bytes=args.max_bytes,
            policy=args.policy,
            dry_run=args.dry_run,
        )
        namespace = getattr(cache, "namespace", None)
    where = redact_url(args.cache) + (f" namespace {namespace!r}" if namespace else "")
    if args.json:
        print(
            json.dumps(
                {
                    "cache": redact_url(args.cache),
                    "namespace": namespace,
                    "dry_run": args.dry_run,
                    "expired": report.expired,
                    "old": report.old,
                    "evicted": report.evicted,
                    "removed": report.removed,
                    "remaining": report.remaining,
                    "remaining_bytes": report.remaining_bytes,
                }
            )
        )
        return 0
    verb = "would remove" if args.dry_run else "removed"
    parts = f"{report.expired} expired, {report.old} older, {report.evicted} evicted"
    left = "" if report.remaining is None else f"; {entries_phrase(report.remaining)} left"
    if report.remaining_bytes is not None:
        left += f" ({report.remaining_bytes} bytes)"
    print(f"{where}: {verb} {entries_phrase(report.removed)} ({parts}){left}")
    return 0
