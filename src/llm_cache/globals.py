"""The global cache, and a scoped override that is correct under threads and asyncio.

``set_llm_cache`` sets the process-wide default. ``use_llm_cache`` overrides it for a
``with`` block through a :class:`contextvars.ContextVar`, so the override follows the
code that set it: other threads and other asyncio tasks keep seeing the global cache,
and tasks created inside the block inherit the override.

``validate_cache_setting`` and ``resolve_cache`` are the one reading of a model's or a
wrapped client's ``cache`` argument: ``None`` uses the cache in effect (if any), ``False``
never caches, ``True`` requires one, a cache object is used directly.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Any, Iterator

from .caches.base import BaseCache
from .errors import ConfigurationError

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


# -- a model's or client's ``cache`` argument --------------------------------------------------
def validate_cache_setting(cache: Any) -> None:
    """Refuse a ``cache`` argument that is not ``None``, a bool or a cache object."""
    if cache is None or isinstance(cache, (bool, BaseCache)):
        return
    raise ConfigurationError(
        f"cache must be None (use the global cache), False (never cache), True (require the "
        f"global cache) or an llm_cache cache object such as SQLiteCache(); got {type(cache).__name__}"
    )


def resolve_cache(
    setting: "BaseCache | bool | None", *, owner: str = "cache=True"
) -> "BaseCache | None":
    """The cache a ``cache`` argument means right now.

    A cache object is itself; ``False`` is no cache; ``None`` is :func:`get_llm_cache` (possibly
    none); ``True`` is :func:`get_llm_cache`, which must then be set (``owner`` begins the
    error message, e.g. ``"cached_client(cache=True)"``).
    """
    if isinstance(setting, BaseCache):
        return setting
    if setting is False:
        return None
    cache = get_llm_cache()
    if cache is None and setting is True:
        raise ConfigurationError(
            f"{owner} but no global cache is set: call "
            "llm_cache.set_llm_cache(SQLiteCache()) first, or pass a cache object"
        )
    return cache
