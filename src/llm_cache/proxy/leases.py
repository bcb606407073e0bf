"""Cross-instance coalescing: one upstream call for identical misses in every process.

In one process, identical concurrent misses already share one :class:`~.flights.Flight`.
This module sits behind it: the flight's task (one per key and process) first asks a
shared *lease store* (Redis or PostgreSQL, the same one the cache lives in) who calls
upstream. The rules, without I/O (:class:`LeasePolicy`, :func:`after_acquire`,
:func:`after_wake`), are shared by both stores, which are thin shells
(:mod:`._lease_redis`, :mod:`._lease_postgres`):

* **lead**: the process that takes the lease calls upstream, renews the lease while it
  works (every ``ttl / 3``), and when the answer is stored (or the call failed) releases
  it and notifies the others;
* **follow**: the others wait for that notification (or at most ``poll`` seconds, in case
  it was missed), then look the entry up: found -> answered from the cache (a coalesced
  hit). Not found -> the lease is free again (the leader failed, stored nothing, or died
  and its lease expired after ``ttl``): the first follower to take it becomes the leader;
* **alone**: a follower that has waited ``wait`` seconds (the upstream timeout) goes
  upstream itself; and so does anyone whose lease store fails: every store call is bounded
  by ``op_timeout`` and any failure means "as if there were no lease store" (fail-open).

The lease is named by a sha256 of the cache key (prompt and llm string, which holds the
tenant's namespace), never the key itself, so no prompt or secret reaches the lease store.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from ..errors import ConfigurationError

__all__ = [
    "LeasePolicy",
    "LeaseSession",
    "LeaseStore",
    "Step",
    "after_acquire",
    "after_wake",
    "coordinate",
    "lease_name",
]

logger = logging.getLogger("llm_cache.proxy")

T = TypeVar("T")


@dataclass(frozen=True)
class LeasePolicy:
    """Timing of cross-instance coalescing (seconds)."""

    ttl: float = 10.0  # a lease its leader stopped renewing (it died) is free after this
    poll: float = 0.5  # a follower re-checks at least this often (a missed notification, a dead leader)
    wait: float = 600.0  # a follower waiting longer goes upstream itself (the upstream timeout)
    op_timeout: float = 2.0  # longest wait for one call to the lease store, then fail-open

    def __post_init__(self) -> None:
        for name in ("ttl", "poll", "wait", "op_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"lease {name} must be a positive number of seconds")

    @property
    def renew_every(self) -> float:
        """How often a leader extends its lease: three chances before it lapses."""
        return self.ttl / 3


class Step(enum.Enum):
    """What a participant does next."""

    LEAD = "lead"  # holds the lease: call upstream (after one more lookup, see coordinate)
    WAIT = "wait"  # someone else leads: wait for a notification or the poll interval
    ACQUIRE = "acquire"  # try to take the lease (again)
    SERVE = "serve"  # the entry landed: answer from the cache
    ALONE = "alone"  # no (working) lease: call upstream without one


def after_acquire(acquired: bool | None, waited: float, policy: LeasePolicy) -> Step:
    """The step after an attempt to take the lease (``None``: the store failed)."""
    if acquired is None:
        return Step.ALONE
    if acquired:
        return Step.LEAD
    return Step.ALONE if waited >= policy.wait else Step.WAIT


def after_wake(found: bool, waited: float, policy: LeasePolicy) -> Step:
    """The step after a follower woke (notified or polled) and looked the entry up."""
    if found:
        return Step.SERVE
    if waited >= policy.wait:
        return Step.ALONE
    return Step.ACQUIRE


def lease_name(prompt: str, llm_string: str) -> str:
    """The lease's name: a hex sha256 of the cache key (never the key, which may hold secrets)."""
    digest = hashlib.sha256()
    digest.update(prompt.encode("utf-8", "surrogatepass"))
    digest.update(b"\x00")
    digest.update(llm_string.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


class LeaseSession(Protocol):
    """One participant's handle on one lease (see :class:`LeaseStore`)."""

    async def acquire(self) -> bool:
        """Take the lease if it is free (or expired); True if this session now holds it."""

    async def renew(self) -> bool:
        """Extend a held lease by the policy's ttl; False if it was lost meanwhile."""

    async def wait(self, timeout: float) -> None:
        """Return when the lease's holder notifies completion, or after ``timeout``."""

    async def release(self) -> None:
        """Give up a held lease (only if still ours) and notify the waiters."""

    async def close(self) -> None:
        """Free the session's connections (never raises)."""


class LeaseStore(Protocol):
    """Where leases live: Redis (``SET NX PX`` + pub/sub) or PostgreSQL (advisory locks + NOTIFY)."""

    policy: LeasePolicy

    async def session(self, name: str) -> LeaseSession:
        """A session on lease ``name``, already listening for its notifications."""

    async def aclose(self) -> None:
        """Close the store's connections."""


@dataclass
class Outcome(Generic[T]):
    """How :func:`coordinate` ended: an entry found (``found``), or go upstream with ``lease`` (or without)."""

    step: Step
    found: T | None = None
    lease: Lease | None = None


class Lease:
    """A held lease: renewed in the background until :meth:`finish`."""

    def __init__(self, session: LeaseSession, policy: LeasePolicy) -> None:
        self._session = session
        self._policy = policy
        self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._policy.renew_every)
            ok = await _bounded(self._session.renew(), self._policy)
            if not ok:  # lost (or the store failed): another leader may start; nothing to undo
                logger.info("llm-cache proxy: a coalescing lease could not be renewed")

    async def finish(self) -> None:
        """Stop renewing, release the lease and notify followers (after the answer was stored)."""
        self._renewer.cancel()
        await _bounded(self._session.release(), self._policy)
        await _close(self._session)


async def _bounded(call: Awaitable[T], policy: LeasePolicy) -> T | None:
    """``await call`` within the store timeout; ``None`` on any failure (fail-open)."""
    try:
        return await asyncio.wait_for(call, policy.op_timeout)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken lease store must never fail a request
        logger.warning(
            "llm-cache proxy: coalescing lease store failed, going upstream without it: %s: %s",
            type(exc).__name__,
            exc,
        )
        return None


async def _close(session: LeaseSession) -> None:
    try:
        await asyncio.wait_for(session.close(), 2.0)
    except Exception:  # noqa: BLE001 - closing is best effort
        pass


async def coordinate(
    store: LeaseStore,
    name: str,
    lookup: Callable[[], Awaitable[T | None]],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome[T]:
    """Decide who calls upstream for lease ``name``; ``lookup`` returns the stored entry or ``None``.

    Returns SERVE with the entry, LEAD with a :class:`Lease` to :meth:`~Lease.finish`
    once the answer is stored, or ALONE (go upstream without a lease).
    """
    policy = store.policy
    started = clock()
    session = await _bounded(store.session(name), policy)
    if session is None:
        return Outcome(Step.ALONE)
    held = handed_off = False
    try:
        step = Step.ACQUIRE
        while True:
            waited = clock() - started
            if step is Step.ACQUIRE:
                step = after_acquire(await _bounded(session.acquire(), policy), waited, policy)
            elif step is Step.LEAD:
                held = True
                # The previous leader may have stored the entry and released the lease
                # between our own cache miss and this acquire: one more lookup.
                found = await lookup()
                if found is not None:
                    return Outcome(Step.SERVE, found=found)  # released below
                lease = Lease(session, policy)
                held, handed_off = False, True  # the Lease owns the session now
                return Outcome(Step.LEAD, lease=lease)
            elif step is Step.WAIT:
                remaining = policy.wait - waited
                try:
                    await asyncio.wait_for(
                        session.wait(min(policy.poll, remaining)), policy.poll + policy.op_timeout
                    )
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - a failed wait is a poll: check again
                    await asyncio.sleep(min(policy.poll, max(remaining, 0.0)))
                found = await lookup()
                step = after_wake(found is not None, clock() - started, policy)
                if step is Step.SERVE:
                    return Outcome(Step.SERVE, found=found)
            else:  # ALONE
                return Outcome(Step.ALONE)
    finally:
        if held:
            await _bounded(session.release(), policy)
        if not handed_off:
            await _close(session)


def store_for_url(url: str, policy: LeasePolicy | None = None) -> Any:
    """The lease store beside a cache URL (``redis://``, ``postgresql://``, and their
    ``semantic+`` forms), or ``None`` for a cache only one process uses (``memory://``,
    ``sqlite://``, ``semantic:///dir``...)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme.startswith("semantic+"):  # the semantic index lives in the same server
        scheme = scheme.removeprefix("semantic+")
        url = url.split("+", 1)[1]
    policy = policy or LeasePolicy()
    if scheme in ("redis", "rediss", "unix"):
        from ._lease_redis import RedisLeaseStore

        return RedisLeaseStore(url, policy)
    if scheme.startswith(("postgresql", "postgres")):
        from ._lease_postgres import PostgresLeaseStore

        return PostgresLeaseStore(url, policy)
    return None
