"""Headless Chromium for the dashboard's browser tests and screenshots (Playwright).

The browser is Debian's ``chromium`` package (``apt-get install chromium``), driven by
Playwright from PyPI (``pip install playwright``) through ``executable_path``: Playwright's
own browser download (``playwright install``) is never needed. The flags keep the browser
offline and quiet: no GPU, no QUIC, no first-run, background or update traffic, and a fresh
profile directory each time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["CHROMIUM_ARGS", "HOW_TO_ENABLE", "chromium_path", "missing", "chromium"]

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

HOW_TO_ENABLE = (
    "the browser tests need Debian's Chromium and Playwright: "
    "apt-get install -y chromium && pip install playwright "
    "(or set LLM_CACHE_CHROMIUM to another Chromium binary)"
)


def chromium_path() -> str | None:
    """The Chromium binary: ``$LLM_CACHE_CHROMIUM``, else ``chromium`` on the PATH."""
    return os.environ.get("LLM_CACHE_CHROMIUM") or shutil.which("chromium")


def missing() -> str | None:
    """Why the browser cannot run here (with how to fix it), or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed; " + HOW_TO_ENABLE
    if chromium_path() is None:
        return "no chromium binary; " + HOW_TO_ENABLE
    return None


@contextmanager
def chromium(**context_options: Any) -> Iterator[Any]:
    """A Playwright browser context in headless Chromium with a fresh profile directory.

    ``context_options`` go to ``new_context`` (``viewport``, ``http_credentials``...).
    """
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError(HOW_TO_ENABLE)
    with tempfile.TemporaryDirectory(prefix="llm-cache-chromium-") as profile:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=path,
                headless=True,
                args=list(CHROMIUM_ARGS),
                **context_options,
            )
            try:
                yield context
            finally:
                context.close()
