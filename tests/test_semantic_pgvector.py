"""PGVectorStore / PGVectorSemanticCache on the session's real PostgreSQL + pgvector.

The store-level contract runs in tests/test_vector_stores.py; this module covers what is
specific to PostgreSQL (query plans, the extension, the table's dimension, text PostgreSQL
cannot hold, purging, engines) and runs the cache contract and semantic behaviour on
PGVectorSemanticCache with the offline LocalEmbeddings.
"""

from __future__ import annotations

import threading
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

from llm_cache.errors import ConfigurationError
from llm_cache.generation import Generation
from llm_cache.keys import cache_key_hex
from llm_cache.testing.semantic_contract import SemanticCacheContract, shared_embeddings
from llm_cache.testing.vector_store_contract import make_entry, vector_at

sa = pytest.importorskip("sqlalchemy")
np = pytest.importorskip("numpy")
pytest.importorskip("pgvector")

pytestmark = pytest.mark.postgres

LLM = '{"model":"m","provider":"test","temperature":0}'
D = 32


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Any]:
    e = sa.create_engine(postgres_url)
    yield e
    e.dispose()


@pytest.fixture
def make_store(postgres_url: str, engine: Any) -> Iterator[Callable[..., Any]]:
    """Stores on a table of their own (dropped afterwards) unless ``table=`` is given."""
    from llm_cache.semantic.stores.pgvector import PGVectorStore

    made: list[Any] = []
    tables: set[str] = set()

    def factory(**kwargs: Any) -> Any:
        if "table" not in kwargs:
            kwargs["table"] = f"t_sem_{uuid.uuid4().hex[:10]}"
            tables.add(kwargs["table"])
        kwargs.setdefault("dimension", D)
        kwargs.setdefault("namespace", "default")
        store = PGVectorStore(kwargs.pop("engine_or_url", postgres_url), **kwargs)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()
    with engine.begin() as conn:
        for table in tables:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))


@pytest.fixture(scope="module")
def embedding() -> Any:
    return shared_embeddings()


# -- schema --------------------------------------------------------------------------------------
def test_schema_table_and_indexes(make_store: Any, engine: Any) -> None:
    store = make_store(hnsw_m=8, hnsw_ef_construction=32)
    name = store.table.name
    with engine.connect() as conn:
        indexes = dict(
            conn.execute(
                sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"),
                {"t": name},
            ).all()
        )
        column = conn.execute(
            sa.text(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = to_regclass(:t) AND attname = 'embedding'"
            ),
            {"t": name},
        ).scalar()
    assert column == f"vector({D})"
    hnsw = indexes[f"{name}_embedding_hnsw"]
    assert (
        "USING hnsw (embedding vector_cosine_ops)" in hnsw
        and "m='8'" in hnsw
        and "ef_construction='32'" in hnsw
    )
    assert "(namespace, partition)" in indexes[f"{name}_partition_idx"]
    assert "WHERE (expires_at IS NOT NULL)" in indexes[f"{name}_expires_idx"]
    assert f"{name}_pkey" in indexes


def test_two_stores_creating_one_table_at_once(make_store: Any, postgres_url: str) -> None:
    from llm_cache.semantic.stores.pgvector import PGVectorStore

    table = make_store().table.name + "_race"
    errors: list[BaseException] = []
    made: list[Any] = []

    def create() -> None:
        try:
            made.append(PGVectorStore(postgres_url, table=table, dimension=D))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        made[0].add(make_entry("a"), vector_at(1.0, D))
        assert made[1].get(make_entry("a").key) is not None
    finally:
        with made[0].engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
        for store in made:
            store.close()


def test_schema_qualified_table(make_store: Any, engine: Any) -> None:
    schema = f"s_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        store = make_store(table=f"{schema}.entries")
        store.add(make_entry("a"), vector_at(1.0, D))
        assert [n.entry.prompt for n in store.search("p1", vector_at(1.0, D))] == ["a"]
        with engine.connect() as conn:
            assert conn.execute(sa.text(f'SELECT count(*) FROM "{schema}".entries')).scalar() == 1
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


def test_table_of_another_dimension_is_refused(make_store: Any) -> None:
    store = make_store()
    with pytest.raises(ConfigurationError, match=r"vector\(32\).*vector\(64\)|another table"):
        make_store(table=store.table.name, dimension=64)


def test_bad_arguments(make_store: Any, postgres_url: str) -> None:
    from llm_cache.semantic.stores.pgvector import PGVectorStore

    for bad in ('x"; DROP TABLE users; --', "a.b.c", "1abc", ""):
        with pytest.raises(ConfigurationError, match="table"):
            PGVectorStore(postgres_url, table=bad, dimension=D)
    with pytest.raises(ConfigurationError, match="dimension"):
        PGVectorStore(postgres_url, dimension=0)
    with pytest.raises(ConfigurationError, match="iterative_scan"):
        PGVectorStore(postgres_url, dimension=D, iterative_scan="fast")
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        PGVectorStore(sa.create_engine("sqlite://"), dimension=D)
    store = make_store()
    with pytest.raises(ConfigurationError, match="dimension"):
        store.add(make_entry("a"), np.ones(D + 1, dtype=np.float32))
    with pytest.raises(ConfigurationError, match="NaN"):
        store.add(make_entry("a"), np.full(D, np.nan, dtype=np.float32))


def test_missing_extension_that_cannot_be_created(postgres_server: Any, postgres_url: str) -> None:
    """A database without pgvector, as a user who may not create it: a ConfigurationError."""
    import psycopg

    from llm_cache.semantic.stores.pgvector import PGVectorStore

    if not postgres_server.managed:
        pytest.skip("needs the session's own server (a non-superuser test role with CREATEDB)")
    dbname = f"novec_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    url = postgres_url.rsplit("/", 1)[0] + "/" + dbname
    try:
        with pytest.raises(ConfigurationError, match="CREATE EXTENSION vector") as info:
            PGVectorStore(url, dimension=D)
        print("\n", info.value)
        with pytest.raises(ConfigurationError, match="not installed"):
            PGVectorStore(url, dimension=D, create_extension=False)
    finally:
        with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')


def test_database_down_at_construction_fails_open(caplog: Any) -> None:
    from llm_cache.semantic.stores.pgvector import PGVectorStore
    from llm_cache.testing.servers import free_port

    url = f"postgresql://nobody:secret@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    store = PGVectorStore(url, dimension=D)  # no raise: the cache will miss until it is up
    assert "could not reach the database" in caplog.text
    assert "secret" not in caplog.text and "secret" not in repr(store)
    with pytest.raises(sa.exc.OperationalError):
        store.get(make_entry("a").key)
    store.close()


# -- query plans ---------------------------------------------------------------------------------
def test_query_plans_and_iterative_scan(make_store: Any, engine: Any) -> None:
    """Large partition: the HNSW index with the filter; small one: the btree, exact.

    Also shows why the store turns on ``hnsw.iterative_scan``: on a partition that is ~16 %
    of the table, the HNSW scan without it keeps ef_search=40 candidates, the WHERE clause
    leaves ~6 of them, and a search for k=10 comes back short.
    """
    store = make_store()
    name = store.table.name
    rng = np.random.default_rng(0)
    sizes = {"big": 3000, "mid": 600, "small": 30}
    vectors = rng.normal(size=(sum(sizes.values()), D)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    parts = [p for p, n in sizes.items() for _ in range(n)]
    rows = [
        {
            "namespace": "default",
            "key": cache_key_hex(f"e{i}", LLM),
            "partition": p,
            "text": f"e{i}",
            "prompt": f"e{i}",
            "llm_string": LLM,
            "response": "r",
            "created_at": 0.0,
            "expires_at": None,
            "embedding": v.tolist(),
        }
        for i, (p, v) in enumerate(zip(parts, vectors))
    ]
    hnsw = next(ix for ix in store.table.indexes if ix.name.endswith("_embedding_hnsw"))
    began = time.perf_counter()
    with engine.begin() as conn:
        hnsw.drop(
            conn
        )  # a bulk load then one index build is much faster than 3,630 inserts into it
        conn.execute(store.table.insert(), rows)
        hnsw.create(conn)
        conn.execute(sa.text(f'ANALYZE "{name}"'))
    print(f"\nloaded {len(rows)} rows and built the index in {time.perf_counter() - began:.1f} s")

    plans = {p: store.explain(p, vectors[0], k=10) for p in sizes}
    for p, plan in plans.items():
        print(p, [line.strip() for line in plan.splitlines() if "Scan" in line])
    assert f"{name}_embedding_hnsw" in plans["big"]
    assert f"{name}_partition_idx" in plans["small"] and "embedding_hnsw" not in plans["small"]

    mid = [i for i, p in enumerate(parts) if p == "mid"]
    queries = vectors[mid[:25]]
    relaxed = [store.search("mid", q, k=10) for q in queries]
    assert all(len(found) == 10 for found in relaxed)
    assert all(all(n.entry.partition == "mid" for n in found) for found in relaxed)
    assert all(
        [n.similarity for n in f] == sorted((n.similarity for n in f), reverse=True)
        for f in relaxed
    )
    # the query vector is itself in the partition: it must come first, similarity 1
    assert sum(f[0].entry.prompt == f"e{i}" for f, i in zip(relaxed, mid)) >= 24
    plain = make_store(table=name, iterative_scan="off")
    short = [len(plain.search("mid", q, k=10)) for q in queries]
    print(
        f"k=10 on 'mid': relaxed_order always 10; off: mean {np.mean(short):.2f}, min {min(short)}"
    )
    if f"{name}_embedding_hnsw" in plans["mid"]:
        assert min(short) < 10


# -- values PostgreSQL text cannot hold ----------------------------------------------------------
def test_nul_and_lone_surrogates_round_trip(make_store: Any) -> None:
    from llm_cache.semantic.stores.base import SemanticEntry

    store = make_store()
    odd = SemanticEntry(
        key=cache_key_hex("nul\x00 and \ud800", LLM),
        partition="part\x00ition",
        text="a NUL \x00 here and a lone surrogate \udfff there",
        prompt="nul\x00 and \ud800",
        llm_string=LLM + "\x00",
        response='{"v":1,"g":[{"text":"\\u0000"}]}\x00',
        created_at=1.5,
        expires_at=None,
    )
    marker = make_entry("m", text='\ue000llmc:"not escaped"')
    store.add(odd, vector_at(1.0, D))
    store.add(marker, vector_at(1.0, D))
    assert store.get(odd.key) == odd
    assert store.get(marker.key) == marker
    assert [n.entry for n in store.search("part\x00ition", vector_at(1.0, D))] == [odd]


# -- expiry purge --------------------------------------------------------------------------------
def test_expired_rows_are_purged_by_later_writes(make_store: Any) -> None:
    clock = FakeClock()
    store = make_store(clock=clock)
    for i in range(5):
        store.add(make_entry(f"old{i}", expires_at=clock.now + 10), vector_at(0.5, D))
    store.add(make_entry("keep"), vector_at(0.5, D))
    assert store.count() == 6
    clock.now += 61  # past the entries' expiry and the purge interval
    assert store.count() == 6  # expired rows stay until a purge ...
    assert [n.entry.prompt for n in store.search("p1", vector_at(1.0, D), k=10)] == [
        "keep"
    ]  # ... never returned
    store.add(make_entry("new"), vector_at(0.5, D))
    assert store.count() == 2


def test_concurrent_upserts_of_one_key(make_store: Any) -> None:
    store = make_store()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                store.add(make_entry("same", response=f"{n}-{i}"), vector_at(0.1 * (i % 10), D))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 1


def test_an_engine_passed_in_is_used_but_not_changed_or_disposed(
    make_store: Any, engine: Any
) -> None:
    store = make_store(engine_or_url=engine, ef_search=77)
    store.add(make_entry("a"), vector_at(1.0, D))
    assert len(store.search("p1", vector_at(1.0, D))) == 1
    # the store's own connections carry the search settings, in autocommit ...
    with store._fast.connect() as conn:
        assert conn.exec_driver_sql("SHOW hnsw.ef_search").scalar() == "77"
        assert conn.exec_driver_sql("SHOW hnsw.iterative_scan").scalar() == "relaxed_order"
        assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
        assert conn.connection.driver_connection.autocommit
    # ... and the connections of the engine passed in do not
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "auto"
        assert not conn.connection.driver_connection.autocommit
    store.ping()
    store.close()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1


# -- PGVectorSemanticCache -----------------------------------------------------------------------
@pytest.fixture
def make_cache(postgres_url: str, engine: Any) -> Iterator[Callable[..., Any]]:
    from llm_cache.semantic.stores.pgvector import PGVectorSemanticCache

    made: list[Any] = []
    table = f"t_semc_{uuid.uuid4().hex[:8]}"

    def factory(**kwargs: Any) -> Any:
        kwargs.setdefault("namespace", f"ns-{uuid.uuid4().hex[:8]}")
        kwargs.setdefault("table", table)
        kwargs.setdefault("embedding", shared_embeddings())
        cache = PGVectorSemanticCache(postgres_url, **kwargs)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        cache.close()
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))


class TestPGVectorSemantic(SemanticCacheContract):
    """The exact-cache contract and the semantic suite on PGVectorSemanticCache (fake clock)."""

    @pytest.fixture
    def cache_factory(self, make_cache: Callable[..., Any]) -> Callable[..., Any]:
        clock = FakeClock()
        namespaces: dict[str, str] = {}

        def factory(namespace: str = "default", ttl: float | None = None, **kwargs: Any) -> Any:
            ns = namespaces.setdefault(namespace, f"ns-{uuid.uuid4().hex[:8]}")
            return make_cache(namespace=ns, ttl=ttl, clock=clock, **kwargs)

        return factory

    def advance(self, cache: Any, seconds: float) -> None:
        cache._clock.now += seconds

    def corrupt(self, cache: Any, prompt: str, llm_string: str) -> None:
        from llm_cache.semantic.partition import split_prompt

        store = cache.store
        t = store.table
        with store.engine.begin() as conn:
            done = conn.execute(
                t.update()
                .where(
                    t.c.namespace == store.namespace,
                    t.c.key == split_prompt(prompt, llm_string).key,
                )
                .values(response="{not json")
            )
            assert done.rowcount == 1

    def process_source(self, cache: Any) -> str:
        url = cache.store.engine.url.render_as_string(hide_password=False)
        return (
            "from llm_cache.semantic.stores.pgvector import PGVectorSemanticCache\n"
            "from llm_cache.semantic.embeddings import LocalEmbeddings\n"
            "def make_cache():\n"
            f"    return PGVectorSemanticCache({url!r}, embedding=LocalEmbeddings(),\n"
            f"                                 table={cache.store.table.name!r}, namespace={cache.namespace!r})\n"
        )


def test_namespaces_share_the_table_not_the_entries(make_cache: Any) -> None:
    first, second = make_cache(), make_cache()
    assert first.store.table.name == second.store.table.name
    first.update("How do I reverse a list in Python?", LLM, [Generation("first")])
    assert second.lookup("How can I reverse a list in Python?", LLM) is None
    second.update("How do I reverse a list in Python?", LLM, [Generation("second")])
    second.clear()
    assert second.count() == 0 and first.count() == 1
    assert first.lookup("How can I reverse a list in Python?", LLM)[0].text == "first"


def test_server_down_is_a_miss_and_recovers(make_cache: Any, postgres_server: Any) -> None:
    if not postgres_server.managed:
        pytest.skip("the PostgreSQL server comes from POSTGRES_URL and cannot be stopped here")
    cache = make_cache()
    cache.update("How do I reverse a list in Python?", LLM, [Generation("x[::-1]")])
    with postgres_server.stopped():
        assert cache.lookup("How do I reverse a list in Python?", LLM) is None
        cache.update("What is the capital of France?", LLM, [Generation("Paris")])  # no raise
        assert cache.stats.errors >= 1
    deadline = time.monotonic() + 20
    while cache.breaker.is_open and time.monotonic() < deadline:
        time.sleep(0.1)
    # the data survived the restart (same data directory)
    assert cache.lookup("How do I reverse a list in Python?", LLM)[0].text == "x[::-1]"
