"""Run the proxy with uvicorn: in the foreground (the CLI) or in a background thread.

:class:`ProxyServer` serves an app on a loopback port from a daemon thread, the way
:class:`~llm_cache.testing.fake_openai.FakeOpenAIServer` does, for tests, benchmarks and
embedding the proxy in another program::

    app = create_app(upstream=server.base_url, cache="memory://")
    with ProxyServer(app) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="sk-...")
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from .._imports import require
from ._guard import guarded_protocol
from .limits import ProxyLimits
from .metrics import Metrics
from .workers import listening_socket

__all__ = ["ProxyServer", "uvicorn_options"]


def uvicorn_options(
    limits: ProxyLimits | None = None, metrics: Metrics | None = None
) -> dict[str, Any]:
    """uvicorn settings: its fastest loop, and the httptools parser with the proxy's guards.

    The guards (:mod:`._guard`: connection cap, header size, header / idle / body
    timeouts) are a subclass of uvicorn's httptools protocol, so httptools is required
    (the ``proxy`` extra installs it). With ``metrics`` (the app's), connection-level
    refusals are counted as ``refused_requests_total{endpoint="connection"}``.
    """
    limits = limits or ProxyLimits()
    # proxy_headers off: the proxy never uses the client address, and the middleware that
    # rewrites it from X-Forwarded-For costs time on every request.
    options: dict[str, Any] = {
        "loop": "auto",
        "http": guarded_protocol(
            limits, (lambda code: metrics.refused("connection", code)) if metrics else None
        ),
        "proxy_headers": False,
        "timeout_keep_alive": limits.idle_timeout,
    }
    return options


def _limits_of(app: Any) -> tuple[ProxyLimits | None, Metrics | None]:
    """A proxy app's limits and metrics (``None`` for any other app)."""
    proxy = getattr(app, "proxy", None)
    limits = getattr(proxy, "limits", None)
    metrics = getattr(proxy, "metrics", None)
    return (
        limits if isinstance(limits, ProxyLimits) else None,
        metrics if isinstance(metrics, Metrics) else None,
    )


class ProxyServer:
    """Serve an ASGI app with uvicorn on ``host:port`` (port 0: a free one) from a thread.

    A proxy app (:func:`~llm_cache.proxy.create_app`) is served with its own
    :class:`~llm_cache.proxy.limits.ProxyLimits`; any other app with the defaults.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        access_log: bool = False,
        **config: Any,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._log_level = log_level
        self._access_log = access_log
        self._config = config
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def start(self, timeout: float = 10.0) -> ProxyServer:
        """Bind, start serving in a daemon thread and wait until it accepts connections."""
        uvicorn = require("uvicorn", "proxy", "the llm-cache proxy")
        if self._server is not None:
            return self
        sock = listening_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level=self._log_level,
            access_log=self._access_log,
            lifespan="on",
            **{**uvicorn_options(*_limits_of(self.app)), **self._config},
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="llm-cache-proxy", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the proxy server stopped while starting (see its log)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the proxy server did not start within {timeout}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (running the app's shutdown) and wait for the thread."""
        server, self._server = self._server, None
        if server is None:
            return
        server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> ProxyServer:  # noqa: PYI034 - no typing_extensions dependency
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:8787``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The URL to give ``openai.OpenAI(base_url=...)``."""
        return self.url + "/v1"
