"""``/dashboard`` on the proxy: the pages of :mod:`llm_cache.dashboard`, behind the client
authentication of the ``/v1`` routes, each tenant seeing its own entries only.

A browser cannot send ``Authorization: Bearer``, so HTTP Basic authentication carries the
same API key as its password (any user name); a 401 asks the browser for it. A request
without any key is asked for one too, unless the proxy shares one partition between all
clients and has no client keys (then there is nothing to tell apart). The key goes
through :meth:`~._request._RequestParsing.tenant`, exactly as a ``/v1`` request's: with
client keys it must be one of them, and the tenant partition it names is the scope of
everything shown (with ``share_across_keys`` every client shares one partition, so every
entry is shown).

Traffic counters are read from the proxy's Prometheus exposition (the metric names are the
contract) every :data:`SAMPLE_SECONDS` into a small in-memory ring, for the hit rate over
time; they count every client of this process. Semantic hits are recorded by the proxy in
``proxy.semantic_hits`` (a bounded ring).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from ..dashboard import Dashboard, Unauthorized, Viewer, asgi_endpoint
from ..dashboard._data import Scope, SemanticHit, TrafficSamples
from ._http import Refusal
from ._protocols import layer_namespace

__all__ = ["ProxyDashboard", "SAMPLE_SECONDS", "SEMANTIC_HITS_KEPT", "record_semantic_hit"]

SAMPLE_SECONDS = 10.0
SAMPLES_KEPT = 360  # an hour at 10 s
SEMANTIC_HITS_KEPT = 100
_ANSWER_PREVIEW = 500


def record_semantic_hit(
    ring: Any, prompt: str, llm_string: str, similarity: float | None, generations: list[Any]
) -> None:
    """Remember one semantic hit for the dashboard (``ring``: a bounded deque)."""
    first = generations[0] if generations else None
    answer = getattr(first, "text", "") or ""
    ring.append(SemanticHit(time.time(), prompt, llm_string, similarity or 0.0, answer[:_ANSWER_PREVIEW]))


def _credential(headers: Mapping[str, str]) -> tuple[str | None, Mapping[str, str]]:
    """The API key of a dashboard request, and the headers with a Basic password turned into
    ``Authorization: Bearer`` (what :meth:`tenant` reads)."""
    auth = headers.get("authorization")
    if auth is None:
        key = headers.get("api-key") or headers.get("x-api-key")
        return key, headers
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "basic":
        return auth, headers
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed Basic credentials: give your API key as the password") from None
    password = decoded.partition(":")[2]
    if not password:
        raise Unauthorized("give your API key as the password (any user name)")
    return password, {**headers, "authorization": f"Bearer {password}"}


class ProxyDashboard:
    """The dashboard of one :class:`~.app.CachingProxy`: its routes and its sampler task."""

    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy
        self.traffic = TrafficSamples(self._exposition, size=SAMPLES_KEPT, interval=SAMPLE_SECONDS)
        self.dashboard = Dashboard(
            proxy.cache,
            semantic_cache=proxy.semantic_cache,
            traffic=self.traffic,
            prices=proxy.metrics.prices,
            allow_delete=True,
            semantic_hits=proxy.semantic_hits,
        )
        self._sampler: asyncio.Task[None] | None = None

    def _exposition(self) -> str:
        render = getattr(self.proxy.metrics, "render", None)
        if callable(render):
            return str(render())
        from prometheus_client import generate_latest  # a registry-backed Metrics

        return generate_latest().decode("utf-8")

    def authenticate(self, headers: Mapping[str, str]) -> Viewer:
        """The viewer of a request, as the ``/v1`` routes would see its caller."""
        credential, headers = _credential(headers)
        if credential is None and not (self.proxy.share_across_keys and self.proxy.client_keys is None):
            # A /v1 request without a key would reach the "anon" partition (and an upstream
            # that refuses it); a browser only sends its key once asked by a 401.
            raise Unauthorized("sign in with your API key as the password (any user name)")
        try:
            tenant = self.proxy.tenant(headers)
        except Refusal as exc:
            raise Unauthorized(
                exc.message + ". In a browser: any user name, your API key as the password."
                if exc.status == 401
                else exc.message,
                401 if exc.status == 401 else 400,
            ) from None
        if self.proxy.share_across_keys:
            return Viewer(Scope(None, "shared cache: all entries"), credential)
        namespace = layer_namespace(tenant)
        label = f"tenant {tenant[:9]}\u2026" if len(tenant) > 12 else f"tenant {tenant}"
        return Viewer(Scope(namespace, label), credential)

    def routes(self) -> list[Any]:
        """Starlette routes for ``/dashboard`` and below."""
        from starlette.routing import Route

        endpoint = asgi_endpoint(self.dashboard, self.authenticate)
        base = self.dashboard.base
        return [
            Route(base, endpoint, methods=["GET", "POST"]),
            Route(base + "/{rest:path}", endpoint, methods=["GET", "POST"]),
        ]

    def start(self) -> None:
        """Start sampling the counters (on the running loop; the app's lifespan calls it)."""
        if self._sampler is None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_forever())

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None

    async def _sample_forever(self) -> None:
        while True:
            self.traffic.sample()
            await asyncio.sleep(SAMPLE_SECONDS)
