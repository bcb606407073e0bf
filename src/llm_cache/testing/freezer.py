"""A TCP proxy on loopback that can freeze, for tests of hung servers.

``FreezingProxy(target_port)`` forwards ``127.0.0.1:proxy.port`` to the target. While
:meth:`~FreezingProxy.freeze` is in effect it behaves like a server whose process is stopped
(SIGSTOP): connections stay open and new ones are accepted by the kernel's backlog, but no
byte goes through in either direction, so a client waits for a reply that never comes and no
TCP timeout fires. :meth:`~FreezingProxy.thaw` lets the held bytes through;
:meth:`~FreezingProxy.drop_connections` closes every forwarded connection (a server restart).

It lets a test hang a server it does not own (the shared MariaDB) without touching it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["FreezingProxy"]


class FreezingProxy:
    """Forward a loopback port to ``target``; :meth:`freeze` makes it a hung server."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name="freezing-proxy", daemon=True)
        self._acceptor.start()

    def url_for(self, url: str, port: int) -> str:
        """``url`` with ``:port`` (the target's) replaced by this proxy's port."""
        return url.replace(f":{port}", f":{self.port}", 1)

    @property
    def frozen(self) -> bool:
        return not self._flowing.is_set()

    def freeze(self) -> None:
        """Stop forwarding (held bytes wait) and stop accepting (the kernel's backlog queues)."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    @contextlib.contextmanager
    def frozen_for_block(self) -> Iterator[None]:
        """``with proxy.frozen_for_block(): ...``: frozen inside, thawed after (even on error)."""
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def drop_connections(self) -> None:
        """Close every forwarded connection (both sides), as a server restart would."""
        with self._lock:
            doomed = list(self._sockets)
            self._sockets.clear()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._closed = True
        self._flowing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.drop_connections()

    def __enter__(self) -> "FreezingProxy":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- forwarding ------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            self._flowing.wait()
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, server))
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()  # frozen: the bytes are held, as a stopped process holds them
                if self._closed:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
