"""Proxy metrics in the Prometheus text exposition format, and the price table.

A tiny registry instead of ``prometheus_client``: the proxy needs a handful of counters
and two histograms, all updated from the one event-loop thread (so no locks), and one
dependency fewer. Metric names (all prefixed ``llm_cache_proxy_``):

====================================  ====================================================
``requests_total{endpoint,cache}``    requests by result: hit, semantic_hit, coalesced
                                      (answered by a concurrent identical request's
                                      upstream call), miss, bypass
``request_duration_seconds``          proxy-side latency histogram, by cache result
``upstream_requests_total``           upstream calls by endpoint and HTTP status
``upstream_errors_total``             upstream failures by kind: connect, timeout,
                                      protocol, status (a 4xx/5xx answer), stream
``upstream_latency_seconds``          upstream call duration histogram (to the last byte)
``tokens_saved_total{kind}``          prompt / completion tokens of answers served
                                      without an upstream call (from the stored usage)
``cost_saved_usd_total``              estimated from the price table
``protocol_tokens_saved_total``       the same tokens by ``endpoint`` (protocol) and
                                      ``kind``: input, output, and Anthropic's
                                      cache_creation / cache_read input tokens
``protocol_cost_saved_usd_total``     estimated USD saved by ``endpoint``
``inflight_requests``                 upstream calls in flight (gauge)
``refused_requests_total``            requests the proxy answered itself with an error,
                                      by endpoint and code (request_too_large,
                                      invalid_api_key, upstream_busy, only_if_cached, ...)
``responses_not_stored_total``        upstream answers passed on but not stored, by
                                      endpoint and reason: too_large (over
                                      ``max_stored_bytes``), unencodable
``cache_errors_total`` ...            the cache object's own counters and breaker state
====================================  ====================================================
"""

from __future__ import annotations

import json
import math
import os
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigurationError
from ..protocols.base import Usage

__all__ = ["DEFAULT_PRICES", "Metrics", "PriceTable"]

#: USD per 1M tokens (input, output), list prices at the time of writing. They are an
#: estimate for the "cost saved" metric only; pass your own table with ``--prices``.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo-instruct": (1.50, 2.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
    "text-embedding-ada-002": (0.10, 0.0),
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-7-sonnet": (3.00, 15.00),
}
# Anthropic bills prompt-cache writes at 1.25x and reads at 0.1x the input price.
_CACHE_WRITE_FACTOR = 1.25
_CACHE_READ_FACTOR = 0.1

_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
_PROXY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class PriceTable:
    """Model -> (USD per 1M input tokens, USD per 1M output tokens).

    A model matches its exact name, else the longest known name it starts with, so
    ``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``. Unknown models cost 0.
    """

    def __init__(self, prices: Mapping[str, tuple[float, float]] | None = None) -> None:
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)
        self._by_length = sorted(self.prices, key=len, reverse=True)
        self._resolved: dict[str, tuple[float, float]] = {}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PriceTable:
        """Read ``{"model": {"input": 0.15, "output": 0.6}, ...}`` (USD per 1M tokens)."""
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot read the price table {os.fspath(path)!r}: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise ConfigurationError(
                'a price table is a JSON object: {"model": {"input": 0.15, "output": 0.6}}'
            )
        prices: dict[str, tuple[float, float]] = {}
        for model, entry in data.items():
            try:
                prices[model] = (float(entry.get("input", 0.0)), float(entry.get("output", 0.0)))
            except (AttributeError, TypeError, ValueError):
                raise ConfigurationError(
                    f'price of {model!r} must look like {{"input": 0.15, "output": 0.6}} (USD per 1M tokens)'
                ) from None
        return cls(prices)

    def price(self, model: Any) -> tuple[float, float]:
        if not isinstance(model, str):
            return (0.0, 0.0)
        found = self._resolved.get(model)
        if found is None:
            found = self.prices.get(model)
            if found is None:
                found = next(
                    (self.prices[name] for name in self._by_length if model.startswith(name)),
                    (0.0, 0.0),
                )
            if len(self._resolved) < 1024:  # bounded: model names come from clients
                self._resolved[model] = found
        return found

    def cost(self, model: Any, prompt_tokens: int, completion_tokens: int) -> float:
        per_in, per_out = self.price(model)
        return (prompt_tokens * per_in + completion_tokens * per_out) / 1_000_000


class _Histogram:
    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1


def _labels(names: tuple[str, ...], values: tuple[Any, ...]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values))
    return "{" + inner + "}"


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Metrics:
    """All counters of one proxy app."""

    PREFIX = "llm_cache_proxy_"

    def __init__(self, prices: PriceTable | None = None) -> None:
        self.prices = prices or PriceTable()
        self.requests: dict[tuple[str, str], int] = {}
        self.request_duration: dict[str, _Histogram] = {}
        self.upstream_requests: dict[tuple[str, str], int] = {}
        self.upstream_errors: dict[tuple[str, str], int] = {}
        self.upstream_latency: dict[str, _Histogram] = {}
        self.tokens_saved = {"prompt": 0, "completion": 0}
        self.cost_saved = 0.0
        self.protocol_tokens_saved: dict[tuple[str, str], int] = {}
        self.protocol_cost_saved: dict[str, float] = {}
        self.inflight = 0
        self.refused_requests: dict[tuple[str, str], int] = {}
        self.not_stored: dict[tuple[str, str], int] = {}
        self.leases: dict[tuple[str, str], int] = {}

    # -- updates (event-loop thread only) ------------------------------------------------
    def request(self, endpoint: str, cache: str, seconds: float) -> None:
        key = (endpoint, cache)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.request_duration.get(cache)
        if hist is None:
            hist = self.request_duration[cache] = _Histogram(_PROXY_BUCKETS)
        hist.observe(seconds)

    def upstream(self, endpoint: str, status: int | str, seconds: float | None) -> None:
        key = (endpoint, str(status))
        self.upstream_requests[key] = self.upstream_requests.get(key, 0) + 1
        if seconds is not None:
            hist = self.upstream_latency.get(endpoint)
            if hist is None:
                hist = self.upstream_latency[endpoint] = _Histogram(_LATENCY_BUCKETS)
            hist.observe(seconds)

    def upstream_error(self, endpoint: str, kind: str) -> None:
        key = (endpoint, kind)
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    def refused(self, endpoint: str, code: str) -> None:
        key = (endpoint, code)
        self.refused_requests[key] = self.refused_requests.get(key, 0) + 1

    def not_stored_answer(self, endpoint: str, reason: str) -> None:
        key = (endpoint, reason)
        self.not_stored[key] = self.not_stored.get(key, 0) + 1

    def lease(self, endpoint: str, outcome: str) -> None:
        """Count how a miss's cross-process coalescing ended: lead, serve, alone."""
        key = (endpoint, outcome)
        self.leases[key] = self.leases.get(key, 0) + 1

    def saved(self, usage: Mapping[str, Any] | None, model: Any) -> None:
        """Count the tokens (and estimated cost) of an answer served without an upstream call."""
        if not usage:
            return
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        prompt = prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else 0
        completion = (
            completion if isinstance(completion, int) and not isinstance(completion, bool) else 0
        )
        self.tokens_saved["prompt"] += prompt
        self.tokens_saved["completion"] += completion
        self.cost_saved += self.prices.cost(model, prompt, completion)

    def saved_usage(self, endpoint: str, usage: Usage) -> None:
        """Count an answer of ``endpoint`` served without an upstream call: the totals of
        :meth:`saved` and the per-protocol counters (Anthropic's cache tokens included)."""
        if not (usage.input_tokens or usage.output_tokens):
            return
        per_in, per_out = self.prices.price(usage.model)
        cost = per_in * usage.input_tokens + per_out * usage.output_tokens
        if endpoint == "anthropic.messages":  # priced as Anthropic bills its prompt cache
            cost += per_in * (
                (_CACHE_WRITE_FACTOR - 1) * usage.cache_creation_input_tokens
                + (_CACHE_READ_FACTOR - 1) * usage.cache_read_input_tokens
            )
        cost /= 1_000_000
        self.tokens_saved["prompt"] += usage.input_tokens
        self.tokens_saved["completion"] += usage.output_tokens
        self.cost_saved += cost
        tokens = self.protocol_tokens_saved
        for kind, count in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_creation", usage.cache_creation_input_tokens),
            ("cache_read", usage.cache_read_input_tokens),
        ):
            if count:
                tokens[(endpoint, kind)] = tokens.get((endpoint, kind), 0) + count
        self.protocol_cost_saved[endpoint] = self.protocol_cost_saved.get(endpoint, 0.0) + cost

    # -- exposition ------------------------------------------------------------------------
    def render(
        self, cache_stats: Mapping[str, Any] | None = None, breaker_open: bool | None = None
    ) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        lines: list[str] = []
        p = self.PREFIX

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {p}{name} {help_text}")
            lines.append(f"# TYPE {p}{name} {kind}")

        def samples(
            name: str, label_names: tuple[str, ...], values: Iterable[tuple[tuple[Any, ...], float]]
        ) -> None:
            for label_values, value in sorted(values, key=lambda item: tuple(map(str, item[0]))):
                lines.append(f"{p}{name}{_labels(label_names, label_values)} {_number(value)}")

        def histograms(name: str, label: str, hists: Mapping[str, _Histogram]) -> None:
            for value in sorted(hists):
                hist = hists[value]
                cumulative = 0
                for bound, count in zip((*hist.buckets, math.inf), hist.counts):
                    cumulative += count
                    le = "+Inf" if math.isinf(bound) else repr(bound)
                    lines.append(
                        f'{p}{name}_bucket{{{label}="{_escape(value)}",le="{le}"}} {cumulative}'
                    )
                lines.append(f'{p}{name}_sum{{{label}="{_escape(value)}"}} {_number(hist.sum)}')
                lines.append(f'{p}{name}_count{{{label}="{_escape(value)}"}} {hist.count}')

        family("requests_total", "counter", "Requests by endpoint and cache result.")
        samples("requests_total", ("endpoint", "cache"), self.requests.items())
        family(
            "request_duration_seconds",
            "histogram",
            "Time the proxy took to answer, by cache result.",
        )
        histograms("request_duration_seconds", "cache", self.request_duration)
        family("upstream_requests_total", "counter", "Upstream calls by endpoint and HTTP status.")
        samples("upstream_requests_total", ("endpoint", "status"), self.upstream_requests.items())
        family("upstream_errors_total", "counter", "Upstream failures by endpoint and kind.")
        samples("upstream_errors_total", ("endpoint", "kind"), self.upstream_errors.items())
        family("upstream_latency_seconds", "histogram", "Upstream call duration, to the last byte.")
        histograms("upstream_latency_seconds", "endpoint", self.upstream_latency)
        family(
            "tokens_saved_total", "counter", "Tokens of answers served without an upstream call."
        )
        samples("tokens_saved_total", ("kind",), (((k,), v) for k, v in self.tokens_saved.items()))
        family(
            "cost_saved_usd_total",
            "counter",
            "Estimated USD saved (price table; unknown models count 0).",
        )
        lines.append(f"{p}cost_saved_usd_total {_number(self.cost_saved)}")
        family(
            "protocol_tokens_saved_total",
            "counter",
            "Tokens of answers served without an upstream call, by protocol and kind.",
        )
        samples(
            "protocol_tokens_saved_total", ("endpoint", "kind"), self.protocol_tokens_saved.items()
        )
        family("protocol_cost_saved_usd_total", "counter", "Estimated USD saved, by protocol.")
        samples(
            "protocol_cost_saved_usd_total",
            ("endpoint",),
            (((k,), v) for k, v in self.protocol_cost_saved.items()),
        )
        family("inflight_requests", "gauge", "Upstream calls in flight.")
        lines.append(f"{p}inflight_requests {self.inflight}")
        family(
            "refused_requests_total",
            "counter",
            "Requests the proxy answered itself with an error, by endpoint and code.",
        )
        samples("refused_requests_total", ("endpoint", "code"), self.refused_requests.items())
        family(
            "responses_not_stored_total",
            "counter",
            "Upstream answers passed on without being stored, by endpoint and reason.",
        )
        samples("responses_not_stored_total", ("endpoint", "reason"), self.not_stored.items())
        family(
            "coalescing_leases_total",
            "counter",
            "Misses coordinated across processes, by endpoint and outcome (lead, serve, alone).",
        )
        samples("coalescing_leases_total", ("endpoint", "outcome"), self.leases.items())
        if cache_stats is not None:
            for name in ("hits", "misses", "updates", "errors", "corrupt", "skipped"):
                if name in cache_stats:
                    family(f"cache_{name}_total", "counter", f"The cache object's {name} counter.")
                    lines.append(f"{p}cache_{name}_total {_number(cache_stats[name])}")
        if breaker_open is not None:
            family(
                "cache_breaker_open",
                "gauge",
                "1 while the cache's circuit breaker bypasses the store.",
            )
            lines.append(f"{p}cache_breaker_open {int(breaker_open)}")
        return "\n".join(lines) + "\n"
