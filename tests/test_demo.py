"""``llm-cache demo`` against an OpenAI-compatible server given by OPENAI_BASE_URL: which
model it asks, and that it runs to the end on a server that behaves like llama.cpp's.
(tests/test_real_llm.py runs it against llama.cpp itself.)"""

from __future__ import annotations

import io
from typing import Any, Iterator

import pytest

from llm_cache.cli import main as cli_main
from llm_cache.demo import DEFAULT_MODEL, MODEL_ENV, choose_model, run_demo
from llm_cache.testing.fake_openai import MODELS, FakeOpenAIServer


@pytest.fixture
def llama_like() -> Iterator[FakeOpenAIServer]:
    """A server with llama.cpp's habits: one prompt per request, ``n`` ignored."""
    with FakeOpenAIServer(one_prompt_per_request=True, ignore_n=True) as server:
        yield server


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, llama_like: FakeOpenAIServer) -> pytest.MonkeyPatch:
    monkeypatch.setenv("OPENAI_BASE_URL", llama_like.base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # local servers need none
    monkeypatch.delenv(MODEL_ENV, raising=False)
    return monkeypatch


def models_asked(server: FakeOpenAIServer) -> set[str]:
    return {r["body"]["model"] for r in server.requests}


def run(tmp_path: Any, **kwargs: Any) -> str:
    out = io.StringIO()
    run_demo(database_path=str(tmp_path / "demo.db"), out=out, **kwargs)
    return out.getvalue()


def test_demo_runs_on_a_llama_like_server_with_its_first_listed_model(env, llama_like, tmp_path) -> None:
    text = run(tmp_path)
    assert f"Model:    {MODELS[0]} (the first model the server lists" in text
    assert f"Done (model {MODELS[0]})" in text
    assert models_asked(llama_like) == {MODELS[0]}
    assert "cache stats: 1 hit, 1 miss" in text
    assert "3 of 3 map steps came from the cache" in text
    # n=2 on a server that ignores n: every miss of the first sections cost two requests.
    assert [r["body"]["n"] for r in llama_like.requests[:2]] == [2, 1]


def test_the_model_flag_wins_over_the_environment(env, llama_like, tmp_path, capsys) -> None:
    env.setenv(MODEL_ENV, "from-env")
    assert cli_main(["demo", "--database", str(tmp_path / "d.db"), "--model", "from-flag"]) == 0
    assert "Model:    from-flag (chosen with --model" in capsys.readouterr().out
    assert models_asked(llama_like) == {"from-flag"}


def test_the_environment_variable_chooses_the_model(env, llama_like, tmp_path) -> None:
    env.setenv(MODEL_ENV, "from-env")
    assert "Model:    from-env" in run(tmp_path)
    assert models_asked(llama_like) == {"from-env"}


def test_the_built_in_server_uses_the_default_model(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv(MODEL_ENV, raising=False)
    text = run(tmp_path, latency=0.0)
    assert "built-in OpenAI-compatible TEST server" in text
    assert f"Model:    {DEFAULT_MODEL}" in text


def test_choose_model_falls_back_when_listing_fails() -> None:
    # Nothing listens on port 9 (discard) of loopback here: the listing fails fast.
    model, why = choose_model("http://127.0.0.1:9/v1", "k", None)
    assert model == DEFAULT_MODEL and "listing the server's models failed" in why
    assert choose_model("https://api.openai.com/v1", "k", None)[0] == DEFAULT_MODEL
    assert choose_model("http://127.0.0.1:9/v1", "k", "mine")[0] == "mine"
