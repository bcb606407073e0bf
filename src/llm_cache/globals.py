"""The global cache, and a scoped override that is correct under threads and asyncio.

``set_llm_cache`` sets the process-wide default. ``use_llm_cache`` overrides it for a
``with`` block through a :class:`contextvars.ContextVar`, so the override follows the
code that set it: other threads and other asyncio tasks keep seeing the global cache,
and tasks created inside the block inherit the override.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from .caches.base import BaseCache

__all__ = ["set_llm_cache", "get_llm_cache", "use_llm_cache"]

_global_cache: "BaseCache | None" = None
# A sentinel distinguishes "no override" from "overridden to no cache (None)".
_NO_OVERRIDE = object()
_scoped_cache: contextvars.ContextVar[object] = contextvars.ContextVar(
    "llm_cache_scoped", default=_NO_OVERRIDE
)


def set_llm_cache(cache: "BaseCache | None") -> None:
    """Set (or with ``None`` unset) the cache every model uses unless told otherwise."""
    global _global_cache
    _global_cache = cache


def get_llm_cache() -> "BaseCache | None":
    """The cache in effect here: a scoped override if one is active, else the global one."""
    scoped = _scoped_cache.get()
    if scoped is _NO_OVERRIDE:
        return _global_cache
    return scoped  # type: ignore[return-value]


@contextmanager
def use_llm_cache(cache: "BaseCache | None") -> Iterator["BaseCache | None"]:
    """Use ``cache`` (or no cache, with ``None``) inside the block, in this context only."""
    token = _scoped_cache.set(cache)
    try:
        yield cache
    finally:
        _scoped_cache.reset(token)
