"""The proxy's metric families, their text exposition, and ``prometheus_client`` across workers.

Several worker processes (``llm-cache serve --workers N``): the parent sets
``PROMETHEUS_MULTIPROC_DIR`` before anything imports ``prometheus_client``, each worker
also writes every update to a :class:`PromMetrics` (files in that directory), and any
worker's ``/metrics`` adds up every worker's (counters and histograms: all workers, dead
ones included; the in-flight gauge: live workers only).

One process (the variable unset): the exposition is read from the app's own counters
(:class:`~.metrics.Metrics`) at scrape time, and nothing else is updated per request:
``prometheus_client``'s objects cost ~8 us more per cached hit (9.8 against 1.6 us of
metric updates), 7% of a hit's CPU, for values nothing else in the process reads.

Both keep the proxy's format (integers without ``.0``, labels in declared order, no
``_created`` series), so scrapers see the same names either way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .._imports import require

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "llm_cache_proxy_"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
PROXY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


Samples = dict[str, list[tuple[dict[str, str], float]]]  # sample name -> (labels, value)


@dataclass(frozen=True)
class Family:
    name: str  # without the prefix
    kind: str  # counter, gauge, histogram
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


FAMILIES = (
    Family("requests_total", "counter", "Requests by endpoint and cache result.", ("endpoint", "cache")),
    Family(
        "request_duration_seconds",
        "histogram",
        "Time the proxy took to answer, by cache result.",
        ("cache",),
        PROXY_BUCKETS,
    ),
    Family(
        "upstream_requests_total",
        "counter",
        "Upstream calls by endpoint and HTTP status.",
        ("endpoint", "status"),
    ),
    Family(
        "upstream_errors_total", "counter", "Upstream failures by endpoint and kind.", ("endpoint", "kind")
    ),
    Family(
        "upstream_latency_seconds",
        "histogram",
        "Upstream call duration, to the last byte.",
        ("endpoint",),
        LATENCY_BUCKETS,
    ),
    Family(
        "tokens_saved_total", "counter", "Tokens of answers served without an upstream call.", ("kind",)
    ),
    Family("cost_saved_usd_total", "counter", "Estimated USD saved (price table; unknown models count 0)."),
    Family(
        "protocol_tokens_saved_total",
        "counter",
        "Tokens of answers served without an upstream call, by protocol and kind.",
        ("endpoint", "kind"),
    ),
    Family("protocol_cost_saved_usd_total", "counter", "Estimated USD saved, by protocol.", ("endpoint",)),
    Family(
        "inflight_requests",
        "gauge",
        "Upstream calls in flight (with misses waiting on another process's call).",
    ),
    Family(
        "refused_requests_total",
        "counter",
        "Requests the proxy answered itself with an error, by endpoint and code.",
        ("endpoint", "code"),
    ),
    Family(
        "responses_not_stored_total",
        "counter",
        "Upstream answers passed on without being stored, by endpoint and reason.",
        ("endpoint", "reason"),
    ),
    Family(
        "coalescing_leases_total",
        "counter",
        "Misses coordinated across processes, by endpoint and outcome (lead, serve, alone).",
        ("endpoint", "outcome"),
    ),
)


def multiprocess() -> bool:
    """Whether values go to the shared directory of ``serve --workers`` (set before import)."""
    if not os.environ.get(MULTIPROC_ENV):
        return False
    require("prometheus_client", "proxy", "the metrics of llm-cache serve --workers")
    from prometheus_client import values

    return bool(os.environ.get(MULTIPROC_ENV)) and values.ValueClass is not values.MutexValue


class PromMetrics:
    """The ``prometheus_client`` metric objects of one worker (multiprocess mode only);
    ``child(name, labels)`` is memoised (the hot path)."""

    def __init__(self) -> None:
        require("prometheus_client", "proxy", "the llm-cache proxy's metrics")
        import prometheus_client as prom

        self.registry = prom.CollectorRegistry(auto_describe=False)
        self._metrics: dict[str, Any] = {}
        for family in FAMILIES:
            # prometheus_client adds "_total" to counters itself.
            name = PREFIX + family.name.removesuffix("_total")
            metric: Any
            if family.kind == "counter":
                metric = prom.Counter(name, family.help, family.labels, registry=self.registry)
            elif family.kind == "gauge":
                metric = prom.Gauge(
                    name, family.help, family.labels, registry=self.registry, multiprocess_mode="livesum"
                )
            else:
                metric = prom.Histogram(
                    name, family.help, family.labels, registry=self.registry, buckets=family.buckets
                )
            self._metrics[family.name] = metric
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}

    def child(self, name: str, labels: tuple[str, ...] = ()) -> Any:
        key = (name, labels)
        found = self._children.get(key)
        if found is None:
            metric = self._metrics[name]
            found = metric.labels(*labels) if labels else metric
            if len(self._children) < 4096:  # bounded: label values come from a fixed set
                self._children[key] = found
        return found

    def render(self) -> list[str]:
        """Exposition lines of every family, added up over every worker."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry)
        samples: Samples = {}
        for metric in registry.collect():
            for sample in metric.samples:
                samples.setdefault(sample.name, []).append((sample.labels, sample.value))
        return render_lines(samples)


def render_lines(samples: Samples) -> list[str]:
    """The exposition of every family from ``{sample name: [(labels, value)]}``."""
    lines: list[str] = []
    for family in FAMILIES:
        full = PREFIX + family.name
        lines.append(f"# HELP {full} {family.help}")
        lines.append(f"# TYPE {full} {family.kind}")
        if family.kind == "histogram":
            lines.extend(_histogram(full, family.labels, samples))
        else:
            lines.extend(_series(full, family.labels, samples.get(full, ())))
    return lines


def _series(
    name: str, label_names: tuple[str, ...], found: Iterable[tuple[dict[str, str], float]]
) -> list[str]:
    rows = sorted((tuple(labels.get(n, "") for n in label_names), value) for labels, value in found)
    return [f"{name}{_labels(label_names, values)} {number(value)}" for values, value in rows]


def _histogram(name: str, label_names: tuple[str, ...], samples: Samples) -> list[str]:
    # Histograms of the proxy have one label: buckets, sum and count are grouped by it.
    (label,) = label_names
    buckets: dict[str, list[tuple[float, float]]] = {}
    for labels, value in samples.get(name + "_bucket", ()):
        buckets.setdefault(labels.get(label, ""), []).append((float(labels["le"]), value))
    sums = {labels.get(label, ""): value for labels, value in samples.get(name + "_sum", ())}
    counts = {labels.get(label, ""): value for labels, value in samples.get(name + "_count", ())}
    lines = []
    for group in sorted(buckets):
        escaped = escape(group)
        for bound, count in sorted(buckets[group]):
            le = "+Inf" if math.isinf(bound) else repr(bound)
            lines.append(f'{name}_bucket{{{label}="{escaped}",le="{le}"}} {number(count)}')
        lines.append(f'{name}_sum{{{label}="{escaped}"}} {number(sums.get(group, 0.0))}')
        lines.append(f'{name}_count{{{label}="{escaped}"}} {number(counts.get(group, 0.0))}')
    return lines


def _labels(names: tuple[str, ...], values: tuple[Any, ...]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{escape(v)}"' for n, v in zip(names, values)) + "}"


def escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    """Integers without ``.0`` (counts), other values as Python's shortest repr."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))
