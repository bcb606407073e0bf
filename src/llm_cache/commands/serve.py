"""``llm-cache serve``: the OpenAI-compatible caching proxy."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

from ..proxy.limits import ProxyLimits

_DEFAULT_CACHE = "sqlite:///.llm_cache_proxy.db"
_DEFAULT_UPSTREAM = "https://api.openai.com/v1"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run an OpenAI-compatible caching proxy in front of an upstream API",
        description=(
            "Serve /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses and Anthropic's "
            "/v1/messages (cached, streaming included) and /v1/models; point any OpenAI client at "
            "http://HOST:PORT/v1 (an Anthropic client at http://HOST:PORT). Responses carry "
            "X-Cache: HIT | SEMANTIC-HIT | MISS | BYPASS. Clients may send Cache-Control: no-cache "
            "(refresh), no-store (bypass), max-age=N, only-if-cached. /metrics (Prometheus) and /healthz."
        ),
    )
    parser.add_argument(
        "--upstream",
        default=_DEFAULT_UPSTREAM,
        help="base URL of the OpenAI-compatible API, with /v1 (default: %(default)s)",
    )
    parser.add_argument(
        "--cache",
        default=_DEFAULT_CACHE,
        help="cache URL: memory://, sqlite:///path.db, redis://host:6379/0, "
        "postgresql://user:pw@host/db (default: %(default)s)",
    )
    parser.add_argument(
        "--semantic",
        action="store_true",
        help="also answer chat / completion prompts that mean the same as a cached one "
        "(X-Cache: SEMANTIC-HIT); the semantic index lives beside --cache "
        "(needs the 'semantic' extra)",
    )
    parser.add_argument(
        "--semantic-max-error-rate",
        type=float,
        default=None,
        metavar="RATE",
        help="with --semantic: bound the share of wrong semantic hits (e.g. 0.02) instead of a "
        "fixed similarity threshold; the index learns from upstream answers and from "
        "POST /v1/cache/feedback (docs/semantic.md)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8787, help="port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--namespace-header",
        default="X-LLM-Cache-Namespace",
        help="request header that names an extra cache partition (default: %(default)s)",
    )
    parser.add_argument(
        "--share-across-keys",
        action="store_true",
        help="share entries between API keys (default: isolated per key, by a hash of it)",
    )
    parser.add_argument(
        "--ttl", type=float, default=None, help="seconds an entry may be served (default: forever)"
    )
    parser.add_argument(
        "--upstream-api-key-env",
        metavar="VAR",
        default=None,
        help="use the key in environment variable VAR for every upstream call, e.g. "
        "OPENAI_API_KEY (default: pass each client's own Authorization through)",
    )
    parser.add_argument(
        "--prices",
        metavar="FILE",
        default=None,
        help='JSON price table for the cost-saved metric: {"model": {"input": 0.15, '
        '"output": 0.6}} in USD per 1M tokens (default: a built-in OpenAI table)',
    )
    parser.add_argument(
        "--no-stream-usage",
        dest="stream_usage",
        action="store_false",
        help="do not ask the upstream for usage on streamed misses (for upstreams "
        "that reject stream_options)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="upstream read timeout in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes sharing --port (POSIX; default: %(default)s); metrics of all "
        "workers are added up, limits apply per worker (see docs/deploy.md)",
    )
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=10.0,
        help="on a redis:// or postgresql:// cache, identical misses of every instance make one "
        "upstream call; a leader that dies without answering is replaced after this many "
        "seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log every request (method, path, status)"
    )
    auth = parser.add_argument_group(
        "client authentication (for a proxy that holds the upstream key)"
    )
    auth.add_argument(
        "--client-keys",
        metavar="FILE",
        default=None,
        help="accept only clients presenting one of these keys (a file of sha256:<hex> lines; "
        "each key is its own tenant); needs --upstream-api-key-env",
    )
    auth.add_argument(
        "--new-client-key",
        metavar="FILE",
        default=None,
        help="make a new client key, append its hash to FILE, print the key once, and exit",
    )
    auth.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="serve a fixed upstream key to anyone on a non-loopback --host without --client-keys",
    )
    limits = parser.add_argument_group("limits (see docs/proxy.md)")
    defaults = ProxyLimits()
    for flag, field, kind, text in _LIMIT_FLAGS:
        limits.add_argument(
            flag,
            dest=field,
            type=kind,
            default=getattr(defaults, field),
            metavar="N",
            help=f"{text} (default: %(default)s)",
        )
    parser.set_defaults(handler=_run)


def _size(text: str) -> int:
    """A byte count: 1048576, 1024K, 16M or 1G (binary multiples)."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = units.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in units else value
    try:
        return int(float(number) * scale)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16M)") from None


_LIMIT_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--max-body-bytes", "max_body_bytes", _size, "largest request body; 413 past it"),
    (
        "--max-header-bytes",
        "max_header_bytes",
        _size,
        "largest request line + headers; 431 past it",
    ),
    (
        "--header-timeout",
        "header_timeout",
        float,
        "seconds to receive a request's headers; 408 past it",
    ),
    ("--idle-timeout", "idle_timeout", float, "seconds an idle (keep-alive) connection stays open"),
    ("--body-timeout", "body_timeout", float, "seconds to receive a request's body; 408 past it"),
    (
        "--max-connections",
        "max_connections",
        int,
        "open client connections; 503 + Retry-After past it",
    ),
    ("--max-upstream", "max_upstream", int, "upstream calls at once; 503 + Retry-After past it"),
    (
        "--max-stored-bytes",
        "max_stored_bytes",
        _size,
        "largest answer that is stored (larger: passed on)",
    ),
]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _new_client_key(path: str) -> int:
    from ..proxy.auth import hash_client_key, new_client_key

    key = new_client_key()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(hash_client_key(key) + "\n")
    os.chmod(path, 0o600)
    print(key)
    print(
        f"(its sha256 was appended to {path}; the key itself is not stored anywhere)",
        file=sys.stderr,
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from .._imports import require
    from ..errors import ConfigurationError
    from ..proxy import PriceTable, create_app
    from ..proxy.server import uvicorn_options
    from ..urls import redact_url

    if args.new_client_key:
        return _new_client_key(args.new_client_key)
    uvicorn = require("uvicorn", "proxy", "llm-cache serve")
    api_key = None
    if args.upstream_api_key_env:
        api_key = os.environ.get(args.upstream_api_key_env)
        if not api_key:
            raise ConfigurationError(
                f"--upstream-api-key-env {args.upstream_api_key_env}: that environment variable is empty or unset"
            )
    if (
        api_key
        and not args.client_keys
        and not args.allow_anonymous
        and not _is_loopback(args.host)
    ):
        raise ConfigurationError(
            f"--host {args.host} with --upstream-api-key-env would let anyone who reaches the proxy "
            "spend that key: give --client-keys FILE (make keys with --new-client-key FILE), "
            "or --allow-anonymous if the network is trusted"
        )
    if args.client_keys and not api_key:
        raise ConfigurationError(
            "--client-keys needs --upstream-api-key-env (otherwise clients send the upstream key themselves)"
        )
    limits = ProxyLimits(**{field: getattr(args, field) for _, field, _, _ in _LIMIT_FLAGS})
    prices = PriceTable.from_file(args.prices) if args.prices else None

    def build() -> Any:
        return create_app(
            args.upstream,
            args.cache,
            upstream_api_key=api_key,
            share_across_keys=args.share_across_keys,
            namespace_header=args.namespace_header,
            ttl=args.ttl,
            semantic=args.semantic,
            semantic_max_error_rate=args.semantic_max_error_rate,
            prices=prices,
            stream_usage=args.stream_usage,
            timeout=args.timeout,
            limits=limits,
            client_keys=args.client_keys,
            lease_ttl=args.lease_ttl,
        )

    def serve(app: Any, sockets: list[Any] | None = None) -> None:
        options = {
            "host": args.host,
            "port": args.port,
            "log_level": "info",
            "access_log": args.access_log,
            **uvicorn_options(limits, app.proxy.metrics),
        }
        if sockets is None:
            uvicorn.run(app, **options)
        else:  # a worker of --workers: serve the socket it was given
            uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=sockets)

    if args.workers > 1 and args.port == 0:
        raise ConfigurationError("--workers needs a fixed --port (the workers share it)")
    if args.workers > 1 and not hasattr(os, "fork"):
        raise ConfigurationError(
            "--workers needs a POSIX system (it forks); run several instances on other ports instead"
        )
    if args.workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    metrics_dir = None
    if args.workers > 1:
        from ..proxy.workers import prepare_metrics_dir

        metrics_dir = prepare_metrics_dir()  # before any metric exists (see proxy/_prom.py)
    # Built once here even with --workers: a configuration error stops the command now.
    app = build()
    # Only redacted URLs are printed; the key is never.
    print(
        f"llm-cache proxy on http://{args.host}:{args.port}/v1 -> {redact_url(args.upstream)} "
        f"(cache {redact_url(args.cache)}; keys {'shared' if args.share_across_keys else 'isolated'}"
        f"{'; fixed upstream key' if api_key else ''}"
        f"{_semantic_mode(args)}"
        f"{'; client keys required' if args.client_keys else ''}"
        f"{f'; {args.workers} workers' if args.workers > 1 else ''})",
        flush=True,
    )
    if args.workers <= 1:
        serve(app)
        return 0
    from ..proxy.workers import run_workers

    app.proxy.cache.close()  # each worker opens its own connections
    if app.proxy.semantic_cache is not None and hasattr(app.proxy.semantic_cache, "close"):
        app.proxy.semantic_cache.close()
    return run_workers(
        args.workers, args.host, args.port, lambda sock: serve(build(), [sock]), metrics_dir
    )


def _semantic_mode(args: argparse.Namespace) -> str:
    """The startup line's words for the semantic index, if any."""
    if not args.semantic:
        return ""
    if args.semantic_max_error_rate is None:
        return "; semantic matching"
    return f"; semantic matching, at most {args.semantic_max_error_rate:g} wrong"
