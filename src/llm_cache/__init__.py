"""llm-cache: answer repeated LLM calls from a store.

    from llm_cache import set_llm_cache, SQLiteCache
    from llm_cache.llms import OpenAI

    set_llm_cache(SQLiteCache(database_path=".llm_cache.db"))
    llm = OpenAI(model_name="gpt-3.5-turbo-instruct")
    llm("Tell me a joke")   # provider call, stored
    llm("Tell me a joke")   # answered from the cache

Backends that need an optional extra (Redis, SQLAlchemy, Momento, the semantic caches)
are imported on first access; a missing extra raises an error with the pip line.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from .caches.base import BaseCache, CacheStats
from .caches.memory import InMemoryCache
from .caches.sqlite import SQLiteCache
from .errors import (
    CacheBackendError,
    CacheTimeoutError,
    ConfigurationError,
    CorruptEntryError,
    LLMCacheError,
    MissingDependencyError,
    ProviderError,
)
from .generation import Generation, LLMResult
from .globals import get_llm_cache, set_llm_cache, use_llm_cache

if TYPE_CHECKING:
    from .caches.momento import MomentoCache
    from .caches.redis import RedisCache
    from .caches.sql import SQLAlchemyCache
    from .semantic.cache import SemanticCache
    from .semantic.stores.pgvector import PGVectorSemanticCache
    from .semantic.stores.redis import RedisSemanticCache

__version__ = "0.1.0"

_LAZY = {
    "RedisCache": "llm_cache.caches.redis",
    "SQLAlchemyCache": "llm_cache.caches.sql",
    "MomentoCache": "llm_cache.caches.momento",
    "SemanticCache": "llm_cache.semantic.cache",
    "RedisSemanticCache": "llm_cache.semantic.stores.redis",
    "PGVectorSemanticCache": "llm_cache.semantic.stores.pgvector",
}

__all__ = [
    "__version__",
    "set_llm_cache",
    "get_llm_cache",
    "use_llm_cache",
    "Generation",
    "LLMResult",
    "BaseCache",
    "CacheStats",
    "InMemoryCache",
    "SQLiteCache",
    "RedisCache",
    "SQLAlchemyCache",
    "MomentoCache",
    "SemanticCache",
    "RedisSemanticCache",
    "PGVectorSemanticCache",
    "LLMCacheError",
    "ConfigurationError",
    "MissingDependencyError",
    "CacheBackendError",
    "CorruptEntryError",
    "CacheTimeoutError",
    "ProviderError",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_cache' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    # Cache it so later accesses skip this function. (The builtin globals() is shadowed
    # here by the llm_cache.globals submodule, hence the module's __dict__.)
    sys.modules[__name__].__dict__[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(sys.modules[__name__].__dict__) | set(__all__))
