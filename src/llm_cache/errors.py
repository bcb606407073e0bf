"""Exceptions raised by llm-cache.

Every exception the library raises on purpose derives from :class:`LLMCacheError`,
so ``except LLMCacheError`` catches all of them::

    LLMCacheError
    ├── ConfigurationError        bad arguments, a wrong cache URL, a schema mismatch
    ├── MissingDependencyError    an optional extra is not installed (message has the pip line)
    ├── CacheBackendError         a store failed (raised only in strict mode; otherwise a logged miss)
    │   ├── CorruptEntryError     a stored value could not be decoded
    │   └── CacheTimeoutError     a store did not answer within the cache's timeout
    └── ProviderError             the LLM provider failed or answered something unusable

A store failure never breaks an LLM call unless the cache was built with
``strict=True``: see :mod:`llm_cache.caches.base` for the one fail-open policy.
"""

from __future__ import annotations

__all__ = [
    "LLMCacheError",
    "ConfigurationError",
    "MissingDependencyError",
    "CacheBackendError",
    "CorruptEntryError",
    "CacheTimeoutError",
    "ProviderError",
]


class LLMCacheError(Exception):
    """Base class of every exception raised by llm-cache."""


class ConfigurationError(LLMCacheError, ValueError):
    """The caller passed something llm-cache cannot use; the message says what to do."""


class MissingDependencyError(LLMCacheError, ImportError):
    """An optional dependency is missing; the message carries the exact install line."""

    def __init__(self, package: str, extra: str, feature: str | None = None) -> None:
        self.package = package
        self.extra = extra
        what = feature or package
        super().__init__(
            f"{what} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'llm-cache[{extra}]'"
        )


class CacheBackendError(LLMCacheError):
    """A cache store failed (connection refused, timeout, disk full, ...)."""


class CorruptEntryError(CacheBackendError):
    """A value read from a store is not a valid llm-cache entry."""


class CacheTimeoutError(CacheBackendError, TimeoutError):
    """A store did not answer within the cache's ``timeout`` (a hung or overloaded server)."""


class ProviderError(LLMCacheError):
    """The LLM provider failed or returned a response llm-cache cannot use."""
