"""Shared fixtures: the built-in OpenAI-compatible server, and real database servers."""

from __future__ import annotations

from typing import Iterator

import pytest

# Real Redis, Redis Cluster, PostgreSQL (+pgvector) and MariaDB servers: session fixtures;
# llama.cpp (real_llm); make_proxy for the proxy test modules.
pytest_plugins = ["servers_fixtures", "real_llm_fixtures", "proxy_fixtures"]

pytest.register_assert_rewrite(
    "llm_cache.testing.contract",
    "llm_cache.testing.semantic_contract",
    "llm_cache.testing.vector_store_contract",
)

from llm_cache import set_llm_cache  # noqa: E402
from llm_cache.llms.plans import SERVER_QUIRKS  # noqa: E402
from llm_cache.testing.fake_openai import FakeOpenAIServer  # noqa: E402


@pytest.fixture(scope="session")
def openai_server() -> Iterator[FakeOpenAIServer]:
    """One deterministic OpenAI-compatible server for the session (no latency)."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def upstream(openai_server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """The session's server with its request counter reset and no latency or failures."""
    openai_server.reset()
    openai_server.latency = 0.0
    yield openai_server
    openai_server.latency = 0.0


@pytest.fixture(autouse=True)
def no_global_cache() -> Iterator[None]:
    """Every test starts and ends without a global cache."""
    set_llm_cache(None)
    yield
    set_llm_cache(None)


@pytest.fixture(autouse=True)
def no_server_quirks() -> Iterator[None]:
    """What models learned about servers (e.g. "refuses a list of prompts") is per
    process: every test starts and ends with nothing learned."""
    SERVER_QUIRKS.forget()
    yield
    SERVER_QUIRKS.forget()
