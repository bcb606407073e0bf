"""A loopback HTTP pass-through that counts the requests it forwards.

Put in front of a real server (llama.cpp's), it tells a test how many calls reached the
server and with what answer status, without reading the server's log. Each response is
read whole and sent back with a Content-Length (server-sent events included), one
request per connection: small, and enough for tests.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "accept-encoding"}


@dataclass(frozen=True)
class Forwarded:
    method: str
    path: str
    status: int
    body: Any  # the request's JSON body (None when there was none)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the counts, not a log."""

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        target = self.server.target
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=600)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            conn.request(self.command, self.path, body=raw or None, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        self.server.record(Forwarded(self.command, self.path, response.status, body))
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _forward


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, target: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.target = urlsplit(target)
        self.lock = threading.Lock()
        self.log: list[Forwarded] = []

    def record(self, entry: Forwarded) -> None:
        with self.lock:
            self.log.append(entry)


class CountingUpstream:
    """``CountingUpstream("http://127.0.0.1:8000").start()``; ``base_url`` ends in ``/v1``."""

    def __init__(self, target: str) -> None:
        self._server = _Server(target)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="counting-upstream")

    def start(self) -> CountingUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def log(self) -> list[Forwarded]:
        with self._server.lock:
            return list(self._server.log)

    def calls(self, path: str | None = None) -> list[Forwarded]:
        """The model calls forwarded (POSTs; ``/v1/models`` listings are not counted)."""
        return [f for f in self.log if f.method == "POST" and (path is None or f.path == path)]

    def reset(self) -> None:
        with self._server.lock:
            self._server.log.clear()
