"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright.

Each page is loaded from a running proxy with cached entries, as a browser signs in (HTTP
Basic, the API key as password); the delete button is clicked and the entry is gone. The
pages are screenshotted into the test's directory (docs/screenshots.py makes the README's).
Without Chromium or Playwright these tests skip, saying how to enable them; with ``CI``
set they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_cache.proxy import ProxyServer
from llm_cache.testing.browser import chromium, missing
from test_dashboard import chat
from test_proxy import settle

pytestmark = pytest.mark.browser

KEY = "sk-browser-tenant"
HOSTILE = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"


@pytest.fixture(scope="module")
def need_browser() -> None:
    reason = missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but the browser cannot run: {reason}")
    pytest.skip(reason)


def ask(server: ProxyServer, text: str, key: str = KEY) -> str:
    return chat(server, key, text)


@pytest.fixture
def proxy(need_browser: None, make_proxy: Callable[..., ProxyServer], tmp_path: Path) -> ProxyServer:
    server = make_proxy(f"sqlite:///{tmp_path / 'proxy.db'}")
    for text in ("What is the capital of France?", "Write a haiku about the sea", HOSTILE):
        ask(server, text)
    ask(server, "Another tenant's question", key="sk-someone-else")
    settle(server)
    ask(server, "What is the capital of France?")  # a hit: a top prompt
    return server


@pytest.fixture
def page(proxy: ProxyServer) -> Iterator[Any]:
    with chromium(
        viewport={"width": 1280, "height": 860}, http_credentials={"username": "me", "password": KEY}
    ) as context:
        yield context.new_page()


def test_each_page_loads_and_delete_removes_the_entry(
    proxy: ProxyServer, page: Any, tmp_path: Path
) -> None:
    shots = tmp_path / "shots"
    # Overview: the counters, two SVG charts, the top prompt; no other tenant's entry.
    response = page.goto(proxy.url + "/dashboard")
    assert response.status == 200
    assert page.locator("svg[aria-label='hit rate over time']").count() == 1
    assert page.locator("svg[aria-label='requests by result']").count() == 1
    top = page.locator("td.prompt a").first
    assert top.inner_text() == "What is the capital of France?"
    assert "Another tenant" not in page.content()
    page.screenshot(path=str(shots / "overview.png"), full_page=True)

    # Entries: the hostile prompt is shown as text and did nothing.
    page.click("header nav >> text=Entries")
    assert page.url.endswith("/dashboard/entries")
    rows = page.locator("tbody tr")
    assert rows.count() == 3
    assert page.locator("td.prompt a", has_text="<script>").count() == 1
    assert page.title() != "pwned" and page.locator("main img").count() == 0
    page.screenshot(path=str(shots / "entries.png"), full_page=True)

    # Search, then the entry's page.
    page.fill("input[name=q]", "haiku")
    page.click("button:has-text('Search')")
    assert page.locator("tbody tr").count() == 1
    page.click("td.prompt a")
    assert "/dashboard/entries/" in page.url
    assert page.locator("pre").first.inner_text() == "Write a haiku about the sea"
    page.screenshot(path=str(shots / "entry.png"), full_page=True)

    # Delete it: the browser posts the form (same origin, its token) and lands on the list.
    page.click("button:has-text('Delete this entry')")
    page.wait_for_url("**/dashboard/entries?done=deleted")
    assert page.locator("[role=status]").inner_text() == "The entry was deleted."
    assert "haiku" not in page.locator("main").inner_text()
    assert page.locator("tbody tr").count() == 2
    assert ask(proxy, "Write a haiku about the sea") == "MISS"

    page.click("header nav >> text=Semantic hits")
    assert page.locator("h1").inner_text() == "Recent semantic hits"
    page.screenshot(path=str(shots / "semantic.png"), full_page=True)
    assert page.title() != "pwned"
    assert sorted(p.name for p in shots.iterdir()) == ["entries.png", "entry.png", "overview.png", "semantic.png"]


def test_the_browser_is_asked_to_sign_in(proxy: ProxyServer) -> None:
    from playwright.sync_api import Error

    with chromium() as context:  # no credentials to give: headless Chromium gives up
        page = context.new_page()
        seen: list[tuple[int, str | None]] = []
        page.on("response", lambda r: seen.append((r.status, r.headers.get("www-authenticate"))))
        try:
            response = page.goto(proxy.url + "/dashboard")
        except Error as exc:
            assert "AUTH" in str(exc)
        else:  # a Chromium that shows the 401 page instead
            assert response is not None and response.status == 401
        assert seen and seen[0][0] == 401 and (seen[0][1] or "").startswith("Basic ")
