"""The cache tools of the ``llm-cache`` command: stats, inspect, search, clear, export, import."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llm_cache import Generation, SQLiteCache
from llm_cache.cli import main

TOOLS = ["stats", "inspect", "search", "clear", "export", "import"]


def url(path: Path, **query: str) -> str:
    tail = "&".join(f"{k}={v}" for k, v in query.items())
    return f"sqlite:///{path}" + (f"?{tail}" if tail else "")


def chat_prompt(text: str) -> str:
    from llm_cache.keys import messages_prompt

    return messages_prompt([{"role": "user", "content": text}])


def usage_generation(text: str, tokens: int) -> Generation:
    """An entry shaped like the ones the OpenAI client wrapper writes (usage in the envelope)."""
    return Generation(
        text=text,
        generation_info={"finish_reason": "stop", "response": {"id": "x", "usage": {"total_tokens": tokens}}},
        message={"role": "assistant", "content": text},
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """An SQLite cache with 3 entries: hit 3, 1 and 0 times; two of them carry token usage."""
    path = tmp_path / "cache.db"
    cache = SQLiteCache(path)
    llm = '{"model":"gpt-4o-mini","provider":"openai"}'
    cache.update(chat_prompt("Tell me a joke"), llm, [usage_generation("A joke.", 10)])
    cache.update(chat_prompt("Summarize the news"), llm, [usage_generation("News.", 100)])
    cache.update("plain completion prompt", '{"model":"gpt-3.5-turbo-instruct"}', [Generation("Done."), Generation("Two.")])
    for _ in range(3):
        assert cache.lookup(chat_prompt("Tell me a joke"), llm) is not None
    assert cache.lookup(chat_prompt("Summarize the news"), llm) is not None
    cache.close()  # flushes the hit counts
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def entries_of(path: Path, namespace: str = "default") -> list[tuple[str, str, list[dict[str, Any]]]]:
    with SQLiteCache(path, namespace=namespace) as cache:
        return sorted((e.prompt, e.llm_string, [g.to_dict() for g in e.generations]) for e in cache.entries())


# -- help --------------------------------------------------------------------------------------
def test_help_runs_as_a_real_command() -> None:
    script = Path(sys.executable).with_name("llm-cache")
    assert script.exists(), f"the llm-cache console script is not installed at {script}"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for tool in TOOLS:
        assert tool in result.stdout


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_has_help(tool: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([tool, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"llm-cache {tool}" in out and "--cache URL" in out


# -- stats / inspect / search ---------------------------------------------------------------------
def test_stats(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "stats", "--cache", url(db), "--json")
    assert code == 0
    stats = json.loads(out)
    assert stats["entries"] == 3 and stats["hits"] == 4
    assert stats["hit_rate"] == pytest.approx(4 / 7)
    assert stats["tokens_saved"] == 3 * 10 + 1 * 100 and stats["entries_with_usage"] == 2
    assert stats["size_bytes"] > 0
    assert stats["top_prompts"][0] == {"hits": 3, "prompt": chat_prompt("Tell me a joke")}
    assert stats["models"] == {"gpt-4o-mini": 2, "gpt-3.5-turbo-instruct": 1}
    code, out, _ = run(capsys, "stats", "--cache", url(db))
    assert code == 0 and "entries:      3" in out and "57.1%" in out and "Tell me a joke" in out


def test_inspect_lists_entries_most_hit_first(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", "--cache", url(db))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4  # header + 3
    assert "Tell me a joke" in lines[1] and "A joke." in lines[1] and lines[1].split()[0] == "3"
    assert "(+1)" in lines[3]  # the entry with two generations
    code, out, _ = run(capsys, "inspect", "--cache", url(db), "--limit", "2", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2 and rows[0]["hit_count"] == 3 and rows[0]["generations"][0]["text"] == "A joke."


def test_search(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "search", "--cache", url(db), "SUMMARIZE")
    assert code == 0 and "Summarize the news" in out and "joke" not in out
    code, out, _ = run(capsys, "search", "--cache", url(db), "news.", "--answers", "--json")
    assert code == 0 and len(out.splitlines()) == 1
    code, out, err = run(capsys, "search", "--cache", url(db), "no such thing")
    assert code == 1 and out == "" and "no entries match" in err


# -- clear ----------------------------------------------------------------------------------------
def test_clear_asks_first(db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    code, _, err = run(capsys, "clear", "--cache", url(db))
    assert code == 1 and "Delete 3 entries" in err and "nothing was deleted" in err
    assert len(entries_of(db)) == 3
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, out, _ = run(capsys, "clear", "--cache", url(db))
    assert code == 0 and "cleared 3 entries" in out and entries_of(db) == []


def test_clear_yes_and_namespace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ns.db"
    for namespace in ("a", "b"):
        with SQLiteCache(path, namespace=namespace) as cache:
            cache.update("p", "l", [Generation(namespace)])
    code, out, _ = run(capsys, "clear", "--cache", url(path), "--namespace", "a", "--yes")
    assert code == 0 and "namespace 'a'" in out
    assert entries_of(path, "a") == [] and len(entries_of(path, "b")) == 1
    code, _, _ = run(capsys, "clear", "--cache", url(path, namespace="b"), "-y")
    assert code == 0 and entries_of(path, "b") == []


# -- export / import --------------------------------------------------------------------------------
def test_export_clear_import_round_trip(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = entries_of(db)
    dump = tmp_path / "dump.jsonl"
    code, _, err = run(capsys, "export", "--cache", url(db), str(dump))
    assert code == 0 and "exported 3 entries" in err
    assert "[" not in err  # no progress bar: stderr is not a terminal and --progress was not given
    assert len(dump.read_text().splitlines()) == 3
    assert run(capsys, "clear", "--cache", url(db), "--yes")[0] == 0
    assert entries_of(db) == []
    code, _, err = run(capsys, "import", "--cache", url(db), str(dump))
    assert code == 0 and "imported 3 entries" in err
    assert entries_of(db) == before
    # into a new file and another namespace, with the progress bar forced on
    target = tmp_path / "new.db"
    code, _, err = run(capsys, "import", "--cache", url(target), "--namespace", "copy", str(dump), "--progress")
    assert code == 0 and "import " in err and "100%" in err and "3 entries" in err
    assert entries_of(target, "copy") == before


def test_export_to_stdout(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "export", "--cache", url(db), "-")
    assert code == 0 and {json.loads(line)["prompt"] for line in out.splitlines()} == {e[0] for e in entries_of(db)}


def test_import_reports_bad_lines_by_number_and_keeps_going(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = {"prompt": "p1", "llm_string": "l", "generations": [{"text": "one"}]}
    lines = [
        json.dumps(good).encode(),
        b"{not json",
        json.dumps({"prompt": "p2", "llm_string": "l"}).encode(),
        b"",
        json.dumps({"prompt": "p3", "llm_string": "l", "generations": [{"text": 3}]}).encode(),
        b'{"prompt": "p4", "llm_string": "l", "generations": [{"text": "\xff"}]}',
        json.dumps({**good, "prompt": "p5", "expires_at": time.time() - 10}).encode(),
        json.dumps({**good, "prompt": "p6", "hit_count": 4, "created_at": 1.0}).encode(),
    ]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    target = tmp_path / "t.db"
    code, _, err = run(capsys, "import", "--cache", url(target), str(source))
    assert code == 1
    assert "line 2: not valid JSON" in err
    assert "line 3: 'generations' must be a non-empty list" in err
    assert "line 5: bad generation" in err
    assert "line 6: not UTF-8" in err
    assert "imported 2 entries, skipped 1 expired, 4 bad lines skipped" in err
    assert [e[0] for e in entries_of(target)] == ["p1", "p6"]


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cache_url", "message"),
    [
        ("not-a-url", "not a cache URL"),
        ("bogus://somewhere", "unknown cache URL scheme 'bogus'"),
        ("sqlite:///definitely/missing/cache.db", "no cache database at"),
        ("memory://?colour=red", "unknown cache URL option"),
    ],
)
def test_a_wrong_cache_url_gives_one_readable_line(cache_url: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "stats", "--cache", cache_url)
    assert code == 1 and out == ""
    assert err.startswith("llm-cache: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_a_file_that_is_not_a_cache_gives_one_readable_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("this is not an SQLite database, it is a text file that is long enough to look like one" * 20)
    code, _, err = run(capsys, "inspect", "--cache", url(junk))
    assert code == 1 and err.startswith("llm-cache: error: ") and str(junk) in err and "not a database" in err
    assert len(err.strip().splitlines()) == 1


def test_import_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "import", "--cache", url(tmp_path / "t.db"), str(tmp_path / "nope.jsonl"))
    assert code == 1 and "no such file" in err


def test_memory_url_works(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "stats", "--cache", "memory://", "--json")
    assert code == 0 and json.loads(out)["entries"] == 0 and json.loads(out)["hits"] is None


# -- other backends through the inspection layer ------------------------------------------------
@pytest.mark.redis
def test_redis_cache_export_import_and_stats(redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llm_cache.caches.redis import RedisCache
    from llm_cache.inspection import count_entries, iter_entries

    namespace = f"cli-test-{time.time_ns()}"
    source = RedisCache(redis_url=redis_url, namespace=namespace, ttl=3600)
    other = RedisCache(redis_url=redis_url, namespace=namespace + "-other")
    try:
        for i in range(7):
            source.update(f"prompt {i}", "{}", [Generation(f"answer {i}")])
        other.update("not mine", "{}", [Generation("x")])
        assert count_entries(source) == 7
        listed = sorted(iter_entries(source), key=lambda e: e.prompt)
        assert [e.generations[0].text for e in listed] == [f"answer {i}" for i in range(7)]
        assert all(e.expires_at is not None and e.expires_at > time.time() + 3000 for e in listed)
        cache_url = f"{redis_url}?namespace={namespace}"
        dump = tmp_path / "redis.jsonl"
        assert run(capsys, "export", "--cache", cache_url, str(dump))[0] == 0
        assert run(capsys, "clear", "--cache", cache_url, "--yes")[1].startswith("cleared 7 entries")
        assert count_entries(source) == 0 and count_entries(other) == 1
        code, _, err = run(capsys, "import", "--cache", cache_url, str(dump))
        assert code == 0 and "imported 7 entries" in err
        code, out, _ = run(capsys, "stats", "--cache", cache_url, "--json")
        stats = json.loads(out)
        assert stats["entries"] == 7 and stats["hits"] is None and stats["size_bytes"] is None
    finally:
        source.clear()
        other.clear()
        source.close()
        other.close()


def test_sqlalchemy_cache_entries(tmp_path: Path) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from llm_cache.caches.sql import SQLAlchemyCache
    from llm_cache.inspection import count_entries, iter_entries, summarize

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'sa.db'}")
    cache = SQLAlchemyCache(engine, namespace="mine")
    theirs = SQLAlchemyCache(engine, namespace="theirs")
    cache.update("p1", "{}", [Generation("a"), Generation("b")])
    cache.update("p2", "{}", [usage_generation("c", 12)])
    theirs.update("p3", "{}", [Generation("z")])
    entries = sorted(iter_entries(cache), key=lambda e: e.prompt)
    assert [(e.prompt, [g.text for g in e.generations]) for e in entries] == [("p1", ["a", "b"]), ("p2", ["c"])]
    assert all(e.created_at is not None for e in entries)
    assert count_entries(cache) == 2
    assert summarize(entries).entries_with_usage == 1
    engine.dispose()


def test_full_text_search_needs_a_store_that_has_it(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "search", "--cache", url(db), "joke", "--fts")
    assert code == 1 and "SQLiteCache has no full-text search" in err
