"""An in-process emulator of the Momento Cache gRPC service, for tests.

Momento is a hosted service; its own local emulator ("Momento Local") ships only as a
Docker image. This module is a small stand-in that runs inside the test process: a
real gRPC server on a loopback port, built from the **Momento SDK's own wire types**
(``momento_wire_types.cacheclient_pb2_grpc.ScsServicer`` and
``controlclient_pb2_grpc.ScsControlServicer``), so the official ``momento`` SDK talks to
it exactly as it talks to Momento: same protobuf messages, same metadata (the ``cache``
header names the cache, ``authorization`` carries the API key), same gRPC status codes.

What it implements (everything else answers ``UNIMPLEMENTED``, as the generated base
servicers do):

* control plane (``control_client.ScsControl``): ``CreateCache`` (``ALREADY_EXISTS`` when
  it exists), ``DeleteCache``, ``ListCaches``, ``FlushCache``;
* data plane (``cache_client.Scs``): ``Get``, ``Set``, ``SetIfNotExists``, ``Delete``,
  ``Increment``. Every item carries its TTL (Momento has no items without one); an item
  past its expiry is a miss. TTLs above ``max_ttl`` (24 hours, Momento's hard limit) are
  refused with ``INVALID_ARGUMENT``. A data call naming a cache that does not exist
  fails with ``NOT_FOUND``, as on Momento.

Time is the emulator's own clock, which a test can move: ``emulator.advance(seconds)``
makes items expire without sleeping.

Two ways to point the SDK at it:

* plaintext (default): ``CredentialProvider.for_momento_local(host, port)`` (the SDK's
  helper for Momento Local; any port other than 443 means a plaintext channel), as
  returned by :meth:`MomentoEmulator.credential_provider`;
* TLS (``MomentoEmulator(tls=True)``), the path production uses: the emulator makes a
  throw-away self-signed certificate for 127.0.0.1 with the ``openssl`` command, and
  :attr:`MomentoEmulator.api_key` is a well-formed (unsigned-for-real) legacy Momento API
  key, a JWT whose ``c``/``cp`` claims name ``127.0.0.1:<port>`` as the cache and control
  endpoints. The SDK parses that key like any other (``MOMENTO_API_KEY`` included) and
  opens a TLS channel to the emulator; :meth:`MomentoEmulator.configuration` adds the
  certificate as the trusted root.

Faults for fail-open tests: :meth:`fail` makes every call (or the named RPCs) answer a
gRPC error status until :meth:`heal`; :meth:`stop` then :meth:`start` restarts the server
on the same port (the stored items survive, like a network outage rather than a wipe).

This is an emulator, not Momento: no eviction, no rate or size limits, no collections,
topics, tokens or signing keys.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .._imports import require

if TYPE_CHECKING:
    import grpc
else:
    grpc = require("grpc", "momento", "MomentoEmulator")
from momento_wire_types import cacheclient_pb2 as cache_pb  # noqa: E402  (after the check above)
from momento_wire_types import cacheclient_pb2_grpc as cache_grpc  # noqa: E402
from momento_wire_types import controlclient_pb2 as control_pb  # noqa: E402
from momento_wire_types import controlclient_pb2_grpc as control_grpc  # noqa: E402

__all__ = ["MomentoEmulator"]

#: Momento's hard per-item TTL limit (docs.momentohq.com/cache/limits).
MAX_TTL_SECONDS = 24 * 60 * 60
_MAX_MESSAGE = 16 * 1024 * 1024  # above the SDK's own 5 MB so the SDK, not us, is the limit
# Any fixed string works: the SDK decodes the key's claims without checking the signature.
_FAKE_SIGNING_SECRET = "llm-cache momento emulator, not a secret, signs nothing real"


@dataclasses.dataclass
class _Item:
    value: bytes
    expires_at: float


class _Failure:
    def __init__(self, code: grpc.StatusCode, message: str, methods: frozenset[str] | None, times: int | None):
        self.code = code
        self.message = message
        self.methods = methods
        self.times = times


class MomentoEmulator:
    """An in-process Momento Cache emulator (a real gRPC server on 127.0.0.1).

    Args:
        host: address to listen on (loopback by default).
        port: port to listen on; 0 picks a free one (kept across :meth:`stop`/:meth:`start`).
        tls: serve TLS with a throw-away self-signed certificate (needs the ``openssl``
            command), so that the SDK's production path (an API key naming the endpoints,
            port 443 semantics, a secure channel) can be exercised.
        require_api_key: reject calls whose ``authorization`` header is not :attr:`api_key`
            with ``UNAUTHENTICATED``.
        caches: names of caches that exist from the start.
        max_ttl: the largest TTL accepted, in seconds.
        clock: time source (seconds); :meth:`advance` adds to it.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with MomentoEmulator() as emulator:
            client = CacheClient(Configurations.Laptop.latest(), emulator.credential_provider(),
                                 timedelta(seconds=60))
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        require_api_key: bool = False,
        caches: Iterable[str] = (),
        max_ttl: float = MAX_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.require_api_key = require_api_key
        self.max_ttl = max_ttl
        self._clock = clock
        self._offset = 0.0
        self._lock = threading.Lock()
        self._caches: dict[str, dict[bytes, _Item]] = {name: {} for name in caches}
        self._failure: _Failure | None = None
        self._server: grpc.Server | None = None
        self._certdir: str | None = None
        self._cert_pem: bytes | None = None
        self._key_pem: bytes | None = None
        self._api_key: str | None = None
        #: Calls received per RPC name (``"Get"``, ``"CreateCache"``, ...), failed ones included.
        self.calls: Counter[str] = Counter()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "MomentoEmulator":
        """Start serving (again, on the same port after :meth:`stop`)."""
        if self._server is not None:
            return self
        if self.tls and self._cert_pem is None:
            self._make_certificate()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="momento-emulator"),
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
                ("grpc.max_send_message_length", _MAX_MESSAGE),
                # gRPC sets SO_REUSEPORT by default, which would let two emulators (or a
                # restart racing another process) share a port silently.
                ("grpc.so_reuseport", 0),
            ],
        )
        cache_grpc.add_ScsServicer_to_server(_DataServicer(self), server)
        control_grpc.add_ScsControlServicer_to_server(_ControlServicer(self), server)
        address = f"{self.host}:{self.port}"
        if self.tls:
            assert self._key_pem is not None and self._cert_pem is not None
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([(self._key_pem, self._cert_pem)]))
        else:
            bound = server.add_insecure_port(address)
        if not bound:
            raise RuntimeError(f"MomentoEmulator could not listen on {address}")
        self.port = bound
        server.start()
        self._server = server
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop serving; stored items are kept for a later :meth:`start`."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()

    def close(self) -> None:
        """Stop and remove the temporary certificate files."""
        self.stop()
        if self._certdir is not None:
            shutil.rmtree(self._certdir, ignore_errors=True)
            self._certdir = None

    def __enter__(self) -> "MomentoEmulator":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def endpoint(self) -> str:
        """``host:port`` the emulator listens on."""
        if not self.port:
            raise RuntimeError("start the MomentoEmulator first")
        return f"{self.host}:{self.port}"

    # -- pointing the SDK at it ------------------------------------------------------------
    @property
    def api_key(self) -> str:
        """A well-formed legacy Momento API key whose claims name this emulator.

        It is a JWT with ``c`` (cache endpoint) and ``cp`` (control endpoint) claims set to
        :attr:`endpoint`; the SDK reads those claims without verifying the signature, so it
        connects here. Only useful with ``tls=True``: keys always mean TLS on the SDK side.
        """
        if self._api_key is None:
            import jwt  # PyJWT, a dependency of the momento SDK

            claims = {"sub": "llm-cache-emulator", "c": self.endpoint, "cp": self.endpoint}
            self._api_key = jwt.encode(claims, _FAKE_SIGNING_SECRET, algorithm="HS256")
        return self._api_key

    @property
    def root_certificate_path(self) -> Path:
        """The PEM file of the emulator's self-signed certificate (``tls=True`` only)."""
        if not self.tls or self._certdir is None:
            raise RuntimeError("the emulator serves TLS only when built with tls=True and started")
        return Path(self._certdir) / "cert.pem"

    def credential_provider(self) -> Any:
        """A ``momento.CredentialProvider`` for this emulator (plaintext or TLS)."""
        from momento import CredentialProvider

        if self.tls:
            # The same parsing the SDK applies to a real key from MOMENTO_API_KEY.
            return CredentialProvider.from_disposable_token(self.api_key)
        provider = CredentialProvider.for_momento_local(self.host, self.port)
        if self.require_api_key:
            provider = dataclasses.replace(provider, auth_token=self.api_key)
        return provider

    def configuration(self, base: Any = None) -> Any:
        """``base`` (default: ``Configurations.Laptop.latest()``) trusting the emulator's certificate."""
        from momento import Configurations

        configuration = base if base is not None else Configurations.Laptop.latest()
        if self.tls:
            configuration = configuration.with_root_certificates_pem(self.root_certificate_path)
        return configuration

    # -- time and faults ---------------------------------------------------------------------
    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward: items whose TTL runs out are gone."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._offset += seconds

    def fail(
        self,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        message: str = "emulated Momento outage",
        *,
        methods: Iterable[str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer calls with ``code`` until :meth:`heal` (or for the next ``times`` calls).

        ``methods`` limits the failure to those RPC names (``"Get"``, ``"Set"``, ...).
        """
        with self._lock:
            self._failure = _Failure(code, message, frozenset(methods) if methods is not None else None, times)

    def heal(self) -> None:
        """Stop failing calls."""
        with self._lock:
            self._failure = None

    # -- inspection ------------------------------------------------------------------------------
    def cache_names(self) -> list[str]:
        with self._lock:
            return sorted(self._caches)

    def keys(self, cache_name: str) -> list[bytes]:
        """Live (unexpired) keys of a cache."""
        now = self.now()
        with self._lock:
            items = self._caches.get(cache_name, {})
            return [key for key, item in items.items() if item.expires_at > now]

    def get_raw(self, cache_name: str, key: str | bytes) -> bytes | None:
        now = self.now()
        with self._lock:
            item = self._caches.get(cache_name, {}).get(_as_bytes(key))
            return item.value if item is not None and item.expires_at > now else None

    def put_raw(self, cache_name: str, key: str | bytes, value: bytes, ttl: float = 60.0) -> None:
        """Store ``value`` directly (e.g. garbage, to test a client's handling of it)."""
        with self._lock:
            self._caches.setdefault(cache_name, {})[_as_bytes(key)] = _Item(value, self.now() + ttl)

    # -- what the servicers call ---------------------------------------------------------------
    def _admit(self, method: str, context: grpc.ServicerContext) -> None:
        """Count the call, check the API key, apply an injected failure (aborts the RPC)."""
        with self._lock:
            self.calls[method] += 1
            failure = self._failure
            if failure is not None and (failure.methods is None or method in failure.methods):
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failure = None
            else:
                failure = None
        if self.require_api_key:
            metadata = dict(context.invocation_metadata())
            if metadata.get("authorization") != self.api_key:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "Invalid API key")
        if failure is not None:
            context.abort(failure.code, failure.message)

    def _items(self, context: grpc.ServicerContext) -> dict[bytes, _Item]:
        """The named cache's items (caller holds the lock); aborts if there is no such cache."""
        name = dict(context.invocation_metadata()).get("cache")
        if not name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Cache header is missing")
        items = self._caches.get(name)  # type: ignore[arg-type]
        if items is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Cache not found: {name}")
        return items  # type: ignore[return-value]

    def _expiry(self, ttl_milliseconds: int, context: grpc.ServicerContext) -> float:
        if ttl_milliseconds <= 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "TTL must be a positive number of milliseconds")
        if ttl_milliseconds > self.max_ttl * 1000:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"TTL {ttl_milliseconds} ms exceeds the maximum of {int(self.max_ttl)} seconds",
            )
        return self.now() + ttl_milliseconds / 1000.0

    def _live(self, items: dict[bytes, _Item], key: bytes) -> _Item | None:
        item = items.get(key)
        if item is not None and item.expires_at <= self.now():
            del items[key]  # lazy expiry, as good as a sweeper for an emulator
            return None
        return item

    def _make_certificate(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("MomentoEmulator(tls=True) needs the 'openssl' command to make its certificate")
        self._certdir = tempfile.mkdtemp(prefix="momento-emulator-")
        key, cert = os.path.join(self._certdir, "key.pem"), os.path.join(self._certdir, "cert.pem")
        subprocess.run(
            [
                openssl, "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=momento-emulator",
                "-addext", f"subjectAltName=IP:{self.host},DNS:localhost",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        self._key_pem = Path(key).read_bytes()
        self._cert_pem = Path(cert).read_bytes()


class _DataServicer(cache_grpc.ScsServicer):
    """``cache_client.Scs``: the scalar item RPCs the cache uses."""

    def __init__(self, emulator: MomentoEmulator) -> None:
        self.emu = emulator

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.emu._admit("Get", context)
        with self.emu._lock:
            item = self.emu._live(self.emu._items(context), request.cache_key)
            if item is None:
                return cache_pb._GetResponse(result=cache_pb.Miss)
            return cache_pb._GetResponse(result=cache_pb.Hit, cache_body=item.value)

    def Set(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.emu._admit("Set", context)
        with self.emu._lock:
            items = self.emu._items(context)
            items[request.cache_key] = _Item(request.cache_body, self.emu._expiry(request.ttl_milliseconds, context))
        return cache_pb._SetResponse(result=cache_pb.Ok)

    def SetIfNotExists(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.emu._admit("SetIfNotExists", context)
        with self.emu._lock:
            items = self.emu._items(context)
            if self.emu._live(items, request.cache_key) is not None:
                return cache_pb._SetIfNotExistsResponse(not_stored=cache_pb._SetIfNotExistsResponse._NotStored())
            items[request.cache_key] = _Item(request.cache_body, self.emu._expiry(request.ttl_milliseconds, context))
            return cache_pb._SetIfNotExistsResponse(stored=cache_pb._SetIfNotExistsResponse._Stored())

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.emu._admit("Delete", context)
        with self.emu._lock:
            self.emu._items(context).pop(request.cache_key, None)
        return cache_pb._DeleteResponse()

    def Increment(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.emu._admit("Increment", context)
        with self.emu._lock:
            items = self.emu._items(context)
            item = self.emu._live(items, request.cache_key)
            current = 0
            if item is not None:
                try:
                    current = int(item.value.decode("ascii"))
                except (UnicodeDecodeError, ValueError):
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "Value is not an integer")
            value = current + request.amount
            # The request's TTL applies to the item, new or existing (the SDK sends the
            # client's default TTL when the caller gives none).
            items[request.cache_key] = _Item(str(value).encode(), self.emu._expiry(request.ttl_milliseconds, context))
        return cache_pb._IncrementResponse(value=value)


class _ControlServicer(control_grpc.ScsControlServicer):
    """``control_client.ScsControl``: cache lifecycle."""

    def __init__(self, emulator: MomentoEmulator) -> None:
        self.emu = emulator

    def CreateCache(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.emu._admit("CreateCache", context)
        _check_cache_name(request.cache_name, context)
        with self.emu._lock:
            if request.cache_name in self.emu._caches:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"Cache already exists: {request.cache_name}")
            self.emu._caches[request.cache_name] = {}
        return control_pb._CreateCacheResponse()

    def DeleteCache(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.emu._admit("DeleteCache", context)
        with self.emu._lock:
            if self.emu._caches.pop(request.cache_name, None) is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Cache not found: {request.cache_name}")
        return control_pb._DeleteCacheResponse()

    def ListCaches(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.emu._admit("ListCaches", context)
        limits = control_pb._CacheLimits(max_ttl_seconds=int(self.emu.max_ttl))
        with self.emu._lock:
            names = sorted(self.emu._caches)
        caches = [control_pb._Cache(cache_name=name, cache_limits=limits) for name in names]
        return control_pb._ListCachesResponse(cache=caches)

    def FlushCache(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.emu._admit("FlushCache", context)
        with self.emu._lock:
            items = self.emu._caches.get(request.cache_name)
            if items is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Cache not found: {request.cache_name}")
            items.clear()  # type: ignore[union-attr]
        return control_pb._FlushCacheResponse()


def _check_cache_name(name: str, context: grpc.ServicerContext) -> None:
    if not name or not name.strip():
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Cache name must not be empty")


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else key

