"""The cache contract and the one fail-open policy.

Every cache implements three private operations (``_lookup``, ``_update``, ``_clear``)
and, where its driver is natively async, their ``_a*`` twins. The public methods
wrap them once, here, with the policy the whole library follows:

* a store error (connection refused, timeout, disk full, ...) is logged and counted;
  ``lookup`` then returns ``None`` (a miss) and ``update`` drops the write, so a broken
  cache never breaks an LLM call. With ``strict=True`` the error is raised instead, as
  :class:`~llm_cache.errors.CacheBackendError`.
* a store call that does not finish within the cache's ``timeout`` is a store error like
  any other (:class:`~llm_cache.errors.CacheTimeoutError`): a hung server costs a caller at
  most that long, never an unbounded wait.
* a stored value that cannot be decoded is a miss (counted as ``corrupt``), never a crash.
* input that a store cannot hold (text with a lone surrogate such as ``"\\ud800"``, which is
  not valid UTF-8; generations nested too deep to encode) is the caller's problem, not the
  store's: the write is dropped and a lookup is a miss, counted as ``rejected``, logged once
  per cache, and never counted towards the breaker.
* after ``failure_threshold`` consecutive store errors (of any operations, or of one kind of
  operation: lookups, or writes) a circuit breaker opens: calls skip the store entirely
  (costing nothing while it is down) and a background thread probes it, closing the breaker
  once the store answers again. Reads and writes are also counted apart, so a store that
  answers lookups but fails every write (a lock held by another process, a full disk) opens
  it too.
* ``clear`` is never silent: a failure raises ``CacheBackendError`` whatever ``strict`` says,
  because a clear that quietly did nothing leaves answers the caller meant to remove.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from ..errors import CacheBackendError, CorruptEntryError, LLMCacheError
from ..generation import Generation, encode_generations

__all__ = ["BaseCache", "CacheEntry", "CacheStats", "CircuitBreaker", "unstorable"]

logger = logging.getLogger("llm_cache")

# The breaker's probe looks this pair up; it matches nothing that a model can produce.
_PROBE_PROMPT = "\x00llm-cache-health-probe"
_PROBE_LLM_STRING = "{}"


@dataclass(frozen=True)
class CacheEntry:
    """One stored entry, as a backend's ``entries()`` yields it (for the CLI and export).

    Fields a store does not keep are ``None`` (Redis keeps no creation time or hit count).
    Times are wall-clock epoch seconds.
    """

    prompt: str
    llm_string: str
    generations: list[Generation]
    created_at: float | None = None
    expires_at: float | None = None
    hit_count: int | None = None
    last_hit_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSONL form that ``llm-cache export`` writes."""
        return {
            "prompt": self.prompt,
            "llm_string": self.llm_string,
            "generations": [g.to_dict() for g in self.generations],
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "hit_count": self.hit_count,
            "last_hit_at": self.last_hit_at,
        }


@dataclass
class CacheStats:
    """Counters of one cache object (in this process, since it was created).

    Increments are not locked: under heavy threading a count may be off by a few,
    which is fine for statistics and keeps locks off the hit path.
    """

    hits: int = 0
    misses: int = 0
    updates: int = 0
    errors: int = 0
    corrupt: int = 0
    skipped: int = 0  # calls that did not touch the store because the breaker was open
    rejected: int = 0  # calls with input no store can hold (not store errors; see the module doc)

    @property
    def hit_rate(self) -> float:
        """Hits over lookups that reached a decision (0.0 when there were none)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hit_rate": self.hit_rate}


class CircuitBreaker:
    """Stops calling a failing store and probes it in the background until it is back.

    ``is_open`` is a plain attribute so that the hit path pays one attribute read. It opens
    after ``failure_threshold`` failures in a row of any operations, or of one kind of
    operation (``"lookup"``, ``"update"``) whatever the other kind did: a success resets the
    streak and its own kind only, so successful lookups cannot hide writes that all fail.
    """

    def __init__(self, failure_threshold: int = 3, probe_interval: float = 0.5) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.probe_interval = probe_interval
        self.is_open = False
        self.consecutive_failures = 0  # the larger of the streak and the per-kind counts
        self._streak = 0  # failures of any kind since the last success of any kind
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()
        self._prober: threading.Thread | None = None

    def record_success(self, kind: str = "lookup") -> None:
        """A ``kind`` operation succeeded: its consecutive failures start again from 0."""
        with self._lock:
            self._streak = 0
            self._failures.pop(kind, None)
            self.consecutive_failures = max(self._failures.values(), default=0)

    def record_failure(self, probe: "Any", kind: str = "lookup") -> None:
        """Count a failure; open the breaker and start probing once the threshold is hit."""
        with self._lock:
            count = self._failures[kind] = self._failures.get(kind, 0) + 1
            self._streak += 1
            self.consecutive_failures = max(self.consecutive_failures, count, self._streak)
            if self.is_open or self.consecutive_failures < self.failure_threshold:
                return
            self.is_open = True
            self._prober = threading.Thread(
                target=self._probe_until_healthy, args=(probe,), name="llm-cache-probe", daemon=True
            )
            self._prober.start()
        logger.warning(
            "llm-cache: %d consecutive store errors; bypassing the store and probing it every %.1fs",
            self.failure_threshold,
            self.probe_interval,
        )

    def _probe_until_healthy(self, probe: Any) -> None:
        stop = threading.Event()
        while not stop.wait(self.probe_interval):
            try:
                probe()
            except Exception:  # still down: keep probing
                continue
            with self._lock:
                self.is_open = False
                # The probe is a lookup: it proves lookups work, not writes. Writes that were
                # failing come back half-open: the next write failure reopens the breaker at
                # once, the next success clears it.
                self._failures = {
                    kind: self.failure_threshold - 1 for kind in self._failures if kind != "lookup"
                }
                self._streak = 0
                self.consecutive_failures = max(self._failures.values(), default=0)
            logger.warning("llm-cache: store answers again; breaker closed")
            return

    def reset(self) -> None:
        """Close the breaker now (for tests and for callers that know the store is back)."""
        with self._lock:
            self.is_open = False
            self.consecutive_failures = 0
            self._streak = 0
            self._failures.clear()


class BaseCache(ABC):
    """Base class of every cache: the contract of langchain-core's ``BaseCache``.

    Subclasses implement ``_lookup``, ``_update`` and ``_clear`` (and optionally the
    async ``_alookup``, ``_aupdate``, ``_aclear``; by default those run the sync ones in
    a worker thread). They may raise any exception for a store failure and
    :class:`CorruptEntryError` for an undecodable value; the public methods apply the
    fail-open policy described in this module's docstring.
    """

    #: Whether the store keeps text with lone surrogates (``"\\ud800"``) as it is: Redis and the
    #: in-memory cache do; SQL databases and SQLite store UTF-8, so such input is rejected.
    accepts_lone_surrogates = False

    def __init__(self, *, strict: bool = False, failure_threshold: int = 3, probe_interval: float = 0.5) -> None:
        self.strict = strict
        self.stats = CacheStats()
        self.breaker = CircuitBreaker(failure_threshold, probe_interval)
        self._rejection_logged = False

    # -- what a backend implements -------------------------------------------------
    @abstractmethod
    def _lookup(self, prompt: str, llm_string: str) -> list[Generation] | None: ...

    @abstractmethod
    def _update(self, prompt: str, llm_string: str, generations: list[Generation]) -> None: ...

    @abstractmethod
    def _clear(self) -> None: ...

    async def _alookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        return await asyncio.to_thread(self._lookup, prompt, llm_string)

    async def _aupdate(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        await asyncio.to_thread(self._update, prompt, llm_string, generations)

    async def _aclear(self) -> None:
        await asyncio.to_thread(self._clear)

    def _probe(self) -> None:
        """Raise if the store is still unreachable (used by the breaker's background probe)."""
        self._lookup(_PROBE_PROMPT, _PROBE_LLM_STRING)

    # -- the public contract ---------------------------------------------------------
    def lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        """Return the cached generations for this prompt and model, or ``None`` on a miss."""
        if self.breaker.is_open:
            self.stats.skipped += 1
            return None
        try:
            result = self._lookup(prompt, llm_string)
        except Exception as exc:
            self._lookup_failed(exc, prompt, llm_string)
            return None
        return self._lookup_done(result)

    async def alookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        """Async :meth:`lookup`."""
        if self.breaker.is_open:
            self.stats.skipped += 1
            return None
        try:
            result = await self._alookup(prompt, llm_string)
        except Exception as exc:
            self._lookup_failed(exc, prompt, llm_string)
            return None
        return self._lookup_done(result)

    def update(self, prompt: str, llm_string: str, generations: Sequence[Generation]) -> None:
        """Store ``generations`` for this prompt and model, replacing what was there."""
        checked = self._checked_update(prompt, llm_string, generations)
        if checked is None or self.breaker.is_open:
            return
        try:
            self._update(prompt, llm_string, checked)
        except Exception as exc:
            self._failed("update", exc)
            return
        self._update_done()

    async def aupdate(self, prompt: str, llm_string: str, generations: Sequence[Generation]) -> None:
        """Async :meth:`update`."""
        checked = self._checked_update(prompt, llm_string, generations)
        if checked is None or self.breaker.is_open:
            return
        try:
            await self._aupdate(prompt, llm_string, checked)
        except Exception as exc:
            self._failed("update", exc)
            return
        self._update_done()

    def clear(self) -> None:
        """Remove every entry of this cache (and only this cache's: never other namespaces)."""
        try:
            self._clear()
        except Exception as exc:
            raise _as_backend_error("clear", self, exc) from exc

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        try:
            await self._aclear()
        except Exception as exc:
            raise _as_backend_error("clear", self, exc) from exc

    def close(self) -> None:
        """Release connections and files. The cache must not be used afterwards."""

    async def aclose(self) -> None:
        """Release what this cache holds for the running event loop; it stays usable.

        Backends whose async clients belong to one event loop (Redis, Momento) close that
        loop's client here; call it before the loop ends. For the others it does nothing.
        """

    def __enter__(self) -> "BaseCache":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the policy, in one place ------------------------------------------------------
    def _lookup_done(self, result: list[Generation] | None) -> list[Generation] | None:
        if self.breaker.consecutive_failures:
            self.breaker.record_success("lookup")
        if result is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return result

    def _update_done(self) -> None:
        if self.breaker.consecutive_failures:
            self.breaker.record_success("update")
        self.stats.updates += 1

    def _checked_update(
        self, prompt: str, llm_string: str, generations: Sequence[Generation]
    ) -> list[Generation] | None:
        checked = _check_update(prompt, llm_string, generations)
        if checked is None:
            return None
        problem = unstorable(prompt, llm_string, checked, surrogates=self.accepts_lone_surrogates)
        if problem is not None:
            self._rejected("update", problem)
            return None
        return checked

    def _rejected(self, operation: str, problem: str) -> None:
        """Input no store can hold: counted apart from store errors, logged once per cache."""
        self.stats.rejected += 1
        if self._rejection_logged:
            logger.debug("llm-cache: %s %s skipped: %s", type(self).__name__, operation, problem)
            return
        self._rejection_logged = True
        logger.warning(
            "llm-cache: %s %s skipped: %s (not a store error; further ones are logged at DEBUG "
            "and counted in stats.rejected)",
            type(self).__name__,
            operation,
            problem,
        )

    def _lookup_failed(self, exc: Exception, prompt: str = "", llm_string: str = "") -> None:
        """Count a failed lookup as a miss (re-raised by ``_failed`` in strict mode)."""
        if not isinstance(exc, LLMCacheError):
            # Checked only once a lookup failed, so hits pay nothing for it: a prompt no
            # store can hold cannot be stored either, and is the caller's, not the store's.
            problem = unstorable(prompt, llm_string, (), surrogates=self.accepts_lone_surrogates)
            if problem is not None:
                self._rejected("lookup", problem)
                self.stats.misses += 1
                return
        if isinstance(exc, CorruptEntryError):
            # A bad value is the entry's problem, not the store's: a miss, no breaker.
            self.stats.corrupt += 1
            self.stats.misses += 1
            logger.warning("llm-cache: %s: corrupt entry treated as a miss: %s", type(self).__name__, exc)
            return
        self._failed("lookup", exc)
        self.stats.misses += 1

    def _failed(self, operation: str, exc: Exception) -> None:
        if isinstance(exc, LLMCacheError) and not isinstance(exc, CacheBackendError):
            raise exc  # a configuration or usage error is the caller's to see, not a store outage
        self.stats.errors += 1
        if self.strict:
            raise _as_backend_error(operation, self, exc) from exc
        logger.warning(
            "llm-cache: %s %s failed, continuing without the cache: %s: %s",
            type(self).__name__,
            operation,
            type(exc).__name__,
            exc,
        )
        self.breaker.record_failure(self._probe, "lookup" if operation == "lookup" else "update")


def unstorable(
    prompt: str, llm_string: str, generations: Sequence[Generation], *, surrogates: bool = False
) -> str | None:
    """Why a store cannot hold this entry (``None``: it can).

    Most stores keep UTF-8 text (SQLite, PostgreSQL, MySQL, JSONL exports): a lone surrogate
    such as ``"\\ud800"`` (valid in a Python str, produced by ``json.loads`` of a ``\\ud800``
    escape) cannot be encoded; ``surrogates=True`` is for stores that keep such text as it is.
    Generations must also encode as JSON, which a structure nested deeper than the
    interpreter's recursion limit does not.
    """
    errors = "surrogatepass" if surrogates else "strict"
    for name, value in (("prompt", prompt), ("llm_string", llm_string)):
        try:
            value.encode("utf-8", errors)
        except UnicodeEncodeError as exc:
            return f"the {name} holds text that is not valid UTF-8 ({exc.reason} at position {exc.start})"
    if generations:
        try:
            encode_generations(generations).encode("utf-8", errors)
        except UnicodeEncodeError as exc:
            return f"a generation holds text that is not valid UTF-8 ({exc.reason})"
        except (RecursionError, ValueError, TypeError) as exc:
            return f"the generations cannot be encoded as JSON ({type(exc).__name__}: {exc})"
    return None


def _check_update(prompt: str, llm_string: str, generations: Sequence[Generation]) -> list[Generation] | None:
    """Validate ``update`` arguments; ``None`` means there is nothing to store."""
    if not isinstance(prompt, str) or not isinstance(llm_string, str):
        raise TypeError("prompt and llm_string must be str")
    items = list(generations)
    if not items:
        return None  # nothing to replay later; storing it would only create a useless entry
    for item in items:
        if not isinstance(item, Generation):
            raise TypeError(
                f"update() takes llm_cache.Generation objects, not {type(item).__name__}; "
                "wrap text as Generation(text=...)"
            )
    return items


def _as_backend_error(operation: str, cache: BaseCache, exc: Exception) -> CacheBackendError:
    if isinstance(exc, CacheBackendError):
        return exc
    return CacheBackendError(f"{type(cache).__name__} {operation} failed: {type(exc).__name__}: {exc}")
