"""What the cache sub-commands share: the ``--cache URL`` argument, opening a cache with
readable errors, a progress bar, and text helpers. Standard library only (this module is
imported by every ``llm-cache`` invocation)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import sqlite3
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Iterator
from urllib.parse import urlsplit

from ..errors import CacheBackendError, ConfigurationError, LLMCacheError

if TYPE_CHECKING:
    from ..caches.base import BaseCache

__all__ = [
    "DEFAULT_CACHE_URL",
    "add_cache_argument",
    "add_progress_argument",
    "add_limit_argument",
    "open_cache",
    "Progress",
    "one_line",
    "prompt_text",
    "format_time",
    "format_bytes",
]

DEFAULT_CACHE_URL = "sqlite:///.llm_cache.db"  # SQLiteCache's and the demo's default file
_ENV = "LLM_CACHE_URL"

# Exceptions of store drivers (by module) that mean "the store failed", shown as one line
# rather than a traceback; any other exception is a bug and keeps its traceback.
_DRIVER_MODULES = ("redis", "sqlalchemy", "psycopg", "pymysql", "momento")


def add_cache_argument(parser: argparse.ArgumentParser) -> None:
    """``--cache URL`` (default: $LLM_CACHE_URL, else the SQLite file ``.llm_cache.db``) and
    ``--namespace NS``."""
    parser.add_argument(
        "--cache",
        metavar="URL",
        default=os.environ.get(_ENV) or DEFAULT_CACHE_URL,
        help=(
            "the cache: sqlite:///path.db, redis://host:6379/0, postgresql://..., memory://, "
            "semantic:///DIR, semantic+redis://..., semantic+postgresql://... "
            f"(options ?namespace=NS&ttl=SECONDS&timeout=SECONDS; default: ${_ENV} or %(default)s)"
        ),
    )
    parser.add_argument("--namespace", metavar="NS", help="the cache namespace (overrides the URL's ?namespace=)")


def _store_error(url: str, exc: BaseException) -> CacheBackendError:
    from ..urls import redact_url

    return CacheBackendError(f"cache {redact_url(url)}: {type(exc).__name__}: {exc}")


def _is_store_error(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, sqlite3.Error)):
        return True
    module = type(exc).__module__ or ""
    return module.split(".")[0] in _DRIVER_MODULES


@contextlib.contextmanager
def _store_errors_as_one_line(url: str) -> Iterator[None]:
    """Inside the block, a store driver's exception becomes a one-line CacheBackendError."""
    try:
        yield
    except LLMCacheError:
        raise
    except Exception as exc:
        if _is_store_error(exc):
            raise _store_error(url, exc) from exc
        raise


@contextlib.contextmanager
def open_cache(
    url: str, *, namespace: str | None = None, must_exist: bool = True, read_only: bool = False
) -> Iterator["BaseCache"]:
    """The cache ``url`` names, closed on exit. Store errors raised inside the block come
    out as one-line :class:`CacheBackendError`; the cache is strict, so a failed write is an
    error here instead of the library's logged miss.

    ``must_exist``: a file or directory URL must name one that exists (commands other than
    ``import`` must not create an empty database because of a typo).
    ``read_only``: for the listing commands: the store is opened so that nothing can be
    created or changed (see :func:`llm_cache.urls.cache_from_url`).
    """
    from ..urls import cache_from_url, redact_url

    parts = urlsplit(url) if isinstance(url, str) else None
    if must_exist and parts is not None and parts.scheme.lower() in ("sqlite", "semantic"):
        path = parts.path[1:] if parts.path.startswith("/") else parts.path  # as urls.py reads it
        if path and path != ":memory:" and not os.path.exists(path):
            what = "cache database" if parts.scheme.lower() == "sqlite" else "semantic cache directory"
            raise ConfigurationError(f"no {what} at {path!r} ({redact_url(url)}): check the path")
    with _store_errors_as_one_line(url):
        cache = cache_from_url(url, namespace=namespace, read_only=read_only)
    cache.strict = True
    try:
        with _store_errors_as_one_line(url):
            yield cache
    finally:
        with contextlib.suppress(Exception):
            cache.close()


class Progress:
    """A progress bar on stderr (rich's, when the ``cli`` extra is installed).

    Shown only when ``enabled`` (the commands enable it for ``--progress`` or when stderr is
    a terminal), so pipes and logs get no control characters. ``total`` is in the unit of
    :meth:`advance`'s ``amount`` (bytes of an import file, entries of an export); ``count``
    is the items done, shown beside the bar. Without rich, one plain line is written at the end.
    """

    def __init__(
        self, label: str, total: int | None, *, enabled: bool, unit: str = "", stream: IO[str] | None = None
    ) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self.unit = unit
        self.done = 0
        self.count = 0
        self._stream = stream or sys.stderr
        self._started = time.monotonic()
        self._bar: Any = None
        self._task: Any = None
        if enabled:
            from ._output import rich_progress

            self._bar = rich_progress(self._stream, unit)
            if self._bar is not None:
                self._task = self._bar.add_task(label, total=total, count=0)
                self._bar.start()

    @staticmethod
    def wanted(flag: bool) -> bool:
        """Whether to show a bar: asked for, or stderr is a terminal."""
        return flag or sys.stderr.isatty()

    def advance(self, amount: int = 1, *, items: int = 1) -> None:
        self.done += amount
        self.count += items
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, count=self.count)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.total:
            self.done = max(self.done, self.total)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, count=self.count)
            self._bar.stop()
            self._bar = None
            return
        self._stream.write(
            f"{self.label}: {self.count} {self.unit} ({time.monotonic() - self._started:.1f}s)\n".replace("  ", " ")
        )
        self._stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--progress``: show the bar even when stderr is not a terminal."""
    parser.add_argument(
        "--progress", action="store_true", help="show a progress bar on stderr even when it is not a terminal"
    )


def add_limit_argument(parser: argparse.ArgumentParser) -> None:
    """``--limit N`` (0: no limit)."""
    parser.add_argument(
        "--limit", type=int, default=20, metavar="N", help="show at most N entries; 0 for all (default: %(default)s)"
    )


def entries_phrase(count: int) -> str:
    """``"1 entry"``, ``"3 entries"``."""
    return f"{count} entr{'y' if count == 1 else 'ies'}"


def one_line(text: Any, width: int) -> str:
    """``text`` on one line (newlines and tabs shown as spaces), cut to ``width`` with '…'."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: max(0, width - 1)] + "…"


def prompt_text(prompt: str) -> str:
    """What a person would call the prompt: for a chat prompt (llm-cache's
    ``[{"role", "content"}]`` or LangChain's serialised messages), the message texts joined
    by `` | ``; any other prompt as it is (:func:`llm_cache.chat_prompt.readable_prompt`)."""
    from ..chat_prompt import readable_prompt

    return readable_prompt(prompt)


def format_time(timestamp: float | None) -> str:
    """Local time ``YYYY-MM-DD HH:MM``, or ``-``."""
    if timestamp is None:
        return "-"
    return _dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def format_bytes(size: int | None) -> str:
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover
