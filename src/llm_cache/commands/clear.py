"""``llm-cache clear``: remove a cache's entries (one namespace), after confirmation."""

from __future__ import annotations

import argparse
import sys

from ._common import add_cache_argument


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "clear",
        help="remove every entry of a cache namespace (asks first unless --yes)",
        description=(
            "Remove every entry of the cache's namespace (only that namespace: other namespaces "
            "and other data in the same store are left alone). Asks for confirmation unless --yes."
        ),
    )
    add_cache_argument(parser)
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    parser.set_defaults(handler=_run)


def _confirm(question: str) -> bool:
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, EOFError):  # no usable stdin (e.g. closed): that is not a yes
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def _run(args: argparse.Namespace) -> int:
    from ..errors import ConfigurationError
    from ..inspection import count_entries, is_inspectable
    from ..urls import redact_url
    from ._common import entries_phrase, open_cache

    with open_cache(args.cache, namespace=args.namespace) as cache:
        namespace = getattr(cache, "namespace", None)
        where = redact_url(args.cache) + (f" namespace {namespace!r}" if namespace else "")
        counter = getattr(cache, "count", None)  # a semantic cache counts without listing
        count = count_entries(cache) if is_inspectable(cache) else (int(counter()) if callable(counter) else None)
        if not args.yes:
            what = "every entry" if count is None else entries_phrase(count)
            if not _confirm(f"Delete {what} of {where}?"):
                raise ConfigurationError("not confirmed; nothing was deleted (pass --yes to skip the question)")
        cache.clear()
    removed = "" if count is None else f"{entries_phrase(count)} "
    print(f"cleared {removed}from {where}")
    return 0
