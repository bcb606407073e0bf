"""Caches built from URLs (the CLI's and the proxy's --cache)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_cache import ConfigurationError, Generation, InMemoryCache, SQLiteCache
from llm_cache.urls import cache_from_url, redact_url


def test_memory_and_sqlite(tmp_path: Path) -> None:
    assert isinstance(cache_from_url("memory://?ttl=5"), InMemoryCache)
    cache = cache_from_url(f"sqlite:///{tmp_path}/c.db?namespace=team&ttl=60")
    assert isinstance(cache, SQLiteCache)
    assert (cache.namespace, cache.ttl) == ("team", 60.0)
    assert cache_from_url(f"sqlite:///{tmp_path}/c.db", namespace="other").namespace == "other"


@pytest.mark.redis
def test_redis(redis_url: str) -> None:
    cache = cache_from_url(redis_url + "?namespace=url-test")
    cache.update("p", "l", [Generation("r")])
    assert cache.lookup("p", "l") == [Generation("r")]
    cache.clear()


@pytest.mark.postgres
def test_postgres_bare_scheme_gets_our_driver(postgres_server) -> None:
    cache = cache_from_url(postgres_server.dsn + "?namespace=url-test")
    assert type(cache).__name__ == "SQLAlchemyCache"
    cache.update("p", "l", [Generation("pg")])
    assert cache.lookup("p", "l") == [Generation("pg")]
    cache.clear()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nonsense", "not a cache URL"),
        ("ftp://host/x", "unknown cache URL scheme"),
        ("sqlite://", "without a file"),
        ("memory://?ttl=soon", "ttl must be a number"),
        ("memory://?colour=blue", "unknown cache URL option"),
    ],
)
def test_bad_urls_say_what_to_do(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        cache_from_url(url)


def test_passwords_are_redacted() -> None:
    assert redact_url("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    with pytest.raises(ConfigurationError) as info:
        cache_from_url("bogus://u:secret@h/db")
    assert "secret" not in str(info.value)
