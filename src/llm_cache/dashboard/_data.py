"""What the dashboard shows, gathered without HTML: traffic samples, entries in a scope, summaries.

No I/O but the cache's own listing (``entries()``), which callers run in a worker thread.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..caches.base import CacheEntry
from ..inspection import entry_kind, entry_model, entry_usage, find_match, iter_entries
from ..keys import cache_key_hex

__all__ = [
    "RESULTS",
    "Sample",
    "TrafficSamples",
    "parse_exposition",
    "Scope",
    "entry_id",
    "entry_namespace",
    "EntryRow",
    "Listing",
    "collect",
    "find_entry",
    "SemanticHit",
]

#: Request results of ``llm_cache_proxy_requests_total{cache=...}``, in display order.
RESULTS = ("hit", "semantic_hit", "coalesced", "miss", "bypass")
_ANSWERED_BY_CACHE = ("hit", "semantic_hit", "coalesced")

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    """The proxy's counters at one moment (totals since the process started)."""

    at: float
    requests: Mapping[str, float]  # by result (RESULTS)
    tokens_saved: float
    cost_saved: float

    @property
    def total(self) -> float:
        return sum(self.requests.values())


def parse_exposition(text: str, prefix: str = "llm_cache_proxy_") -> tuple[dict[str, float], float, float]:
    """``(requests by result, tokens saved, USD saved)`` from Prometheus exposition text.

    Read from the text rather than from a registry's internals, so it holds whatever
    implements the metrics (the names are the contract) and sums over the labels
    (endpoints, processes) it does not show.
    """
    requests: dict[str, float] = {}
    tokens = cost = 0.0
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, raw = match.group(1)[len(prefix) :], match.group(2) or "", match.group(3)
        try:
            value = float(raw)
        except ValueError:
            continue
        if name == "requests_total":
            result = dict(_LABEL.findall(labels)).get("cache", "?")
            requests[result] = requests.get(result, 0.0) + value
        elif name == "tokens_saved_total":
            tokens += value
        elif name == "cost_saved_usd_total":
            cost += value
    return requests, tokens, cost


class TrafficSamples:
    """A small ring of periodic counter samples: the hit rate over time without a database.

    ``read`` returns the exposition text of the counters (or raises); a sample is taken by
    :meth:`sample` (the proxy calls it every ``interval`` seconds, and on each page view).
    """

    def __init__(self, read: Callable[[], str], *, size: int = 360, interval: float = 10.0) -> None:
        self._read = read
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=size)

    def sample(self, now: float | None = None) -> Sample | None:
        """Take one sample (None if the counters cannot be read)."""
        try:
            requests, tokens, cost = parse_exposition(self._read())
        except Exception:  # noqa: BLE001 - a dashboard must not fail on its metrics source
            return None
        taken = Sample(time.time() if now is None else now, requests, tokens, cost)
        if self.samples and taken.at - self.samples[-1].at < self.interval / 2:
            self.samples[-1] = taken  # page views between ticks refresh the last sample
        else:
            self.samples.append(taken)
        return taken

    def hit_rates(self) -> list[tuple[float, float | None]]:
        """``(time, share of requests answered without an upstream call)`` per interval
        between samples (None where no request came)."""
        points: list[tuple[float, float | None]] = []
        items = list(self.samples)
        for before, after in zip(items, items[1:]):
            total = after.total - before.total
            cached = sum(after.requests.get(r, 0.0) - before.requests.get(r, 0.0) for r in _ANSWERED_BY_CACHE)
            points.append((after.at, cached / total if total > 0 else None))
        return points


def hit_rate(requests: Mapping[str, float]) -> float | None:
    """Share of requests answered from the cache (hits, semantic hits, coalesced)."""
    total = sum(requests.values())
    return sum(requests.get(r, 0.0) for r in _ANSWERED_BY_CACHE) / total if total else None


@dataclass(frozen=True)
class Scope:
    """Which entries a viewer may see: ``namespace`` None is every entry (the operator's
    standalone dashboard); else the llm_string namespace and its sub-partitions
    (``k<hash>`` sees ``k<hash>`` and ``k<hash>/n:team``)."""

    namespace: str | None
    label: str

    def admits(self, namespace: str | None) -> bool:
        if self.namespace is None:
            return True
        return namespace is not None and (
            namespace == self.namespace or namespace.startswith(self.namespace + "/")
        )


def entry_id(entry: CacheEntry) -> str:
    """The entry's stable id in URLs: its cache key (sha256 hex, nothing secret)."""
    return cache_key_hex(entry.prompt, entry.llm_string)


def entry_namespace(llm_string: str) -> str | None:
    """The namespace (tenant partition) written in an llm_string, if any."""
    try:
        data = json.loads(llm_string)
    except ValueError:
        return None
    value = data.get("namespace") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


@dataclass
class EntryRow:
    """One entry as listed."""

    id: str
    entry: CacheEntry
    namespace: str | None
    model: str | None
    kind: str
    tokens: tuple[int, int] | None  # (input, output) the call that made it cost

    @property
    def hits(self) -> int:
        return self.entry.hit_count or 0


@dataclass
class Partition:
    """Totals of one namespace (tenant partition)."""

    name: str
    entries: int = 0
    hits: int = 0
    hits_known: bool = False
    tokens_saved: int = 0
    cost_saved: float = 0.0


@dataclass
class Listing:
    """What one pass over the scope's entries found."""

    rows: list[EntryRow] = field(default_factory=list)
    partitions: dict[str, Partition] = field(default_factory=dict)
    scanned: int = 0
    truncated: bool = False

    def top(self, n: int) -> list[EntryRow]:
        """The most-hit entries (stores that keep hit counts), most recent first on ties."""
        ranked = [row for row in self.rows if row.hits > 0]
        ranked.sort(key=lambda row: (-row.hits, -(row.entry.created_at or 0)))
        return ranked[:n]


def _row(entry: CacheEntry) -> EntryRow:
    return EntryRow(
        entry_id(entry),
        entry,
        entry_namespace(entry.llm_string),
        entry_model(entry),
        entry_kind(entry)[0],
        entry_usage(entry),
    )


def collect(
    entries: Iterable[CacheEntry],
    scope: Scope,
    *,
    prices: Any,
    search: str | None = None,
    max_scan: int = 100_000,
) -> Listing:
    """One pass over ``entries``: the rows in ``scope`` (matching ``search`` in the prompt
    or answers, if given) and per-partition totals of all rows in scope."""
    listing = Listing()
    for entry in entries:
        if listing.scanned >= max_scan:
            listing.truncated = True
            break
        listing.scanned += 1
        namespace = entry_namespace(entry.llm_string)
        if not scope.admits(namespace):
            continue
        row = _row(entry)
        name = namespace or "(none)"
        part = listing.partitions.get(name)
        if part is None:
            part = listing.partitions[name] = Partition(name)
        part.entries += 1
        if entry.hit_count is not None:
            part.hits_known = True
            part.hits += entry.hit_count
            if row.tokens is not None:
                part.tokens_saved += entry.hit_count * sum(row.tokens)
                part.cost_saved += entry.hit_count * prices.cost(row.model, *row.tokens)
        if search and find_match(search, entry, answers=True) is None:
            continue
        listing.rows.append(row)
    listing.rows.sort(key=lambda r: -(r.entry.created_at or 0))
    return listing


def find_entry(cache: Any, scope: Scope, wanted: str) -> EntryRow | None:
    """The entry with id ``wanted`` in ``scope``, or None."""
    for entry in iter_entries(cache):
        if entry_id(entry) == wanted and scope.admits(entry_namespace(entry.llm_string)):
            return _row(entry)
    return None


@dataclass
class SemanticHit:
    """A request answered by meaning, as the proxy saw it (kept in a small ring)."""

    at: float
    prompt: str
    llm_string: str
    similarity: float
    answer: str
    reported: bool = False

    @property
    def id(self) -> str:
        return f"{cache_key_hex(self.prompt, self.llm_string)[:24]}-{int(self.at * 1000)}"
