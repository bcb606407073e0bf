"""Cache backends. Each store lives in its own module and is imported on first use,
so ``import llm_cache`` never imports a driver the user did not ask for."""

from __future__ import annotations

import importlib
from typing import Any

from .base import BaseCache, CacheStats
from .memory import InMemoryCache
from .sqlite import SQLiteCache

# name -> module that defines it; these need an optional extra.
_LAZY = {
    "RedisCache": "llm_cache.caches.redis",
    "SQLAlchemyCache": "llm_cache.caches.sql",
    "FullLLMCache": "llm_cache.caches.sql",
    "MomentoCache": "llm_cache.caches.momento",
}

__all__ = ["BaseCache", "CacheStats", "InMemoryCache", "SQLiteCache", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_cache.caches' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
