"""RedisVectorStore / RedisSemanticCache on the session's real Redis 8 server.

The store-level contract runs in tests/test_vector_stores.py; this module covers what is
specific to Redis (key layout, VSIM scores, lazy purge of expired elements, namespaced
clear, configuration errors, clients) and runs the cache contract and semantic behaviour
on RedisSemanticCache with the offline LocalEmbeddings.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.register_assert_rewrite(
    "llm_cache.testing.contract",
    "llm_cache.testing.semantic_contract",
    "llm_cache.testing.vector_store_contract",
)

from llm_cache.errors import ConfigurationError, CorruptEntryError
from llm_cache.generation import Generation
from llm_cache.keys import cache_key_hex
from llm_cache.testing.semantic_contract import SemanticCacheContract, shared_embeddings
from llm_cache.testing.vector_store_contract import make_entry, unit, vector_at

redis = pytest.importorskip("redis")
np = pytest.importorskip("numpy")

pytestmark = pytest.mark.redis

LLM = '{"model":"m","provider":"test","temperature":0}'
D = 32


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def make_store(redis_url: str) -> Iterator[Callable[..., Any]]:
    from llm_cache.semantic.stores.redis import RedisVectorStore

    made: list[RedisVectorStore] = []

    def factory(**kwargs: Any) -> RedisVectorStore:
        kwargs.setdefault("namespace", f"t-sr:{uuid.uuid4().hex[:10]}")
        kwargs.setdefault("dimension", D)
        kwargs.setdefault("socket_timeout", 5)
        if "redis_" not in kwargs:
            kwargs.setdefault("redis_url", redis_url)
        store = RedisVectorStore(**kwargs)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.clear()
        store.close()


@pytest.fixture(scope="module")
def embedding() -> Any:
    return shared_embeddings()


# -- layout --------------------------------------------------------------------------------------
def test_layout_one_vector_set_per_partition_and_payloads_with_ttl(
    make_store: Any, client: Any
) -> None:
    store = make_store(ttl=60)
    ns = store.namespace
    store.add(make_entry("a", partition="p1"), vector_at(1.0, D))
    store.add(make_entry("b", partition="p1"), vector_at(0.5, D))
    store.add(make_entry("c", partition="p2"), vector_at(0.5, D))
    keys = sorted(k.decode() for k in client.scan_iter(match=ns + ":*"))
    sets = [k for k in keys if k.startswith(ns + ":v:")]
    payloads = [k for k in keys if k.startswith(ns + ":e:")]
    assert len(keys) == 5 and len(sets) == 2 and len(payloads) == 3
    assert sorted(client.execute_command("VCARD", s) for s in sets) == [1, 2]
    assert client.type(sets[0]) == b"vectorset"
    assert ns + ":e:" + make_entry("a").key in payloads
    for p in payloads:
        assert 0 < client.pttl(p) <= 60_000  # the payload carries the TTL (PX)
    info = client.execute_command("VINFO", sets[0])
    info = dict(zip(info[::2], info[1::2])) if isinstance(info, list) else info
    assert info[b"quant-type"] == b"int8" and info[b"vector-dim"] == D


def test_no_ttl_means_no_expiry(make_store: Any, client: Any) -> None:
    store = make_store()
    store.add(make_entry("a"), vector_at(1.0, D))
    assert client.pttl(store.namespace + ":e:" + make_entry("a").key) == -1


def test_vsim_score_is_converted_to_cosine(make_store: Any) -> None:
    # With NOQUANT the only difference left is the (1 + cos) / 2 scale Redis reports.
    store = make_store(quantization="NOQUANT")
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(30, D)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for i, v in enumerate(vectors):
        store.add(make_entry(f"e{i}"), v)
    query = vectors[3]
    found = store.search("p1", query, k=30)
    exact = {f"e{i}": float(vectors[i] @ query) for i in range(30)}
    assert len(found) == 30
    assert min(exact.values()) < -0.2  # negative cosines are covered too
    for n in found:
        assert n.similarity == pytest.approx(exact[n.entry.prompt], abs=1e-5)


def test_ef_and_nothread_options_search_the_same(make_store: Any) -> None:
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(50, D)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    plain = make_store()
    tuned = make_store(namespace=plain.namespace, ef=200, nothread=True)
    assert tuned._vsim("p1", b"x", 4)[-3:] == ("EF", 200, "NOTHREAD")
    for i, v in enumerate(vectors):
        plain.add(make_entry(f"e{i}"), v)
    for q in vectors[:5]:
        assert [n.entry.key for n in tuned.search("p1", q, k=3)] == [
            n.entry.key for n in plain.search("p1", q, k=3)
        ]


def test_q8_similarity_error_on_real_embeddings(make_store: Any, embedding: Any) -> None:
    """Q8 (the default) is approximate: measure how far from the exact cosine it reports."""
    sentences = [
        "How do I reverse a list in Python?",
        "What is the capital of France?",
        "How can I lose weight fast?",
        "What is the best way to learn Spanish?",
        "Why is the sky blue?",
        "How do I make a cup of tea?",
        "What causes earthquakes?",
        "Who wrote Pride and Prejudice?",
    ]
    queries = [
        "How can I reverse a Python list?",
        "Which city is the capital of France?",
        "What is the quickest way to lose weight?",
        "How should I learn Spanish?",
        "Why does the sky look blue?",
        "How to brew tea?",
        "Why do earthquakes happen?",
        "Who is the author of Pride and Prejudice?",
    ]
    store = make_store(dimension=embedding.dimension)
    vectors = np.asarray(embedding.embed_documents(sentences), dtype=np.float32)
    for s, v in zip(sentences, vectors):
        store.add(make_entry(s), v)
    errors = []
    for q in np.asarray(embedding.embed_documents(queries), dtype=np.float32):
        for n in store.search("p1", q, k=len(sentences)):
            errors.append(abs(n.similarity - float(vectors[sentences.index(n.entry.prompt)] @ q)))
    print(
        f"\nQ8 vs exact cosine on {len(errors)} MiniLM pairs: max {max(errors):.5f}, mean {np.mean(errors):.5f}"
    )
    assert max(errors) < 0.01


# -- lazy purge ----------------------------------------------------------------------------------
def test_search_skips_and_purges_elements_whose_payload_is_gone(
    make_store: Any, client: Any
) -> None:
    store = make_store()
    for i, cos in enumerate([0.99, 0.98, 0.97, 0.96, 0.5, 0.4]):
        store.add(make_entry(f"e{i}"), vector_at(cos, D))
    set_key = store._set_key("p1")
    # The four nearest lose their payload (as when their TTL ends): the search must still
    # return k live entries, asking VSIM for more, and remove the dead elements.
    client.delete(*(store.namespace + ":e:" + make_entry(f"e{i}").key for i in range(4)))
    found = store.search("p1", vector_at(1.0, D), k=2)
    assert [n.entry.prompt for n in found] == ["e4", "e5"]
    assert client.execute_command("VCARD", set_key) == 2


def test_expired_payloads_are_purged_lazily(make_store: Any, client: Any) -> None:
    store = make_store()
    now = time.time()
    store.add(make_entry("short", expires_at=now + 0.3), vector_at(1.0, D))
    store.add(make_entry("long"), vector_at(0.5, D))
    time.sleep(0.5)
    assert [n.entry.prompt for n in store.search("p1", vector_at(1.0, D), k=4)] == ["long"]
    assert client.execute_command("VCARD", store._set_key("p1")) == 1
    assert store.count() == 1


def test_entry_moved_to_another_partition_is_not_found_in_the_old_one(
    make_store: Any, client: Any
) -> None:
    store = make_store()
    store.add(make_entry("x", partition="old"), vector_at(1.0, D))
    store.add(make_entry("x", partition="new"), vector_at(1.0, D))
    assert store.search("old", vector_at(1.0, D), k=4) == []
    assert client.execute_command("VCARD", store._set_key("old")) == 0  # purged on the way
    assert [n.entry.partition for n in store.search("new", vector_at(1.0, D), k=4)] == ["new"]


def test_delete_removes_the_vector_set_element(make_store: Any, client: Any) -> None:
    store = make_store()
    store.add(make_entry("a"), vector_at(1.0, D))
    store.add(make_entry("b"), vector_at(0.9, D))
    store.delete([make_entry("a").key])
    assert client.execute_command("VCARD", store._set_key("p1")) == 1


# -- corrupt payloads ----------------------------------------------------------------------------
def test_corrupt_payload(make_store: Any, client: Any) -> None:
    store = make_store()
    store.add(make_entry("bad"), vector_at(1.0, D))
    store.add(make_entry("good"), vector_at(0.8, D))
    client.set(store.namespace + ":e:" + make_entry("bad").key, b"{not json")
    with pytest.raises(CorruptEntryError):
        store.get(make_entry("bad").key)
    # a search skips it instead of failing for every query near it
    assert [n.entry.prompt for n in store.search("p1", vector_at(1.0, D), k=4)] == ["good"]


# -- clear ---------------------------------------------------------------------------------------
def test_clear_removes_only_this_namespace(make_store: Any, client: Any) -> None:
    base = f"t-clr{uuid.uuid4().hex[:6]}"
    stores = {
        ns: make_store(namespace=ns)
        for ns in (base, base + ":v", base + ":e", base + "*", base + "x")
    }
    for store in stores.values():
        store.add(make_entry("a"), vector_at(1.0, D))
    unrelated = [base + ":e:not-a-hash", base + ":v:other", base + ":config"]
    for key in unrelated:
        client.set(key, b"keep me")
    try:
        stores[base].clear()
        assert stores[base].count() == 0
        assert stores[base].search("p1", vector_at(1.0, D), k=1) == []
        for ns, store in stores.items():
            if ns != base:
                assert store.count() == 1, ns
                assert len(store.search("p1", vector_at(1.0, D), k=1)) == 1, ns
        assert all(client.get(key) == b"keep me" for key in unrelated)
        # glob characters in a namespace are literal
        stores[base + "*"].clear()
        assert stores[base + "x"].count() == 1
    finally:
        client.delete(*unrelated)


# -- configuration errors ------------------------------------------------------------------------
def test_configuration_errors(make_store: Any, redis_url: str) -> None:
    from llm_cache.semantic.stores.redis import RedisVectorStore

    with pytest.raises(ConfigurationError, match="either"):
        RedisVectorStore(redis.Redis.from_url(redis_url), redis_url=redis_url, dimension=D)
    with pytest.raises(ConfigurationError, match="needs a server"):
        RedisVectorStore(dimension=D)
    with pytest.raises(ConfigurationError, match="quantization"):
        RedisVectorStore(redis_url=redis_url, dimension=D, quantization="Q4")
    with pytest.raises(ConfigurationError, match="dimension"):
        RedisVectorStore(redis_url=redis_url, dimension=0)
    with pytest.raises(ConfigurationError, match="whitespace"):
        RedisVectorStore(redis_url=redis_url, dimension=D, namespace="a b")
    store = make_store()
    with pytest.raises(ConfigurationError, match="dimension"):
        store.add(make_entry("a"), np.ones(D + 1, dtype=np.float32))
    with pytest.raises(ConfigurationError, match="hex"):
        store.add(
            make_entry("a").__class__(**{**make_entry("a").__dict__, "key": "k1"}),
            vector_at(1.0, D),
        )
    assert store.get("not a key") is None


def test_existing_sets_made_differently_are_reported(make_store: Any) -> None:
    first = make_store(quantization="NOQUANT")
    first.add(make_entry("a"), vector_at(1.0, D))
    q8 = make_store(namespace=first.namespace)
    with pytest.raises(ConfigurationError, match="quantization"):
        q8.add(make_entry("b"), vector_at(1.0, D))
    wider = make_store(namespace=first.namespace, dimension=D * 2, quantization="NOQUANT")
    with pytest.raises(ConfigurationError, match="dimension"):
        wider.add(make_entry("c"), unit(np.ones(D * 2)))


# -- clients -------------------------------------------------------------------------------------
def test_a_client_passed_in_is_used_and_not_closed(make_store: Any, client: Any) -> None:
    store = make_store(redis_=client)
    store.add(make_entry("a"), vector_at(1.0, D))
    store.close()
    assert client.ping()  # still usable

    async def via_derived_async_client() -> list[str]:
        found = await store.asearch("p1", vector_at(1.0, D), 4)
        await store.aclose()
        return [n.entry.prompt for n in found]

    assert asyncio.run(via_derived_async_client()) == ["a"]


def test_async_client_per_event_loop(make_store: Any) -> None:
    store = make_store()

    async def scenario() -> Any:
        await store.aadd(make_entry("a"), vector_at(1.0, D))
        first = await store._aclient()
        assert await store._aclient() is first
        return first

    one = asyncio.run(scenario())
    two = asyncio.run(scenario())
    assert one is not two  # a new loop gets its own client ...
    assert store._aclients == {}  # ... and a finished loop's client was closed and forgotten


def test_async_redis_given_explicitly(make_store: Any, redis_url: str) -> None:
    async def scenario() -> list[str]:
        aclient = redis.asyncio.Redis.from_url(redis_url)
        try:
            store = make_store(async_redis=aclient)
            await store.aadd(make_entry("a"), vector_at(1.0, D))
            return [n.entry.prompt for n in await store.asearch("p1", vector_at(1.0, D), 4)]
        finally:
            await aclient.aclose()

    assert asyncio.run(scenario()) == ["a"]


# -- RedisSemanticCache ------------------------------------------------------------------------
@pytest.fixture
def make_cache(redis_url: str) -> Iterator[Callable[..., Any]]:
    from llm_cache.semantic.stores.redis import RedisSemanticCache

    made: list[Any] = []

    def factory(**kwargs: Any) -> Any:
        kwargs.setdefault("namespace", f"t-src:{uuid.uuid4().hex[:10]}")
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("embedding", shared_embeddings())
        cache = RedisSemanticCache(redis_url=redis_url, **kwargs)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        cache.clear()
        cache.close()


def test_cache_aclose_releases_the_stores_loop_client(make_cache: Callable[..., Any]) -> None:
    cache = make_cache()

    async def scenario() -> None:
        await cache.aupdate("What is the capital of France?", LLM, [Generation("Paris")])
        assert len(cache.store._aclients) == 1  # this loop's client
        await cache.aclose()
        assert cache.store._aclients == {}
        assert await cache.alookup("What is the capital of France?", LLM) == [Generation("Paris")]
        await cache.aclose()

    asyncio.run(scenario())


class TestRedisSemantic(SemanticCacheContract):
    """The exact-cache contract and the semantic suite on RedisSemanticCache."""

    @pytest.fixture
    def cache_factory(self, make_cache: Callable[..., Any]) -> Callable[..., Any]:
        namespaces: dict[str, str] = {}

        def factory(namespace: str = "default", ttl: float | None = None, **kwargs: Any) -> Any:
            ns = namespaces.setdefault(namespace, f"t-src:{uuid.uuid4().hex[:10]}")
            return make_cache(namespace=ns, ttl=ttl, **kwargs)

        return factory

    def advance(self, cache: Any, seconds: float) -> None:
        time.sleep(seconds)  # Redis expires entries by itself (PX)

    def corrupt(self, cache: Any, prompt: str, llm_string: str) -> None:
        from llm_cache.semantic.partition import split_prompt

        key = cache.store.namespace + ":e:" + split_prompt(prompt, llm_string).key
        c = cache.store._client
        assert c.exists(key)
        c.set(key, b"\xff garbage")

    def process_source(self, cache: Any) -> str:
        url = cache.store._client.connection_pool.connection_kwargs
        return (
            "from llm_cache.semantic.stores.redis import RedisSemanticCache\n"
            "from llm_cache.semantic.embeddings import LocalEmbeddings\n"
            "def make_cache():\n"
            f"    return RedisSemanticCache(redis_url={_url(url)!r}, embedding=LocalEmbeddings(),\n"
            f"                              namespace={cache.store.namespace!r}, socket_timeout=5)\n"
        )


def _url(kwargs: dict[str, Any]) -> str:
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def test_server_down_is_a_fast_miss_and_recovers(make_cache: Any, redis_server: Any) -> None:
    if not redis_server.managed:
        pytest.skip("the Redis server comes from REDIS_URL and cannot be stopped here")
    cache = make_cache(socket_timeout=0.25)
    cache.update("How do I reverse a list in Python?", LLM, [Generation("x[::-1]")])
    with redis_server.stopped():
        began = time.perf_counter()
        assert cache.lookup("How do I reverse a list in Python?", LLM) is None
        took = time.perf_counter() - began
        cache.update("What is the capital of France?", LLM, [Generation("Paris")])  # no raise
        assert cache.stats.errors >= 1
        print(f"\nlookup with Redis down took {took * 1000:.1f} ms")
    # The server restarts empty (no persistence): the cache works again once the breaker's
    # probe sees it back.
    deadline = time.monotonic() + 10
    while cache.breaker.is_open and time.monotonic() < deadline:
        time.sleep(0.1)
    cache.update("What is the capital of France?", LLM, [Generation("Paris")])
    assert cache.lookup("What is the capital of France?", LLM)[0].text == "Paris"


def test_semantic_cache_key_shape_in_redis(make_cache: Any, client: Any) -> None:
    cache = make_cache()
    cache.update("hello", LLM, [Generation("hi")])
    keys = [k.decode() for k in client.scan_iter(match=cache.store.namespace + ":*")]
    assert cache.store.namespace + ":e:" + cache_key_hex("hello", LLM) in keys


def test_redis_cluster_sync_and_async(redis_cluster: Any) -> None:
    """Every operation is single-key or a non-transactional pipeline, so a cluster works."""
    from llm_cache.semantic.stores.redis import RedisVectorStore

    client = redis_cluster.client()
    host, port = redis_cluster.startup_nodes[0]
    ns = f"t-clu:{uuid.uuid4().hex[:8]}"
    store = RedisVectorStore(client, namespace=ns, dimension=D)
    try:
        for i in range(12):
            store.add(make_entry(f"e{i}", partition=f"p{i % 3}"), vector_at(i / 12, D))
        assert store.count() == 12
        assert [n.entry.prompt for n in store.search("p0", vector_at(1.0, D), k=2)] == ["e9", "e6"]
        store.delete([make_entry("e9").key])
        assert [n.entry.prompt for n in store.search("p0", vector_at(1.0, D), k=1)] == ["e6"]
        with pytest.raises(ConfigurationError, match="async_redis"):
            asyncio.run(store.aget(make_entry("e1").key))

        async def scenario() -> list[str]:
            aclient = redis.asyncio.cluster.RedisCluster(host=host, port=port)
            try:
                astore = RedisVectorStore(client, namespace=ns, dimension=D, async_redis=aclient)
                await astore.aadd(make_entry("async", partition="p0"), vector_at(1.0, D))
                found = await astore.asearch("p0", vector_at(1.0, D), 1)
                await astore.aclear()
                return [n.entry.prompt for n in found]
            finally:
                await aclient.aclose()

        assert asyncio.run(scenario()) == ["async"]
        assert store.count() == 0
    finally:
        store.clear()
        client.close()


def test_nul_and_lone_surrogates_round_trip(make_store: Any) -> None:
    from llm_cache.semantic.stores.base import SemanticEntry

    store = make_store()
    odd = SemanticEntry(
        key=cache_key_hex("nul\x00 and \ud800", LLM),
        partition="part\x00ition \udfff",
        text="a NUL \x00 here and a lone surrogate \udfff there",
        prompt="nul\x00 and \ud800",
        llm_string=LLM + "\x00",
        response='{"v":1,"g":[{"text":"\\u0000"}]}',
        created_at=1.5,
        expires_at=None,
    )
    store.add(odd, vector_at(1.0, D))
    assert store.get(odd.key) == odd
    assert [n.entry for n in store.search("part\x00ition \udfff", vector_at(1.0, D))] == [odd]
