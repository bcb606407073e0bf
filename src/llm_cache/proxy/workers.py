"""Pre-fork workers for ``llm-cache serve --workers N`` (POSIX).

The parent forks ``N`` worker processes and supervises them; it serves nothing itself.
Each worker builds its own app (its own event loop, cache connections, upstream client,
flights, lease store and connection guard: limits such as ``--max-connections`` are per
worker) and serves its own ``SO_REUSEPORT`` socket on the same address, so the kernel
spreads new connections over the workers; where ``SO_REUSEPORT`` does not exist, the
workers share one socket bound by the parent.

Metrics: the parent points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before any
worker starts (see :mod:`._prom`), so that ``/metrics`` of any worker reports all of them;
it removes a dead worker's live gauges and restarts the worker (after a second, so a
worker that cannot start does not spin). SIGTERM or SIGINT stops every worker.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from types import FrameType

from ._prom import MULTIPROC_ENV

__all__ = ["listening_socket", "prepare_metrics_dir", "run_workers"]

logger = logging.getLogger("llm_cache.proxy")

RESTART_DELAY = 1.0


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket (not yet listening) for uvicorn's ``sockets=``.

    ``proto=IPPROTO_TCP`` matters: asyncio only sets TCP_NODELAY on accepted sockets whose
    proto says TCP, and without it every response written in two parts (headers, body)
    waits ~40 ms for the client's delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
    except BaseException:
        sock.close()
        raise
    return sock


def prepare_metrics_dir() -> tuple[str, bool]:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` for the workers: (its path, whether we made it).

    A directory the operator set is used, but emptied of ``*.db`` files first (values of a
    previous run would be added to this one's); otherwise a new temporary one is made
    (and removed at exit).
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.unlink(os.path.join(given, name))
        path, made = given, False
    else:
        path, made = tempfile.mkdtemp(prefix="llm-cache-metrics-"), True
        os.environ[MULTIPROC_ENV] = path
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported before the variable was set: switch it now
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
    return path, made


def _worker_died(pid: int) -> None:
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
    except Exception:  # noqa: BLE001 - metrics housekeeping never stops the supervisor
        pass


def _stop_with_parent(parent: int) -> None:
    """Linux: the worker gets SIGTERM when the supervisor dies (even by SIGKILL), so no
    orphaned worker keeps the port."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run_workers(
    count: int,
    host: str,
    port: int,
    serve: Callable[[socket.socket], None],
    prepared: tuple[str, bool] | None = None,
) -> int:
    """Fork ``count`` workers that each call ``serve(sock)``; supervise until SIGTERM/SIGINT.

    ``prepared``: what :func:`prepare_metrics_dir` returned, if the caller called it
    already (it must run before the first app is built); else it is called here.
    """
    reuse_port = hasattr(socket, "SO_REUSEPORT")
    shared = None if reuse_port else listening_socket(host, port)
    if reuse_port:  # fail in the parent if the address is taken, before forking anything
        listening_socket(host, port, reuse_port=True).close()
    metrics_dir, made_dir = prepared or prepare_metrics_dir()
    workers: dict[int, float] = {}  # pid -> start time
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(workers):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    parent = os.getpid()

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _stop_with_parent(parent)
                sock = shared or listening_socket(host, port, reuse_port=True)
                serve(sock)
                code = 0
            except BaseException:  # noqa: BLE001 - reported, then the worker exits
                logger.exception("llm-cache serve: a worker failed")
            finally:
                os._exit(code)
        workers[pid] = time.monotonic()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(count):
            spawn()
        while workers:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            workers.pop(pid, None)
            _worker_died(pid)
            if not stopping:
                logger.warning(
                    "llm-cache serve: worker %d exited (status %d); starting another", pid, status
                )
                time.sleep(RESTART_DELAY)
                if not stopping:
                    spawn()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if shared is not None:
            shared.close()
        if made_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
