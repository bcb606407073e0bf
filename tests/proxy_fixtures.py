"""Proxy fixtures shared by the proxy test modules (a pytest plugin, see conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llm_cache.proxy import ProxyServer, create_app


@pytest.fixture
def make_proxy(upstream: Any) -> Iterator[Callable[..., ProxyServer]]:
    """Start proxies in front of the built-in upstream; all are stopped after the test."""
    servers: list[ProxyServer] = []

    def factory(
        cache: Any = "memory://", upstream_url: str | None = None, **kwargs: Any
    ) -> ProxyServer:
        app = create_app(upstream_url or upstream.base_url, cache, **kwargs)
        server = ProxyServer(app).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()
