"""Proxy metrics in the Prometheus text exposition format, and the price table.

Under ``llm-cache serve --workers N`` every update also goes to ``prometheus_client`` in
its multiprocess mode (:mod:`._prom`), so that ``/metrics`` of any worker reports all of
them; one process renders its own counts.
Metric names (all prefixed ``llm_cache_proxy_``):

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
``inflight_requests``                 upstream calls in flight, and misses waiting on
                                      another process's call (gauge)
``refused_requests_total``            requests the proxy answered itself with an error,
                                      by endpoint and code (request_too_large,
                                      invalid_api_key, upstream_busy, only_if_cached, ...)
``responses_not_stored_total``        upstream answers passed on but not stored, by
                                      endpoint and reason: too_large (over
                                      ``max_stored_bytes``), unencodable
``coalescing_leases_total``           misses coordinated with other processes by endpoint
                                      and outcome: lead (called upstream), serve (answered
                                      from another process's call), alone (no lease store)
``cache_errors_total`` ...            the cache object's own counters and breaker state
                                      (the answering worker's)
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
from ._prom import (
    LATENCY_BUCKETS,
    PREFIX,
    PROXY_BUCKETS,
    PromMetrics,
    Samples,
    multiprocess,
    number,
    render_lines,
)

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

_LATENCY_BUCKETS = LATENCY_BUCKETS
_PROXY_BUCKETS = PROXY_BUCKETS


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


class Metrics:
    """All counters of one proxy app.

    The attributes (``requests``, ``tokens_saved``, ``cost_saved``...) are this process's
    counts, for Python callers; ``render`` (``/metrics``) reports them, or every worker's
    through ``prometheus_client`` (:mod:`._prom`) when ``serve --workers`` runs.
    """

    PREFIX = PREFIX

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
        self._inflight = 0
        self.refused_requests: dict[tuple[str, str], int] = {}
        self.not_stored: dict[tuple[str, str], int] = {}
        self.leases: dict[tuple[str, str], int] = {}
        # Under serve --workers, every update also goes to prometheus_client's shared files.
        self._prom = PromMetrics() if multiprocess() else None
        if self._prom is not None:
            for kind in self.tokens_saved:  # both kinds are always reported, 0 included
                self._prom.child("tokens_saved_total", (kind,))

    @property
    def inflight(self) -> int:
        """Upstream calls in flight in this process."""
        return self._inflight

    @inflight.setter
    def inflight(self, value: int) -> None:
        self._inflight = value
        if self._prom is not None:
            self._prom.child("inflight_requests").set(value)

    # -- updates (event-loop thread only) ------------------------------------------------
    def request(self, endpoint: str, cache: str, seconds: float) -> None:
        key = (endpoint, cache)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.request_duration.get(cache)
        if hist is None:
            hist = self.request_duration[cache] = _Histogram(_PROXY_BUCKETS)
        hist.observe(seconds)
        if self._prom is not None:
            self._prom.child("requests_total", key).inc()
            self._prom.child("request_duration_seconds", (cache,)).observe(seconds)

    def upstream(self, endpoint: str, status: int | str, seconds: float | None) -> None:
        key = (endpoint, str(status))
        self.upstream_requests[key] = self.upstream_requests.get(key, 0) + 1
        prom = self._prom
        if prom is not None:
            prom.child("upstream_requests_total", key).inc()
        if seconds is not None:
            hist = self.upstream_latency.get(endpoint)
            if hist is None:
                hist = self.upstream_latency[endpoint] = _Histogram(_LATENCY_BUCKETS)
            hist.observe(seconds)
            if prom is not None:
                prom.child("upstream_latency_seconds", (endpoint,)).observe(seconds)

    def _count(self, counts: dict[tuple[str, str], int], family: str, key: tuple[str, str]) -> None:
        counts[key] = counts.get(key, 0) + 1
        if self._prom is not None:
            self._prom.child(family, key).inc()

    def upstream_error(self, endpoint: str, kind: str) -> None:
        self._count(self.upstream_errors, "upstream_errors_total", (endpoint, kind))

    def refused(self, endpoint: str, code: str) -> None:
        self._count(self.refused_requests, "refused_requests_total", (endpoint, code))

    def not_stored_answer(self, endpoint: str, reason: str) -> None:
        self._count(self.not_stored, "responses_not_stored_total", (endpoint, reason))

    def lease(self, endpoint: str, outcome: str) -> None:
        """Count how a miss's cross-process coalescing ended: lead, serve, alone."""
        self._count(self.leases, "coalescing_leases_total", (endpoint, outcome))

    def _tokens(self, prompt: int, completion: int, cost: float) -> None:
        self.tokens_saved["prompt"] += prompt
        self.tokens_saved["completion"] += completion
        self.cost_saved += cost
        prom = self._prom
        if prom is not None:
            if prompt:
                prom.child("tokens_saved_total", ("prompt",)).inc(prompt)
            if completion:
                prom.child("tokens_saved_total", ("completion",)).inc(completion)
            if cost:
                prom.child("cost_saved_usd_total").inc(cost)

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
        self._tokens(prompt, completion, self.prices.cost(model, prompt, completion))

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
        self._tokens(usage.input_tokens, usage.output_tokens, cost)
        tokens = self.protocol_tokens_saved
        prom = self._prom
        for kind, count in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_creation", usage.cache_creation_input_tokens),
            ("cache_read", usage.cache_read_input_tokens),
        ):
            if count:
                tokens[(endpoint, kind)] = tokens.get((endpoint, kind), 0) + count
                if prom is not None:
                    prom.child("protocol_tokens_saved_total", (endpoint, kind)).inc(count)
        self.protocol_cost_saved[endpoint] = self.protocol_cost_saved.get(endpoint, 0.0) + cost
        if cost and prom is not None:
            prom.child("protocol_cost_saved_usd_total", (endpoint,)).inc(cost)

    # -- exposition ------------------------------------------------------------------------
    def _samples(self) -> Samples:
        """This process's counts as exposition samples (one process: no prometheus_client)."""
        p = self.PREFIX
        samples: Samples = {}

        def series(name: str, labels: tuple[str, ...], counts: Mapping[Any, float]) -> None:
            rows = samples.setdefault(p + name, [])
            for key, value in counts.items():
                values = key if isinstance(key, tuple) else (key,)
                rows.append((dict(zip(labels, values)), value))

        def histograms(name: str, label: str, hists: Mapping[str, _Histogram]) -> None:
            buckets = samples.setdefault(f"{p}{name}_bucket", [])
            for value, hist in hists.items():
                cumulative = 0
                for bound, count in zip((*hist.buckets, math.inf), hist.counts):
                    cumulative += count
                    buckets.append(({label: value, "le": repr(bound)}, cumulative))
                samples.setdefault(f"{p}{name}_sum", []).append(({label: value}, hist.sum))
                samples.setdefault(f"{p}{name}_count", []).append(({label: value}, hist.count))

        series("requests_total", ("endpoint", "cache"), self.requests)
        histograms("request_duration_seconds", "cache", self.request_duration)
        series("upstream_requests_total", ("endpoint", "status"), self.upstream_requests)
        series("upstream_errors_total", ("endpoint", "kind"), self.upstream_errors)
        histograms("upstream_latency_seconds", "endpoint", self.upstream_latency)
        series("tokens_saved_total", ("kind",), self.tokens_saved)
        series("cost_saved_usd_total", (), {(): self.cost_saved})
        series("protocol_tokens_saved_total", ("endpoint", "kind"), self.protocol_tokens_saved)
        series("protocol_cost_saved_usd_total", ("endpoint",), self.protocol_cost_saved)
        series("inflight_requests", (), {(): self._inflight})
        series("refused_requests_total", ("endpoint", "code"), self.refused_requests)
        series("responses_not_stored_total", ("endpoint", "reason"), self.not_stored)
        series("coalescing_leases_total", ("endpoint", "outcome"), self.leases)
        return samples

    def render(
        self, cache_stats: Mapping[str, Any] | None = None, breaker_open: bool | None = None
    ) -> str:
        """The Prometheus text exposition (format 0.0.4).

        The cache object's counters and breaker state are this process's (each worker has
        its own cache object); everything else is every worker's under ``--workers``.
        """
        lines = self._prom.render() if self._prom is not None else render_lines(self._samples())
        p = self.PREFIX
        if cache_stats is not None:
            for name in ("hits", "misses", "updates", "errors", "corrupt", "skipped"):
                if name in cache_stats:
                    lines.append(f"# HELP {p}cache_{name}_total The cache object's {name} counter.")
                    lines.append(f"# TYPE {p}cache_{name}_total counter")
                    lines.append(f"{p}cache_{name}_total {number(cache_stats[name])}")
        if breaker_open is not None:
            lines.append(
                f"# HELP {p}cache_breaker_open 1 while the cache's circuit breaker bypasses the store."
            )
            lines.append(f"# TYPE {p}cache_breaker_open gauge")
            lines.append(f"{p}cache_breaker_open {int(breaker_open)}")
        return "\n".join(lines) + "\n"
