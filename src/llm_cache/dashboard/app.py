"""The dashboard: server-rendered pages over a cache, for the proxy (``/dashboard``) and standalone.

=====================================  =================================================
``GET  /dashboard``                    overview: hit rate over time, requests by result,
                                       tokens and cost saved, top prompts, partitions
``GET  /dashboard/entries?q=&page=``   entries, newest first, searched in prompts and answers
``GET  /dashboard/entries/{id}``       one entry (``id``: its sha256 cache key)
``POST /dashboard/entries/{id}/delete``  delete it (a writable cache with ``delete()``)
``GET  /dashboard/semantic``           recent semantic hits with their similarity
``POST /dashboard/semantic/{id}/report``  report one as wrong (``feedback(correct=False)``)
=====================================  =================================================

:class:`Dashboard` holds the logic over plain values (method, path, query, form, headers,
the :class:`Viewer`) and returns ``(status, headers, html)``; :func:`asgi_endpoint` adapts it to
Starlette. Who the viewer is (and so which entries it sees) is decided by the caller: the
proxy authenticates like its ``/v1`` routes (:mod:`llm_cache.proxy._dashboard`), the
standalone command serves the operator on a local port (:func:`create_dashboard_app`).

POST actions are protected against cross-site requests twice: a browser's ``Origin`` (and
``Sec-Fetch-Site``) must be this site, and the form must carry a token that only a page
of this dashboard, served to this viewer, holds (an HMAC of the viewer's credential, so
every worker process of a proxy computes the same one).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._imports import require
from ..inspection import iter_entries
from . import _views
from ._data import Listing, Scope, SemanticHit, TrafficSamples, collect, entry_namespace, find_entry
from ._html import SECURITY_HEADERS, page

__all__ = ["Dashboard", "Viewer", "Unauthorized", "asgi_endpoint", "create_dashboard_app"]

logger = logging.getLogger("llm_cache.dashboard")

_ID = re.compile(r"^[0-9a-f]{64}$")
_HIT_ID = re.compile(r"^[0-9a-f]{24}-[0-9]{1,16}$")
_MAX_FORM = 16 * 1024
_PER_PAGE = 50

Result = tuple[int, dict[str, str], str]


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the entries they may see, and the credential they authenticated with
    (the CSRF token is derived from it; None for the standalone operator)."""

    scope: Scope
    credential: str | None = None


class Unauthorized(Exception):
    """The request did not authenticate (the endpoint answers 401 with ``message``)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Dashboard:
    """The pages over one cache.

    Args:
        cache: the exact cache (its ``entries()`` are listed; ``delete(prompt, llm_string)``
            removes one).
        semantic_cache: the semantic cache beside it, if any: a deleted entry is removed from
            it too, and a semantic hit is reported to its ``feedback`` (when it has one).
        traffic: the counter samples of a running proxy (None for a standalone dashboard).
        prices: an object with ``cost(model, input_tokens, output_tokens)`` (a ``PriceTable``).
        allow_delete: whether the delete action is offered (the cache must be writable).
        semantic_hits: the proxy's ring of recent semantic hits (None: not recorded).
        base: the URL path the pages live under.
    """

    def __init__(
        self,
        cache: Any,
        *,
        semantic_cache: Any = None,
        traffic: TrafficSamples | None = None,
        prices: Any = None,
        allow_delete: bool = True,
        semantic_hits: Sequence[SemanticHit] | None = None,
        base: str = "/dashboard",
    ) -> None:
        if prices is None:
            from ..proxy.metrics import PriceTable

            prices = PriceTable()
        self.cache = cache
        self.semantic_cache = semantic_cache
        self.traffic = traffic
        self.prices = prices
        self.allow_delete = allow_delete
        self.semantic_hits = semantic_hits
        self.base = base.rstrip("/")
        self._secret = secrets.token_bytes(32)

    # -- permissions ---------------------------------------------------------------------------
    @property
    def can_delete(self) -> bool:
        return self.allow_delete and callable(getattr(self.cache, "delete", None))

    @property
    def can_report(self) -> bool:
        cache = self.semantic_cache
        if not (callable(getattr(cache, "afeedback", None)) or callable(getattr(cache, "feedback", None))):
            return False
        # A SemanticCache learns from a reported semantic hit only with an error bound
        # (max_error_rate=); without one its feedback() refuses semantic hits.
        return bool(getattr(cache, "accepts_semantic_feedback", True))

    def csrf_token(self, viewer: Viewer) -> str:
        """The token POST forms of ``viewer`` carry."""
        if viewer.credential:
            key = hashlib.sha256(
                b"llm-cache dashboard csrf\0" + viewer.credential.encode("utf-8", "surrogatepass")
            ).digest()
        else:
            key = self._secret
        scope = (viewer.scope.namespace or "*").encode("utf-8", "surrogatepass")
        return hmac.new(key, scope, hashlib.sha256).hexdigest()

    def _cross_site(self, headers: Mapping[str, str], form: Mapping[str, str], viewer: Viewer) -> str | None:
        """Why a POST must be refused as a possible cross-site request, or None."""
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
            return "this action must come from a dashboard page of this server (Origin mismatch)"
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return "this action must come from a dashboard page of this server (cross-site request)"
        if not hmac.compare_digest(form.get("csrf", ""), self.csrf_token(viewer)):
            return "the form's token is missing or stale: reload the page and try again"
        return None

    # -- dispatch ------------------------------------------------------------------------------
    async def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        form: Mapping[str, str],
        headers: Mapping[str, str],
        viewer: Viewer,
    ) -> Result:
        """Answer one request for ``path`` (below :attr:`base`, e.g. ``"/entries"``)."""
        parts = [p for p in path.split("/") if p]
        if method == "POST":
            problem = self._cross_site(headers, form, viewer)
            if problem is not None:
                return self._message(403, "Refused", problem, viewer)
            if len(parts) == 3 and parts[0] == "entries" and parts[2] == "delete" and _ID.match(parts[1]):
                return await self._delete(parts[1], viewer)
            if len(parts) == 3 and parts[0] == "semantic" and parts[2] == "report" and _HIT_ID.match(parts[1]):
                return await self._report(parts[1], viewer)
            return self._message(404, "Not found", "no such action", viewer)
        if method not in ("GET", "HEAD"):
            return self._message(405, "Method not allowed", "use GET, or POST for actions", viewer)
        if not parts:
            return await self._overview(query, viewer)
        if parts == ["entries"]:
            return await self._entries(query, viewer)
        if len(parts) == 2 and parts[0] == "entries":
            return await self._entry(parts[1], viewer)
        if parts == ["semantic"]:
            return self._semantic(query, viewer)
        return self._message(404, "Not found", "no such dashboard page", viewer)

    # -- pages ---------------------------------------------------------------------------------
    def _html(self, status: int, title: str, body: str, viewer: Viewer, active: str = "") -> Result:
        text = page(title, body, base=self.base, active=active, scope_label=viewer.scope.label)
        return status, dict(SECURITY_HEADERS), text

    def _message(self, status: int, title: str, text: str, viewer: Viewer) -> Result:
        return self._html(status, title, _views.message_page(title, text), viewer)

    async def _listing(self, viewer: Viewer, search: str | None = None) -> Listing:
        return await asyncio.to_thread(self._collect, viewer, search)

    def _collect(self, viewer: Viewer, search: str | None) -> Listing:
        flush = getattr(self.cache, "flush_hits", None)
        if callable(flush):  # SQLite batches hit counts: show this process's hits so far
            flush()
        return collect(iter_entries(self.cache), viewer.scope, prices=self.prices, search=search)

    async def _overview(self, query: Mapping[str, str], viewer: Viewer) -> Result:
        if self.traffic is not None:
            self.traffic.sample()
        listing = await self._listing(viewer)
        body = _views.overview(listing, self.traffic, base=self.base)
        return self._html(200, "Overview", body, viewer, "overview")

    async def _entries(self, query: Mapping[str, str], viewer: Viewer) -> Result:
        search = query.get("q", "").strip()[:200]
        try:
            page_number = max(0, min(int(query.get("page", "0")), 10_000))
        except ValueError:
            page_number = 0
        listing = await self._listing(viewer, search or None)
        notice = "The entry was deleted." if query.get("done") == "deleted" else None
        body = _views.entries(
            listing, base=self.base, search=search, page=page_number, per_page=_PER_PAGE, notice=notice
        )
        return self._html(200, "Entries", body, viewer, "entries")

    async def _entry(self, wanted: str, viewer: Viewer) -> Result:
        row = await asyncio.to_thread(find_entry, self.cache, viewer.scope, wanted) if _ID.match(wanted) else None
        if row is None:
            return self._message(404, "Not found", "no such entry (it may have expired or been deleted)", viewer)
        body = _views.entry_detail(
            row, base=self.base, csrf=self.csrf_token(viewer), can_delete=self.can_delete, prices=self.prices
        )
        return self._html(200, "Entry", body, viewer, "entries")

    def _visible_hits(self, viewer: Viewer) -> list[SemanticHit]:
        return [h for h in list(self.semantic_hits or ()) if viewer.scope.admits(entry_namespace(h.llm_string))]

    def _semantic(self, query: Mapping[str, str], viewer: Viewer) -> Result:
        notice = "Reported: the semantic cache will be stricter here." if query.get("done") == "reported" else None
        body = _views.semantic(
            self._visible_hits(viewer),
            base=self.base,
            csrf=self.csrf_token(viewer),
            can_report=self.can_report,
            enabled=self.semantic_hits is not None and self.semantic_cache is not None,
            notice=notice,
        )
        return self._html(200, "Semantic hits", body, viewer, "semantic")

    # -- actions -------------------------------------------------------------------------------
    def _see_other(self, location: str) -> Result:
        return 303, {**SECURITY_HEADERS, "location": self.base + location}, ""

    async def _delete(self, wanted: str, viewer: Viewer) -> Result:
        if not self.can_delete:
            return self._message(
                403, "Read-only", "this dashboard cannot delete entries (a read-only cache, or a store without delete)", viewer
            )
        row = await asyncio.to_thread(find_entry, self.cache, viewer.scope, wanted)
        if row is None:
            return self._message(404, "Not found", "no such entry (it may have expired or been deleted)", viewer)
        prompt, llm_string = row.entry.prompt, row.entry.llm_string
        await asyncio.to_thread(self.cache.delete, prompt, llm_string)
        if self.semantic_cache is not None:
            await asyncio.to_thread(_delete_semantic, self.semantic_cache, prompt, llm_string)
        return self._see_other("/entries?done=deleted")

    async def _report(self, wanted: str, viewer: Viewer) -> Result:
        hit = next((h for h in self._visible_hits(viewer) if h.id == wanted), None)
        if hit is None:
            return self._message(404, "Not found", "no such semantic hit (only recent ones are kept)", viewer)
        if not self.can_report:
            return self._message(
                501, "Not available", "this semantic cache has no feedback(); delete the entry instead", viewer
            )
        await _feedback(self.semantic_cache, hit.prompt, hit.llm_string)
        hit.reported = True
        return self._see_other("/semantic?done=reported")


def _delete_semantic(semantic_cache: Any, prompt: str, llm_string: str) -> None:
    """Remove the entry from a semantic cache too, so it is not served again by meaning."""
    delete = getattr(semantic_cache, "delete", None)
    if callable(delete):
        delete(prompt, llm_string)
        return
    store = getattr(semantic_cache, "store", None)
    if store is not None and callable(getattr(store, "delete", None)):
        from ..semantic.partition import split_prompt

        store.delete([split_prompt(prompt, llm_string).key])


async def _feedback(semantic_cache: Any, prompt: str, llm_string: str) -> None:
    """``feedback(prompt, llm_string, correct=False)``, async when the cache has it."""
    afeedback = getattr(semantic_cache, "afeedback", None)
    if callable(afeedback):
        await afeedback(prompt, llm_string, correct=False)
        return
    feedback = semantic_cache.feedback
    if inspect.iscoroutinefunction(feedback):
        await feedback(prompt, llm_string, correct=False)
    else:
        await asyncio.to_thread(feedback, prompt, llm_string, correct=False)


# -- the ASGI side -------------------------------------------------------------------------------
def asgi_endpoint(
    dashboard: Dashboard, authenticate: Callable[[Mapping[str, str]], Viewer]
) -> Callable[[Any], Awaitable[Any]]:
    """A Starlette endpoint serving ``dashboard`` below its base path; ``authenticate``
    maps the request headers (lower-case names) to a :class:`Viewer` or raises
    :class:`Unauthorized`."""
    from starlette.responses import Response

    async def endpoint(request: Any) -> Any:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            viewer = authenticate(headers)
        except Unauthorized as exc:
            text = page(
                "Sign in", _views.message_page("Sign in", exc.message), base=dashboard.base, active="", scope_label=""
            )
            extra = {"www-authenticate": 'Basic realm="llm-cache dashboard", charset="UTF-8"'}
            return Response(
                text, exc.status, headers={**SECURITY_HEADERS, **extra}, media_type="text/html; charset=utf-8"
            )
        path = request.scope["path"][len(dashboard.base) :]
        query = dict(parse_qsl(request.scope.get("query_string", b"").decode("latin-1")))
        form: dict[str, str] = {}
        if request.method == "POST":
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > _MAX_FORM:
                    return Response("form too large", 413, media_type="text/plain")
            form = dict(parse_qsl(body.decode("utf-8", "replace")))
        try:
            status, out_headers, text = await dashboard.handle(
                request.method, path, query, form, headers, viewer
            )
        except Exception as exc:  # noqa: BLE001 - a failing store is a page saying so, not a traceback
            logger.warning("llm-cache dashboard: %s failed: %s: %s", path or "/", type(exc).__name__, exc)
            message = f"the cache could not be read ({type(exc).__name__}); see the server log"
            status, out_headers, text = dashboard._message(503, "Cache unavailable", message, viewer)
        return Response(text, status, headers=out_headers, media_type="text/html; charset=utf-8")

    return endpoint


def create_dashboard_app(
    cache: Any,
    *,
    semantic_cache: Any = None,
    prices: Any = None,
    allow_delete: bool = False,
    on_close: Callable[[], None] | None = None,
) -> Any:
    """The standalone dashboard (``llm-cache dashboard``) as a Starlette app: every entry of
    ``cache``, for its operator (no authentication: serve it on a local address).
    ``on_close`` runs when the app shuts down (closing the caches)."""
    require("starlette", "proxy", "the llm-cache dashboard")
    import contextlib

    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    dashboard = Dashboard(
        cache, semantic_cache=semantic_cache, prices=prices, allow_delete=allow_delete
    )
    operator = Viewer(Scope(None, "all entries (standalone)"))
    endpoint = asgi_endpoint(dashboard, lambda headers: operator)

    async def home(request: Any) -> Any:
        return RedirectResponse(dashboard.base, status_code=307)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        if on_close is not None:
            on_close()

    app = Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route(dashboard.base, endpoint, methods=["GET", "POST"]),
            Route(dashboard.base + "/{rest:path}", endpoint, methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.dashboard = dashboard
    return app
