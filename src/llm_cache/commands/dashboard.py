"""``llm-cache dashboard``: the web dashboard over any cache URL, for its operator."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from ._common import add_cache_argument

_DEFAULT_PORT = 8788


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "dashboard",
        help="serve a web dashboard over a cache: entries, top prompts, savings, search, delete",
        description=(
            "Serve the dashboard's pages over the cache the URL names (read-only unless "
            "--allow-delete): entries per namespace, top prompts, tokens and estimated cost "
            "saved, search and detail. It has no authentication of its own and shows every "
            "entry: keep it on a local address. A running proxy serves the same pages with "
            "live traffic at /dashboard, behind its client authentication."
        ),
    )
    add_cache_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=_DEFAULT_PORT, help="port (default: %(default)s)")
    parser.add_argument(
        "--allow-delete",
        action="store_true",
        help="open the cache writable and offer the delete action (default: read-only)",
    )
    parser.add_argument(
        "--prices",
        metavar="FILE",
        help='JSON price table for the cost estimates: {"model": {"input": 0.15, "output": 0.6}} (USD per 1M tokens)',
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from .._imports import require
    from ..dashboard import create_dashboard_app
    from ..proxy.metrics import PriceTable
    from ._common import open_cache

    uvicorn = require("uvicorn", "proxy", "llm-cache dashboard")
    prices = PriceTable.from_file(args.prices) if args.prices else PriceTable()
    if not _is_loopback(args.host):
        print(
            f"llm-cache: warning: the dashboard has no authentication and shows every entry; "
            f"anyone who can reach {args.host}:{args.port} can read them",
            file=sys.stderr,
        )
    with open_cache(args.cache, namespace=args.namespace, read_only=not args.allow_delete) as cache:
        app = create_dashboard_app(cache, prices=prices, allow_delete=args.allow_delete)
        print(f"llm-cache dashboard on http://{args.host}:{args.port}/dashboard", file=sys.stderr)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
