"""The curated public API."""

from __future__ import annotations

import subprocess
import sys

import pytest

import llm_cache
from llm_cache import MissingDependencyError
from llm_cache._imports import require


def test_all_names_resolve() -> None:
    # The test extra installs every optional dependency, so the lazy names resolve too.
    for name in llm_cache.__all__:
        assert getattr(llm_cache, name) is not None, name
    assert sorted(llm_cache.__all__) == sorted(set(llm_cache.__all__)), "duplicates in __all__"


def test_import_is_light() -> None:
    code = "import sys, llm_cache; print(sorted(m for m in ('openai', 'redis', 'sqlalchemy', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_lazy_backend_export_resolves() -> None:
    from llm_cache import MomentoCache
    from llm_cache.caches.momento import MomentoCache as Defined

    assert MomentoCache is Defined
    assert "MomentoCache" in dir(llm_cache)


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError):
        llm_cache.NoSuchThing  # noqa: B018


def test_missing_extra_names_the_pip_line() -> None:
    with pytest.raises(MissingDependencyError) as info:
        require("surely_not_installed_pkg", "redis", "RedisCache")
    assert "pip install 'llm-cache[redis]'" in str(info.value)


def test_ships_py_typed() -> None:
    from importlib.resources import files

    assert files("llm_cache").joinpath("py.typed").is_file()


def test_design_public_api_imports() -> None:
    from llm_cache.chains import CharacterTextSplitter, Document, load_summarize_chain
    from llm_cache.embeddings import LocalEmbeddings, OpenAIEmbeddings
    from llm_cache.integrations.langchain import LangChainCache
    from llm_cache.llms import ChatOpenAI, OpenAI

    assert all([CharacterTextSplitter, Document, load_summarize_chain, LocalEmbeddings, OpenAIEmbeddings,
                LangChainCache, ChatOpenAI, OpenAI])
