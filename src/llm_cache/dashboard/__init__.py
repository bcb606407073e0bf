"""A web dashboard over a cache: ``GET /dashboard`` on the proxy, or ``llm-cache dashboard``.

Server-rendered HTML with inline SVG charts and no scripts, fonts or CDNs (it works offline);
see :mod:`.app` for the pages and docs/dashboard.md for how to use it.
"""

from .app import Dashboard, Unauthorized, Viewer, asgi_endpoint, create_dashboard_app

__all__ = ["Dashboard", "Unauthorized", "Viewer", "asgi_endpoint", "create_dashboard_app"]
