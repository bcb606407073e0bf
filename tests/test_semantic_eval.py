"""The measurement protocol and the ``eval`` / ``calibrate`` commands, on a tiny pairs file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_cache.cli import main
from llm_cache.errors import ConfigurationError
from llm_cache.semantic import evaluation as ev
from llm_cache.semantic.cache import CONFIG_FILE, SemanticCache, read_config
from llm_cache.testing.semantic_contract import shared_embeddings

PAIRS = [
    {"a": "How do I reset my password?", "b": "How can I reset my password?", "same_answer": True, "category": "paraphrase"},
    {"a": "What is the capital of France?", "b": "What's the capital city of France?", "same_answer": True, "category": "paraphrase"},
    {"a": "Remind me at 7am", "b": "Remind me at 7pm", "same_answer": False, "category": "number"},
    {"a": "Which items can be recycled?", "b": "Which items can't be recycled?", "same_answer": False, "category": "negation"},
    {"a": "How do I bake sourdough bread?", "b": "What is the boiling point of water?", "same_answer": False, "category": "unrelated"},
    {"a": "Can I pay with PayPal?", "b": "How do I reset my password please?", "same_answer": False, "category": "other"},
]


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return path


def test_protocol_counts_right_wrong_other_and_misses(pairs_file: Path) -> None:
    pairs = ev.load_pairs(pairs_file)
    neighbours = ev.collect_neighbours(pairs, shared_embeddings())
    with_guards = ev.metrics_at(ev.decide(pairs, neighbours, ev_guards("default")), 0.9)
    assert (with_guards.right, with_guards.wrong) == (2, 0)
    assert with_guards.other == 1  # "... reset my password please?" hits pair 1's answer
    assert with_guards.duplicates == 2 and with_guards.non_duplicates == 4
    assert with_guards.precision == 1.0 and with_guards.recall == 1.0
    without = ev.metrics_at(ev.decide(pairs, neighbours, ()), 0.9)
    assert without.wrong == 2 and without.miss_hit_rate == 0.5  # the traps hit without guards


def ev_guards(spec: str):  # type: ignore[no-untyped-def]
    from llm_cache.semantic.guards import resolve_guards

    return resolve_guards(spec)


def test_load_pairs_formats(tmp_path: Path) -> None:
    tsv = tmp_path / "mrpc.tsv"
    tsv.write_text("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA cat sat.\tThe cat sat.\n0\t3\t4\tx\ty\n")
    assert ev.load_pairs(tsv) == [ev.Pair("A cat sat.", "The cat sat.", True), ev.Pair("x", "y", False)]
    mock = tmp_path / "mock.json"
    mock.write_text(json.dumps([{"origin": "a", "similar": "b"}]))
    assert ev.load_pairs(mock) == [ev.Pair("a", "b", True, "gptcache")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": "x", "b": "y"}\n')
    with pytest.raises(ConfigurationError, match="label"):
        ev.load_pairs(bad)
    assert ev.threshold_grid("0.8:0.9:0.05") == [0.8, 0.85, 0.9]
    with pytest.raises(ConfigurationError):
        ev.threshold_grid("0.8:x")


def test_eval_command_prints_the_table_and_threshold(pairs_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(pairs_file), "--threshold-grid", "0.85,0.9,0.95", "--target-precision", "0.9", "--by-category"]) == 0
    out = capsys.readouterr().out
    assert "| threshold | right | wrong | other | precision | recall | F1 | should-miss hit |" in out
    assert "| 0.90 | 2 | 0 | 1 | 1.000 | 1.000 | 1.000 | 0.000 |" in out
    assert "threshold reaching precision >= 0.9: 0.85" in out
    assert "| negation | 1 | 0 | 0 | 0 | 0.000 |" in out


def test_eval_command_json_and_gptcache_table(pairs_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(pairs_file), "--json", "--limit", "3", "--guards", "none"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pairs"] == 3 and data["rows"][0]["threshold"] == 0.8
    assert main(["eval", str(pairs_file), "--gptcache-table", "--threshold-grid", "0.9"]) == 0
    assert "| threshold | positive | negative | miss | hit rate |" in capsys.readouterr().out


def test_calibrate_stores_the_threshold_the_cache_then_uses(
    pairs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "cache"
    code = main(["calibrate", "--data-dir", str(data_dir), str(pairs_file), "--threshold-grid", "0.85,0.9", "--target-precision", "0.9"])
    assert code == 0
    config = read_config(data_dir)
    assert config["threshold"] == 0.85 and config["calibration"]["pairs"] == len(PAIRS)
    with SemanticCache(shared_embeddings(), data_dir=data_dir) as cache:
        assert cache.threshold == 0.85
    # A target no threshold reaches writes nothing and fails.
    other = tmp_path / "other"
    assert main(["calibrate", "--data-dir", str(other), str(pairs_file), "--guards", "none", "--threshold-grid", "0.85", "--target-precision", "0.99"]) == 1
    assert not (other / CONFIG_FILE).exists()
