"""The cache the vendored langchain-core tests construct: llm-cache's LangChainCache over
one llm-cache backend (not part of langchain-core; written for llm-cache).

langchain-core's cache tests build ``InMemoryCache()``, a dict-backed ``BaseCache`` defined
in each test file, and read its dict ``_cache`` to check what was stored. Here
``InMemoryCache()`` is :class:`LlmCacheBacked`: a :class:`LangChainCache` over the next
backend the conftest prepared for this test (every backend of ``langchain_backends``, each
made before the test's event loop runs), and ``_cache`` is a live view of that backend:

* ``view[(prompt, llm_string)]`` is the backend's lookup (KeyError on a miss), assigning
  to it is the backend's update;
* ``len(view)`` is the backend's own ``count()`` (for Momento, which cannot count, the
  number of written keys still present);
* iteration yields the (prompt, llm_string) pairs written through this cache that the
  backend still holds; ``copy()`` is a plain dict of them; assigning a mapping to
  ``_cache`` clears the backend and writes the mapping into it.

When an async test reads the view, the read runs in a worker thread: it is the test's
bookkeeping, not a cache call on LangChain's request path, which BlockBuster keeps watching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from llm_cache import BaseCache as LlmCacheBaseCache
from llm_cache.integrations.langchain import LangChainCache

T = TypeVar("T")
Key = tuple[str, str]

# Filled by the conftest before each test: the backends this test's caches use, in order.
POOL: list[LlmCacheBaseCache] = []


def _off_loop(fn: Callable[..., T], *args: Any) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


class _StoredView(MutableMapping[Key, Any]):
    def __init__(self, owner: LlmCacheBacked) -> None:
        self._owner = owner

    def __getitem__(self, key: Key) -> Any:
        value = _off_loop(self._owner.lookup, *key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Key, value: Sequence[Any]) -> None:
        _off_loop(self._owner.update, key[0], key[1], value)

    def __delitem__(self, key: Key) -> None:
        raise NotImplementedError("the vendored tests never delete single entries")

    def __iter__(self) -> Iterator[Key]:
        return iter([key for key in list(self._owner.written) if key in self])

    def __len__(self) -> int:
        count = getattr(self._owner.cache, "count", None)
        if callable(count):
            return int(_off_loop(count))
        return sum(1 for _ in self)

    def copy(self) -> dict[Key, Any]:
        return dict(self.items())


class LlmCacheBacked(LangChainCache):
    """``InMemoryCache()`` of the vendored tests: a LangChainCache over the next prepared backend."""

    def __init__(self) -> None:
        if not POOL:
            raise RuntimeError("this test builds more caches than the conftest prepared")
        super().__init__(POOL.pop(0))
        self.written: list[Key] = []

    def _remember(self, prompt: str, llm_string: str) -> None:
        if (prompt, llm_string) not in self.written:
            self.written.append((prompt, llm_string))

    def update(self, prompt: str, llm_string: str, return_val: Sequence[Any]) -> None:
        self._remember(prompt, llm_string)
        super().update(prompt, llm_string, return_val)

    async def aupdate(self, prompt: str, llm_string: str, return_val: Sequence[Any]) -> None:
        self._remember(prompt, llm_string)
        await super().aupdate(prompt, llm_string, return_val)

    def clear(self, **kwargs: Any) -> None:
        self.written.clear()
        super().clear(**kwargs)

    async def aclear(self, **kwargs: Any) -> None:
        self.written.clear()
        await super().aclear(**kwargs)

    @property
    def _cache(self) -> _StoredView:
        return _StoredView(self)

    @_cache.setter
    def _cache(self, value: Mapping[Key, Any]) -> None:
        items = dict(value)
        _off_loop(self.clear)
        for (prompt, llm_string), generations in items.items():
            self._cache[prompt, llm_string] = generations

    def __len__(self) -> int:
        return len(self._cache)
