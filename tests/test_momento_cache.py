"""MomentoCache through the real ``momento`` SDK, against the in-process Momento emulator.

Momento is a hosted service and its own local emulator is a Docker image, so these
tests run the SDK (its gRPC stubs, interceptors, retries, credential parsing and, for
the API-key tests, its TLS channel) against :class:`MomentoEmulator`, a gRPC server
built from the SDK's own wire types. See ``llm_cache/testing/momento_emulator.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta
from typing import Any, Callable, Iterator

import grpc
import jwt
import pytest
from momento import CacheClient

from llm_cache import CacheBackendError, ConfigurationError
from llm_cache.caches.momento import MomentoCache
from llm_cache.llms import OpenAI
from llm_cache.testing.contract import LLM, CacheContract, sample_generations
from llm_cache.testing.momento_emulator import MomentoEmulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[MomentoEmulator]:
    with MomentoEmulator() as emu:
        yield emu


@pytest.fixture
def fresh_emulator() -> Iterator[MomentoEmulator]:
    """An emulator of this test's own (for fault injection and call counting)."""
    with MomentoEmulator() as emu:
        yield emu


def make_client(emu: MomentoEmulator, default_ttl: float = 60.0) -> CacheClient:
    return CacheClient(emu.configuration(), emu.credential_provider(), timedelta(seconds=default_ttl))


@pytest.fixture(scope="module")
def client(emulator: MomentoEmulator) -> Iterator[CacheClient]:
    with make_client(emulator) as c:
        yield c


def unique(prefix: str = "llm") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class _MomentoContract(CacheContract):
    def advance(self, cache: MomentoCache, seconds: float) -> None:  # type: ignore[override]
        self.emu.advance(seconds)

    def corrupt(self, cache: MomentoCache, prompt: str, llm_string: str) -> None:  # type: ignore[override]
        key = cache.key_for(prompt, llm_string)
        assert self.emu.get_raw(cache.cache_name, key) is not None  # the entry really is there
        self.emu.put_raw(cache.cache_name, key, b"{not json")


class TestMomentoContract(_MomentoContract):
    """Namespaced caches sharing one Momento cache; native async (CacheClientAsync)."""

    @pytest.fixture
    def cache_factory(self, emulator: MomentoEmulator, client: CacheClient) -> Callable[..., MomentoCache]:
        self.emu = emulator
        cache_name = unique()

        def factory(namespace: str = "default", ttl: float | None = None) -> MomentoCache:
            return MomentoCache(
                client,
                cache_name,
                ttl=ttl,
                namespace=namespace,
                configuration=emulator.configuration(),
                credential_provider=emulator.credential_provider(),
            )

        return factory

    def test_async_really_uses_the_async_client(self, cache: MomentoCache) -> None:
        async def scenario() -> None:
            await cache.aupdate("p", LLM, sample_generations("a"))
            assert await cache.alookup("p", LLM) == sample_generations("a")
            assert len(cache._async_clients) == 1  # one CacheClientAsync for this loop
            await cache.aclose()

        asyncio.run(scenario())


class TestMomentoWholeCacheContract(_MomentoContract):
    """No namespace: the Momento cache is dedicated, keys are bare hashes, clear() flushes."""

    shares_namespaces = False  # each "namespace" below is a Momento cache of its own

    @pytest.fixture
    def cache_factory(self, emulator: MomentoEmulator, client: CacheClient) -> Callable[..., MomentoCache]:
        self.emu = emulator
        prefix = unique()

        def factory(namespace: str = "default", ttl: float | None = None) -> MomentoCache:
            return MomentoCache(
                client,
                f"{prefix}-{namespace}",
                ttl=ttl,
                configuration=emulator.configuration(),
                credential_provider=emulator.credential_provider(),
            )

        return factory


class TestMomentoSyncClientOnlyContract(_MomentoContract):
    """Given only a sync CacheClient, the async methods run in worker threads."""

    @pytest.fixture
    def cache_factory(self, emulator: MomentoEmulator, client: CacheClient) -> Callable[..., MomentoCache]:
        self.emu = emulator
        cache_name = unique()

        def factory(namespace: str = "default", ttl: float | None = None) -> MomentoCache:
            return MomentoCache(client, cache_name, ttl=ttl, namespace=namespace)

        return factory


# -- keys, values, TTL ------------------------------------------------------------------------------
def test_value_is_json_with_prompt_llm_string_and_generations(emulator: MomentoEmulator, client: CacheClient) -> None:
    cache = MomentoCache(client, unique(), namespace="ns")
    cache.update("a prompt", LLM, sample_generations("v", n=2))
    key = cache.key_for("a prompt", LLM)
    assert key.startswith("ns:0:") and len(key.split(":")[-1]) == 64
    stored = json.loads(emulator.get_raw(cache.cache_name, key) or b"")
    assert stored["prompt"] == "a prompt" and stored["llm_string"] == LLM
    assert [g["text"] for g in stored["generations"]["g"]] == ["v answer 0 ✓", "v answer 1 ✓"]


def test_a_foreign_value_under_our_key_is_a_miss_not_a_wrong_answer(
    emulator: MomentoEmulator, client: CacheClient
) -> None:
    cache = MomentoCache(client, unique())
    cache.update("other prompt", LLM, sample_generations("other"))
    raw = emulator.get_raw(cache.cache_name, cache.key_for("other prompt", LLM))
    assert raw is not None
    # the same value stored under the key of "p" stands for a hash collision
    emulator.put_raw(cache.cache_name, cache.key_for("p", LLM), raw)
    assert cache.lookup("p", LLM) is None
    assert cache.stats.corrupt == 0 and cache.stats.errors == 0


def test_ttl_none_uses_the_clients_default_ttl(emulator: MomentoEmulator) -> None:
    with make_client(emulator, default_ttl=30) as c:
        cache = MomentoCache(c, unique())
        cache.update("p", LLM, sample_generations())
        emulator.advance(29)
        assert cache.lookup("p", LLM) == sample_generations()
        emulator.advance(2)
        assert cache.lookup("p", LLM) is None


def test_ttl_accepts_a_timedelta(emulator: MomentoEmulator, client: CacheClient) -> None:
    cache = MomentoCache(client, unique(), ttl=timedelta(seconds=5))
    assert cache.ttl == 5.0
    cache.update("p", LLM, sample_generations())
    emulator.advance(5.5)
    assert cache.lookup("p", LLM) is None


def test_ttl_above_momentos_limit_is_a_counted_store_error(emulator: MomentoEmulator, client: CacheClient) -> None:
    cache = MomentoCache(client, unique(), ttl=timedelta(days=2))
    cache.update("p", LLM, sample_generations())  # the emulator refuses it, as Momento does
    assert cache.stats.errors == 1 and cache.stats.updates == 0
    with pytest.raises(CacheBackendError, match="exceeds"):
        MomentoCache(client, cache.cache_name, ttl=timedelta(days=2), strict=True).update("p", LLM, sample_generations())


# -- cache creation -----------------------------------------------------------------------------------
def test_the_cache_is_created_when_missing_and_an_existing_one_is_fine(fresh_emulator: MomentoEmulator) -> None:
    with make_client(fresh_emulator) as c:
        assert fresh_emulator.cache_names() == []
        MomentoCache(c, "llm")
        assert fresh_emulator.cache_names() == ["llm"]
        second = MomentoCache(c, "llm")  # ALREADY_EXISTS is not an error
        second.update("p", LLM, sample_generations())
        assert second.lookup("p", LLM) == sample_generations()
        assert fresh_emulator.calls["CreateCache"] == 2


def test_without_ensure_cache_exists_a_missing_cache_is_a_store_error(fresh_emulator: MomentoEmulator) -> None:
    with make_client(fresh_emulator) as c:
        cache = MomentoCache(c, "missing", ensure_cache_exists=False)
        assert fresh_emulator.calls["CreateCache"] == 0
        assert cache.lookup("p", LLM) is None
        assert cache.stats.errors == 1  # NOT_FOUND from the service, counted, not swallowed


def test_a_cache_that_cannot_be_created_fails_loudly(fresh_emulator: MomentoEmulator) -> None:
    fresh_emulator.fail(grpc.StatusCode.PERMISSION_DENIED, "key may not create caches", methods=["CreateCache"])
    with make_client(fresh_emulator) as c, pytest.raises(CacheBackendError, match="ensure_cache_exists=False"):
        MomentoCache(c, "llm")


def test_an_outage_at_construction_fails_open_unless_strict(fresh_emulator: MomentoEmulator) -> None:
    with make_client(fresh_emulator) as c:
        MomentoCache(c, "llm")  # the cache exists; now the service goes away
        fresh_emulator.stop()
        cache = MomentoCache(c, "llm")  # does not stop the application
        assert cache.stats.errors == 1
        assert cache.lookup("p", LLM) is None
        with pytest.raises(CacheBackendError, match="could not create"):
            MomentoCache(c, "llm", strict=True)
        fresh_emulator.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # gRPC reconnects with a back-off of its own
            cache.update("p", LLM, sample_generations())
            if cache.lookup("p", LLM) == sample_generations():
                break
            time.sleep(0.1)
        assert cache.lookup("p", LLM) == sample_generations()


# -- namespaces and clear -----------------------------------------------------------------------------
def test_namespace_clear_is_one_increment_and_leaves_the_rest(fresh_emulator: MomentoEmulator) -> None:
    with make_client(fresh_emulator) as c:
        mine = MomentoCache(c, "shared", namespace="mine", ttl=60)
        theirs = MomentoCache(c, "shared", namespace="theirs", ttl=60)
        for i in range(10):
            mine.update(f"p{i}", LLM, sample_generations("m"))
            theirs.update(f"p{i}", LLM, sample_generations("t"))
        calls_before = sum(fresh_emulator.calls.values())
        mine.clear()
        assert sum(fresh_emulator.calls.values()) - calls_before == 1  # O(1): one Increment
        assert fresh_emulator.calls["FlushCache"] == 0
        assert all(mine.lookup(f"p{i}", LLM) is None for i in range(10))
        assert all(theirs.lookup(f"p{i}", LLM) == sample_generations("t") for i in range(10))
        # the old generation's items are unreachable and go away with their TTL
        assert len(fresh_emulator.keys("shared")) == 10 + 10 + 1  # + the generation counter
        fresh_emulator.advance(61)
        assert fresh_emulator.keys("shared") == [b"mine:__generation__"]
        assert fresh_emulator.get_raw("shared", "mine:__generation__") == b"1"


def test_a_namespace_prefix_of_another_is_still_isolated(emulator: MomentoEmulator, client: CacheClient) -> None:
    name = unique()
    a, ab = MomentoCache(client, name, namespace="a"), MomentoCache(client, name, namespace="a:0")
    a.update("p", LLM, sample_generations("a"))
    ab.update("p", LLM, sample_generations("ab"))
    a.clear()
    assert a.lookup("p", LLM) is None
    assert ab.lookup("p", LLM) == sample_generations("ab")


def test_another_object_sees_a_clear_within_generation_refresh(emulator: MomentoEmulator, client: CacheClient) -> None:
    name = unique()
    writer = MomentoCache(client, name, namespace="ns")
    always_fresh = MomentoCache(client, name, namespace="ns", generation_refresh=0)
    cached = MomentoCache(client, name, namespace="ns", generation_refresh=0.2)
    writer.update("p", LLM, sample_generations())
    assert always_fresh.lookup("p", LLM) == sample_generations()
    assert cached.lookup("p", LLM) == sample_generations()
    writer.clear()
    assert always_fresh.lookup("p", LLM) is None  # reads the generation on every call
    time.sleep(0.25)  # the other object's remembered generation is now too old to trust
    assert cached.lookup("p", LLM) is None


def test_clear_without_namespace_flushes_only_its_own_momento_cache(
    emulator: MomentoEmulator, client: CacheClient
) -> None:
    one, other = MomentoCache(client, unique()), MomentoCache(client, unique())
    one.update("p", LLM, sample_generations("1"))
    other.update("p", LLM, sample_generations("2"))
    one.clear()
    assert one.lookup("p", LLM) is None
    assert other.lookup("p", LLM) == sample_generations("2")


def test_async_clear_bumps_the_generation_too(emulator: MomentoEmulator, client: CacheClient) -> None:
    name = unique()
    cache = MomentoCache(
        client,
        name,
        namespace="ns",
        configuration=emulator.configuration(),
        credential_provider=emulator.credential_provider(),
    )
    other = MomentoCache(client, name, namespace="other")

    async def scenario() -> None:
        await cache.aupdate("p", LLM, sample_generations())
        await other.aupdate("p", LLM, sample_generations("o"))
        await cache.aclear()
        assert await cache.alookup("p", LLM) is None
        assert await other.alookup("p", LLM) == sample_generations("o")
        await cache.aclose()

    asyncio.run(scenario())
    assert emulator.get_raw(name, "ns:__generation__") == b"1"


# -- from_client_params: the SDK's real credential parsing and its TLS channel ------------------------------
@pytest.fixture
def tls_emulator() -> Iterator[MomentoEmulator]:
    with MomentoEmulator(tls=True, require_api_key=True) as emu:
        yield emu


def test_from_client_params_reads_momento_api_key(tls_emulator: MomentoEmulator, monkeypatch: Any) -> None:
    monkeypatch.delenv("MOMENTO_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("MOMENTO_ENDPOINT", raising=False)
    monkeypatch.setenv("MOMENTO_API_KEY", tls_emulator.api_key)
    cache = MomentoCache.from_client_params("from-env", ttl=30, configuration=tls_emulator.configuration())
    try:
        assert tls_emulator.cache_names() == ["from-env"]  # created, over TLS, with the key
        cache.update("p", LLM, sample_generations())
        assert cache.lookup("p", LLM) == sample_generations()
        assert cache.stats.errors == 0

        async def scenario() -> None:  # native async over its own TLS channel
            assert await cache.alookup("p", LLM) == sample_generations()
            await cache.aupdate("q", LLM, sample_generations("q"))
            assert await cache.alookup("q", LLM) == sample_generations("q")
            await cache.aclose()

        asyncio.run(scenario())
        assert cache.stats.errors == 0
        tls_emulator.advance(31)  # ttl is also the entries' TTL
        assert cache.lookup("p", LLM) is None
    finally:
        cache.close()


def test_from_client_params_with_an_explicit_key_and_timedelta(tls_emulator: MomentoEmulator, monkeypatch: Any) -> None:
    monkeypatch.delenv("MOMENTO_API_KEY", raising=False)
    with MomentoCache.from_client_params(
        "explicit",
        timedelta(minutes=1),
        api_key=tls_emulator.api_key,
        configuration=tls_emulator.configuration(),
        namespace="team-a",
    ) as cache:
        assert cache.ttl == 60.0 and cache.namespace == "team-a"
        cache.update("p", LLM, sample_generations())
        assert cache.lookup("p", LLM) == sample_generations()


def test_a_key_the_service_rejects_fails_at_construction(tls_emulator: MomentoEmulator) -> None:
    wrong = jwt.encode(
        {"sub": "someone-else", "c": tls_emulator.endpoint, "cp": tls_emulator.endpoint},
        "another secret that is at least thirty-two bytes long",
        algorithm="HS256",
    )
    with pytest.raises(CacheBackendError, match="could not create"):
        MomentoCache.from_client_params("x", 30, api_key=wrong, configuration=tls_emulator.configuration())


def test_from_client_params_with_a_credential_provider(emulator: MomentoEmulator) -> None:
    with MomentoCache.from_client_params(
        unique(), 30, credential_provider=emulator.credential_provider(), configuration=emulator.configuration()
    ) as cache:
        cache.update("p", LLM, sample_generations())
        assert cache.lookup("p", LLM) == sample_generations()


def test_from_client_params_without_a_key_says_what_to_set(monkeypatch: Any) -> None:
    for name in ("MOMENTO_API_KEY", "MOMENTO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="MOMENTO_API_KEY"):
        MomentoCache.from_client_params("x", 30)


def test_from_client_params_rejects_a_malformed_key(monkeypatch: Any) -> None:
    monkeypatch.delenv("MOMENTO_ENDPOINT", raising=False)
    with pytest.raises(ConfigurationError, match="not accepted") as info:
        MomentoCache.from_client_params("x", 30, api_key="not-a-momento-key")
    assert "not-a-momento-key" not in str(info.value)  # keys never end up in messages


def test_a_v2_key_takes_its_endpoint_from_momento_endpoint(monkeypatch: Any) -> None:
    v2_key = jwt.encode({"t": "g", "id": "fake"}, "a fake v2 key signing secret, 32+ bytes", algorithm="HS256")
    monkeypatch.setenv("MOMENTO_API_KEY", v2_key)
    monkeypatch.delenv("MOMENTO_ENDPOINT", raising=False)
    with pytest.raises(ConfigurationError, match="MOMENTO_ENDPOINT"):
        MomentoCache.from_client_params("x", 30, ensure_cache_exists=False)
    monkeypatch.setenv("MOMENTO_ENDPOINT", "cell-4-us-west-2-1.prod.a.momentohq.com")
    # No connection is made (channels connect lazily; cache creation is off).
    with MomentoCache.from_client_params("x", 30, ensure_cache_exists=False) as cache:
        provider = cache._credential_provider
        assert provider.cache_endpoint == "cache.cell-4-us-west-2-1.prod.a.momentohq.com"
        assert provider.control_endpoint == "control.cell-4-us-west-2-1.prod.a.momentohq.com"


def test_from_client_params_needs_a_ttl() -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        MomentoCache.from_client_params("x", None, api_key="unused")  # type: ignore[arg-type]


def test_constructor_checks_its_arguments(client: CacheClient) -> None:
    with pytest.raises(ConfigurationError, match="momento.CacheClient"):
        MomentoCache(object(), "x")
    with pytest.raises(ConfigurationError, match="cache_name"):
        MomentoCache(client, "")
    with pytest.raises(ConfigurationError, match="namespace"):
        MomentoCache(client, "x", namespace="")
    with pytest.raises(ConfigurationError, match="ttl"):
        MomentoCache(client, "x", ttl=0)


# -- errors follow the fail-open policy ------------------------------------------------------------------------
def test_an_error_status_is_raised_to_the_policy_not_swallowed(fresh_emulator: MomentoEmulator) -> None:
    with make_client(fresh_emulator) as c:
        lenient = MomentoCache(c, "llm", namespace="ns")
        strict = MomentoCache(c, "llm", namespace="ns", strict=True)
        fresh_emulator.fail(grpc.StatusCode.INTERNAL, "emulated internal error")
        assert lenient.lookup("p", LLM) is None
        lenient.update("p", LLM, sample_generations())
        assert lenient.stats.errors == 2 and lenient.stats.updates == 0
        with pytest.raises(CacheBackendError, match="emulated internal error"):
            strict.lookup("p", LLM)
        with pytest.raises(CacheBackendError):
            lenient.clear()  # a clear that did nothing is never silent


def test_model_calls_survive_a_failing_momento_and_hits_resume(
    fresh_emulator: MomentoEmulator, upstream: Any
) -> None:
    with make_client(fresh_emulator) as c:
        cache = MomentoCache(
            c,
            "llm",
            namespace="app",
            configuration=fresh_emulator.configuration(),
            credential_provider=fresh_emulator.credential_provider(),
        )
        llm = OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0, cache=cache, temperature=0)
        first = llm.invoke("Tell me a joke")
        assert llm.invoke("Tell me a joke") == first and upstream.request_count == 1

        fresh_emulator.fail(grpc.StatusCode.UNAVAILABLE)
        answers = [llm.invoke(f"question {i}") for i in range(5)]
        assert all(answers)  # the provider answered every call
        assert upstream.request_count == 6
        assert cache.stats.errors >= 1  # counted (then the breaker skips the store)
        assert asyncio.run(llm.ainvoke("async question")) and upstream.request_count == 7

        fresh_emulator.heal()
        deadline = time.monotonic() + 10
        while cache.breaker.is_open and time.monotonic() < deadline:
            time.sleep(0.05)  # the breaker's background probe finds the service back
        assert not cache.breaker.is_open
        assert llm.invoke("Tell me a joke") == first  # stored before the outage: a hit again
        assert upstream.request_count == 7


def test_hits_resume_after_the_emulator_restarts(fresh_emulator: MomentoEmulator) -> None:
    with make_client(fresh_emulator) as c:
        cache = MomentoCache(c, "llm", ttl=600)
        cache.update("p", LLM, sample_generations())
        fresh_emulator.stop()
        started = time.perf_counter()
        results = [cache.lookup("p", LLM) for _ in range(20)]
        elapsed = time.perf_counter() - started
        assert results == [None] * 20 and cache.stats.errors >= 1
        print(f"\n20 lookups with Momento down: {elapsed * 1000:.1f} ms in all, "
              f"{cache.stats.errors} errors, {cache.stats.skipped} skipped by the breaker")  # fmt: skip
        fresh_emulator.start()  # same port, items kept
        deadline = time.monotonic() + 15
        while cache.breaker.is_open and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.lookup("p", LLM) == sample_generations()


# -- the emulator itself ----------------------------------------------------------------------------------------
def test_emulator_answers_unimplemented_rpcs_as_such(emulator: MomentoEmulator, client: CacheClient) -> None:
    name = unique()
    client.create_cache(name)
    response = client.list_push_back(name, "a-list", "x")  # collections are not emulated
    assert "UNIMPLEMENTED" in str(response.inner_exception.transport_details).upper()  # type: ignore[union-attr]


def test_emulator_increment_set_if_not_exists_and_delete(emulator: MomentoEmulator, client: CacheClient) -> None:
    name = unique()
    client.create_cache(name)
    assert client.increment(name, "n", 5).value == 5  # type: ignore[union-attr]
    assert client.increment(name, "n", -2).value == 3  # type: ignore[union-attr]
    client.set(name, "s", "not a number")
    assert "FAILED_PRECONDITION" in str(client.increment(name, "s", 1)).upper()
    assert type(client.set_if_not_exists(name, "k", "1")).__name__ == "Stored"
    assert type(client.set_if_not_exists(name, "k", "2")).__name__ == "NotStored"
    assert client.get(name, "k").value_string == "1"  # type: ignore[union-attr]
    client.delete(name, "k")
    assert type(client.get(name, "k")).__name__ == "Miss"
    assert type(client.delete_cache(name)).__name__ == "Success"
    assert name not in emulator.cache_names()
