"""The stream protocol: a semantic cache on realistic repeated traffic (``llm-cache eval --stream``).

A stream is a file of labelled queries, JSON lines ``{"text": ..., "intent": ...}``: a
support bot whose right answer is fixed by the question's intent. Each query is looked
up in ONE cache, in order; on a miss the "provider" answers with the query's intent, and
that answer is stored with ``update`` (exactly what an application does); a hit is right
iff the cached answer equals the query's intent. A hit between two out-of-scope queries
(label ``oos``, ``out_of_scope`` or ``out-of-scope``) is *unlabelled* (out-of-scope
queries need not share an answer) and counted apart; a hit that crosses between an
out-of-scope query and an in-scope one is wrong.

Reported: queries, hit rate, right, wrong, unlabelled, error rate of hits
(wrong / (right + wrong)), correct-hit rate (right / queries) and, for error-bounded
caches, the exploration lookups (each a miss that paid for a provider call so the cache
could learn). The ceiling of the correct-hit rate is 1 - intents / queries.

Every decision is the real cache's: a :class:`~.cache.SemanticCache` on an in-memory
local store, with a static threshold or ``max_error_rate``. Embeddings can be computed
once and reused (:class:`PrecomputedEmbeddings`).

Pairs files can be streamed too (:func:`stream_from_pairs`): every text of every pair, in
a shuffled order, labelled by its group of texts linked by "same answer" pairs; a hit
between two texts of a pair labelled "different answer" is wrong, one between texts with
no label linking them is unlabelled.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from ..errors import ConfigurationError
from ..generation import Generation
from .embeddings import ArrayEmbeddings

__all__ = [
    "StreamItem",
    "StreamMetrics",
    "OUT_OF_SCOPE",
    "load_stream",
    "judge_hit",
    "stream_from_pairs",
    "PrecomputedEmbeddings",
    "cached_vectors",
    "run_stream",
    "evaluate_stream",
    "best_static_at",
    "comparisons",
    "format_stream_table",
]

OUT_OF_SCOPE = frozenset({"oos", "out_of_scope", "out-of-scope"})
STREAM_LLM_STRING = '{"evaluation":"stream"}'


@dataclass(frozen=True)
class StreamItem:
    """One query of a stream and the answer it needs (its intent)."""

    text: str
    label: str
    # Labels this query must NOT share an answer with (pairs streams); hits on them are wrong.
    different: frozenset[str] = field(default=frozenset())
    # Whether a hit on another label is a known error (intent data: every label is exact).
    exhaustive: bool = True


@dataclass
class StreamMetrics:
    """One row of the stream table."""

    name: str
    queries: int = 0
    hits: int = 0
    right: int = 0
    wrong: int = 0
    unlabelled: int = 0
    explorations: int = 0
    seconds: float = 0.0
    lookup_p50_ms: float = float("nan")  # median lookup time (embedding excluded when precomputed)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else float("nan")

    @property
    def error_rate(self) -> float:
        judged = self.right + self.wrong
        return self.wrong / judged if judged else float("nan")

    @property
    def correct_hit_rate(self) -> float:
        return self.right / self.queries if self.queries else float("nan")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(hit_rate=self.hit_rate, error_rate=self.error_rate, correct_hit_rate=self.correct_hit_rate)
        return data


def load_stream(path: str | os.PathLike[str], *, seed: int | None = 0, limit: int | None = None) -> list[StreamItem]:
    """Read ``{"text", "intent"}`` lines (``label`` is accepted for ``intent``), shuffle
    them with ``random.Random(seed).shuffle`` (``None``: file order), keep ``limit``."""
    path = os.fspath(path)
    items: list[StreamItem] = []
    try:
        with open(path, encoding="utf-8-sig") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except ValueError as exc:
                    raise ConfigurationError(f"{path}:{number}: not JSON: {exc}") from exc
                label = data.get("intent", data.get("label")) if isinstance(data, dict) else None
                if not isinstance(data, dict) or not isinstance(data.get("text"), str) or not isinstance(label, str):
                    raise ConfigurationError(f"{path}:{number}: each line needs string fields 'text' and 'intent'")
                items.append(StreamItem(data["text"], label))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"no such stream file: {path}") from exc
    if not items:
        raise ConfigurationError(f"{path} holds no queries")
    if seed is not None:
        random.Random(seed).shuffle(items)
    return items[:limit] if limit is not None else items


def stream_from_pairs(pairs: Iterable[Any], *, seed: int | None = 0) -> list[StreamItem]:
    """A stream of every distinct text of labelled pairs (``.evaluation.Pair``): texts
    linked by duplicate pairs share a label; non-duplicate pairs mark labels that must
    not meet. Only those links are known, so other hits are unlabelled."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    pairs = list(pairs)
    for p in pairs:
        find(p.a), find(p.b)
        if p.duplicate:
            parent[find(p.a)] = find(p.b)
    apart: dict[str, set[str]] = {}
    for p in pairs:
        if not p.duplicate:
            a, b = find(p.a), find(p.b)
            apart.setdefault(a, set()).add(b)
            apart.setdefault(b, set()).add(a)
    texts = list(dict.fromkeys(t for p in pairs for t in (p.a, p.b)))
    items = [StreamItem(t, find(t), frozenset(apart.get(find(t), ())), exhaustive=False) for t in texts]
    if seed is not None:
        random.Random(seed).shuffle(items)
    return items


class PrecomputedEmbeddings(ArrayEmbeddings):
    """An :class:`~llm_cache.embeddings.Embeddings` that answers from known vectors and
    falls back to ``model`` for other texts (so an evaluation embeds each text once)."""

    def __init__(self, model: Any, vectors: dict[str, Any]) -> None:
        self.model = model
        self.vectors = vectors
        self.dimension = int(model.dimension)

    def embed_array(self, texts: Sequence[str]) -> Any:
        import numpy as np

        from .embeddings import as_array

        missing = [t for t in texts if t not in self.vectors]
        if missing:
            for text, vector in zip(missing, as_array(self.model, missing)):
                self.vectors[text] = vector
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


def cached_vectors(texts: Sequence[str], embedding: Any, cache_dir: str | None = None, progress: bool = False) -> dict[str, Any]:
    """``{text: vector}`` for ``texts``; with ``cache_dir``, kept in a ``.npy`` file named by a
    digest of the texts (plain float32, loaded without pickle) so a rerun embeds nothing."""
    import hashlib

    import numpy as np

    from .evaluation import embed_texts

    unique = list(dict.fromkeys(texts))
    digest = hashlib.sha256("\x00".join(unique).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"stream-{len(unique)}-{digest}.npy") if cache_dir else None
    if path and os.path.exists(path):
        matrix = np.load(path, allow_pickle=False)
    else:
        matrix = embed_texts(embedding, unique, progress=progress, label="embedding the stream")
        if path:
            os.makedirs(cache_dir, exist_ok=True)  # type: ignore[arg-type]
            np.save(path, matrix, allow_pickle=False)
    return dict(zip(unique, matrix))


def judge_hit(item: StreamItem, answer: str) -> str:
    """``"right"``, ``"wrong"`` or ``"unlabelled"`` for a hit of ``item`` that gave ``answer``."""
    if item.label in OUT_OF_SCOPE or answer in OUT_OF_SCOPE:
        return "unlabelled" if item.label in OUT_OF_SCOPE and answer in OUT_OF_SCOPE else "wrong"
    if answer == item.label:
        return "right"
    if item.exhaustive or answer in item.different:
        return "wrong"
    return "unlabelled"


def run_stream(items: Sequence[StreamItem], cache: Any, name: str, progress: bool = False) -> StreamMetrics:
    """Run the protocol through ``cache`` (any cache; ``lookup`` then ``update`` on a miss)."""
    from .evaluation import Progress

    metrics = StreamMetrics(name)
    learning = getattr(cache, "learning", None)
    explored_before = learning.stats["explorations"] if learning is not None else 0
    bar = Progress(len(items), name, progress)
    start = time.perf_counter()
    durations = []
    try:
        for item in items:
            metrics.queries += 1
            began = time.perf_counter()
            cached = cache.lookup(item.text, STREAM_LLM_STRING)
            durations.append(time.perf_counter() - began)
            if cached is None:
                cache.update(item.text, STREAM_LLM_STRING, [Generation(text=item.label)])
            else:
                metrics.hits += 1
                outcome = judge_hit(item, cached[0].text)
                setattr(metrics, outcome, getattr(metrics, outcome) + 1)
            bar.update()
    finally:
        bar.close()
    metrics.seconds = time.perf_counter() - start
    if durations:
        import statistics

        metrics.lookup_p50_ms = statistics.median(durations) * 1000
    if learning is not None:
        metrics.explorations = learning.stats["explorations"] - explored_before
    return metrics


def evaluate_stream(
    items: Sequence[StreamItem],
    *,
    embedding: Any,
    thresholds: Sequence[float] = (),
    error_rates: Sequence[float] = (),
    guards: Any = None,
    seed: int = 0,
    progress: bool = False,
    learning: Any = None,
    prior: Any = "default",
) -> list[StreamMetrics]:
    """One :class:`StreamMetrics` per static threshold and per ``max_error_rate``, each
    from a fresh in-memory :class:`~.cache.SemanticCache` (guards: ``None`` by default,
    the plain-cosine baseline of the issue; the same for both kinds of rows)."""
    from .cache import SemanticCache

    rows = []
    configs: list[tuple[str, dict[str, Any]]] = [(f"threshold {t:.2f}", {"threshold": t}) for t in thresholds]
    configs += [
        (f"max_error_rate {d:g}", {"max_error_rate": d, "learning_seed": seed, "learning": learning, "prior": prior})
        for d in error_rates
    ]
    for name, options in configs:
        cache = SemanticCache(embedding, guards=guards, annotate=False, **options)
        try:
            rows.append(run_stream(items, cache, name, progress))
        finally:
            cache.close()
    return rows


def best_static_at(rows: Sequence[StreamMetrics], max_error: float) -> StreamMetrics | None:
    """The static-threshold row with the most correct hits whose error rate is at most ``max_error``."""
    eligible = [
        r for r in rows
        if r.name.startswith("threshold") and not math.isnan(r.error_rate) and r.error_rate <= max_error
    ]
    return max(eligible, key=lambda r: r.correct_hit_rate, default=None)


def comparisons(rows: Sequence[StreamMetrics]) -> list[str]:
    """One line per error-bounded row: its correct-hit rate against the best static
    threshold whose error is at most the realised error, and at most ``max_error_rate``."""
    lines = []
    static_p50 = sorted(r.lookup_p50_ms for r in rows if r.name.startswith("threshold"))
    for row in rows:
        if not row.name.startswith("max_error_rate") or not row.right + row.wrong:
            continue
        delta = float(row.name.split()[1])
        parts = []
        for label, limit in (("at <= the realised error", row.error_rate), ("at <= max_error_rate", delta)):
            best = best_static_at(rows, limit)
            parts.append(
                f"{row.correct_hit_rate / best.correct_hit_rate:.2f}x the best static threshold {label} "
                f"({best.name}: {best.correct_hit_rate:.1%} at {best.error_rate:.2%})"
                if best is not None and best.right else f"no static threshold {label}"
            )
        p50 = f"; lookup p50 {row.lookup_p50_ms:.2f} ms (static: {static_p50[len(static_p50) // 2]:.2f} ms)" if static_p50 else ""
        lines.append(
            f"{row.name}: error of hits {row.error_rate:.2%}, correct hits {row.correct_hit_rate:.1%} = "
            + "; ".join(parts) + f"; {row.explorations} exploration lookups{p50}"
        )
    return lines


def format_stream_table(rows: Sequence[StreamMetrics]) -> str:
    """A Markdown table of stream rows."""
    lines = [
        "| cache | queries | hit rate | right | wrong | unlabelled | error rate of hits | correct-hit rate | explorations | lookup p50 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        err = "-" if math.isnan(r.error_rate) else f"{r.error_rate:.2%}"
        lines.append(
            f"| {r.name} | {r.queries} | {r.hit_rate:.1%} | {r.right} | {r.wrong} | {r.unlabelled} | {err} "
            f"| {r.correct_hit_rate:.1%} | {r.explorations if r.name.startswith('max_error') else '-'} "
            f"| {r.lookup_p50_ms:.2f} ms |"
        )
    return "\n".join(lines)
