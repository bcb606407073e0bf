"""SQLAlchemyCache on real databases: SQLite (file), PostgreSQL 18, MariaDB.

Run: PYTHONPATH=src:tests pytest -p servers_fixtures tests/test_sqlalchemy_cache.py
(``postgres_url`` and ``mysql_url`` come from servers_fixtures; the MariaDB tests skip locally
when MYSQL_URL is unset: ``export $(bash .ci/mariadb.sh | tail -1)`` starts one.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import string
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Computed,
    Double,
    Index,
    Integer,
    Sequence,
    String,
    create_engine,
    select,
    text,
    update,
)
from sqlalchemy.dialects.mysql import LONGTEXT
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import declarative_base as orm_declarative_base

# --- the seed's custom schema, exactly as LangChain's notebook writes it -------------------------
from sqlalchemy_utils import TSVectorType

from llm_cache import Generation, set_llm_cache
from llm_cache.caches.sql import FullLLMCache, SQLAlchemyCache
from llm_cache.errors import ConfigurationError
from llm_cache.keys import cache_key_hex
from llm_cache.llms import OpenAI
from llm_cache.testing.contract import LLM, CacheContract, sample_generations, tracked_factory

with warnings.catch_warnings():
    # ext.declarative's declarative_base is deprecated (MovedIn20Warning), but it is the seed's.
    warnings.simplefilter("ignore")
    from sqlalchemy.ext.declarative import declarative_base

    Base = declarative_base()


class FulltextLLMCache(Base):  # type: ignore[misc, valid-type]
    """Postgres table for fulltext-indexed LLM Cache"""

    __tablename__ = "llm_cache_fulltext"
    id = Column(Integer, Sequence("cache_id"), primary_key=True)
    prompt = Column(String, nullable=False)
    llm = Column(String, nullable=False)
    idx = Column(Integer)
    response = Column(String)
    prompt_llm_idx = Column(
        TSVectorType(),
        Computed(
            "to_tsvector('english', llm || ' ' || prompt)",
            persisted=True,
        ),
    )
    __table_args__ = (Index("idx_fulltext_prompt_tsv", prompt_llm_idx, postgresql_using="gin"),)


# --- a LangChain-shaped user schema with namespace and TTL columns, for MariaDB and SQLite ----------
UserBase = orm_declarative_base()


class UserLLMCache(UserBase):  # type: ignore[misc, valid-type]
    __tablename__ = "llm_cache_user_rows"
    id = Column(Integer, primary_key=True, autoincrement=True)
    namespace = Column(String(128), nullable=False)
    prompt = Column(String(10).with_variant(LONGTEXT(), "mysql", "mariadb"), nullable=False)
    llm = Column(String(10).with_variant(LONGTEXT(), "mysql", "mariadb"), nullable=False)
    idx = Column(Integer)
    response = Column(String(10).with_variant(LONGTEXT(), "mysql", "mariadb"))
    expires_at = Column(Double)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# Seconds each store call may take in the contract tests (see _SQLContract.factory_on).
CONTRACT_TIMEOUT = 30.0

def unique(tag: str = "t") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


def incompressible(size: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_letters + string.digits + " ", k=size))


# --- the shared contract -------------------------------------------------------------------------------
class _SQLContract(CacheContract):
    """Fake clock for TTL; corruption by rewriting ``response`` behind the cache's back."""

    def advance(self, cache: SQLAlchemyCache, seconds: float) -> None:  # type: ignore[override]
        cache._clock.now += seconds  # type: ignore[attr-defined]

    def corrupt(self, cache: SQLAlchemyCache, prompt: str, llm_string: str) -> None:  # type: ignore[override]
        t = cache.info.table
        stmt = update(t).values(response="{not json")
        if cache.info.keyed:
            stmt = stmt.where(
                t.c.namespace == cache.namespace, t.c.key_hash == cache_key_hex(prompt, llm_string)
            )
        else:
            stmt = stmt.where(t.c.prompt == prompt, t.c.llm == llm_string)
        with cache.engine.begin() as conn:
            assert conn.execute(stmt).rowcount >= 1

    def test_async_runs_the_sync_path_in_a_worker_thread(self, cache: SQLAlchemyCache) -> None:
        """Without an async engine of the user's, async calls never block the event loop:
        the sync operations run in worker threads (measured faster than async drivers)."""
        if cache.async_engine is not None:
            pytest.skip("an async engine passed in is used natively")
        ran_in: list[int] = []
        for name in ("_raw", "_core"):
            original = getattr(cache, name)

            def spy(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                ran_in.append(threading.get_ident())
                return _original(*args, **kwargs)

            setattr(cache, name, spy)

        async def scenario() -> int:
            await cache.aupdate("p", LLM, sample_generations("a", n=2))
            assert await cache.alookup("p", LLM) == sample_generations("a", n=2)
            await cache.aclear()
            return threading.get_ident()

        loop_thread = asyncio.run(scenario())
        assert len(ran_in) >= 3 and loop_thread not in ran_in

    @staticmethod
    @contextlib.contextmanager
    def factory_on(
        url: str, schema: Any = FullLLMCache, **extra: Any
    ) -> Iterator[Callable[..., SQLAlchemyCache]]:
        """Caches on one engine of ``url``, in namespaces of their own, a fake clock for TTL.

        The contract is about what is stored, not how fast: a generous timeout keeps its
        concurrency tests (8 threads contending for row locks) from timing out on a loaded
        machine. The default timeout is tested in test_store_hardening.py and test_chaos.py.
        """
        engine = create_engine(url)
        base, clock = unique(), FakeClock()
        extra.setdefault("timeout", CONTRACT_TIMEOUT)
        with tracked_factory(
            lambda ns, ttl: SQLAlchemyCache(
                engine, schema, namespace=f"{base}:{ns}", ttl=ttl, clock=clock, **extra
            )
        ) as factory:
            yield factory
        engine.dispose()


class TestSQLiteFileContract(_SQLContract):
    @pytest.fixture
    def cache_factory(self, tmp_path: Path) -> Iterator[Callable[..., SQLAlchemyCache]]:
        with self.factory_on(f"sqlite:///{tmp_path / 'cache.db'}") as factory:
            yield factory


class TestSQLiteUserSchemaContract(_SQLContract):
    """A LangChain-shaped user schema (no key_hash) with namespace and expires_at columns."""

    @pytest.fixture
    def cache_factory(self, tmp_path: Path) -> Iterator[Callable[..., SQLAlchemyCache]]:
        with self.factory_on(f"sqlite:///{tmp_path / 'user.db'}", UserLLMCache) as factory:
            yield factory


@pytest.mark.postgres
class TestPostgresContract(_SQLContract):
    @pytest.fixture
    def cache_factory(self, postgres_url: str) -> Iterator[Callable[..., SQLAlchemyCache]]:
        with self.factory_on(postgres_url) as factory:
            yield factory


@pytest.mark.postgres
class TestPostgresUserAsyncEngineContract(_SQLContract):
    """An AsyncEngine the user made, passed as async_engine= (one event loop per test)."""

    @pytest.fixture
    def cache_factory(self, postgres_url: str) -> Iterator[Callable[..., SQLAlchemyCache]]:
        from sqlalchemy.ext.asyncio import create_async_engine

        async_engine = create_async_engine(
            postgres_url, poolclass=__import__("sqlalchemy").pool.NullPool
        )
        with self.factory_on(postgres_url, async_engine=async_engine) as factory:
            yield factory
        asyncio.run(async_engine.dispose())


@pytest.mark.postgres
class TestPostgresFulltextContract(_SQLContract):
    """The seed's FulltextLLMCache, as written: no namespace or TTL columns."""

    shares_namespaces = False

    @pytest.fixture
    def cache_factory(self, postgres_url: str) -> Iterator[Callable[..., SQLAlchemyCache]]:
        engine = create_engine(postgres_url)
        clock = FakeClock()
        with _fulltext_lock, tracked_factory(  # one table for every test: never two at once
            lambda ns, ttl: SQLAlchemyCache(engine, FulltextLLMCache, ttl=ttl, clock=clock)
        ) as factory:
            factory().clear()
            yield factory
        engine.dispose()

    def test_ttl_expires_entries(self, cache_factory: Callable[..., SQLAlchemyCache]) -> None:  # type: ignore[override]
        with pytest.raises(ConfigurationError, match="expires_at"):
            cache_factory(ttl=0.5)

    def test_update_restarts_ttl(self) -> None:  # type: ignore[override]
        pytest.skip("this schema has no expires_at column (checked by test_ttl_expires_entries)")


_fulltext_lock = threading.Lock()


@pytest.mark.mysql
class TestMariaDBContract(_SQLContract):
    @pytest.fixture
    def cache_factory(self, mysql_url: str) -> Iterator[Callable[..., SQLAlchemyCache]]:
        with self.factory_on(mysql_url) as factory:
            yield factory


@pytest.mark.mysql
class TestMariaDBUserSchemaContract(_SQLContract):
    """A LangChain-shaped user schema on MariaDB: the GET_LOCK + DELETE + INSERT path."""

    @pytest.fixture
    def cache_factory(self, mysql_url: str) -> Iterator[Callable[..., SQLAlchemyCache]]:
        with self.factory_on(mysql_url, UserLLMCache) as factory:
            yield factory


# --- the seed's schema on PostgreSQL ----------------------------------------------------------------------
@pytest.fixture
def fulltext(postgres_url: str) -> Iterator[SQLAlchemyCache]:
    engine = create_engine(postgres_url)
    with _fulltext_lock:
        cache = SQLAlchemyCache(engine, FulltextLLMCache)
        cache.clear()
        yield cache
        cache.clear()
    engine.dispose()


@pytest.mark.postgres
def test_fulltext_schema_with_a_model_exactly_as_the_notebook(
    postgres_url: str, upstream: Any
) -> None:
    engine = create_engine(postgres_url)
    with _fulltext_lock:
        set_llm_cache(SQLAlchemyCache(engine, FulltextLLMCache))
        llm = OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0, n=2, best_of=2)
        first = llm.generate(["Tell me a joke about databases"])
        again = llm.generate(["Tell me a joke about databases"])
        assert again.generations == first.generations and again.cached == [True]
        assert upstream.request_count == 1
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT idx, response, prompt_llm_idx::text FROM llm_cache_fulltext WHERE prompt = :p ORDER BY idx"
                ),
                {"p": "Tell me a joke about databases"},
            ).all()
        # One row per generation, each response one generation's JSON (never a pickle).
        assert [r[0] for r in rows] == [0, 1]
        assert [Generation.from_dict(json.loads(r[1])) for r in rows] == first.generations[0]
        assert "'joke'" in rows[0][2] and "'databas'" in rows[0][2]  # the computed tsvector column
        SQLAlchemyCache(engine, FulltextLLMCache).clear()
    engine.dispose()


def explain(conn: Any, stmt: Any, values: dict[str, Any] | None = None) -> str:
    """PostgreSQL's plan of ``stmt`` with its parameters bound as the cache binds them."""
    compiled = stmt.compile(conn)
    rows = conn.exec_driver_sql("EXPLAIN " + compiled.string, {**compiled.params, **(values or {})})
    return "\n".join(r[0] for r in rows)


@pytest.mark.postgres
def test_fulltext_search(fulltext: SQLAlchemyCache) -> None:
    fulltext.update("What is the weather forecast for Paris tomorrow?", LLM, [Generation("Sunny.")])
    fulltext.update(
        "Summarise the state of the union address",
        LLM,
        [Generation("A speech."), Generation("Two.")],
    )
    fulltext.update("Tell me a joke about the weather", LLM, [Generation("Cloudy humour.")])

    hits = fulltext.search("weather forecast")
    assert [h.prompt for h in hits] == ["What is the weather forecast for Paris tomorrow?"]
    assert (
        hits[0].generations == [Generation("Sunny.")]
        and hits[0].llm_string == LLM
        and hits[0].rank > 0
    )

    weather = fulltext.search("weather")
    assert {h.prompt for h in weather} == {
        "What is the weather forecast for Paris tomorrow?",
        "Tell me a joke about the weather",
    }
    assert fulltext.search('"state of the union"')[0].generations == [
        Generation("A speech."),
        Generation("Two."),
    ]
    assert fulltext.search("weather -joke")[0].prompt.startswith("What is the weather")
    assert fulltext.search("nothing matches this") == []


@pytest.mark.postgres
def test_fulltext_asearch_matches_search_on_the_async_driver(fulltext: SQLAlchemyCache) -> None:
    fulltext.update("What is the weather forecast for Paris tomorrow?", LLM, [Generation("Sunny.")])
    fulltext.update("Tell me a joke about the weather", LLM, [Generation("Cloudy humour.")])

    async def scenario() -> None:
        hits = await fulltext.asearch("weather", limit=5)
        assert hits == fulltext.search("weather", limit=5) and len(hits) == 2
        assert (await fulltext.asearch("forecast"))[0].generations == [Generation("Sunny.")]

    asyncio.run(scenario())


@pytest.mark.postgres
def test_fulltext_documented_query_uses_the_gin_index(fulltext: SQLAlchemyCache) -> None:
    """The query in the module docstring, run as written, and the GIN index can serve it."""
    from sqlalchemy import cast, desc, func
    from sqlalchemy.dialects.postgresql import REGCONFIG

    fulltext.update("What is the weather forecast for Paris tomorrow?", LLM, [Generation("Sunny.")])
    q = func.websearch_to_tsquery(cast("english", REGCONFIG), "weather forecast")
    stmt = (
        select(
            FulltextLLMCache.prompt,
            FulltextLLMCache.llm,
            func.ts_rank(FulltextLLMCache.prompt_llm_idx, q),
        )
        .where(FulltextLLMCache.prompt_llm_idx.op("@@")(q), FulltextLLMCache.idx == 0)
        .order_by(desc(func.ts_rank(FulltextLLMCache.prompt_llm_idx, q)))
        .limit(10)
    )
    with fulltext.engine.connect() as conn:
        assert conn.execute(stmt).all()[0][0] == "What is the weather forecast for Paris tomorrow?"
        conn.execute(text("SET enable_seqscan = off"))
        plan = explain(conn, stmt)
    assert "idx_fulltext_prompt_tsv" in plan


@pytest.mark.postgres
def test_plain_schema_lookup_uses_an_md5_index_not_the_text(fulltext: SQLAlchemyCache) -> None:
    assert fulltext._md5_index
    with fulltext.engine.connect() as conn:
        indexes = dict(
            conn.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'llm_cache_fulltext'"
                )
            ).all()
        )
        assert "md5((prompt)::text)" in indexes["ix_llm_cache_fulltext_llm_cache_md5"]
        assert not any("(prompt)" in d and "md5" not in d for d in indexes.values())
        conn.execute(text("SET enable_seqscan = off"))
        clauses, values = fulltext._where_entry("p", LLM)
        t = fulltext.info.table
        stmt = select(t.c.response).where(*clauses)
        plan = explain(conn, stmt, values)
    assert "ix_llm_cache_fulltext_llm_cache_md5" in plan


@pytest.mark.postgres
def test_fulltext_replace_with_fewer_generations_leaves_no_rows(fulltext: SQLAlchemyCache) -> None:
    fulltext.update("p", LLM, sample_generations("old", n=4))
    fulltext.update("p", LLM, sample_generations("new", n=1))
    with fulltext.engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM llm_cache_fulltext WHERE prompt = 'p'")
            ).scalar()
            == 1
        )


@pytest.mark.postgres
def test_fulltext_user_schema_refuses_namespace(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    with pytest.raises(ConfigurationError, match="namespace column"):
        SQLAlchemyCache(engine, FulltextLLMCache, namespace="mine")
    engine.dispose()


# --- large prompts: the hash is indexed, never the text ---------------------------------------------------
def _large_prompt_roundtrip(cache: SQLAlchemyCache) -> None:
    prompt = incompressible(210_000)  # random text: a B-tree on it would fail on PostgreSQL
    llm = LLM + incompressible(5_000, seed=3)
    cache.update(prompt, llm, sample_generations("big", n=2))
    assert cache.lookup(prompt, llm) == sample_generations("big", n=2)
    assert cache.lookup(prompt[:-1] + "!", llm) is None
    assert cache.stats.errors == 0


@pytest.mark.postgres
def test_large_prompt_postgres(postgres_url: str, fulltext: SQLAlchemyCache) -> None:
    engine = create_engine(postgres_url)
    _large_prompt_roundtrip(SQLAlchemyCache(engine, namespace=unique(), timeout=CONTRACT_TIMEOUT))
    _large_prompt_roundtrip(fulltext)
    engine.dispose()


@pytest.mark.mysql
def test_large_prompt_mariadb(mysql_url: str) -> None:
    engine = create_engine(mysql_url)
    for schema in (FullLLMCache, UserLLMCache):
        cache = SQLAlchemyCache(engine, schema, namespace=unique())
        _large_prompt_roundtrip(cache)
        cache.clear()
    engine.dispose()


def test_large_prompt_sqlite(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'big.db'}")
    _large_prompt_roundtrip(SQLAlchemyCache(engine))
    engine.dispose()


# --- concurrent writers -----------------------------------------------------------------------------------
def _hammer(cache: SQLAlchemyCache, prompts: list[str], threads: int = 8, rounds: int = 15) -> None:
    """Threads rewrite the same entries with 1..4 generations each; every entry must end whole.

    The caches get CONTRACT_TIMEOUT: this checks what ends up stored, and 8 writers taking
    turns on one row lock may wait longer than the default timeout on a loaded machine.
    """
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker(w: int) -> None:
        rng = random.Random(w)
        try:
            barrier.wait()
            for r in range(rounds):
                for prompt in prompts:
                    n = rng.randint(1, 4)
                    cache.update(prompt, LLM, [Generation(f"w{w}r{r} {i}/{n}") for i in range(n)])
                    got = cache.lookup(prompt, LLM)
                    assert got is not None
                    _assert_whole(got)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    assert cache.stats.errors == 0
    for prompt in prompts:
        _assert_whole(cache.lookup(prompt, LLM))


def _assert_whole(generations: list[Generation] | None) -> None:
    """All generations come from one write: same writer/round tag, indices 0..n-1 of n."""
    assert generations
    tags = {g.text.split(" ")[0] for g in generations}
    assert len(tags) == 1, [g.text for g in generations]
    n = len(generations)
    assert [g.text.split(" ")[1] for g in generations] == [f"{i}/{n}" for i in range(n)]


def _assert_no_duplicate_rows(engine: Engine, table: str, namespace: str | None = None) -> None:
    """No (prompt, llm, idx) twice; within ``namespace`` when the table has one (other tests,
    and other test runs on the same server, write the same prompts in their own namespaces)."""
    where = "" if namespace is None else "WHERE namespace = :ns "
    with engine.connect() as conn:
        dupes = conn.execute(
            text(
                f"SELECT prompt, llm, idx, count(*) FROM {table} {where}"
                "GROUP BY prompt, llm, idx HAVING count(*) > 1"
            ),
            {} if namespace is None else {"ns": namespace},
        ).all()
    assert dupes == []


@pytest.mark.postgres
def test_concurrent_upserts_postgres(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=8)
    _hammer(SQLAlchemyCache(engine, namespace=unique(), timeout=CONTRACT_TIMEOUT), [f"shared {i}" for i in range(3)])
    engine.dispose()


@pytest.mark.postgres
def test_concurrent_upserts_postgres_fulltext_schema(
    postgres_url: str, fulltext: SQLAlchemyCache
) -> None:
    engine = create_engine(postgres_url, pool_size=8)
    cache = SQLAlchemyCache(engine, FulltextLLMCache, timeout=CONTRACT_TIMEOUT)
    _hammer(cache, [f"shared {i}" for i in range(3)])
    _assert_no_duplicate_rows(engine, "llm_cache_fulltext")
    engine.dispose()


@pytest.mark.mysql
def test_concurrent_upserts_mariadb(mysql_url: str) -> None:
    engine = create_engine(mysql_url, pool_size=8)
    _hammer(SQLAlchemyCache(engine, namespace=unique(), timeout=CONTRACT_TIMEOUT), [f"shared {i}" for i in range(3)])
    user = SQLAlchemyCache(engine, UserLLMCache, namespace=unique(), timeout=CONTRACT_TIMEOUT)
    _hammer(user, [f"shared {i}" for i in range(3)])
    _assert_no_duplicate_rows(engine, "llm_cache_user_rows", user.namespace)
    user.clear()
    engine.dispose()


@pytest.mark.postgres
def test_concurrent_async_upserts_postgres(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    cache = SQLAlchemyCache(engine, namespace=unique(), timeout=CONTRACT_TIMEOUT)

    async def scenario() -> None:
        async def writer(w: int) -> None:
            for r in range(10):
                n = 1 + (w + r) % 4
                await cache.aupdate(
                    "shared", LLM, [Generation(f"w{w}r{r} {i}/{n}") for i in range(n)]
                )
                _assert_whole(await cache.alookup("shared", LLM))

        await asyncio.gather(*(writer(w) for w in range(8)))
        await cache.aclose()

    asyncio.run(scenario())
    assert cache.stats.errors == 0
    engine.dispose()


# --- schema creation ------------------------------------------------------------------------------------
def _start_together(make: Callable[[], SQLAlchemyCache], count: int = 4) -> list[BaseException]:
    """``count`` threads, each with its own engine, create the cache at the same instant."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def worker() -> None:
        try:
            barrier.wait()
            cache = make()
            cache.update("p", LLM, sample_generations("x"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.postgres
def test_schema_creation_race_postgres(postgres_server: Any) -> None:
    import psycopg

    db = "llm_cache_race_" + uuid.uuid4().hex[:8]
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = make_url(postgres_server.url).set(database=db)
    engines: list[Engine] = []

    def make() -> SQLAlchemyCache:
        engine = create_engine(url)
        engines.append(engine)
        return SQLAlchemyCache(engine, FulltextLLMCache)

    try:
        assert _start_together(make) == []
    finally:
        for engine in engines:
            engine.dispose()
        with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{db}"')


@pytest.mark.mysql
def test_schema_creation_race_mariadb(mysql_url: str) -> None:
    db = "llm_cache_test_race_" + uuid.uuid4().hex[:8]
    admin = create_engine(mysql_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{db}`")
    url = make_url(mysql_url).set(database=db)
    engines: list[Engine] = []

    def make() -> SQLAlchemyCache:
        engine = create_engine(url)
        engines.append(engine)
        return SQLAlchemyCache(engine)

    try:
        assert _start_together(make) == []
    finally:
        for engine in engines:
            engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE `{db}`")
        admin.dispose()


def test_schema_creation_race_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    assert _start_together(lambda: SQLAlchemyCache(create_engine(url))) == []


# --- configuration ----------------------------------------------------------------------------------------
def test_schema_without_required_columns_is_refused(tmp_path: Path) -> None:
    B = orm_declarative_base()

    class NoIdx(B):  # type: ignore[misc, valid-type]
        __tablename__ = "no_idx"
        id = Column(Integer, primary_key=True)
        prompt = Column(String)
        llm = Column(String)
        response = Column(String)

    with pytest.raises(ConfigurationError, match="idx"):
        SQLAlchemyCache(create_engine(f"sqlite:///{tmp_path / 'x.db'}"), NoIdx)


def test_existing_table_of_another_shape_is_refused(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:  # what LangChain would have made under our table's name
        conn.exec_driver_sql(
            "CREATE TABLE llm_cache_full (prompt TEXT, llm TEXT, idx INT, response TEXT)"
        )
    with pytest.raises(ConfigurationError, match="key_hash"):
        SQLAlchemyCache(engine)


@pytest.mark.postgres
def test_ttl_on_a_schema_without_expiry_is_refused(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    with pytest.raises(ConfigurationError, match="expires_at"):
        SQLAlchemyCache(engine, FulltextLLMCache, ttl=60)
    engine.dispose()


def test_async_engine_as_engine_is_refused(tmp_path: Path) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    with pytest.raises(ConfigurationError, match="async_engine"):
        SQLAlchemyCache(create_async_engine("postgresql+psycopg://u@127.0.0.1:9/db"))  # type: ignore[arg-type]


def test_memory_sqlite_async_falls_back_to_a_thread() -> None:
    from sqlalchemy.pool import StaticPool

    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    cache = SQLAlchemyCache(engine)
    assert cache.async_engine is None

    async def scenario() -> None:
        await cache.aupdate("p", LLM, sample_generations("m"))
        assert await cache.alookup("p", LLM) == sample_generations("m")

    asyncio.run(scenario())


@pytest.mark.postgres
def test_clear_never_touches_other_namespaces_or_tables(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    mine, theirs = (
        SQLAlchemyCache(engine, namespace=unique(), timeout=CONTRACT_TIMEOUT),
        SQLAlchemyCache(engine, namespace=unique(), timeout=CONTRACT_TIMEOUT),
    )
    mine.update("p", LLM, sample_generations("m"))
    theirs.update("p", LLM, sample_generations("t"))
    mine.clear()
    assert mine.count() == 0 and theirs.count() == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('llm_cache_full')")).scalar() is not None
    theirs.clear()
    engine.dispose()


def test_purge_expired_and_count(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = SQLAlchemyCache(create_engine(f"sqlite:///{tmp_path / 'ttl.db'}"), ttl=10, clock=clock)
    cache.update("a", LLM, sample_generations("a", n=2))
    clock.now += 5
    cache.update("b", LLM, sample_generations("b"))
    assert cache.count() == 2
    clock.now += 6
    assert cache.count() == 1
    assert cache.purge_expired() == 2  # both rows of "a"
    assert cache.lookup("b", LLM) == sample_generations("b")


@pytest.mark.postgres
def test_nul_characters_survive_postgres(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    cache = SQLAlchemyCache(engine, namespace=unique(), timeout=CONTRACT_TIMEOUT)
    for prompt in ["a\x00b", "\ue000llmc:looks escaped", "back\\slash\x00\\0"]:
        cache.update(prompt, LLM + "\x00", sample_generations(prompt))
        assert cache.lookup(prompt, LLM + "\x00") == sample_generations(prompt)
    assert cache.lookup("a\\0b", LLM + "\x00") is None and cache.lookup("a\x00b", LLM) is None
    assert cache.stats.errors == 0
    cache.clear()
    engine.dispose()


@pytest.mark.postgres
def test_own_pool_holds_connections_but_not_with_nullpool(postgres_url: str) -> None:
    from sqlalchemy.pool import NullPool

    pooled = create_engine(postgres_url)
    cache = SQLAlchemyCache(pooled, namespace=unique())
    cache.update("p", LLM, sample_generations("x"))
    assert cache.lookup("p", LLM) == sample_generations("x")
    assert len(cache._connections._idle) == 1  # reused by the next call, no checkout
    assert pooled.pool.checkedout() == 0  # the application's pool is left alone
    cache.clear()
    cache.close()
    assert len(cache._connections._idle) == 0

    unpooled = create_engine(postgres_url, poolclass=NullPool)
    cache = SQLAlchemyCache(unpooled, namespace=unique())
    cache.update("p", LLM, sample_generations("y"))
    assert cache.lookup("p", LLM) == sample_generations("y")
    assert len(cache._connections._idle) == 0  # NullPool: nothing kept open
    cache.clear()
    pooled.dispose()


@pytest.mark.postgres
def test_stale_idle_connection_is_replaced_without_an_error(postgres_server: Any) -> None:
    """A pooled connection the server killed (restart, idle timeout) costs a retry, not a miss."""
    import psycopg

    engine = create_engine(postgres_server.url)
    cache = SQLAlchemyCache(engine, namespace=unique(), timeout=CONTRACT_TIMEOUT)
    cache.update("p", LLM, sample_generations("s"))
    pid = cache._raw(lambda dbapi, st: dbapi.info.backend_pid)
    with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert cache.lookup("p", LLM) == sample_generations("s")
    assert cache.stats.errors == 0
    cache.clear()
    engine.dispose()
