"""Local embeddings and the local semantic cache never touch the network.

Each test runs a fresh Python process (so that onnxruntime is imported and its first
InferenceSession created inside it, as in a user's program) with ``ORT_DISABLE_TELEMETRY``
removed from its environment (llm-cache itself must switch onnxruntime's telemetry off)
and its home directory in a temporary one.

* Python-level: ``socket.getaddrinfo``, ``socket.socket.connect`` / ``connect_ex`` and
  ``sendto`` are patched in the child to record, and refuse, any address that is not
  loopback (any name other than localhost).
* Native: onnxruntime's telemetry client is C++ and resolves
  ``mobile.events.data.microsoft.com`` with its own sockets (seen with strace about 9 s
  after the first session), which no Python patch sees. When it starts, it first creates
  its event store under ``~/.cache/Microsoft/DeveloperTools/.onnxruntime``; the test
  asserts that store was never created, which shows the client never started (a check
  that needs no waiting, so it does not depend on the machine's speed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

SRC = Path(__file__).resolve().parents[1] / "src"

GUARD = textwrap.dedent(
    """
    import ipaddress, json, socket, sys

    ATTEMPTS = []

    def _loopback(host):
        if host in ("localhost", "", None):
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False

    def _check(what, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, bytes):
            host = host.decode()
        if isinstance(host, str) and not _loopback(host):
            ATTEMPTS.append([what, host])
            raise OSError(f"offline test: {what} {host!r} refused")

    _getaddrinfo = socket.getaddrinfo
    def getaddrinfo(host, *args, **kwargs):
        _check("getaddrinfo", host)
        return _getaddrinfo(host, *args, **kwargs)
    socket.getaddrinfo = getaddrinfo

    for _name in ("connect", "connect_ex"):
        def _make(original, name):
            def method(self, address):
                if self.family in (socket.AF_INET, socket.AF_INET6):
                    _check(name, address)
                return original(self, address)
            return method
        setattr(socket.socket, _name, _make(getattr(socket.socket, _name), _name))

    _sendto = socket.socket.sendto
    def sendto(self, data, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check("sendto", args[-1])
        return _sendto(self, data, *args)
    socket.socket.sendto = sendto

    import atexit
    atexit.register(lambda: print("ATTEMPTS=" + json.dumps(ATTEMPTS), flush=True))
    """
)

SEMANTIC_RUN = textwrap.dedent(
    """
    import asyncio
    from llm_cache import Generation, SemanticCache

    cache = SemanticCache()  # LocalEmbeddings, the local vector store: the offline default
    cache.update("What is the capital of France?", "llm", [Generation(text="Paris.")])
    assert cache.lookup("What's the capital of France?", "llm") is not None
    async def main():
        await cache.aupdate("How are you?", "llm", [Generation(text="Fine.")])
        await cache.alookup("How are you doing today?", "llm")
    asyncio.run(main())
    cache.close()
    """
)

EMBEDDINGS_RUN = textwrap.dedent(
    """
    from llm_cache.embeddings import LocalEmbeddings

    embeddings = LocalEmbeddings()
    assert len(embeddings.embed_query("Is it raining?")) == 384
    assert len(embeddings.embed_documents(["a", "b", "c"])) == 3
    """
)


@pytest.mark.parametrize("program", [SEMANTIC_RUN, EMBEDDINGS_RUN], ids=["SemanticCache", "LocalEmbeddings"])
def test_a_local_semantic_run_stays_on_this_machine(program: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(
        HOME=str(tmp_path),
        XDG_CACHE_HOME=str(tmp_path / ".cache"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")])),
    )
    done = subprocess.run(
        [sys.executable, "-c", GUARD + program],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,  # a bound that says "did not hang", not a speed
    )
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("ATTEMPTS=")]
    assert json.loads(line.removeprefix("ATTEMPTS=")) == []
    telemetry_store = tmp_path / ".cache" / "Microsoft"
    assert not telemetry_store.exists(), sorted(str(p) for p in telemetry_store.rglob("*"))
