"""``llm-cache prune``: expired, old and excess entries, dry run, JSON, clear errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llm_cache import Generation, SQLiteCache
from llm_cache.cli import main
from llm_cache.testing.contract import LLM


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "cache.db"
    now = time.time()
    old = SQLiteCache(path, ttl=10, clock=lambda: now - 3600)  # written an hour ago, expired
    for i in range(10):
        old.update(f"old{i}", LLM, [Generation("x")])
    old.close()
    fresh = SQLiteCache(path)
    for i in range(30):
        fresh.update(f"new{i}", LLM, [Generation("y" * 100)])
    fresh.close()
    return f"sqlite:///{path}"


def _count(url: str) -> int:
    cache = SQLiteCache(url.removeprefix("sqlite:///"))
    try:
        return cache.usage()[0]
    finally:
        cache.close()


def test_dry_run_reports_and_removes_nothing(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", "--cache", db, "--expired", "--max-entries", "20", "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["expired"], report["evicted"], report["remaining"], report["dry_run"]) == (10, 10, 20, True)
    assert _count(db) == 40


def test_prune_expired_old_and_excess(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", "--cache", db, "--expired"]) == 0
    assert "removed 10 entries (10 expired" in capsys.readouterr().out
    assert main(["prune", "--cache", db + "?max_entries=25"]) == 0  # the URL's cap
    assert "5 evicted" in capsys.readouterr().out and _count(db) == 25
    assert main(["prune", "--cache", db, "--max-bytes", "2k", "--policy", "lfu"]) == 0
    assert _count(db) < 25
    assert main(["prune", "--cache", db, "--older-than", "0"]) == 0
    assert _count(db) == 0


def test_errors_say_what_to_do(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", "--cache", db]) == 1
    assert "nothing to prune: give --expired" in capsys.readouterr().err
    assert main(["prune", "--cache", "redis://127.0.0.1:1/0", "--expired"]) == 1
    assert "maxmemory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["prune", "--cache", db, "--max-bytes", "lots"])
    assert exc.value.code == 2 and "not a size" in capsys.readouterr().err
    assert main(["prune", "--cache", "sqlite:///no/such/file.db", "--expired"]) == 1
    assert _count(db) == 40  # nothing was touched by the failed calls
