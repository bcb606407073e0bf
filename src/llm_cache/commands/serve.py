"""``llm-cache serve``: the OpenAI-compatible caching proxy."""

from __future__ import annotations

import argparse
import os

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
        "--access-log", action="store_true", help="log every request (method, path, status)"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from .._imports import require
    from ..errors import ConfigurationError
    from ..proxy import PriceTable, create_app
    from ..proxy.server import uvicorn_options
    from ..urls import redact_url

    uvicorn = require("uvicorn", "proxy", "llm-cache serve")
    api_key = None
    if args.upstream_api_key_env:
        api_key = os.environ.get(args.upstream_api_key_env)
        if not api_key:
            raise ConfigurationError(
                f"--upstream-api-key-env {args.upstream_api_key_env}: that environment variable is empty or unset"
            )
    prices = PriceTable.from_file(args.prices) if args.prices else None
    app = create_app(
        args.upstream,
        args.cache,
        upstream_api_key=api_key,
        share_across_keys=args.share_across_keys,
        namespace_header=args.namespace_header,
        ttl=args.ttl,
        semantic=args.semantic,
        prices=prices,
        stream_usage=args.stream_usage,
        timeout=args.timeout,
    )
    # Only redacted URLs are printed; the key is never.
    print(
        f"llm-cache proxy on http://{args.host}:{args.port}/v1 -> {redact_url(args.upstream)} "
        f"(cache {redact_url(args.cache)}; keys {'shared' if args.share_across_keys else 'isolated'}"
        f"{'; fixed upstream key' if api_key else ''})",
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=args.access_log,
        **uvicorn_options(),
    )
    return 0
