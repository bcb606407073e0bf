"""Configuration of the vendored langchain-core cache tests (written for llm-cache).

* BlockBuster, as langchain-core's own ``tests/unit_tests/conftest.py`` (1.8.3) sets it up
  (its ``blockbuster`` fixture, with its allowances), watching llm-cache's code as well.
  One allowance is added: LangChain's *sync* cache calls (``invoke()``/``generate()``,
  which some async tests make, e.g. ``chat_model.invoke("meow?")`` inside
  ``test_local_cache_async``) may block; a sync call into a store that does I/O blocks by
  definition, wherever it is made. LangChain's async cache path (``_agenerate_with_cache``,
  ``aget_prompts``, ``aupdate_cache``) stays watched.
* Every test runs once per llm-cache backend: before the test (outside its event loop) a
  few empty backends are made, and each ``InMemoryCache()`` the test builds takes the next
  (see ``llm_cache_backed``); afterwards they are cleared and closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster, blockbuster_ctx
from langchain_backends import BACKENDS, BLOCKBUSTER_EXCLUDE, BLOCKBUSTER_SCAN
from langchain_backends import momento  # noqa: F401  (a fixture the Momento backend uses)

from . import llm_cache_backed

# The most caches one vendored test builds (test_local_cache_*: a global and a local one).
CACHES_PER_TEST = 3


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx(BLOCKBUSTER_SCAN, excluded_modules=BLOCKBUSTER_EXCLUDE) as bb:
        for func in ["os.stat", "os.path.abspath"]:
            (
                bb.functions[func]
                .can_block_in("langchain_core/_api/internal.py", "is_caller_internal")
                .can_block_in("langchain_core/runnables/base.py", "__repr__")
            )
        for func in ["os.stat", "io.TextIOWrapper.read"]:
            bb.functions[func].can_block_in("langsmith/client.py", "_default_retry_config")
        for function in bb.functions.values():
            function.can_block_in("langchain_core/language_models/chat_models.py", {"_generate_with_cache"})
            function.can_block_in("langchain_core/language_models/llms.py", {"get_prompts", "update_cache"})
        yield bb


@pytest.fixture(autouse=True, params=BACKENDS)
def llm_cache_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    made = [request.param(request, tmp_path) for _ in range(CACHES_PER_TEST)]
    llm_cache_backed.POOL[:] = made
    try:
        yield
    finally:
        llm_cache_backed.POOL.clear()
        for cache in made:
            cache.clear()
            cache.close()
