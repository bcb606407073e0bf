"""Integrations with other libraries, each in its own module and imported on first use:

* :mod:`llm_cache.integrations.openai_client`: :func:`cached_client` wraps an
  ``openai.OpenAI`` / ``openai.AsyncOpenAI`` client (needs ``llm-cache[openai]``);
* :mod:`llm_cache.integrations.anthropic_client`: its own ``cached_client`` wraps an
  ``anthropic.Anthropic`` / ``anthropic.AsyncAnthropic`` client (needs ``llm-cache[anthropic]``);
* :mod:`llm_cache.integrations.langchain`: :class:`LangChainCache`, a langchain-core
  ``BaseCache`` over any llm-cache cache (needs ``llm-cache[langchain]``).

``from llm_cache.integrations import LangChainCache`` works too; a missing extra raises
:class:`~llm_cache.errors.MissingDependencyError` with the ``pip install`` line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .anthropic_client import CachedAnthropic
    from .langchain import LangChainCache
    from .openai_client import CachedOpenAI, cached_client

_LAZY = {
    "LangChainCache": "llm_cache.integrations.langchain",
    "cached_client": "llm_cache.integrations.openai_client",
    "CachedOpenAI": "llm_cache.integrations.openai_client",
    "CachedAnthropic": "llm_cache.integrations.anthropic_client",
}

__all__ = ["LangChainCache", "cached_client", "CachedOpenAI", "CachedAnthropic"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_cache.integrations' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
