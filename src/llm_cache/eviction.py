"""Size caps and eviction policies: which entries go when a cache is over its cap (no I/O).

Every store that takes ``max_entries=`` / ``max_bytes=`` decides through this module;
the stores only read entry statistics and delete what :func:`select_victims` names, so
LRU means the same thing in SQLite, the local semantic store, memory and SQL tables.

Policies (``policy=``):

``"lru"`` (default)
    least recently used first: the last hit, or the write time for an entry never hit.
``"lfu"``
    fewest hits first; among equals, least recently used first.
``"cost"``
    cost-aware: keeps what saves the most per byte it occupies. An entry's value is
    ``(hits + 1) × tokens / bytes``: the tokens a hit saves (the provider's usage stored
    with the entry, see :data:`USAGE_PATHS`; when absent, estimated from its size as
    ``bytes / 4``, about four bytes of English text a token) times how often it was used,
    per byte it costs to keep. The write counts as a use, so a new entry is weighed by its
    tokens instead of going first for having had no time to be hit. Lowest value goes
    first; among equals, least recently used.

Amortisation: a store does not evict on every write. It lets the cache grow to one
*batch* past its cap (``count > max_entries + batch`` or ``bytes > max_bytes +
bytes_batch``) and then removes entries down to the cap in one pass, so the cost of
reading the statistics is spread over ``batch`` writes and no lookup ever pays it. The
count therefore stays within ``[max_entries, max_entries + batch]`` once full.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import heapq
from operator import itemgetter
from typing import Any, Hashable, Iterable, Mapping, NamedTuple

from .errors import ConfigurationError

__all__ = [
    "POLICIES",
    "Caps",
    "EntryStats",
    "BYTES_PER_TOKEN",
    "USAGE_PATHS",
    "estimate_tokens",
    "usage_tokens",
    "tokens_of",
    "sqlite_tokens_sql",
    "select_victims",
    "plan",
    "parse_size",
    "PruneReport",
    "PruneRequest",
    "Prunable",
]

POLICIES = ("lru", "lfu", "cost")

#: The size-based token estimate used by the cost-aware policy when an entry carries no
#: provider usage: about four bytes of English text per token (OpenAI's rule of thumb).
BYTES_PER_TOKEN = 4

#: Where llm-cache's writers put the provider's usage inside a generation's
#: ``generation_info`` (the OpenAI SDK wrapper's response envelope, the proxy's, the
#: models' own ``usage`` / LangChain's ``token_usage``). SQL stores read the same paths
#: with their JSON functions (see :func:`sqlite_tokens_sql`).
USAGE_PATHS: tuple[tuple[str, ...], ...] = (
    ("response", "usage"),
    ("proxy", "response", "usage"),
    ("usage",),
    ("token_usage",),
)

# Default batch: a twentieth of the cap. Eviction reads every entry's statistics once
# (about 30 ms for 50k SQLite rows on the development machine); spread over cap/20
# writes that is ~20 µs a write.
_BATCH_FRACTION = 20


def _positive_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer or None, not {value!r}")
    return value


@dataclass(frozen=True)
class Caps:
    """A store's size caps and eviction policy.

    Args:
        max_entries: entries kept in the namespace (``None``: no count cap).
        max_bytes: payload bytes kept (prompt + llm_string + stored response, plus the
            vector for semantic stores; ``None``: no byte cap). The file on disk is larger
            by index and page overhead: see docs/operations.md for measured bytes per entry.
        policy: ``"lru"``, ``"lfu"`` or ``"cost"`` (see the module docstring).
        batch: how many entries past ``max_entries`` the store may grow before it evicts
            back down to the cap (default: a twentieth of the cap, at least 1).
    """

    max_entries: int | None = None
    max_bytes: int | None = None
    policy: str = "lru"
    batch: int | None = None

    def __post_init__(self) -> None:
        _positive_int(self.max_entries, "max_entries")
        _positive_int(self.max_bytes, "max_bytes")
        _positive_int(self.batch, "batch")
        if self.policy not in POLICIES:
            raise ConfigurationError(f"policy must be one of {', '.join(POLICIES)}, not {self.policy!r}")

    @property
    def enabled(self) -> bool:
        """Whether any cap is set."""
        return self.max_entries is not None or self.max_bytes is not None

    @property
    def entries_batch(self) -> int:
        """Entries the store may hold past ``max_entries`` before it evicts."""
        if self.batch is not None:
            return self.batch
        return max(1, (self.max_entries or 0) // _BATCH_FRACTION)

    @property
    def bytes_batch(self) -> int:
        """Bytes the store may hold past ``max_bytes`` before it evicts."""
        return max(1, (self.max_bytes or 0) // _BATCH_FRACTION)

    def over(self, entries: int, nbytes: int | None = None) -> bool:
        """Whether a store holding ``entries`` entries of ``nbytes`` bytes must evict now."""
        if self.max_entries is not None and entries > self.max_entries + self.entries_batch:
            return True
        return self.max_bytes is not None and nbytes is not None and nbytes > self.max_bytes + self.bytes_batch

    def excess(self, entries: int, nbytes: int | None = None) -> tuple[int, int]:
        """``(entries, bytes)`` to remove to be back at the caps (0 where within)."""
        extra_entries = max(0, entries - self.max_entries) if self.max_entries is not None else 0
        extra_bytes = max(0, nbytes - self.max_bytes) if self.max_bytes is not None and nbytes is not None else 0
        return extra_entries, extra_bytes

    def with_overrides(
        self,
        *,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        policy: str | None = None,
    ) -> "Caps":
        """These caps with the given values replaced (``None`` keeps the current one)."""
        return Caps(
            self.max_entries if max_entries is None else max_entries,
            self.max_bytes if max_bytes is None else max_bytes,
            self.policy if policy is None else policy,
            self.batch,
        )


class EntryStats(NamedTuple):
    """What a policy knows about one entry (a named tuple: stores build tens of thousands
    per eviction, and a tuple is built ~5x faster than a frozen dataclass).

    ``key`` is whatever the store deletes by (a row id, a key string). ``last_used`` is the
    last hit, or the write time for an entry never hit. ``tokens`` is the provider usage
    stored with the entry, ``None`` when unknown (then estimated from ``size``).
    """

    key: Hashable
    size: int
    hits: int = 0
    last_used: float = 0.0
    tokens: int | None = None


def estimate_tokens(size: int) -> int:
    """Tokens an entry of ``size`` bytes is assumed to have cost, when no usage is stored."""
    return max(1, size // BYTES_PER_TOKEN)


def usage_total(usage: Any) -> int | None:
    """Total tokens of one usage record (OpenAI's or Anthropic's field names), or ``None``."""
    if not isinstance(usage, Mapping):
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int) and not isinstance(total, bool):
        return total
    parts = [usage.get(k) for k in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")]
    numbers = [p for p in parts if isinstance(p, int) and not isinstance(p, bool)]
    return sum(numbers) if numbers else None


def usage_tokens(generation_info: Mapping[str, Any] | None) -> int | None:
    """The provider's token usage found at one of :data:`USAGE_PATHS`, or ``None``."""
    if not isinstance(generation_info, Mapping):
        return None
    for path in USAGE_PATHS:
        node: Any = generation_info
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        tokens = usage_total(node)
        if tokens is not None:
            return tokens
    return None


def tokens_of(generations: Iterable[Any]) -> int | None:
    """The usage stored with an entry's generations (the first one that has it)."""
    for generation in generations:
        tokens = usage_tokens(getattr(generation, "generation_info", None))
        if tokens is not None:
            return tokens
    return None


def sqlite_tokens_sql(column: str) -> str:
    """An SQLite expression giving the stored usage's ``total_tokens`` of a response column
    written by :func:`llm_cache.generation.encode_generations` (NULL when absent).

    It reads the first generation's ``total_tokens`` at each of :data:`USAGE_PATHS`; entries
    whose usage has only prompt/completion parts fall back to the size estimate.
    """
    paths = ", ".join(
        f"json_extract({column}, '$.g[0].generation_info.{'.'.join(path)}.total_tokens')" for path in USAGE_PATHS
    )
    return f"CASE WHEN json_valid({column}) THEN coalesce({paths}) END"


def _value(stats: EntryStats, policy: str) -> Any:
    """Sort key of an entry under ``policy``: lowest is evicted first."""
    return _SORT_KEYS[policy](stats)


def _cost_key(stats: EntryStats) -> tuple[float, float]:
    key, size, hits, last_used, tokens = stats
    if tokens is None or tokens <= 0:
        tokens = estimate_tokens(size)
    return ((hits + 1) * tokens / max(1, size), last_used)


# Keys by position, so that a store may pass its rows as plain tuples in EntryStats order
# (building a named tuple per row cost more than the ranking: 1.6 µs a row of 50k).
_SORT_KEYS: dict[str, Any] = {
    "lru": itemgetter(3),
    "lfu": itemgetter(2, 3),
    "cost": _cost_key,
}


def select_victims(
    entries: Iterable[EntryStats | tuple[Any, ...]],
    policy: str,
    *,
    remove_entries: int = 0,
    remove_bytes: int = 0,
) -> list[Hashable]:
    """Keys of the entries to evict, in eviction order: the fewest, by ``policy``, that
    remove at least ``remove_entries`` entries and ``remove_bytes`` bytes. ``entries`` are
    :class:`EntryStats` or plain tuples in its field order."""
    if policy not in POLICIES:
        raise ConfigurationError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    if remove_entries <= 0 and remove_bytes <= 0:
        return []
    key = _SORT_KEYS[policy]
    if remove_bytes <= 0:  # a count target: the n lowest, without sorting everything
        return [s[0] for s in heapq.nsmallest(remove_entries, entries, key=key)]
    ranked = sorted(entries, key=key)
    victims: list[Hashable] = []
    freed = 0
    for stats in ranked:
        if len(victims) >= remove_entries and freed >= remove_bytes:
            break
        victims.append(stats[0])
        freed += stats[1]
    return victims


def plan(
    caps: Caps, entries: int, nbytes: int | None, stats: Iterable[EntryStats | tuple[Any, ...]]
) -> list[Hashable]:
    """The victims that bring a store holding ``entries``/``nbytes`` back to ``caps``."""
    extra_entries, extra_bytes = caps.excess(entries, nbytes)
    return select_victims(stats, caps.policy, remove_entries=extra_entries, remove_bytes=extra_bytes)


@dataclass(frozen=True)
class PruneReport:
    """What a sweep or ``prune`` removed (or, for a dry run, would remove)."""

    expired: int = 0  # entries past their expiry
    old: int = 0  # entries written longer ago than ``older_than``
    evicted: int = 0  # entries evicted to bring the store within its caps
    remaining: int | None = None  # entries left in the namespace, where known
    remaining_bytes: int | None = None  # their payload bytes, where known

    @property
    def removed(self) -> int:
        return self.expired + self.old + self.evicted


class PruneRequest(NamedTuple):
    """What ``prune`` was asked to do (see :meth:`Prunable.prune`)."""

    expired: bool = True
    older_than: float | None = None
    max_entries: int | None = None
    max_bytes: int | None = None
    policy: str | None = None
    dry_run: bool = False


class Prunable:
    """The ``prune`` method every store with sweeps or caps offers, with one signature.

    A store implements ``_prune(request)``; what it supports (byte caps, ``older_than``, dry
    runs) is said in that method's docstring, and an option it cannot honour raises
    :class:`~llm_cache.errors.ConfigurationError`.
    """

    def prune(
        self,
        *,
        expired: bool = True,
        older_than: float | None = None,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        policy: str | None = None,
        dry_run: bool = False,
    ) -> PruneReport:
        """Remove expired entries (``expired``), entries written more than ``older_than``
        seconds ago, and evict down to ``max_entries``/``max_bytes`` (default: the store's
        own caps) by ``policy`` (default: the store's). ``dry_run``: remove nothing and
        report what would go."""
        return self._prune(PruneRequest(expired, older_than, max_entries, max_bytes, policy, dry_run))

    def _prune(self, request: PruneRequest) -> PruneReport:
        raise NotImplementedError


def parse_size(text: str) -> int:
    """``"500000"``, ``"64k"``, ``"512MB"``, ``"2GiB"`` as bytes (powers of 1024)."""
    raw = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = 1
    for suffix, factor in (("k", 1024), ("m", 1024**2), ("g", 1024**3), ("t", 1024**4)):
        if raw.endswith(suffix):
            raw, scale = raw[: -len(suffix)], factor
            break
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"not a size: {text!r} (examples: 500000, 64k, 512MB, 2GiB)") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"a size must be positive: {text!r}")
    return int(value * scale)
