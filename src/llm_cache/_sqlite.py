"""SQLite connections as every llm-cache store opens them (SQLiteCache, the local vector store)."""

from __future__ import annotations

import os
import sqlite3

__all__ = ["open_wal_connection", "open_read_only_connection", "describe_open_error"]


def open_wal_connection(path: str, busy_ms: int) -> sqlite3.Connection:
    """A connection in autocommit mode, WAL journal, ``synchronous=NORMAL``, with a busy timeout.

    WAL lets readers run beside the writer; NORMAL makes a commit an append rather than an
    fsync of the database (a cache may lose its last writes on power loss, never its
    consistency); the busy timeout makes writers from other processes wait their turn
    instead of failing. ``check_same_thread`` is off because the owner hands connections
    to its threads itself.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def open_read_only_connection(path: str, busy_ms: int) -> sqlite3.Connection:
    """A connection that can never change ``path`` or create anything beside it.

    ``mode=ro`` refuses writes and a missing file (never creates one). A WAL database read
    that way still gets ``-wal``/``-shm`` files created next to it when none exist (SQLite
    needs the shared-memory index to read a WAL database) and, being read-only, cannot
    remove them afterwards. No ``-wal`` file means no connection has the database open (the
    last one to close deletes it), so the file is then opened ``immutable=1``: no lock, no
    side file. A writer that starts during such a read could make it see a mix of old and
    new pages of its own commits, never change the file through us: acceptable for a
    listing, and the price of leaving an inspected directory exactly as it was.
    """
    from urllib.parse import quote

    absolute = os.path.abspath(path)
    if not os.path.isfile(absolute):
        raise FileNotFoundError(f"no such file: {path}")
    immutable = _is_wal(absolute) and not os.path.exists(absolute + "-wal")
    uri = f"file:{quote(absolute)}?mode=ro" + ("&immutable=1" if immutable else "")
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
    return conn


def _is_wal(path: str) -> bool:
    """Whether the database header says WAL (bytes 18 and 19 are 2 for WAL, 1 for a rollback journal)."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(20)
    except OSError:
        return False
    return len(header) == 20 and header[18:20] == b"\x02\x02"


def describe_open_error(path: str, exc: BaseException) -> str:
    """Why ``path`` could not be opened as an SQLite database, naming the file (or the
    missing directory) rather than SQLite's bare "unable to open database file"."""
    absolute = os.path.abspath(path)
    directory = os.path.dirname(absolute) or "."
    if not os.path.isdir(directory):
        return f"cannot open SQLite database {path!r}: the directory {directory!r} does not exist"
    if os.path.isdir(absolute):
        return f"cannot open SQLite database {path!r}: it is a directory"
    if not os.path.exists(absolute):
        return f"cannot open SQLite database {path!r}: no such file"
    return f"cannot open SQLite database {path!r}: {exc}"
