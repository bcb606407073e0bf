"""POST /v1/cache/feedback: a client's verdict reaches the proxy's error-bounded semantic cache."""

from __future__ import annotations

from typing import Any, Callable

import httpx
import pytest

pytest.importorskip("numpy")

from test_proxy import MODEL, ToyEmbeddings, chat, client, settle  # noqa: E402

from llm_cache.keys import cache_key_hex  # noqa: E402
from llm_cache.proxy import ProxyServer  # noqa: E402

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
LOOKALIKE = [{"role": "user", "content": "what is the capital of france today"}]


def test_feedback_blocks_the_entry_for_that_request(make_proxy: Callable[..., ProxyServer]) -> None:
    from llm_cache.semantic.cache import SemanticCache

    index = SemanticCache(ToyEmbeddings(), guards=None, max_error_rate=0.05, prior=None, learning={"floor": 0.5})
    server = make_proxy("memory://", semantic_cache=index)
    c = client(server)
    chat(c, FRANCE)
    settle(server)
    url = server.base_url.removesuffix("/v1") + "/v1/cache/feedback"
    auth = {"authorization": "Bearer sk-client-a"}
    verdict = {"path": "/v1/chat/completions", "request": {"model": MODEL, "messages": LOOKALIKE}, "correct": False}
    r = httpx.post(url, json=verdict, headers=auth)
    assert r.status_code == 200 and r.json() == {"recorded": True, "correct": False}
    assert index.learning is not None
    entries = [k for k in _keys(index)]
    records = [index.learning.state.get_record(k) for k in entries]
    assert any(rec and rec["b"] for rec in records)  # the France entry now refuses that request
    # Bad input is a 400 that says what to send.
    for bad in ({"request": {}, "correct": "no"}, {"path": "/v1/nope", "request": {"model": MODEL}, "correct": True}):
        r = httpx.post(url, json=bad, headers=auth)
        assert r.status_code == 400 and "message" in r.json()["error"]
    assert httpx.post(url, content=b"{not json", headers=auth).status_code == 400


def _keys(index: Any) -> list[str]:
    rows = index.store._conn().execute("SELECT key FROM semantic_entries").fetchall()
    return [r[0] for r in rows]


def test_feedback_without_a_bounded_semantic_cache_is_a_400(make_proxy: Callable[..., ProxyServer]) -> None:
    from llm_cache.semantic.cache import SemanticCache

    server = make_proxy("memory://", semantic_cache=SemanticCache(ToyEmbeddings(), guards=None, threshold=0.5))
    c = client(server)
    chat(c, FRANCE)
    settle(server)
    url = server.base_url.removesuffix("/v1") + "/v1/cache/feedback"
    verdict = {"path": "/v1/chat/completions", "request": {"model": MODEL, "messages": LOOKALIKE}, "correct": False}
    r = httpx.post(url, json=verdict, headers={"authorization": "Bearer sk-client-a"})
    assert r.status_code == 400 and "max_error_rate" in r.json()["error"]["message"]


def test_feedback_needs_a_client_key_and_keeps_to_the_body_limit(
    make_proxy: Callable[..., ProxyServer], tmp_path: Any
) -> None:
    """The route goes through the same admission as every /v1 route: without one of the
    proxy's client keys nobody may report (and so block or delete) another tenant's answers."""
    from llm_cache.proxy import ProxyLimits
    from llm_cache.proxy.auth import hash_client_key, new_client_key
    from llm_cache.semantic.cache import SemanticCache

    key = new_client_key()
    keys = tmp_path / "client-keys"
    keys.write_text(f"{hash_client_key(key)}  client\n")
    index = SemanticCache(ToyEmbeddings(), guards=None, max_error_rate=0.05, prior=None, learning={"floor": 0.5})
    server = make_proxy(
        "memory://",
        semantic_cache=index,
        upstream_api_key="sk-upstream",
        client_keys=keys,
        limits=ProxyLimits(max_body_bytes=4096),
    )
    url = server.base_url.removesuffix("/v1") + "/v1/cache/feedback"
    verdict = {"path": "/v1/chat/completions", "request": {"model": MODEL, "messages": LOOKALIKE}, "correct": False}
    for auth in ({}, {"authorization": "Bearer sk-not-a-client-key"}):
        assert httpx.post(url, json=verdict, headers=auth).status_code == 401
    assert httpx.post(url, json=verdict, headers={"authorization": f"Bearer {key}"}).status_code == 200
    big = {**verdict, "request": {"model": MODEL, "messages": [{"role": "user", "content": "x" * 8192}]}}
    assert httpx.post(url, json=big, headers={"authorization": f"Bearer {key}"}).status_code == 413


def test_serve_builds_an_error_bounded_index_that_learns_from_upstream(
    make_proxy: Callable[..., ProxyServer], tmp_path: Any
) -> None:
    """``--semantic --semantic-max-error-rate``: the index the proxy builds beside its cache
    (here SQLite, with the bundled embedding model) is error-bounded; a paraphrase it may
    not answer yet goes upstream, and the fresh answer is judged against the candidate."""
    pytest.importorskip("onnxruntime")
    server = make_proxy(f"sqlite:///{tmp_path}/cache.db", semantic=True, semantic_max_error_rate=0.05)
    index = server.app.proxy.semantic_cache
    assert index.learning is not None and index.learning.policy.max_error_rate == 0.05
    c = client(server)
    chat(c, [{"role": "user", "content": "What is the capital city of France?"}])
    settle(server)
    _, label, _ = chat(c, [{"role": "user", "content": "Which city is the capital of France?"}])
    settle(server)
    assert label == "MISS"  # no outcome yet backs a semantic hit
    assert index.learning.stats["outcomes"] == 1  # the upstream's answer was judged


def test_semantic_max_error_rate_needs_semantic_and_a_rate(tmp_path: Any) -> None:
    from llm_cache.errors import ConfigurationError
    from llm_cache.proxy import create_app

    with pytest.raises(ConfigurationError, match="needs semantic=True"):
        create_app("http://127.0.0.1:9/v1", "memory://", semantic_max_error_rate=0.02)
    with pytest.raises(ConfigurationError, match="max_error_rate must be a number in"):
        create_app("http://127.0.0.1:9/v1", f"sqlite:///{tmp_path}/c.db", semantic=True, semantic_max_error_rate=1.5)


def test_the_proxys_semantic_index_takes_the_cache_urls_cap(tmp_path: Any) -> None:
    """The index beside the cache holds the same entries: ``?max_entries=`` bounds both
    (it grew without bound before)."""
    pytest.importorskip("onnxruntime")
    from llm_cache.proxy import create_app

    app = create_app("http://127.0.0.1:9/v1", f"sqlite:///{tmp_path}/c.db?max_entries=50&policy=lfu", semantic=True)
    try:
        caps = app.proxy.semantic_cache.store.caps
        assert (caps.max_entries, caps.policy) == (50, "lfu")
    finally:
        app.proxy.semantic_cache.close()
        app.proxy.cache.close()
