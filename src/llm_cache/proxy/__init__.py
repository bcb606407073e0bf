"""The OpenAI-compatible caching proxy (``llm-cache serve``).

    from llm_cache.proxy import create_app, ProxyServer

    app = create_app(upstream="https://api.openai.com/v1", cache="sqlite:///proxy.db")
    # uvicorn.run(app, port=8787), or in a background thread:
    with ProxyServer(app, port=8787) as server:
        client = openai.OpenAI(base_url=server.base_url)

Needs the ``proxy`` extra (Starlette, uvicorn, httpx): ``pip install 'llm-cache[proxy]'``.
See :mod:`llm_cache.proxy.app` for the request flow and the headers, and docs/proxy.md for
the limits (:class:`ProxyLimits`) and client keys (:class:`ClientKeys`).
"""

from __future__ import annotations

from .app import (
    DEFAULT_CACHE_URL,
    DEFAULT_NAMESPACE_HEADER,
    DEFAULT_UPSTREAM,
    CachingProxy,
    create_app,
)
from .auth import ClientKeys
from .limits import ProxyLimits
from .metrics import DEFAULT_PRICES, PriceTable
from .server import ProxyServer

__all__ = [
    "DEFAULT_CACHE_URL",
    "DEFAULT_NAMESPACE_HEADER",
    "DEFAULT_PRICES",
    "DEFAULT_UPSTREAM",
    "CachingProxy",
    "ClientKeys",
    "PriceTable",
    "ProxyLimits",
    "ProxyServer",
    "create_app",
]
