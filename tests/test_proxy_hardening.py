"""The proxy against hostile or careless clients (issue: hardening): tenant scoping on every
cached endpoint, body limits, bad input answered with a 4xx (never a 5xx, never a store
error), ``only-if-cached`` on every path, the upstream and stored-size caps, and client
authentication. Run on a real loopback server in front of the built-in upstream."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_proxy import MODEL, metric, settle

from llm_cache import SQLiteCache
from llm_cache.cli import main
from llm_cache.proxy import ProxyServer, create_app
from llm_cache.proxy.auth import ClientKeys, hash_client_key, new_client_key
from llm_cache.proxy.limits import ProxyLimits

CHAT = "/chat/completions"


def body_for(endpoint: str, text: str) -> dict[str, Any]:
    if endpoint == "/chat/completions":
        return {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    if endpoint == "/completions":
        return {"model": "gpt-3.5-turbo-instruct", "prompt": text}
    if endpoint == "/responses":
        return {"model": MODEL, "input": text}
    if endpoint == "/messages":
        return {
            "model": "claude-3-5-haiku-latest",
            "max_tokens": 32,
            "messages": [{"role": "user", "content": text}],
        }
    return {"model": "text-embedding-3-small", "input": text}


def post(
    server: ProxyServer,
    path: str,
    body: Any,
    key: str | None = "sk-client-a",
    headers: dict[str, Any] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    sent = dict(headers or {})
    if key is not None:
        sent["authorization"] = f"Bearer {key}"
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(
        server.base_url + path,
        content=content,
        headers={"content-type": "application/json", **sent},
        timeout=60,
        **kwargs,
    )


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"]
    if body.get("type") == "error":  # Anthropic's shape, on /v1/messages
        assert isinstance(error["type"], str)
        return
    assert {"type", "code", "param"} <= set(error)
    if code is not None:
        assert error["code"] == code


# ------------------------------------------------------------------ tenant scoping

TENANT_KEYS = ["sk-tenant-a", "sk-tenant-b", None]  # None: no Authorization at all
NAMESPACES = [None, "team-x", "not valid"]  # absent, valid, invalid


@pytest.mark.parametrize(
    "endpoint",
    ["/chat/completions", "/completions", "/embeddings", "/responses", "/messages", "/models"],
)
def test_no_cross_tenant_hit_on_any_cached_endpoint(
    make_proxy: Callable[..., ProxyServer], endpoint: str
) -> None:
    """Every (key, namespace header) writes an entry; no other pair may read it."""
    server = make_proxy("memory://")
    pairs = list(itertools.product(TENANT_KEYS, NAMESPACES))

    def ask(pair: tuple[str | None, str | None], text: str) -> httpx.Response:
        key, namespace = pair
        headers = {"x-llm-cache-namespace": namespace} if namespace is not None else {}
        if endpoint == "/models":
            if key is not None:
                headers["authorization"] = f"Bearer {key}"
            return httpx.get(server.base_url + "/models", headers=headers, timeout=60)
        return post(server, endpoint, body_for(endpoint, text), key=key, headers=headers)

    for n, writer in enumerate(pairs):
        text = f"tenant probe {n}"
        server.app.proxy._models.clear()  # the models list has no prompt to tell runs apart
        first = ask(writer, text)
        if writer[1] == "not valid":
            assert_openai_error(first, 400, "invalid_namespace")
            assert ask(writer, text).status_code == 400  # never cached either
        elif first.status_code != 200:  # the upstream's verdict (Anthropic needs a key)
            assert endpoint == "/messages" and writer[0] is None, first.text
            assert first.headers["x-cache"] == "MISS"
        else:
            assert first.headers["x-cache"] == "MISS", first.text
            settle(server)
            assert ask(writer, text).headers["x-cache"] == "HIT"  # it is in the cache
        for reader in pairs:
            if reader == writer:
                continue
            seen = ask(reader, text)
            assert seen.headers.get("x-cache") != "HIT", (endpoint, writer, reader)
            settle(server)


# ---------------------------------------------------------------------- body limit


def test_a_body_over_the_limit_gets_413_before_it_is_read(
    make_proxy: Callable[..., ProxyServer], upstream: Any
) -> None:
    server = make_proxy("memory://", limits=ProxyLimits(max_body_bytes=10_000))
    big = body_for(CHAT, "x" * 20_000)
    response = post(server, CHAT, big)
    assert_openai_error(response, 413, "request_too_large")
    assert response.headers["connection"] == "close"

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        data = json.dumps(big).encode()
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    chunked = httpx.post(
        server.base_url + CHAT, content=chunks(), headers={"authorization": "Bearer sk-a"}
    )
    assert_openai_error(chunked, 413, "request_too_large")
    # Pass-through routes have the same limit.
    files = httpx.post(server.base_url + "/files", content=b"x" * 20_000)
    assert_openai_error(files, 413, "request_too_large")
    assert upstream.request_count == 0
    assert post(server, CHAT, body_for(CHAT, "small")).status_code == 200
    assert (
        metric(
            server,
            'llm_cache_proxy_refused_requests_total{endpoint="chat.completions",code="request_too_large"}',
        )
        == 2
    )


async def test_the_body_is_not_buffered_past_the_limit(upstream: Any) -> None:
    """Driven at the ASGI level with an endless chunked body: the app stops reading at the
    limit (one chunk past it at most) and answers 413."""
    app = create_app(upstream.base_url, "memory://", limits=ProxyLimits(max_body_bytes=100_000))
    received = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 4096
        assert received < 10_000_000, "the app kept reading"
        return {"type": "http.request", "body": b" " * 4096, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert received <= 100_000 + 4096
    await app.proxy.aclose()


# ------------------------------------------------------------------ bad input: 4xx


def test_bad_input_gets_a_4xx_not_a_5xx(
    make_proxy: Callable[..., ProxyServer], upstream: Any, tmp_path: Path
) -> None:
    cache = SQLiteCache(database_path=str(tmp_path / "bad.db"))
    server = make_proxy(cache)
    deep = '{"model": "m", "messages": ' + "[" * 1000 + "]" * 1000 + "}"
    assert_openai_error(post(server, CHAT, deep), 400, "invalid_request_body")
    deep_param = (
        '{"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": '
        + '{"a":' * 900
        + "1"
        + "}" * 900
        + "}"
    )
    assert post(server, CHAT, deep_param).status_code in (200, 400)  # parsed, or refused
    # max-age with 400 digits: a very large max-age (RFC 9111), not an overflow.
    long_age = post(
        server, CHAT, body_for(CHAT, "max-age"), headers={"cache-control": "max-age=" + "9" * 400}
    )
    assert long_age.status_code == 200
    options = dict(body_for(CHAT, "options"), stream=True, stream_options="yes")
    assert_openai_error(post(server, CHAT, options), 400, "invalid_value")
    for auth in ("Bearer sk-\xe9t\xe9".encode("latin-1"), b"Bearer \xff\xfe"):
        response = httpx.post(
            server.base_url + CHAT,
            content=json.dumps(body_for(CHAT, "auth")),
            headers={"authorization": auth},
        )
        assert_openai_error(response, 401, "invalid_api_key")
    for raw in (b"not json", b"[1, 2]", b"\xff\xfe", b""):
        assert_openai_error(post(server, CHAT, raw), 400, "invalid_request_body")
    assert cache.stats.errors == 0


def test_unstorable_text_never_counts_as_a_store_error(
    make_proxy: Callable[..., ProxyServer], upstream: Any, tmp_path: Path
) -> None:
    """85 requests whose metadata holds a lone surrogate: none counts as a store error, the
    breaker stays closed (before: 85 store errors in 6 s, the breaker open for everyone).
    ``metadata`` is not part of the key (answered normally); a surrogate in a keyed field
    is refused with a 400 before anything is written."""
    cache = SQLiteCache(database_path=str(tmp_path / "surrogate.db"))
    server = make_proxy(cache)
    raw = (
        '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi %d"}], '
        '"metadata": {"note": "\\ud800"}}'
    )
    for i in range(85):
        response = post(server, CHAT, raw % i)
        assert response.status_code in (200, 400), response.text
    keyed = (
        '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], '
        '"stop": ["\\ud800"]}'
    )
    response = post(server, CHAT, keyed)
    assert_openai_error(response, 400, "invalid_request_body")
    assert "surrogate" in response.json()["error"]["message"]
    in_prompt = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\udfff"}]}'
    assert_openai_error(post(server, CHAT, in_prompt), 400, "invalid_request_body")
    settle(server)
    assert cache.stats.errors == 0
    assert cache.breaker is None or not cache.breaker.is_open
    assert post(server, CHAT, body_for(CHAT, "still fine")).status_code == 200


def test_an_unstorable_upstream_answer_is_relayed_not_stored(tmp_path: Path) -> None:
    answer = (
        b'{"id": "c1", "object": "chat.completion", "created": 1, "model": "m", "choices": '
        b'[{"index": 0, "message": {"role": "assistant", "content": "bad \\udc80"}, '
        b'"finish_reason": "stop"}]}'
    )
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, content=answer, headers={"content-type": "application/json"})

    cache = SQLiteCache(database_path=str(tmp_path / "answer.db"))
    app = create_app("http://upstream.invalid/v1", cache, transport=httpx.MockTransport(handler))
    with ProxyServer(app) as server:
        for _ in range(2):
            response = post(server, CHAT, body_for(CHAT, "echo"))
            assert response.status_code == 200 and response.headers["x-cache"] == "MISS"
            settle(server)
        assert calls == 2 and cache.stats.errors == 0
        assert (
            metric(
                server,
                'llm_cache_proxy_responses_not_stored_total{endpoint="chat.completions",reason="unencodable"}',
            )
            == 2
        )


# ----------------------------------------------------------------- only-if-cached


def test_only_if_cached_is_honoured_on_every_path(
    make_proxy: Callable[..., ProxyServer], upstream: Any
) -> None:
    server = make_proxy("memory://")
    only = {"cache-control": "only-if-cached"}
    cases = [
        post(
            server, CHAT, body_for(CHAT, "a"), headers={"cache-control": "no-store, only-if-cached"}
        ),
        post(server, CHAT, {"model": MODEL}, headers=only),  # unkeyable: no messages
        post(server, CHAT + "?api-version=1", body_for(CHAT, "a"), headers=only),
        post(server, CHAT, body_for(CHAT, "never asked"), headers=only),
        post(server, "/files", b"data", headers=only),
        httpx.get(server.base_url + "/models", headers=only),
        httpx.get(server.base_url + "/models/gpt-4o", headers=only),
    ]
    for response in cases:
        assert_openai_error(response, 504, "only_if_cached")
    assert upstream.request_count == 0
    # Once cached, only-if-cached answers.
    assert httpx.get(server.base_url + "/models").headers["x-cache"] == "MISS"
    assert httpx.get(server.base_url + "/models", headers=only).headers["x-cache"] == "HIT"


# ------------------------------------------------------------------- upstream caps


def test_the_upstream_cap_answers_503_with_retry_after(
    make_proxy: Callable[..., ProxyServer], upstream: Any
) -> None:
    server = make_proxy("memory://", limits=ProxyLimits(max_upstream=1))
    post(server, CHAT, body_for(CHAT, "cached"))
    settle(server)
    upstream.latency = 1.0
    done: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: done.append(post(server, CHAT, body_for(CHAT, "slow"))))
    slow.start()
    try:
        deadline = 600
        while server.app.proxy._upstream_calls == 0 and deadline:
            threading.Event().wait(0.01)
            deadline -= 1
        assert server.app.proxy._upstream_calls == 1
        busy = post(server, CHAT, body_for(CHAT, "another"))
        assert_openai_error(busy, 503, "upstream_busy")
        assert busy.headers["retry-after"] == "1"
        # Hits need no upstream call: still served.
        assert post(server, CHAT, body_for(CHAT, "cached")).headers["x-cache"] == "HIT"
    finally:
        slow.join(60)
        upstream.latency = 0.0
    assert done[0].status_code == 200
    settle(server)
    wait = threading.Event()
    for _ in range(3000):  # the slot is freed by the flight task's done callback
        if server.app.proxy._upstream_calls == 0:
            break
        wait.wait(0.01)
    assert server.app.proxy._upstream_calls == 0
    assert post(server, CHAT, body_for(CHAT, "another")).status_code == 200


def test_answers_over_the_stored_size_are_passed_on_not_stored(
    make_proxy: Callable[..., ProxyServer], upstream: Any
) -> None:
    server = make_proxy("memory://", limits=ProxyLimits(max_stored_bytes=100))
    for stream in (False, True, False):
        response = post(server, CHAT, dict(body_for(CHAT, "big answer"), stream=stream))
        assert response.status_code == 200 and response.headers["x-cache"] == "MISS"
        assert len(response.content) > 100
        settle(server)
    assert upstream.request_count == 3
    assert (
        metric(
            server,
            'llm_cache_proxy_responses_not_stored_total{endpoint="chat.completions",reason="too_large"}',
        )
        == 3
    )


# ------------------------------------------------------------- client authentication


@pytest.fixture
def keyfile(tmp_path: Path) -> tuple[Path, list[str]]:
    keys = [new_client_key(), new_client_key()]
    path = tmp_path / "client-keys"
    path.write_text(
        "# the proxy's client keys\n"
        + "".join(f"{hash_client_key(k)}  client {i}\n" for i, k in enumerate(keys))
    )
    return path, keys


def test_client_keys_are_required_and_each_is_a_tenant(
    make_proxy: Callable[..., ProxyServer],
    upstream: Any,
    keyfile: tuple[Path, list[str]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    path, (key_a, key_b) = keyfile
    upstream_key = "sk-upstream-SECRET-4242"
    store = tmp_path / "auth.db"
    server = make_proxy(f"sqlite:///{store}", upstream_api_key=upstream_key, client_keys=path)
    for key in (None, "sk-wrong", key_a + "x", upstream_key):
        assert_openai_error(
            post(server, CHAT, body_for(CHAT, "auth"), key=key), 401, "invalid_api_key"
        )
        assert_openai_error(
            httpx.get(server.base_url + "/models", headers={"authorization": f"Bearer {key}"}),
            401,
            "invalid_api_key",
        )
        assert_openai_error(post(server, "/files", b"x", key=key), 401, "invalid_api_key")
    assert upstream.request_count == 0
    first = post(server, CHAT, body_for(CHAT, "auth"), key=key_a)
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    settle(server)
    assert post(server, CHAT, body_for(CHAT, "auth"), key=key_a).headers["x-cache"] == "HIT"
    assert post(server, CHAT, body_for(CHAT, "auth"), key=key_b).headers["x-cache"] == "MISS"
    assert {r["headers"]["authorization"] for r in upstream.requests} == {f"Bearer {upstream_key}"}
    # Anthropic clients present theirs as x-api-key; the upstream key goes there instead.
    messages = body_for("/messages", "auth")
    wrong = post(server, "/messages", messages, key=None, headers={"x-api-key": "sk-wrong"})
    assert_openai_error(wrong, 401)
    assert wrong.json()["type"] == "error"  # Anthropic's shape
    right = post(server, "/messages", messages, key=None, headers={"x-api-key": key_b})
    assert right.status_code == 200, right.text
    assert upstream.requests[-1]["headers"]["x-api-key"] == upstream_key
    settle(server)
    scraped = httpx.get(server.url + "/metrics").text
    server.stop()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("auth.db"))
    assert first.json()["choices"][0]["message"]["content"].encode() in stored
    for secret in (key_a, key_b, upstream_key, "SECRET"):
        assert secret not in caplog.text
        assert secret not in scraped
        assert secret.encode() not in stored
        assert secret not in path.read_text()


def test_client_keys_file_and_generator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys"
    assert main(["serve", "--new-client-key", str(path)]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("lcp-") and key not in path.read_text()
    assert ClientKeys.from_file(path).verify(key)
    assert not ClientKeys.from_file(path).verify(key[:-1])
    assert not ClientKeys.from_file(path).verify(None)
    (tmp_path / "bad").write_text("sk-a-raw-key-pasted-by-mistake\n")
    with pytest.raises(Exception, match=r"bad:1: expected 'sha256"):
        ClientKeys.from_file(tmp_path / "bad")


def test_serve_refuses_a_shared_upstream_key_on_a_public_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], keyfile: Any
) -> None:
    monkeypatch.setenv("LLM_CACHE_TEST_UPSTREAM_KEY", "sk-upstream-SECRET")
    args = [
        "serve",
        "--upstream-api-key-env",
        "LLM_CACHE_TEST_UPSTREAM_KEY",
        "--cache",
        "memory://",
    ]
    assert main([*args, "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err
    assert "--client-keys" in err and "--allow-anonymous" in err and "SECRET" not in err
    # Client keys without a fixed upstream key make no sense either.
    assert main(["serve", "--client-keys", str(keyfile[0]), "--cache", "memory://"]) == 1
    assert "--upstream-api-key-env" in capsys.readouterr().err


# -------------------------------------------------------------- no 5xx on bad input


def test_cache_control_max_age_cannot_overflow() -> None:
    from llm_cache.proxy.keys import parse_cache_control

    assert parse_cache_control("max-age=" + "9" * 400).max_age == 2.0**31
    assert parse_cache_control("max-age=-5").max_age is None
    assert parse_cache_control("max-age=١٢").max_age is None  # not ASCII digits
    assert parse_cache_control("max-age=60").max_age == 60.0


def test_the_app_survives_a_refused_request_on_its_loop(upstream: Any) -> None:
    """Sanity: the proxy's refusals run on the same loop without leaking slots."""

    async def run() -> None:
        app = create_app(upstream.base_url, "memory://", limits=ProxyLimits(max_upstream=2))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            for _ in range(5):
                r = await c.post(
                    "/v1/chat/completions", content=b"{", headers={"authorization": "Bearer k"}
                )
                assert r.status_code == 400
            r = await c.post("/v1/chat/completions", json=body_for(CHAT, "ok"))
            assert r.status_code == 200
        for _ in range(3000):  # the answer is sent before its flight ends (the store write)
            if not app.proxy._flights and app.proxy._upstream_calls == 0:
                break
            await asyncio.sleep(0.01)
        assert app.proxy._upstream_calls == 0
        await app.proxy.aclose()

    asyncio.run(run())


def test_serve_flags_reach_the_app_and_the_server(
    monkeypatch: pytest.MonkeyPatch, keyfile: tuple[Path, list[str]]
) -> None:
    import uvicorn

    runs: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: runs.append((app, kw)))
    monkeypatch.setenv("LLM_CACHE_TEST_UPSTREAM_KEY", "sk-upstream-SECRET")
    shared = [
        "serve",
        "--cache",
        "memory://",
        "--upstream-api-key-env",
        "LLM_CACHE_TEST_UPSTREAM_KEY",
    ]
    limits = [
        "--max-body-bytes",
        "1K",
        "--max-stored-bytes",
        "2M",
        "--idle-timeout",
        "2",
        "--header-timeout",
        "3",
        "--body-timeout",
        "4",
        "--max-connections",
        "7",
        "--max-upstream",
        "3",
        "--max-header-bytes",
        "8K",
    ]
    assert main([*shared, "--host", "0.0.0.0", "--client-keys", str(keyfile[0]), *limits]) == 0
    assert main([*shared, "--host", "0.0.0.0", "--allow-anonymous"]) == 0
    (app, kwargs), (anonymous, _) = runs
    assert app.proxy.limits == ProxyLimits(
        max_body_bytes=1024,
        max_stored_bytes=2 << 20,
        idle_timeout=2,
        header_timeout=3,
        body_timeout=4,
        max_connections=7,
        max_upstream=3,
        max_header_bytes=8192,
    )
    assert kwargs["timeout_keep_alive"] == 2 and kwargs["host"] == "0.0.0.0"
    assert app.proxy.client_keys is not None and anonymous.proxy.client_keys is None
    assert anonymous.proxy.limits == ProxyLimits()
