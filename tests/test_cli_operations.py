"""Operating caches from the command line: read-only listing of every cache kind, semantic
cache URLs, namespaces, tokens and cost saved, import that keeps times and hits, errors that
name the file at fault, and listings that say what each entry is."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from llm_cache import Generation, SQLiteCache
from llm_cache.cli import main
from llm_cache.errors import ConfigurationError, LLMCacheError

READ_ONLY = ["stats", "inspect", "search", "export", "namespaces"]
CHAT_LLM = '{"api":"chat.completions","model":"gpt-4o-mini","provider":"openai"}'


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (or ``root`` itself) with the sha256 of its bytes."""
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def read_only_argv(tool: str, cache_url: str, tmp_path: Path) -> list[str]:
    argv = [tool, "--cache", cache_url]
    if tool == "search":
        argv.append("question")
    if tool == "export":
        argv.append(str(tmp_path / "out" / f"{time.time_ns()}.jsonl"))
        (tmp_path / "out").mkdir(exist_ok=True)
    return argv


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    path = tmp_path / "dir" / "cache.db"
    path.parent.mkdir()
    with SQLiteCache(path) as cache:
        cache.update("a question", CHAT_LLM, [Generation("an answer")])
        assert cache.lookup("a question", CHAT_LLM) is not None
    return path


@pytest.fixture(scope="module")
def embeddings() -> Any:
    from llm_cache.testing.semantic_contract import shared_embeddings

    return shared_embeddings()


@pytest.fixture
def semantic_dir(tmp_path: Path, embeddings: Any) -> Path:
    """A local SemanticCache directory with 7 entries in namespace "default" (and its index snapshot)."""
    from llm_cache import SemanticCache

    path = tmp_path / "semantic"
    cache = SemanticCache(embeddings, data_dir=path)
    for i in range(7):
        cache.update(f"question number {i} about the weather in city {i}", CHAT_LLM, [Generation(f"answer {i}")])
    cache.close()
    return path


# -- (a) read-only commands change nothing ---------------------------------------------------------
@pytest.mark.parametrize("tool", READ_ONLY)
def test_a_foreign_sqlite_file_is_refused_and_left_byte_identical(
    tool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other" / "other.db"
    other.parent.mkdir()
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.commit()
    conn.close()
    before = snapshot(other.parent)
    code, out, err = run(capsys, *read_only_argv(tool, f"sqlite:///{other}", tmp_path))
    assert code == 1 and str(other) in err and "not an llm-cache" in err
    assert snapshot(other.parent) == before  # no llm_cache tables, no -wal/-shm, nothing


@pytest.mark.parametrize("tool", READ_ONLY)
def test_an_llm_cache_file_is_read_without_a_byte_changing(
    tool: str, sqlite_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(sqlite_db.parent)
    code, out, err = run(capsys, *read_only_argv(tool, f"sqlite:///{sqlite_db}", tmp_path))
    assert code == 0, err
    assert snapshot(sqlite_db.parent) == before


@pytest.mark.parametrize("tool", READ_ONLY)
def test_a_semantic_directory_is_read_without_a_byte_changing(
    tool: str, semantic_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(semantic_dir)
    code, out, err = run(capsys, *read_only_argv(tool, f"semantic:///{semantic_dir}", tmp_path))
    assert code == 0, err
    assert snapshot(semantic_dir) == before


@pytest.mark.parametrize("tool", READ_ONLY)
@pytest.mark.parametrize("scheme", ["sqlite", "semantic"])
def test_a_missing_path_is_an_error_naming_it_and_creates_nothing(
    tool: str, scheme: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "cache.db"
    code, out, err = run(capsys, *read_only_argv(tool, f"{scheme}:///{missing}", tmp_path))
    assert code == 1 and str(missing) in err
    assert ("no cache database" if scheme == "sqlite" else "no semantic cache directory") in err
    assert not (tmp_path / "nowhere").exists()


def test_sqlalchemy_read_only_creates_no_table(tmp_path: Path) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from llm_cache.caches.sql import SQLAlchemyCache

    path = tmp_path / "app.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    before = snapshot(path)
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    with pytest.raises(ConfigurationError, match="llm_cache_full"):
        SQLAlchemyCache(engine, read_only=True)
    engine.dispose()
    assert snapshot(path) == before
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    SQLAlchemyCache(engine, namespace="n").update("p", "{}", [Generation("x")])
    reader = SQLAlchemyCache(engine, namespace="n", read_only=True)
    assert [e.prompt for e in reader.entries()] == ["p"]
    ((name, count, size),) = reader.namespaces()
    assert (name, count) == ("n", 1) and size > 0
    with pytest.raises(LLMCacheError, match="read-only"):
        reader.clear()
    engine.dispose()


@pytest.mark.postgres
def test_read_only_inspect_of_a_database_without_the_table_creates_nothing(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    name = f"cli_ro_{time.time_ns()}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    engine = sqlalchemy.create_engine(url)
    try:
        for tool in READ_ONLY:
            argv = [tool, "--cache", url] + (["x"] if tool == "search" else []) + (["-"] if tool == "export" else [])
            code, _, err = run(capsys, *argv)
            assert code == 1 and "llm_cache_full" in err, (tool, err)
        assert sqlalchemy.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


# -- (b) semantic caches by URL ----------------------------------------------------------------------
def test_semantic_cache_stats_inspect_search_export_import_clear(
    semantic_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache_url = f"semantic:///{semantic_dir}"
    code, out, _ = run(capsys, "stats", "--cache", cache_url, "--json")
    assert code == 0 and json.loads(out)["entries"] == 7 and json.loads(out)["size_bytes"] > 0
    code, out, err = run(capsys, "inspect", "--cache", cache_url)
    assert code == 0 and out.count("answer ") == 7 and "chat openai.chat.completions" in out
    code, out, err = run(capsys, "search", "--cache", cache_url, "CITY 3")
    assert code == 0 and "city 3" in out and "1 of 7 entries matched" in err
    dump = tmp_path / "semantic.jsonl"
    assert run(capsys, "export", "--cache", cache_url, str(dump))[0] == 0
    exported = [json.loads(line) for line in dump.read_text().splitlines()]
    assert len(exported) == 7
    # the sqlite URL of the semantic store's file is refused, and the file stays as it was
    before = snapshot(semantic_dir)
    code, _, err = run(capsys, "stats", "--cache", f"sqlite:///{semantic_dir / 'semantic.db'}")
    assert code == 1 and "semantic:///" in err and snapshot(semantic_dir) == before
    # clear, then import: the entries come back with their creation times
    code, out, _ = run(capsys, "clear", "--cache", cache_url, "--yes")
    assert code == 0 and "cleared 7 entries" in out
    assert json.loads(run(capsys, "stats", "--cache", cache_url, "--json")[1])["entries"] == 0
    code, _, err = run(capsys, "import", "--cache", cache_url, str(dump))
    assert code == 0 and "imported 7 entries" in err
    code, out, _ = run(capsys, "export", "--cache", cache_url, "-")
    again = {row["prompt"]: row for row in map(json.loads, out.splitlines())}
    assert {row["prompt"]: row["created_at"] for row in exported} == {p: r["created_at"] for p, r in again.items()}


def test_semantic_view_answers_exact_lookups_only_and_refuses_writes(semantic_dir: Path) -> None:
    from llm_cache.urls import cache_from_url

    view = cache_from_url(f"semantic:///{semantic_dir}", read_only=True)
    try:
        hit = view.lookup("question number 2 about the weather in city 2", CHAT_LLM)
        assert hit is not None and hit[0].text == "answer 2"
        assert view.lookup("a question nobody asked", CHAT_LLM) is None
        with pytest.raises(LLMCacheError, match="read-only"):
            view.clear()
    finally:
        view.close()


@pytest.mark.redis
def test_redis_semantic_cache_by_url(redis_url: str, embeddings: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import redis as redis_lib

    from llm_cache.semantic.stores.redis import RedisSemanticCache

    namespace = f"cli-sem-{time.time_ns()}"
    cache = RedisSemanticCache(redis_url, embeddings, namespace=namespace)
    try:
        for i in range(3):
            cache.update(f"what is the capital of country {i}", CHAT_LLM, [Generation(f"capital {i}")])
        client = redis_lib.Redis.from_url(redis_url)
        keys_before = sorted(client.scan_iter(match=f"{namespace}*"))
        cache_url = redis_url.replace("redis://", "semantic+redis://", 1) + f"?namespace={namespace}"
        code, out, _ = run(capsys, "stats", "--cache", cache_url, "--json")
        assert code == 0 and json.loads(out)["entries"] == 3
        code, out, _ = run(capsys, "namespaces", "--cache", cache_url, "--json")
        rows = {r["namespace"]: r["entries"] for r in map(json.loads, out.splitlines())}
        assert rows[namespace] == 3
        code, out, err = run(capsys, "search", "--cache", cache_url, "country 1")
        assert code == 0 and "1 of 3 entries matched" in err
        assert sorted(client.scan_iter(match=f"{namespace}*")) == keys_before
        client.close()
    finally:
        cache.clear()
        cache.close()


@pytest.mark.postgres
def test_pgvector_semantic_cache_by_url(postgres_url: str, embeddings: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from llm_cache.semantic.stores.pgvector import PGVectorSemanticCache

    table = f"cli_sem_{time.time_ns()}"
    base = postgres_url.split("://", 1)[1]
    cache_url = f"semantic+postgresql://{base}?table={table}&namespace=ns1"
    # a table that does not exist is an error, and is not created by reading
    code, _, err = run(capsys, "inspect", "--cache", cache_url)
    assert code == 1 and table in err
    cache = PGVectorSemanticCache(postgres_url, embeddings, table=table, namespace="ns1")
    try:
        for i in range(4):
            cache.update(f"how tall is mountain {i}", CHAT_LLM, [Generation(f"{i} metres")])
        code, out, _ = run(capsys, "stats", "--cache", cache_url, "--json")
        assert code == 0 and json.loads(out)["entries"] == 4
        code, out, _ = run(capsys, "namespaces", "--cache", cache_url, "--json")
        assert [json.loads(line)["entries"] for line in out.splitlines()] == [4]
    finally:
        cache.clear()
        cache.close()


# -- (c) namespaces ----------------------------------------------------------------------------------
def test_namespaces_lists_counts_and_sizes_and_stats_says_where_entries_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "demo.db"
    with SQLiteCache(path, namespace="demo") as cache:
        for i in range(7):
            cache.update(f"prompt {i}", "{}", [Generation(f"answer {i}")])
    with SQLiteCache(path, namespace="other") as cache:
        cache.update("p", "{}", [Generation("a")])
    code, out, _ = run(capsys, "namespaces", "--cache", f"sqlite:///{path}", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(r["namespace"], r["entries"]) for r in rows] == [("demo", 7), ("other", 1)]
    assert all(r["bytes"] > 0 for r in rows)
    code, out, _ = run(capsys, "namespaces", "--cache", f"sqlite:///{path}")
    assert code == 0 and "demo" in out and "7" in out
    code, out, _ = run(capsys, "stats", "--cache", f"sqlite:///{path}")
    assert code == 0 and "entries:      0" in out and "'demo' (7 entries)" in out and "--namespace demo" in out
    stats = json.loads(run(capsys, "stats", "--cache", f"sqlite:///{path}", "--json")[1])
    assert stats["other_namespaces"] == {"demo": 7, "other": 1}


# -- (d) usage stored by the model paths --------------------------------------------------------------
def test_models_store_usage_so_stats_knows_tokens_and_cost_saved(
    upstream: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llm_cache.llms import ChatOpenAI, OpenAI

    path = tmp_path / "models.db"
    cache = SQLiteCache(path)
    chat = ChatOpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0, model="gpt-4o-mini", cache=cache)
    text = OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0, model_name="gpt-3.5-turbo-instruct", cache=cache)
    first = chat.generate(["Tell me a joke about caches"])
    usage = first.llm_output["token_usage"]
    assert usage["total_tokens"] > 0
    for _ in range(3):
        chat.generate(["Tell me a joke about caches"])
    text.generate(["one prompt", "another prompt"])  # one request for two prompts
    text.generate(["one prompt"])
    cache.close()
    stats = json.loads(run(capsys, "stats", "--cache", f"sqlite:///{path}", "--json")[1])
    assert stats["entries_with_usage"] == 3
    # 3 chat hits at the call's own usage, 1 completion hit at its half of the shared request
    completion = [e for e in SQLiteCache(path).entries() if e.prompt == "one prompt"][0]
    share = completion.generations[0].generation_info["usage"]
    assert share["shared_by"] == 2
    assert stats["tokens_saved"] == 3 * usage["total_tokens"] + share["total_tokens"]
    assert stats["cost_saved_usd"] > 0
    code, out, _ = run(capsys, "stats", "--cache", f"sqlite:///{path}")
    assert "tokens saved: 0" not in out and "cost saved:   $" in out


# -- (e) import keeps times and hits -----------------------------------------------------------------
def test_import_keeps_created_at_hit_count_last_hit_and_expiry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "source.db"
    with SQLiteCache(source, ttl=3600) as cache:
        cache.update("often", "{}", [Generation("a")])
        cache.update("never", "{}", [Generation("b")])
        for _ in range(5):
            cache.lookup("often", "{}")
    dump = tmp_path / "dump.jsonl"
    assert run(capsys, "export", "--cache", f"sqlite:///{source}", str(dump))[0] == 0
    time.sleep(0.01)  # created_at of a fresh write would differ from the exported one
    target = tmp_path / "target.db"
    code, _, err = run(capsys, "import", "--cache", f"sqlite:///{target}", str(dump))
    assert code == 0 and "imported 2 entries" in err

    def rows(path: Path) -> dict[str, tuple[Any, ...]]:
        with SQLiteCache(path) as cache:
            return {e.prompt: (e.created_at, e.expires_at, e.hit_count, e.last_hit_at) for e in cache.entries()}

    assert rows(target) == rows(source)
    assert rows(target)["often"][2] == 5 and rows(target)["often"][3] is not None


# -- (f) errors name the file at fault ----------------------------------------------------------------
def test_export_to_a_missing_directory_blames_the_file_not_the_cache(
    sqlite_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "export", "--cache", f"sqlite:///{sqlite_db}", "/nonexistent/x.jsonl")
    assert code == 1 and "/nonexistent/x.jsonl" in err and "does not exist" in err
    assert "cache sqlite" not in err and str(sqlite_db) not in err


def test_export_to_a_directory_says_so(sqlite_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "export", "--cache", f"sqlite:///{sqlite_db}", str(tmp_path))
    assert code == 1 and str(tmp_path) in err and "is a directory" in err
    assert not Path(str(tmp_path) + ".partial").exists()


def test_sqlite_cache_in_a_missing_directory_names_the_path() -> None:
    with pytest.raises(ConfigurationError) as info:
        SQLiteCache("/nonexistent/dir/x.db")
    assert "/nonexistent/dir/x.db" in str(info.value) and "/nonexistent/dir" in str(info.value)
    assert "does not exist" in str(info.value)


# -- (g) listings say what an entry is and what matched ----------------------------------------------
def test_inspect_and_search_show_kind_matched_text_and_totals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llm_cache.keys import messages_prompt

    path = tmp_path / "kinds.db"
    with SQLiteCache(path) as cache:
        cache.update(messages_prompt([{"role": "user", "content": "Where is the Eiffel tower?"}]), CHAT_LLM, [Generation("Paris")])
        cache.update("Complete: the Eiffel tower is", '{"model":"gpt-3.5-turbo-instruct"}', [Generation(" tall")])
        cache.update(
            messages_prompt([{"role": "user", "content": "Hi"}]),
            '{"api":"messages","model":"claude-3-5-haiku","provider":"anthropic"}',
            [Generation("Hello")],
        )
        cache.update("unrelated", "{}", [Generation("the answer mentions eiffel")])
    code, out, _ = run(capsys, "inspect", "--cache", f"sqlite:///{path}")
    lines = {line.split()[-1]: line for line in out.splitlines()[1:] if line.strip()}
    assert "chat openai.chat.completions" in lines["Paris"]
    assert "completion" in lines["tall"] and "chat" not in lines["tall"]
    assert "chat anthropic.messages" in lines["Hello"]
    code, out, err = run(capsys, "search", "--cache", f"sqlite:///{path}", "EIFFEL TOWER")
    assert code == 0 and "Where is the Eiffel tower?" in out and "Complete: the Eiffel tower is" in out
    assert "2 of 4 entries matched 'EIFFEL TOWER'" in err
    code, out, err = run(capsys, "search", "--cache", f"sqlite:///{path}", "eiffel", "--answers", "--limit", "1", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 1 and rows[0]["kind"] in ("chat", "completion") and "match" in rows[0]
    match = rows[0]["match"]
    assert match["text"][match["start"] : match["end"]].casefold() == "eiffel"
    assert "1 shown, 3 of 4 entries matched" in err


def test_search_highlights_the_match_on_a_terminal() -> None:
    import io

    from llm_cache.commands._output import highlight, print_table

    stream = io.StringIO()
    print_table(["match"], [[highlight("before MATCH after", [(7, 12)])]], stream=stream, force_terminal=True)
    rendered = stream.getvalue()
    assert "\x1b[" in rendered and "MATCH" in rendered
    # reverse video (SGR 7) switched on just before the match and off just after it
    assert re.search(r"\x1b\[[0-9;]*7m MATCH\x1b\[0m".replace(" ", ""), rendered)


def test_plain_output_without_rich(sqlite_db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "rich", None)  # as if the cli extra were not installed
    code, out, _ = run(capsys, "inspect", "--cache", f"sqlite:///{sqlite_db}")
    assert code == 0 and out.splitlines()[0].split() == ["hits", "created", "kind", "model", "prompt", "answer"]
    code, _, err = run(capsys, "export", "--cache", f"sqlite:///{sqlite_db}", "-", "--progress")
    assert code == 0 and "export: 1 entries" in err


@pytest.mark.redis
def test_redis_namespaces_count_only_exact_cache_entries(redis_url: str, embeddings: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import redis as redis_lib

    from llm_cache.caches.redis import RedisCache
    from llm_cache.semantic.stores.redis import RedisSemanticCache

    stamp = time.time_ns()
    exact = RedisCache(redis_url=redis_url, namespace=f"ns-a-{stamp}")
    semantic = RedisSemanticCache(redis_url, embeddings, namespace=f"ns-s-{stamp}")
    client = redis_lib.Redis.from_url(redis_url)
    stranger = f"app-{stamp}:" + "0" * 64  # someone else's key of the same shape
    try:
        for i in range(3):
            exact.update(f"p{i}", "{}", [Generation("a")])
        semantic.update("what is a cache", CHAT_LLM, [Generation("a store")])
        client.set(stranger, "not an llm-cache entry")
        code, out, _ = run(capsys, "namespaces", "--cache", redis_url, "--json")
        rows = {r["namespace"]: r for r in map(json.loads, out.splitlines())}
        assert code == 0 and rows[f"ns-a-{stamp}"]["entries"] == 3 and rows[f"ns-a-{stamp}"]["bytes"] > 0
        assert not any(str(stamp) in name for name in rows if name != f"ns-a-{stamp}")
        semantic_url = redis_url.replace("redis://", "semantic+redis://", 1)
        code, out, _ = run(capsys, "namespaces", "--cache", semantic_url, "--json")
        rows = {r["namespace"]: r["entries"] for r in map(json.loads, out.splitlines())}
        assert rows[f"ns-s-{stamp}"] == 1 and f"ns-a-{stamp}" not in rows
    finally:
        client.delete(stranger)
        client.close()
        exact.clear()
        semantic.clear()
        exact.close()
        semantic.close()


@pytest.mark.parametrize(
    ("protocol", "body", "expected"),
    [
        ("chat.completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, ("chat", "openai.chat.completions")),
        ("completions", {"model": "m", "prompt": "hi"}, ("completion", "openai.completions")),
        ("embeddings", {"model": "m", "input": "hi"}, ("embedding", "openai.embeddings")),
        ("responses", {"model": "m", "input": "hi"}, ("chat", "openai.responses")),
        (
            "anthropic.messages",
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            ("chat", "anthropic.messages"),
        ),
    ],
)
def test_entry_kind_of_what_the_protocol_layer_writes(protocol: str, body: dict[str, Any], expected: tuple[str, str]) -> None:
    from llm_cache.caches.base import CacheEntry
    from llm_cache.inspection import entry_kind
    from llm_cache.protocols import PROTOCOLS

    identity = PROTOCOLS[protocol].identify(body, "tenant")
    assert entry_kind(CacheEntry(identity.prompt, identity.llm_string, [Generation("x")])) == expected


def test_entry_kind_without_an_api_name_tells_chat_from_completion() -> None:
    from llm_cache.caches.base import CacheEntry
    from llm_cache.inspection import entry_kind
    from llm_cache.keys import messages_prompt

    chat = messages_prompt([{"role": "user", "content": "hi"}])
    assert entry_kind(CacheEntry(chat, "{}", [Generation("x")])) == ("chat", None)
    assert entry_kind(CacheEntry("[1, 2] is a list", "not json", [Generation("x")])) == ("completion", None)


def test_read_only_sqlite_cache_serves_lookups_and_writes_nothing(sqlite_db: Path) -> None:
    before = snapshot(sqlite_db.parent)
    with SQLiteCache(sqlite_db, read_only=True) as cache:
        for _ in range(3):
            assert cache.lookup("a question", CHAT_LLM) == [Generation("an answer")]
        with pytest.raises(ConfigurationError, match="read-only"):
            cache.update("p", "l", [Generation("x")])
        assert [e.hit_count for e in cache.entries()] == [1]  # the fixture's one hit; ours not recorded
    assert snapshot(sqlite_db.parent) == before


@pytest.mark.parametrize(
    ("cache_url", "message"),
    [
        ("semantic://somehost/dir", "semantic:///relative/dir"),
        ("semantic:///", "semantic:///relative/dir"),
        ("semantic:///dir?table=t", "table= is an option of semantic+postgresql"),
        ("semantic+redis://localhost:6379/0?colour=red", "use ttl=, namespace=, timeout=, table="),
    ],
)
def test_semantic_url_mistakes_are_explained(cache_url: str, message: str) -> None:
    from llm_cache.urls import cache_from_url

    with pytest.raises(ConfigurationError, match=re.escape(message)):
        cache_from_url(cache_url, read_only=True)


def test_writable_semantic_url_builds_a_semantic_cache(tmp_path: Path) -> None:
    from llm_cache import SemanticCache
    from llm_cache.urls import cache_from_url

    cache = cache_from_url(f"semantic:///{tmp_path / 'new'}?namespace=n&ttl=60")
    try:
        assert isinstance(cache, SemanticCache) and cache.namespace == "n" and cache.ttl == 60
        assert cache.data_dir == str(tmp_path / "new")
    finally:
        cache.close()
