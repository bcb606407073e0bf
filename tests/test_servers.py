"""Smoke tests of the real servers the suite runs against (see tests/servers_fixtures.py).

If these fail, every backend test needing the server fails too; these say why in one place.
"""

from __future__ import annotations

import contextlib
import uuid

import pytest

from llm_cache.testing.servers import (
    PostgresServer,
    RedisClusterServer,
    RedisServer,
    ServerNotManagedError,
)


def _key(name: str) -> str:
    # Unique keys: the session server is shared with every other test.
    return f"test_servers:{name}:{uuid.uuid4().hex}"


# ---- Redis ------------------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_set_get(redis_server: RedisServer) -> None:
    with contextlib.closing(redis_server.client()) as client:
        key = _key("setget")
        assert client.set(key, b"value", ex=60)
        assert client.get(key) == b"value"
        client.delete(key)


@pytest.mark.redis
def test_redis_is_8_with_vector_sets(redis_server: RedisServer) -> None:
    major = int(redis_server.version().split(".")[0])
    assert major >= 8, f"Redis {redis_server.version()} has no vector sets; need >= 8"
    with contextlib.closing(redis_server.client()) as client:
        key = _key("vset")
        try:
            client.execute_command("VADD", key, "VALUES", 3, 0.1, 0.2, 0.3, "e1")
            client.execute_command("VADD", key, "VALUES", 3, 0.3, 0.2, 0.1, "e2")
            reply = client.execute_command("VSIM", key, "VALUES", 3, 0.1, 0.2, 0.3, "WITHSCORES")
            assert client.execute_command("VCARD", key) == 2
        finally:
            client.delete(key)
    # RESP2 gives a flat [elem, score, ...] list, RESP3 a dict: normalise.
    if isinstance(reply, dict):
        ranked = list(reply)
        top_score = float(reply[ranked[0]])
    else:
        ranked, top_score = reply[::2], float(reply[1])
    assert ranked[0] == b"e1" and top_score == pytest.approx(1.0)
    assert ranked[1] == b"e2"


@pytest.mark.redis
def test_redis_stop_and_restart_on_same_port(redis_url: str, redis_server: RedisServer) -> None:
    import redis

    if not redis_server.managed:
        pytest.skip("REDIS_URL points at an external server: this session cannot stop it")
    port = redis_server.port
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=1)
    try:
        assert client.ping()
        with redis_server.stopped():
            assert not redis_server.is_running()
            with pytest.raises(redis.ConnectionError):
                client.ping()
        # Same URL, same client object: it reconnects by itself.
        assert redis_server.port == port and redis_server.url == redis_url
        assert client.ping()
        # A crash (SIGKILL) and restart works too.
        redis_server.stop(kill=True)
        redis_server.start()
        assert client.ping()
    finally:
        client.close()


def test_unmanaged_redis_cannot_be_stopped() -> None:
    server = RedisServer.from_url("redis://127.0.0.1:1/0")
    assert not server.managed and server.url == "redis://127.0.0.1:1/0"
    with pytest.raises(ServerNotManagedError):
        server.stop()
    with pytest.raises(ServerNotManagedError):
        server.start()
    server.close()  # a no-op, so fixtures may call it unconditionally


# ---- Redis Cluster ----------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_cluster_set_get_across_slots(redis_cluster: RedisClusterServer) -> None:
    from redis.cluster import RedisCluster

    host, port = redis_cluster.startup_nodes[0]
    client = RedisCluster(host=host, port=port)
    try:
        info = client.cluster_info()
        assert info["cluster_state"] == "ok"
        # Keys spread over slots owned by different masters.
        keys = [_key(f"c{i}") for i in range(30)]
        owners = {client.get_node_from_key(k).port for k in keys}
        assert len(owners) == 3, f"30 random keys should hit all 3 masters, hit {owners}"
        for k in keys:
            client.set(k, k, ex=60)
        assert [client.get(k) for k in keys] == [k.encode() for k in keys]
        client.delete(*keys)
    finally:
        client.close()
    # .url works for RedisCluster.from_url as well.
    from_url = RedisCluster.from_url(redis_cluster.url)
    try:
        assert from_url.ping()
    finally:
        from_url.close()


# ---- PostgreSQL + pgvector --------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_select_1_via_sqlalchemy(postgres_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_pgvector_hnsw(postgres_server: PostgresServer) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    with postgres_server.connect(autocommit=True) as conn:
        # Our test role is not a superuser: IF NOT EXISTS must still be a harmless no-op.
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        try:
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, embedding vector(3))")
            conn.execute(
                f"INSERT INTO {table} VALUES (1, '[0.1,0.2,0.3]'), (2, '[0.3,0.2,0.1]'),"
                " (3, '[-0.1,-0.2,-0.3]')"
            )
            conn.execute(f"CREATE INDEX ON {table} USING hnsw (embedding vector_cosine_ops)")
            conn.execute("SET enable_seqscan = off")  # make the planner use the HNSW index
            query = (
                f"SELECT id, embedding <=> '[0.1,0.2,0.3]' AS d FROM {table} "
                "ORDER BY embedding <=> '[0.1,0.2,0.3]' LIMIT 3"
            )
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query).fetchall())
            assert f"Index Scan using {table}_embedding_idx" in plan, plan
            rows = conn.execute(query).fetchall()
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    assert [r[0] for r in rows] == [1, 2, 3]
    assert rows[0][1] == pytest.approx(0.0, abs=1e-6)
    assert rows[2][1] == pytest.approx(2.0, abs=1e-6)


@pytest.mark.postgres
def test_postgres_stop_and_restart_keeps_data(postgres_server: PostgresServer) -> None:
    import psycopg

    if not postgres_server.managed:
        pytest.skip("POSTGRES_URL points at an external server: this session cannot stop it")
    table = f"keep_{uuid.uuid4().hex[:12]}"
    port, url = postgres_server.port, postgres_server.url
    with postgres_server.connect(autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (v text)")
        conn.execute(f"INSERT INTO {table} VALUES ('kept')")
    try:
        with postgres_server.stopped():
            assert not postgres_server.is_running()
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(postgres_server.dsn, connect_timeout=2).close()
        assert postgres_server.port == port and postgres_server.url == url
        with postgres_server.connect() as conn:
            assert conn.execute(f"SELECT v FROM {table}").fetchone() == ("kept",)
        # A crash (immediate shutdown) then restart: WAL recovery keeps committed data.
        postgres_server.stop("immediate")
        postgres_server.start()
        with postgres_server.connect() as conn:
            assert conn.execute(f"SELECT v FROM {table}").fetchone() == ("kept",)
    finally:
        with postgres_server.connect(autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def test_postgres_url_from_env_is_normalised() -> None:
    server = PostgresServer.from_url("postgresql://u:p@db.example:5433/x?sslmode=disable")
    assert not server.managed
    assert server.url == "postgresql+psycopg://u:p@db.example:5433/x?sslmode=disable"
    assert server.dsn == "postgresql://u:p@db.example:5433/x?sslmode=disable"
    with pytest.raises(ServerNotManagedError):
        server.stop()


# ---- MariaDB ----------------------------------------------------------------------------------


@pytest.mark.mysql
def test_mariadb_smoke(mysql_url: str) -> None:
    import sqlalchemy as sa

    table = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(mysql_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
            conn.execute(sa.text(f"CREATE TABLE {table} (k VARCHAR(64) PRIMARY KEY, v LONGBLOB)"))
            try:
                conn.execute(
                    sa.text(f"INSERT INTO {table} VALUES (:k, :v)"), {"k": "é", "v": b"\x00\xff"}
                )
                row = conn.execute(sa.text(f"SELECT k, v FROM {table}")).one()
                assert tuple(row) == ("é", b"\x00\xff")
            finally:
                conn.execute(sa.text(f"DROP TABLE {table}"))
    finally:
        engine.dispose()
