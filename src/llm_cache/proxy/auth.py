"""Client keys of a shared proxy: the proxy's own API keys, kept hashed at rest (no I/O but reading the file).

When the proxy holds the upstream key (``--upstream-api-key-env``), anyone who can reach it
spends that key. ``--client-keys FILE`` then says who may: each client presents one of the
proxy's own keys as its ``Authorization: Bearer`` (the SDK's ``api_key``), and each key is
its own tenant (entries are partitioned by a hash of it, as with pass-through keys).

The file holds one ``sha256:<64 hex digits>`` per line, optionally followed by a label;
``#`` starts a comment. ``llm-cache serve --new-client-key FILE`` makes a random key,
appends its hash to ``FILE`` and prints the key once: the proxy never holds the keys
themselves, so a leaked file grants nothing.

Checking a key hashes it and compares the digest with every stored digest using
:func:`hmac.compare_digest`, without stopping at a match: the time taken does not depend on
which key, if any, matched.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable

from ..errors import ConfigurationError

__all__ = ["ClientKeys", "hash_client_key", "new_client_key"]

_LINE = re.compile(r"^sha256:([0-9a-fA-F]{64})(?:\s+.*)?$")


def hash_client_key(key: str) -> str:
    """The line that stands for ``key`` in a client-keys file: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_client_key() -> str:
    """A new random client key (256 bits), as a client passes it in ``api_key``."""
    return "lcp-" + secrets.token_urlsafe(32)


class ClientKeys:
    """The set of accepted client keys, as sha256 digests."""

    def __init__(self, digests: Iterable[bytes]) -> None:
        self._digests = tuple(digests)
        if not self._digests:
            raise ConfigurationError("a client-keys file must hold at least one sha256:<hex> line")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ClientKeys:
        """Read a client-keys file (see the module docstring for the format)."""
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"cannot read the client keys {os.fspath(path)!r}: {exc}"
            ) from exc
        digests = []
        for number, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            match = _LINE.match(text)
            if match is None:
                # The line itself is not echoed: it might be a key pasted by mistake.
                raise ConfigurationError(
                    f"{os.fspath(path)}:{number}: expected 'sha256:<64 hex digits> [label]'; "
                    "make keys with: llm-cache serve --new-client-key FILE"
                )
            digests.append(bytes.fromhex(match.group(1)))
        return cls(digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"ClientKeys({len(self._digests)} keys)"

    def verify(self, key: str | None) -> bool:
        """Whether ``key`` is one of the accepted keys (constant time in which one)."""
        if not key:
            return False
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(digest, known)
        return found
