"""RedisCache against real servers: a Redis 8 and a three-node Redis Cluster.

Run: PYTHONPATH=src:tests pytest -p servers_fixtures tests/test_redis_cache.py
(the fixtures ``redis_server``, ``redis_url`` and ``redis_cluster`` come from servers_fixtures).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
import uuid
from typing import Any, Callable, Iterator

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster

from llm_cache import Generation
from llm_cache.caches.redis import RedisCache
from llm_cache.errors import ConfigurationError, MissingDependencyError
from llm_cache.keys import cache_key_hex
from llm_cache.testing.contract import LLM, CacheContract, sample_generations, tracked_factory

pytestmark = pytest.mark.redis


def unique(tag: str = "t") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def raw(redis_server: Any) -> Iterator[redis.Redis]:
    """A plain redis-py client on the session server, for looking behind the cache's back."""
    client = redis_server.client()
    yield client
    client.close()


# -- the shared contract ---------------------------------------------------------------------------
class _RedisContractBase(CacheContract):
    """Server-side TTL (real sleeps) and corruption through a raw client."""

    def advance(self, cache: RedisCache, seconds: float) -> None:  # type: ignore[override]
        time.sleep(seconds)

    def corrupt(self, cache: RedisCache, prompt: str, llm_string: str) -> None:  # type: ignore[override]
        cache._sync().set(cache._key(prompt, llm_string), b"\x00garbage{not json")


class TestRedisContract(_RedisContractBase):
    """Clients built by RedisCache from a URL (sync, and async per event loop)."""

    @pytest.fixture
    def cache_factory(self, redis_url: str) -> Iterator[Callable[..., RedisCache]]:
        base = unique()
        with tracked_factory(
            lambda ns, ttl: RedisCache(redis_url=redis_url, namespace=f"{base}:{ns}", ttl=ttl)
        ) as factory:
            yield factory


class TestRedisUserClientContract(_RedisContractBase):
    """A sync client the user made; the async client is derived from its settings (db 2)."""

    @pytest.fixture
    def cache_factory(self, redis_server: Any) -> Iterator[Callable[..., RedisCache]]:
        client = redis.Redis(host=redis_server.host, port=redis_server.port, db=2, socket_timeout=1.0)
        base = unique()
        with tracked_factory(
            lambda ns, ttl: RedisCache(client, namespace=f"{base}:{ns}", ttl=ttl)
        ) as factory:
            yield factory
        client.close()


class TestRedisClusterContract(_RedisContractBase):
    """A redis.cluster.RedisCluster client on a real three-master cluster."""

    @pytest.fixture
    def cache_factory(self, redis_cluster: Any) -> Iterator[Callable[..., RedisCache]]:
        client = redis_cluster.client(socket_timeout=1.0)
        base = unique()
        with tracked_factory(
            lambda ns, ttl: RedisCache(client, namespace=f"{base}:{ns}", ttl=ttl)
        ) as factory:
            yield factory
        client.close()


# -- what is stored -----------------------------------------------------------------------------------
def test_key_and_value_format(redis_url: str, raw: redis.Redis) -> None:
    ns = unique("fmt")
    cache = RedisCache(redis_url=redis_url, namespace=ns)
    gens = [Generation("a", generation_info={"finish_reason": "stop"}), Generation("b ✓")]
    cache.update("the prompt", LLM, gens)
    key = f"{ns}:{cache_key_hex('the prompt', LLM)}"
    assert raw.keys(f"{ns}:*") == [key.encode()]
    value = json.loads(raw.get(key))
    assert value == {
        "v": 1,
        "p": "the prompt",
        "l": LLM,
        "g": [{"text": "a", "generation_info": {"finish_reason": "stop"}}, {"text": "b ✓"}],
    }
    cache.clear()


def test_lone_surrogates_round_trip(redis_url: str) -> None:
    cache = RedisCache(redis_url=redis_url, namespace=unique())
    prompt = "broken \ud800 surrogate"
    cache.update(prompt, LLM, [Generation("x \udfff")])
    assert cache.lookup(prompt, LLM) == [Generation("x \udfff")]
    cache.clear()


def test_collision_is_a_miss_not_a_wrong_answer(redis_url: str, raw: redis.Redis) -> None:
    """Another pair's entry under our key (what a sha256 collision would look like)."""
    cache = RedisCache(redis_url=redis_url, namespace=unique())
    cache.update("other prompt", LLM, sample_generations("other"))
    stolen = raw.get(cache._key("other prompt", LLM))
    raw.set(cache._key("my prompt", LLM), stolen)
    assert cache.lookup("my prompt", LLM) is None
    other_llm = json.loads(stolen)
    other_llm["p"] = "my prompt"
    other_llm["l"] = LLM + " "
    raw.set(cache._key("my prompt", LLM), json.dumps(other_llm))
    assert cache.lookup("my prompt", LLM) is None
    assert cache.stats.misses == 2 and cache.stats.corrupt == 0 and cache.stats.errors == 0
    cache.clear()


@pytest.mark.parametrize(
    "value",
    [b"\x00garbage", b"[1,2]", b'{"v":99,"p":"p","l":"l","g":[]}', b'{"v":1,"g":[{"text":"x"}]}',
     b'{"v":1,"p":"p","l":"' + LLM.replace('"', '\\"').encode() + b'","g":[{"text":5}]}'],
)
def test_values_that_are_not_entries_are_corrupt_misses(redis_url: str, raw: redis.Redis, value: bytes) -> None:
    cache = RedisCache(redis_url=redis_url, namespace=unique())
    raw.set(cache._key("p", LLM), value)
    assert cache.lookup("p", LLM) is None
    assert cache.stats.corrupt == 1 and cache.stats.errors == 0
    cache.clear()


# What the admin connection itself sends while a test reads the command statistics.
_ADMIN_COMMANDS = {"cmdstat_info", "cmdstat_config|resetstat"}


def test_ttl_is_written_with_the_value_in_one_set() -> None:
    # A dedicated server: CONFIG RESETSTAT must not disturb anything else, and the command
    # statistics must count only what this cache sends.
    from llm_cache.testing.servers import RedisServer

    with RedisServer() as server, contextlib.closing(server.client()) as admin:
        cache = RedisCache(redis_url=server.url, namespace="ttl", ttl=30)
        cache.lookup("warm-up", LLM)  # the connection's handshake (HELLO, CLIENT SETINFO) first
        admin.config_resetstat()
        cache.update("p", LLM, sample_generations())
        stats = admin.info("commandstats")
        sent = {name for name in stats if name not in _ADMIN_COMMANDS}
        assert sent == {"cmdstat_set"}, sent  # no EXPIRE/PEXPIRE, no MULTI
        assert stats["cmdstat_set"]["calls"] == 1
        assert 29_000 < admin.pttl(cache._key("p", LLM)) <= 30_000
        # An update by a cache without TTL replaces the entry, expiry included.
        RedisCache(redis_url=server.url, namespace="ttl").update("p", LLM, sample_generations("2"))
        assert admin.pttl(cache._key("p", LLM)) == -1
        cache.close()


def test_hit_is_one_get() -> None:
    from llm_cache.testing.servers import RedisServer

    with RedisServer() as server, contextlib.closing(server.client()) as admin:
        cache = RedisCache(redis_url=server.url, namespace="hit")
        cache.update("p", LLM, sample_generations())
        cache.lookup("p", LLM)  # connection set-up (CLIENT SETINFO) happens before the reset
        admin.config_resetstat()
        assert cache.lookup("p", LLM) == sample_generations()
        stats = {k: v["calls"] for k, v in admin.info("commandstats").items() if k not in _ADMIN_COMMANDS}
        assert stats == {"cmdstat_get": 1}
        cache.close()


# -- clear and namespaces --------------------------------------------------------------------------------
def test_namespace_isolation_between_two_caches(redis_url: str) -> None:
    a = RedisCache(redis_url=redis_url, namespace=unique("a"))
    b = RedisCache(redis_url=redis_url, namespace=unique("b"))
    a.update("p", LLM, sample_generations("a"))
    b.update("p", LLM, sample_generations("b"))
    assert a.lookup("p", LLM) == sample_generations("a")
    assert b.lookup("p", LLM) == sample_generations("b")
    a.clear()
    assert a.lookup("p", LLM) is None
    assert b.lookup("p", LLM) == sample_generations("b")
    b.clear()


def test_clear_leaves_other_applications_keys(redis_url: str, raw: redis.Redis) -> None:
    ns = unique("app")
    cache = RedisCache(redis_url=redis_url, namespace=ns)
    sub = RedisCache(redis_url=redis_url, namespace=f"{ns}:v2")  # a namespace that starts like ours
    for i in range(30):
        cache.update(f"p{i}", LLM, sample_generations(str(i)))
    sub.update("p0", LLM, sample_generations("sub"))
    hexkey = cache_key_hex("x", LLM)
    foreign = {
        f"{ns}": b"1",
        f"{ns}:not-a-hash": b"2",
        f"{ns}:{hexkey}:suffix": b"3",
        f"{ns}:{hexkey.upper()}": b"4",
        f"{ns}x:{hexkey}": b"5",
        f"other-app:{ns}:{hexkey}": b"6",
    }
    for key, value in foreign.items():
        raw.set(key, value)
    raw.hset(f"{ns}:{'f' * 63}", "field", "hash of another app")  # 63 hex digits: not a cache key
    cache.clear()
    assert all(cache.lookup(f"p{i}", LLM) is None for i in range(30))
    assert {key: raw.get(key) for key in foreign} == foreign
    assert raw.hget(f"{ns}:{'f' * 63}", "field") == b"hash of another app"
    assert sub.lookup("p0", LLM) == sample_generations("sub")
    raw.delete(*foreign, f"{ns}:{'f' * 63}")
    sub.clear()


@pytest.mark.parametrize("namespace", ["app*", "a?p", "x[ab]", "back\\slash", "x]y", "ns:{tag}"])
def test_glob_characters_in_namespace_are_literal(redis_url: str, raw: redis.Redis, namespace: str) -> None:
    tag = unique("g")
    mine = RedisCache(redis_url=redis_url, namespace=f"{tag}{namespace}")
    # Namespaces that an unescaped pattern would also match.
    neighbours = {
        "app*": "apple",
        "a?p": "axp",
        "x[ab]": "xa",
        "back\\slash": "backslash",
        "x]y": "x]y2",
        "ns:{tag}": "ns:{tagx}",
    }
    other = RedisCache(redis_url=redis_url, namespace=f"{tag}{neighbours[namespace]}")
    mine.update("p", LLM, sample_generations("mine"))
    other.update("p", LLM, sample_generations("other"))
    if other.namespace != mine.namespace:
        mine.clear()
        assert mine.lookup("p", LLM) is None
        assert other.lookup("p", LLM) == sample_generations("other")
    other.clear()
    mine.clear()
    assert raw.keys(f"{tag}*") == []


def test_clear_in_batches_removes_everything(redis_url: str, raw: redis.Redis) -> None:
    ns = unique("many")
    cache = RedisCache(redis_url=redis_url, namespace=ns)
    with raw.pipeline(transaction=False) as pipe:
        for i in range(2_345):  # several SCAN pages and UNLINK batches
            pipe.set(cache._key(f"p{i}", LLM), b"{}")
        pipe.execute()
    cache.update("real", LLM, sample_generations())
    cache.clear()
    assert list(raw.scan_iter(match=f"{ns}:*", count=1000)) == []


def test_clear_never_flushes() -> None:
    from llm_cache.testing.servers import RedisServer

    with RedisServer() as server, contextlib.closing(server.client()) as admin:
        cache = RedisCache(redis_url=server.url, namespace="c")
        cache.update("p", LLM, sample_generations())
        admin.set("someone-else", "x")
        admin.config_resetstat()
        cache.clear()
        asyncio.run(cache.aclear())
        stats = admin.info("commandstats")
        assert not any("flush" in name for name in stats)
        assert "cmdstat_scan" in stats and stats["cmdstat_unlink"]["calls"] == 1
        assert admin.get("someone-else") == b"x"
        cache.close()


# -- Redis Cluster -----------------------------------------------------------------------------------------
def _keys_per_node(cluster: Any, pattern: str) -> list[int]:
    counts = []
    for host, port in cluster.startup_nodes:
        with contextlib.closing(redis.Redis(host=host, port=port)) as node:
            counts.append(sum(1 for _ in node.scan_iter(match=pattern, count=1000)))
    return counts


def test_cluster_clear_removes_keys_on_every_node(redis_cluster: Any) -> None:
    client = redis_cluster.client()
    ns = unique("cl")
    cache = RedisCache(client, namespace=ns)
    for i in range(90):
        cache.update(f"p{i}", LLM, sample_generations(str(i)))
    client.set(f"{ns}-other-app", "stay")
    before = _keys_per_node(redis_cluster, f"{ns}:*")
    assert len(before) == 3 and all(n > 0 for n in before), before  # the entries are spread
    assert sum(before) == 90
    cache.clear()
    assert _keys_per_node(redis_cluster, f"{ns}:*") == [0, 0, 0]
    assert client.get(f"{ns}-other-app") == b"stay"
    client.delete(f"{ns}-other-app")
    client.close()


def test_async_cluster_client_roundtrip_and_clear_on_every_node(redis_cluster: Any) -> None:
    ns = unique("acl")

    async def scenario() -> list[int]:
        nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in redis_cluster.startup_nodes]
        aclient = redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, socket_timeout=1.0)
        try:
            cache = RedisCache(async_redis=aclient, namespace=ns, ttl=60)
            for i in range(60):
                await cache.aupdate(f"p{i}", LLM, sample_generations(str(i)))
            assert await cache.alookup("p7", LLM) == sample_generations("7")
            # the sync twin, derived from the async client's settings, sees the same data
            assert cache.lookup("p8", LLM) == sample_generations("8")
            counts = _keys_per_node(redis_cluster, f"{ns}:*")
            await cache.aclear()
            assert await cache.alookup("p7", LLM) is None
            cache.close()
            return counts
        finally:
            await aclient.aclose()

    counts = asyncio.run(scenario())
    assert all(n > 0 for n in counts) and sum(counts) == 60
    assert _keys_per_node(redis_cluster, f"{ns}:*") == [0, 0, 0]


def test_cluster_async_twin_of_a_sync_cluster_client(redis_cluster: Any) -> None:
    client = redis_cluster.client()
    cache = RedisCache(client, namespace=unique("tw"))

    async def scenario() -> None:
        aclient = await cache._aclient()
        assert isinstance(aclient, redis.asyncio.cluster.RedisCluster)
        await cache.aupdate("p", LLM, sample_generations("async"))

    asyncio.run(scenario())
    assert cache.lookup("p", LLM) == sample_generations("async")
    cache.clear()
    client.close()


# -- async clients and event loops ------------------------------------------------------------------------------
def _connected_clients(admin: redis.Redis) -> int:
    return int(admin.info("clients")["connected_clients"])


def test_one_async_client_per_loop_closed_when_the_loop_ends() -> None:
    from llm_cache.testing.servers import RedisServer

    with RedisServer() as server, contextlib.closing(server.client()) as admin:
        admin.ping()
        baseline = _connected_clients(admin)  # just the admin connection
        cache = RedisCache(redis_url=server.url, namespace="loops")
        seen: list[Any] = []

        async def scenario(tag: str) -> None:
            await cache.aupdate(tag, LLM, sample_generations(tag))
            assert await cache.alookup(tag, LLM) == sample_generations(tag)
            seen.append(await cache._aclient())
            assert len(cache._aclients) == 1

        asyncio.run(scenario("first"))
        assert cache._aclients == {}  # closed and forgotten at the loop's shutdown
        asyncio.run(scenario("second"))  # a second loop gets a client of its own
        assert cache._aclients == {}
        assert seen[0] is not seen[1]
        # Both loops' connections were closed, not leaked: only the admin connection is left.
        deadline = time.monotonic() + 5
        while _connected_clients(admin) != baseline and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _connected_clients(admin) == baseline
        assert cache.lookup("first", LLM) == sample_generations("first")
        cache.close()


def test_loops_in_two_threads_at_once(redis_url: str) -> None:
    cache = RedisCache(redis_url=redis_url, namespace=unique("thr"))
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(tag: str) -> None:
        async def scenario() -> None:
            barrier.wait(5)
            for i in range(50):
                await cache.aupdate(f"{tag}{i}", LLM, sample_generations(tag))
                assert await cache.alookup(f"{tag}{i}", LLM) == sample_generations(tag)

        try:
            asyncio.run(scenario())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert cache.stats.errors == 0 and cache.stats.hits == 100
    cache.clear()


async def test_under_pytest_asyncio_and_aclose(redis_url: str) -> None:
    cache = RedisCache(redis_url=redis_url, namespace=unique("pa"))
    await cache.aupdate("p", LLM, sample_generations())
    assert await cache.alookup("p", LLM) == sample_generations()
    await cache.aclose()
    assert cache._aclients == {}
    assert await cache.alookup("p", LLM) == sample_generations()  # a new client for this loop
    await cache.aclear()
    await cache.aclose()


def test_user_async_client_is_used_as_given(redis_url: str) -> None:
    ns = unique("ua")

    async def scenario() -> None:
        aclient = redis.asyncio.Redis.from_url(redis_url)
        cache = RedisCache(async_redis=aclient, namespace=ns)
        assert await cache._aclient() is aclient
        await cache.aupdate("p", LLM, sample_generations())
        assert cache.lookup("p", LLM) == sample_generations()  # sync twin from its settings
        await cache.aclear()
        cache.close()
        assert await aclient.ping()  # not closed by the cache: it is the user's
        await aclient.aclose()

    asyncio.run(scenario())


def test_async_twin_carries_database_and_credentials(redis_server: Any, raw: redis.Redis) -> None:
    user, password = unique("user"), uuid.uuid4().hex
    raw.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    try:
        client = redis.Redis(host=redis_server.host, port=redis_server.port, db=5, username=user, password=password)
        cache = RedisCache(client, namespace=unique("cred"))

        async def scenario() -> str:
            await cache.aupdate("p", LLM, sample_generations())
            aclient = await cache._aclient()
            return await aclient.acl_whoami()

        assert asyncio.run(scenario()) in (user, user.encode())
        with contextlib.closing(redis.Redis(host=redis_server.host, port=redis_server.port, db=5)) as db5:
            assert db5.get(cache._key("p", LLM)) is not None
        assert raw.get(cache._key("p", LLM)) is None  # not in db 0
        cache.clear()
        client.close()
    finally:
        raw.acl_deluser(user)


# -- configuration ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("namespace", ["", " ", "a b", "tab\there", "new\nline", 5, None])
def test_bad_namespaces_are_refused(namespace: Any) -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        RedisCache(redis_url="redis://127.0.0.1:1/0", namespace=namespace)


def test_configuration_errors_say_what_to_do(redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="redis_url="):
        RedisCache()
    with pytest.raises(ConfigurationError, match="not both"):
        RedisCache(redis.Redis(), redis_url=redis_url)
    with pytest.raises(ConfigurationError, match="async_redis"):
        RedisCache(redis.asyncio.Redis())
    with pytest.raises(ConfigurationError, match="async_redis must be"):
        RedisCache(redis_url=redis_url, async_redis=redis.Redis())
    with pytest.raises(ConfigurationError, match="redis.Redis"):
        RedisCache("redis://localhost")  # a URL passed positionally
    with pytest.raises(ConfigurationError, match="ttl"):
        RedisCache(redis_url=redis_url, ttl=0)
    with pytest.raises(ConfigurationError, match="socket_timeout"):
        RedisCache(redis_url=redis_url, socket_timeout=-1)
    with pytest.raises(ConfigurationError, match="invalid redis_url"):
        RedisCache(redis_url="http://nope")


def test_sentinel_like_pool_only_refuses_async(redis_url: str) -> None:
    class SentinelishPool(redis.ConnectionPool):
        pass

    client = redis.Redis(connection_pool=SentinelishPool.from_url(redis_url))
    cache = RedisCache(client, namespace=unique("sp"))
    cache.update("p", LLM, sample_generations())  # sync works
    assert cache.lookup("p", LLM) == sample_generations()
    with pytest.raises(ConfigurationError, match="async_redis"):
        asyncio.run(cache.alookup("p", LLM))
    cache.clear()
    client.close()


def test_short_timeouts_by_default(redis_url: str) -> None:
    cache = RedisCache(redis_url=redis_url)
    kwargs = cache._client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.25 and kwargs["socket_connect_timeout"] == 0.25

    async def async_kwargs() -> dict[str, Any]:
        return dict((await cache._aclient()).connection_pool.connection_kwargs)

    akwargs = asyncio.run(async_kwargs())
    assert akwargs["socket_timeout"] == 0.25 and akwargs["socket_connect_timeout"] == 0.25
    custom = RedisCache(redis_url=redis_url, socket_timeout=2)
    assert custom._client.connection_pool.connection_kwargs["socket_timeout"] == 2.0


def test_repr_never_shows_a_password() -> None:
    cache = RedisCache(redis_url="redis://user:s3cret@127.0.0.1:6390/1", namespace="n")
    assert "s3cret" not in repr(cache) and "6390" in repr(cache)


def test_missing_redis_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'llm-cache\[redis\]'"):
        RedisCache(redis_url="redis://127.0.0.1:1/0")


def test_public_names() -> None:
    import llm_cache
    import llm_cache.caches

    assert llm_cache.caches.RedisCache is RedisCache
    assert llm_cache.RedisCache is RedisCache


def test_async_twin_of_a_unix_socket_client(tmp_path: Any) -> None:
    from llm_cache.testing.servers import RedisServer

    sock = tmp_path / "redis.sock"
    with RedisServer(extra_args=["--unixsocket", str(sock), "--unixsocketperm", "700"]) as server:
        client = redis.Redis(unix_socket_path=str(sock), db=1)
        cache = RedisCache(client, namespace="unix")

        async def scenario() -> None:
            aclient = await cache._aclient()
            assert aclient.connection_pool.connection_kwargs["path"] == str(sock)
            await cache.aupdate("p", LLM, sample_generations("unix"))

        asyncio.run(scenario())
        assert cache.lookup("p", LLM) == sample_generations("unix")
        with contextlib.closing(redis.Redis(host=server.host, port=server.port, db=1)) as tcp:
            assert tcp.get(cache._key("p", LLM)) is not None  # db 1 carried over
        client.close()


# -- listing (entries / count, used by the CLI's inspection layer) -------------------------------------------
@pytest.mark.parametrize("where", ["standalone", "cluster"])
def test_entries_and_count(where: str, request: pytest.FixtureRequest, raw: redis.Redis) -> None:
    from llm_cache.inspection import count_entries, iter_entries

    if where == "cluster":
        client = request.getfixturevalue("redis_cluster").client()
    else:
        client = raw
    ns = unique("ls")
    forever = RedisCache(client, namespace=ns)
    for i in range(1_100):  # more than one pipelined batch
        forever.update(f"p{i}", LLM, sample_generations(str(i)))
    RedisCache(client, namespace=ns, ttl=100).update("ttl", LLM, sample_generations("t"))
    client.set(forever._key("bad", LLM), b"not json")  # skipped with a warning
    RedisCache(client, namespace=ns + "x").update("elsewhere", LLM, sample_generations())
    entries = {e.prompt: e for e in forever.entries()}
    assert len(entries) == 1_101
    assert entries["p7"].generations == sample_generations("7") and entries["p7"].llm_string == LLM
    assert entries["p7"].expires_at is None
    assert 90 < entries["ttl"].expires_at - time.time() <= 100
    assert forever.count() == 1_102  # counts keys, the bad one included
    assert count_entries(forever) == 1_102
    assert {e.prompt for e in iter_entries(forever)} == set(entries)
    forever.clear()
    RedisCache(client, namespace=ns + "x").clear()
    assert forever.count() == 0
    if where == "cluster":
        client.close()
