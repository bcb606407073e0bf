"""llm_cache._deadline: the watchdog that bounds calls on a connection, and deadline threads."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from llm_cache._deadline import guard, run_with_deadline, socket_aborter
from llm_cache.errors import CacheTimeoutError


def test_guard_aborts_a_blocked_read_and_raises_a_timeout() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        began = time.monotonic()
        with pytest.raises(CacheTimeoutError, match="within 0.2s"):
            with guard(0.2, lambda: client.shutdown(socket.SHUT_RDWR)):
                client.recv(1)  # the peer never writes: blocked until the watchdog shuts it
        assert time.monotonic() - began < 10  # did not hang
    finally:
        for s in (client, peer, server):
            s.close()


def test_guard_leaves_a_quick_call_alone() -> None:
    aborted = threading.Event()
    for _ in range(1000):
        with guard(5.0, aborted.set):
            pass
    assert not aborted.is_set()


def test_guard_passes_other_errors_through() -> None:
    with pytest.raises(KeyError):
        with guard(5.0, lambda: None):
            raise KeyError("x")


def test_run_with_deadline_returns_or_gives_up_and_discards_late_results() -> None:
    assert run_with_deadline(5.0, lambda x: x + 1, 1) == 2
    release = threading.Event()
    discarded: list[str] = []
    got_it = threading.Event()

    def slow() -> str:
        release.wait(10)
        return "late connection"

    def discard(value: str) -> None:
        discarded.append(value)
        got_it.set()

    with pytest.raises(CacheTimeoutError):
        run_with_deadline(0.1, slow, discard=discard)
    release.set()
    assert got_it.wait(10) and discarded == ["late connection"]


def test_socket_aborter_kinds() -> None:
    import sqlite3

    conn = sqlite3.connect(":memory:")
    assert socket_aborter(conn) == conn.interrupt
    socket_aborter(object())()  # unknown driver: a no-op
