"""The dashboard's HTML endpoints, over a running proxy and standalone (no browser here:
tests/test_dashboard_browser.py drives Chromium)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llm_cache import InMemoryCache, SQLiteCache
from llm_cache.dashboard import create_dashboard_app
from llm_cache.dashboard._data import TrafficSamples, parse_exposition
from llm_cache.generation import Generation
from llm_cache.proxy import ProxyServer
from llm_cache.proxy.auth import ClientKeys, hash_client_key
from llm_cache.semantic.cache import SemanticCache
from llm_cache.testing.fake_openai import ToyEmbeddings
from test_proxy import settle

MODEL = "gpt-4o-mini"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def chat(server: ProxyServer, key: str, text: str) -> str:
    c = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
    raw = c.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": text}]
    )
    return str(raw.headers.get("x-cache"))


def browser(server: ProxyServer, key: str | None) -> httpx.Client:
    """A client that authenticates as a browser does: HTTP Basic, the API key as password."""
    auth = httpx.BasicAuth("me", key) if key is not None else None
    return httpx.Client(base_url=server.url, auth=auth, follow_redirects=False, timeout=30)


def csrf_of(html: str) -> str:
    match = re.search(r'name=csrf value="([0-9a-f]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def entry_links(html: str) -> list[str]:
    return re.findall(r'href="/dashboard/entries/([0-9a-f]{64})"', html)


@pytest.fixture
def proxy(make_proxy: Callable[..., ProxyServer], tmp_path: Path) -> ProxyServer:
    server = make_proxy(f"sqlite:///{tmp_path / 'proxy.db'}")
    chat(server, "sk-alice", "Tell me about the Moon")
    chat(server, "sk-alice", "Tell me about Mars")
    chat(server, "sk-bob", "Bob's secret question")
    settle(server)
    chat(server, "sk-alice", "Tell me about the Moon")  # a hit
    return server


def test_pages_need_the_client_authentication(
    make_proxy: Callable[..., ProxyServer], tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(hash_client_key("lcp-good") + " team\n")
    server = make_proxy(
        f"sqlite:///{tmp_path / 'p.db'}", upstream_api_key="sk-up", client_keys=ClientKeys.from_file(keys)
    )
    for path in ("/dashboard", "/dashboard/entries", "/dashboard/semantic", "/dashboard/entries/" + "0" * 64):
        anonymous = httpx.get(server.url + path, timeout=30)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["www-authenticate"].startswith("Basic ")
        assert "API key as the password" in anonymous.text
        assert browser(server, "lcp-wrong").get(path).status_code == 401
    assert browser(server, "lcp-good").get("/dashboard").status_code == 200
    # A bearer key works as for /v1 (scripts), and so does a POST's refusal without one.
    bearer = httpx.get(server.url + "/dashboard", headers={"Authorization": "Bearer lcp-good"}, timeout=30)
    assert bearer.status_code == 200
    assert httpx.post(server.url + f"/dashboard/entries/{'0' * 64}/delete", timeout=30).status_code == 401


def test_a_tenant_sees_and_deletes_only_its_own_entries(proxy: ProxyServer) -> None:
    # Without client keys a key is still needed: it names the tenant (none: asked for one).
    assert httpx.get(proxy.url + "/dashboard/entries", timeout=30).status_code == 401
    alice, bob = browser(proxy, "sk-alice"), browser(proxy, "sk-bob")
    page_a = alice.get("/dashboard/entries").text
    page_b = bob.get("/dashboard/entries").text
    assert "Tell me about the Moon" in page_a and "Tell me about Mars" in page_a
    assert "secret question" not in page_a
    assert "secret question" in page_b and "Moon" not in page_b
    assert "secret question" not in alice.get("/dashboard").text
    (bobs,) = entry_links(page_b)
    # Alice can neither read nor delete Bob's entry by its id.
    assert alice.get(f"/dashboard/entries/{bobs}").status_code == 404
    token = csrf_of(alice.get(f"/dashboard/entries/{entry_links(page_a)[0]}").text)
    refused = alice.post(f"/dashboard/entries/{bobs}/delete", data={"csrf": token})
    assert refused.status_code == 404
    assert bob.get(f"/dashboard/entries/{bobs}").status_code == 200
    assert chat(proxy, "sk-bob", "Bob's secret question") == "HIT"


def test_a_shared_cache_shows_every_entry(make_proxy: Callable[..., ProxyServer]) -> None:
    server = make_proxy("memory://", share_across_keys=True)
    chat(server, "sk-alice", "Question from Alice")
    chat(server, "sk-bob", "Question from Bob")
    settle(server)
    html = httpx.get(server.url + "/dashboard/entries", timeout=30).text  # nothing to tell apart
    assert "Question from Alice" in html and "Question from Bob" in html and "shared cache" in html


def test_delete_removes_the_entry_and_needs_a_same_origin_form(proxy: ProxyServer) -> None:
    alice = browser(proxy, "sk-alice")
    listing = alice.get("/dashboard/entries", params={"q": "moon"}).text
    (moon,) = entry_links(listing)
    detail = alice.get(f"/dashboard/entries/{moon}")
    assert detail.status_code == 200 and "Delete this entry" in detail.text
    token = csrf_of(detail.text)
    url = f"/dashboard/entries/{moon}/delete"
    # A cross-site form (another Origin, or no token, or a wrong one) is refused.
    assert alice.post(url, data={"csrf": token}, headers={"Origin": "http://evil.example"}).status_code == 403
    assert alice.post(url, data={"csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert alice.post(url, data={}).status_code == 403
    assert alice.post(url, data={"csrf": "0" * 64}).status_code == 403
    assert browser(proxy, "sk-bob").post(url, data={"csrf": token}).status_code == 403  # Bob's token differs
    assert alice.get(f"/dashboard/entries/{moon}").status_code == 200
    # The real form: same origin, the page's token.
    done = alice.post(url, data={"csrf": token}, headers={"Origin": proxy.url})
    assert done.status_code == 303 and done.headers["location"] == "/dashboard/entries?done=deleted"
    after = alice.get(done.headers["location"]).text
    assert "The entry was deleted." in after and "Moon" not in after and "Mars" in after
    assert alice.get(f"/dashboard/entries/{moon}").status_code == 404
    assert chat(proxy, "sk-alice", "Tell me about the Moon") == "MISS"


def test_search_finds_prompts_and_answers(proxy: ProxyServer) -> None:
    alice = browser(proxy, "sk-alice")
    assert len(entry_links(alice.get("/dashboard/entries").text)) == 2
    found = alice.get("/dashboard/entries", params={"q": "MARS"}).text
    assert len(entry_links(found)) == 1 and "Tell me about Mars" in found and "1 match" in found
    none = alice.get("/dashboard/entries", params={"q": "jupiter"}).text
    assert entry_links(none) == [] and "no entry matches" in none


def test_overview_has_svg_charts_counters_and_top_prompts(proxy: ProxyServer) -> None:
    alice = browser(proxy, "sk-alice")
    alice.get("/dashboard")  # a first sample; the second view draws a line between two
    chat(proxy, "sk-alice", "Tell me about Mars")
    html = alice.get("/dashboard").text
    assert html.count("<svg") >= 2 and 'aria-label="hit rate over time"' in html
    assert 'aria-label="requests by result"' in html
    assert "<script" not in html and "http" not in html.split("<main>")[0].replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "Top cached prompts" in html and "Tell me about the Moon" in html
    # Requests by result read from the proxy's own counters (5 requests so far, 2 hits).
    requests, _, _ = parse_exposition(proxy.app.proxy.metrics.render())
    assert requests.get("hit") == 2 and requests.get("miss") == 3
    assert re.search(r">5</div><div class=sub>since the proxy started", html)
    assert re.search(r">40\.0%<", html)
    headers = alice.get("/dashboard").headers
    assert "script-src" not in headers["content-security-policy"] and "default-src 'none'" in headers["content-security-policy"]


def test_hostile_prompts_are_rendered_inert(proxy: ProxyServer) -> None:
    chat(proxy, "sk-alice", XSS)
    settle(proxy)
    chat(proxy, "sk-alice", XSS)  # a hit, so it is among the top prompts too
    alice = browser(proxy, "sk-alice")
    pages = [alice.get("/dashboard").text, alice.get("/dashboard/entries").text]
    (xss_id,) = entry_links(alice.get("/dashboard/entries", params={"q": "onerror"}).text)
    pages.append(alice.get(f"/dashboard/entries/{xss_id}").text)
    pages.append(alice.get("/dashboard/entries", params={"q": '"><script>alert(2)</script>'}).text)
    for html in pages:
        assert "<script" not in html and "<img" not in html
        assert "onerror=" not in html.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in pages[2]
    # Namespace names are client input too (printable ASCII: quotes and brackets allowed).
    c = openai.OpenAI(base_url=proxy.base_url, api_key="sk-alice", max_retries=0)
    c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_headers={"X-LLM-Cache-Namespace": '"><b>ns'}
    )
    settle(proxy)
    overview = alice.get("/dashboard").text
    assert "<b>" not in overview and 'title="' in overview and "&quot;&gt;&lt;b&gt;ns" in overview
    assert 'value="&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"' in pages[3]


class FeedbackSemanticCache(SemanticCache):
    """A semantic cache whose feedback is recorded (a static threshold, so that a paraphrase
    hits at once; the error-bounded cache's own feedback is tested in test_semantic_bounded)."""

    accepts_semantic_feedback = True  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reports: list[tuple[str, str, bool]] = []

    def feedback(self, prompt: str, llm_string: str, correct: bool = True) -> None:
        self.reports.append((prompt, llm_string, correct))


class NoFeedbackSemanticCache(SemanticCache):
    """A semantic cache without the feedback API (whether or not SemanticCache has one)."""

    feedback = None
    afeedback = None


@pytest.mark.parametrize("kind", ["recorded", "static", "none"])
def test_semantic_hits_are_listed_and_can_be_reported(
    make_proxy: Callable[..., ProxyServer], kind: str
) -> None:
    """A report button only where a report acts: a static-threshold SemanticCache refuses
    feedback on semantic hits (it has no error bound to learn), so it shows none."""
    with_feedback = kind == "recorded"
    cls = {"recorded": FeedbackSemanticCache, "static": SemanticCache, "none": NoFeedbackSemanticCache}[kind]
    index = cls(ToyEmbeddings(), guards=None, threshold=0.8)
    server = make_proxy("memory://", semantic_cache=index)
    chat(server, "sk-alice", "What is the capital of France?")
    settle(server)
    assert chat(server, "sk-alice", "what is the capital of france") == "SEMANTIC-HIT"
    alice = browser(server, "sk-alice")
    html = alice.get("/dashboard/semantic").text
    assert "what is the capital of france" in html
    similarity = float(re.search(r"class='pill ok'>([0-9.]+)<", html).group(1))  # type: ignore[union-attr]
    assert 0.8 <= similarity < 1.0
    assert "capital of france" not in browser(server, "sk-bob").get("/dashboard/semantic").text
    if not with_feedback:
        assert "Wrong answer" not in html and "max_error_rate" in html
        return
    action = re.search(r'action="(/dashboard/semantic/[^"]+/report)"', html).group(1)  # type: ignore[union-attr]
    done = alice.post(action, data={"csrf": csrf_of(html)}, headers={"Origin": server.url})
    assert done.status_code == 303
    assert "reported" in alice.get("/dashboard/semantic").text
    ((prompt, llm_string, correct),) = index.reports
    assert "what is the capital of france" in prompt and correct is False and MODEL in llm_string


def test_deleting_in_semantic_mode_removes_the_meaning_match_too(
    make_proxy: Callable[..., ProxyServer],
) -> None:
    index = SemanticCache(ToyEmbeddings(), guards=None, threshold=0.8)
    server = make_proxy("memory://", semantic_cache=index)
    chat(server, "sk-alice", "What is the capital of France?")
    settle(server)
    alice = browser(server, "sk-alice")
    (entry,) = entry_links(alice.get("/dashboard/entries").text)
    token = csrf_of(alice.get(f"/dashboard/entries/{entry}").text)
    assert alice.post(f"/dashboard/entries/{entry}/delete", data={"csrf": token}).status_code == 303
    assert chat(server, "sk-alice", "What is the capital of France?") == "MISS"


def test_standalone_dashboard_is_read_only_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with SQLiteCache(str(path)) as cache:
        cache.update("hello <b>world</b>", '{"model":"gpt-4o-mini","namespace":"team-a"}', [Generation("hi")])
        cache.update("other", '{"model":"gpt-4o","namespace":"team-b"}', [Generation("yo")])
    import asyncio

    async def run(allow_delete: bool) -> tuple[str, str, int, str]:
        cache = SQLiteCache(str(path), read_only=not allow_delete)
        app = create_dashboard_app(cache, allow_delete=allow_delete)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as c:
            overview = (await c.get("/dashboard")).text
            listing = (await c.get("/dashboard/entries")).text
            assert len(entry_links(listing)) == 2
            search = await c.get("/dashboard/entries", params={"q": "hello"})
            (first,) = entry_links(search.text)
            detail = (await c.get(f"/dashboard/entries/{first}")).text
            token = re.search(r'name=csrf value="([0-9a-f]+)"', detail)
            status = (
                await c.post(f"/dashboard/entries/{first}/delete", data={"csrf": token.group(1) if token else ""})
            ).status_code
            after = (await c.get("/dashboard/entries")).text
        cache.close()
        return overview, detail, status, after

    overview, detail, status, after = asyncio.run(run(False))
    assert "team-a" in overview and "team-b" in overview  # every namespace, for the operator
    assert "--allow-delete" in detail and "hello &lt;b&gt;world&lt;/b&gt;" in detail
    assert status == 403 and len(entry_links(after)) == 2
    _, detail, status, after = asyncio.run(run(True))
    assert "Delete this entry" in detail and status == 303 and len(entry_links(after)) == 1


def test_a_failing_store_is_a_page_saying_so() -> None:
    import asyncio

    class Broken(InMemoryCache):
        def entries(self) -> Any:
            raise ConnectionError("store down at redis://user:secret@host")

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_dashboard_app(Broken()))
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as c:
            return await c.get("/dashboard")

    response = asyncio.run(get())
    assert response.status_code == 503 and "ConnectionError" in response.text
    assert "secret" not in response.text


def test_llm_cache_dashboard_command(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "c.db"
    with SQLiteCache(str(path)) as cache:
        cache.update("a stored prompt", '{"model":"gpt-4o-mini"}', [Generation("an answer")])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_cache.cli", "dashboard", "--cache", f"sqlite:///{path}", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                html = httpx.get(f"http://127.0.0.1:{port}/dashboard/entries", timeout=5).text
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.2)
        assert "a stored prompt" in html
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    missing = subprocess.run(
        [sys.executable, "-m", "llm_cache.cli", "dashboard", "--cache", f"sqlite:///{tmp_path / 'nope.db'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "no cache database" in missing.stderr


def test_traffic_samples_give_the_hit_rate_per_interval() -> None:
    texts = iter(
        [
            'llm_cache_proxy_requests_total{endpoint="chat",cache="miss"} 4\n',
            'llm_cache_proxy_requests_total{endpoint="chat",cache="miss"} 5\n'
            'llm_cache_proxy_requests_total{endpoint="chat",cache="hit"} 3.0\n'
            'llm_cache_proxy_requests_total{endpoint="embeddings",cache="hit"} 1\n'
            "llm_cache_proxy_tokens_saved_total{kind=\"prompt\"} 7\n"
            "llm_cache_proxy_cost_saved_usd_total 0.25\n",
            'llm_cache_proxy_requests_total{endpoint="chat",cache="miss"} 5\n'
            'llm_cache_proxy_requests_total{endpoint="chat",cache="hit"} 4.0\n'
            'llm_cache_proxy_requests_total{endpoint="embeddings",cache="hit"} 1\n',
            "garbage",
        ]
    )
    samples = TrafficSamples(lambda: next(texts), interval=10)
    for at in (0, 10, 20, 30):
        samples.sample(now=at)
    assert [rate for _, rate in samples.hit_rates()] == [0.8, 1.0, None]
    assert samples.samples[1].tokens_saved == 7 and samples.samples[1].cost_saved == 0.25
    samples.sample(now=31)  # a view between ticks refreshes the last sample, not a new point
    assert len(samples.samples) == 4


def test_caches_delete_one_entry(tmp_path: Path) -> None:
    for cache in (InMemoryCache(), SQLiteCache(str(tmp_path / "d.db"))):
        cache.update("p", "l", [Generation("a")])
        cache.update("q", "l", [Generation("b")])
        assert cache.delete("p", "l") is True and cache.delete("p", "l") is False
        assert cache.lookup("p", "l") is None and cache.lookup("q", "l") is not None
        cache.close()


@pytest.mark.redis
def test_redis_cache_deletes_one_entry(redis_url: str) -> None:
    from llm_cache import RedisCache

    cache = RedisCache(redis_url=redis_url, namespace="dash-delete")
    cache.clear()
    cache.update("p", "l", [Generation("a")])
    cache.update("q", "l", [Generation("b")])
    assert cache.delete("p", "l") is True and cache.delete("p", "l") is False
    assert cache.lookup("p", "l") is None and cache.lookup("q", "l") is not None
    cache.clear()
    cache.close()


def _sql_delete_roundtrip(cache: Any) -> None:
    cache.update("p", "l", [Generation("a"), Generation("b")])  # two rows in SQL stores
    cache.update("q", "l", [Generation("c")])
    assert cache.delete("p", "l") is True and cache.delete("p", "l") is False
    assert cache.lookup("p", "l") is None and cache.lookup("q", "l") is not None
    assert [e.prompt for e in cache.entries()] == ["q"]


def test_sql_caches_delete_one_entry(tmp_path: Path) -> None:
    from sqlalchemy import Column, Integer, String, create_engine
    from sqlalchemy.orm import declarative_base

    from llm_cache import SQLAlchemyCache

    engine = create_engine(f"sqlite:///{tmp_path / 'sql.db'}")
    _sql_delete_roundtrip(SQLAlchemyCache(engine))  # the keyed schema (llm-cache's own)

    class UserTable(declarative_base()):  # type: ignore[misc]
        """A user's own schema (LangChain's FullLLMCache layout): the plain path."""

        __tablename__ = "user_llm_cache"
        prompt = Column(String, primary_key=True)
        llm = Column(String, primary_key=True)
        idx = Column(Integer, primary_key=True)
        response = Column(String)

    _sql_delete_roundtrip(SQLAlchemyCache(engine, UserTable))
    engine.dispose()


@pytest.mark.parametrize(
    "server", [pytest.param("postgres_url", marks=pytest.mark.postgres), pytest.param("mysql_url", marks=pytest.mark.mysql)]
)
def test_sql_servers_delete_one_entry(server: str, request: pytest.FixtureRequest) -> None:
    from llm_cache.urls import cache_from_url

    cache = cache_from_url(request.getfixturevalue(server), namespace=f"dash-{time.time_ns()}")
    try:
        _sql_delete_roundtrip(cache)
    finally:
        cache.clear()
        cache.close()
