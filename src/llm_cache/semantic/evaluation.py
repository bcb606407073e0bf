"""How this project measures a semantic cache (used by ``llm-cache eval``/``calibrate``
and the benchmarks).

The protocol (issue 4): store *every* first question of a set of labelled pairs in ONE
cache, then look up every second question — the realistic setting, where a query can hit
any cached entry, not only its own pair's. A lookup's outcome is

* **right**: it returned its own pair's answer and the pair is labelled a duplicate;
* **wrong**: it returned its own pair's answer and the pair is labelled *not* a duplicate
  (for trap sets: a should-miss pair that hit);
* **other**: it returned another pair's answer. Unlabelled (often a true duplicate: data
  sets repeat questions), so reported apart and left out of precision;
* **miss**: no hit.

precision = right / (right + wrong); recall = right / duplicate pairs; F1 from the two.
``miss_hit_rate`` = wrong / non-duplicate pairs (the trap target is ≤ 5%).

The decisions are made by the cache's own code: the entries go into a real
:class:`~llm_cache.semantic.stores.local.LocalVectorStore`, neighbours come from its
search, and :func:`~llm_cache.semantic.cache.select_candidate` (what every lookup runs)
chooses the hit with the guards. The guards' choice does not depend on the threshold, so
one pass gives the whole threshold grid.

Files read (:func:`load_pairs`): JSON lines with ``a``, ``b`` and ``label`` (0/1) or
``same_answer`` (bool) and optionally ``category``; MRPC-style TSV (``Quality``,
``#1 String``, ``#2 String``); GPTCache's ``[{"origin", "similar"}]`` JSON (all duplicates).
Nothing here ships data: pass the files you measure with.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..errors import ConfigurationError
from .cache import select_candidate
from .guards import GuardLike
from .partition import split_prompt
from .stores.base import Neighbour, SemanticEntry

__all__ = [
    "Pair",
    "Outcome",
    "Metrics",
    "load_pairs",
    "embed_texts",
    "collect_neighbours",
    "decide",
    "metrics_at",
    "threshold_table",
    "best_threshold",
    "threshold_grid",
    "format_table",
    "Progress",
]

EVAL_LLM_STRING = '{"evaluation":true}'


@dataclass(frozen=True)
class Pair:
    """Two prompts and whether they need the same answer."""

    a: str
    b: str
    duplicate: bool
    category: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What the cache did with one pair's second question (before any threshold)."""

    similarity: float | None  # of the candidate the cache would return; None: no admissible one
    own: bool  # the candidate is this pair's first question
    duplicate: bool
    category: str | None
    candidate: str | None = None  # the matched text, for inspection


@dataclass(frozen=True)
class Metrics:
    """One row of the threshold table."""

    threshold: float
    right: int
    wrong: int
    other: int
    misses: int
    duplicates: int
    non_duplicates: int

    @property
    def precision(self) -> float:
        hits = self.right + self.wrong
        return self.right / hits if hits else float("nan")

    @property
    def recall(self) -> float:
        return self.right / self.duplicates if self.duplicates else float("nan")

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r and not math.isnan(p) and not math.isnan(r) else 0.0

    @property
    def miss_hit_rate(self) -> float:
        """Share of non-duplicate (should-miss) pairs that hit their own first question."""
        return self.wrong / self.non_duplicates if self.non_duplicates else float("nan")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(precision=self.precision, recall=self.recall, f1=self.f1, miss_hit_rate=self.miss_hit_rate)
        return data


# ---------------------------------------------------------------------- loading


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def load_pairs(path: str | os.PathLike[str], limit: int | None = None) -> list[Pair]:
    """Read labelled pairs from JSON lines, an MRPC-style TSV or GPTCache's mock JSON."""
    path = os.fspath(path)
    pairs: list[Pair] = []
    try:
        with open(path, encoding="utf-8-sig") as f:
            head = f.read(1)
            f.seek(0)
            if path.endswith(".tsv"):
                reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                header = next(reader)
                cols = {name.strip(): i for i, name in enumerate(header)}
                try:
                    qi, ai, bi = cols["Quality"], cols["#1 String"], cols["#2 String"]
                except KeyError as exc:
                    raise ConfigurationError(f"{path}: a TSV needs Quality, #1 String and #2 String columns") from exc
                for row in reader:
                    if len(row) > max(qi, ai, bi):
                        pairs.append(Pair(row[ai], row[bi], row[qi].strip() == "1"))
            elif head == "[":
                for item in json.load(f):
                    if "origin" in item and "similar" in item:
                        pairs.append(Pair(item["origin"], item["similar"], True, "gptcache"))
                    else:
                        pairs.append(_pair_from(item, path))
            else:
                for number, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            item = json.loads(line)
                        except ValueError as exc:
                            raise ConfigurationError(f"{path}:{number}: not JSON: {exc}") from exc
                        pairs.append(_pair_from(item, f"{path}:{number}"))
                    if limit is not None and len(pairs) >= limit:
                        break
    except FileNotFoundError as exc:
        raise ConfigurationError(f"no such pairs file: {path}") from exc
    if limit is not None:
        pairs = pairs[:limit]
    if not pairs:
        raise ConfigurationError(f"{path} holds no pairs")
    return pairs


def _pair_from(item: Any, where: str) -> Pair:
    if not isinstance(item, dict) or not isinstance(item.get("a"), str) or not isinstance(item.get("b"), str):
        raise ConfigurationError(f"{where}: each pair needs string fields 'a' and 'b'")
    if "label" in item:
        duplicate = _truthy(item["label"])
    elif "same_answer" in item:
        duplicate = _truthy(item["same_answer"])
    else:
        raise ConfigurationError(f"{where}: each pair needs 'label' (0/1) or 'same_answer' (true/false)")
    category = item.get("category")
    return Pair(item["a"], item["b"], duplicate, category if isinstance(category, str) else None)


# ---------------------------------------------------------------------- progress


class Progress:
    """A progress bar on stderr (rich's, the ``cli`` extra, when installed; else one plain line)."""

    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.label, self.enabled, self.done = total, label, enabled, 0
        self._bar: Any = None
        self._task: Any = None
        self._last = 0.0
        self._start = time.monotonic()
        if enabled:
            from ..commands._output import rich_progress

            self._bar = rich_progress(sys.stderr, "texts")
            if self._bar is not None:
                self._task = self._bar.add_task(label, total=total, count=0)
                self._bar.start()

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, count=self.done)
            return
        now = time.monotonic()
        if now - self._last >= 0.5 or self.done >= self.total:
            self._last = now
            print(f"\r{self.label}: {self.done}/{self.total} ({now - self._start:.0f}s)", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.stop()
        else:
            print(file=sys.stderr)


# ---------------------------------------------------------------------- the protocol


def embed_texts(embedding: Any, texts: Sequence[str], batch_size: int = 64, progress: bool = False, label: str = "embedding") -> Any:
    """Embed ``texts`` in batches (float32 rows, L2-normalised)."""
    import numpy as np

    from .embeddings import as_array

    bar = Progress(len(texts), label, progress)
    chunks = []
    try:
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            chunks.append(as_array(embedding, chunk))
            bar.update(len(chunk))
    finally:
        bar.close()
    if not chunks:
        return np.zeros((0, int(embedding.dimension)), dtype=np.float32)
    return np.concatenate(chunks)


def collect_neighbours(
    pairs: Sequence[Pair],
    embedding: Any,
    *,
    k: int = 4,
    vectors: tuple[Any, Any] | None = None,
    progress: bool = False,
    store_factory: Callable[[int], Any] | None = None,
) -> list[list[Neighbour]]:
    """Store every pair's first text in one cache; return each second text's neighbours.

    ``vectors``: precomputed ``(first, second)`` embeddings (rows aligned with ``pairs``),
    to measure several guard sets without embedding twice.
    """
    from .stores.local import LocalVectorStore

    if vectors is None:
        firsts = embed_texts(embedding, [p.a for p in pairs], progress=progress, label="embedding first texts")
        seconds = embed_texts(embedding, [p.b for p in pairs], progress=progress, label="embedding second texts")
    else:
        firsts, seconds = vectors
    dimension = int(firsts.shape[1])
    store = store_factory(dimension) if store_factory else LocalVectorStore(None, dimension=dimension)
    try:
        entries, rows, seen = [], [], set()
        for i, pair in enumerate(pairs):
            if pair.a in seen:
                continue  # one entry per distinct text, as a cache holds them
            seen.add(pair.a)
            sk = split_prompt(pair.a, EVAL_LLM_STRING)
            entries.append(
                SemanticEntry(sk.key, sk.partition, pair.a, pair.a, EVAL_LLM_STRING, '{"v":1,"g":[{"text":""}]}', 0.0)
            )
            rows.append(i)
        for start in range(0, len(entries), 5000):
            store.add_many(entries[start : start + 5000], firsts[rows[start : start + 5000]])
        bar = Progress(len(pairs), "looking up second texts", progress)
        results = []
        try:
            for i, pair in enumerate(pairs):
                partition = split_prompt(pair.b, EVAL_LLM_STRING).partition
                results.append(store.search(partition, seconds[i], k))
                bar.update()
        finally:
            bar.close()
        return results
    finally:
        store.close()


def decide(pairs: Sequence[Pair], neighbours: Sequence[Sequence[Neighbour]], guards: Sequence[GuardLike]) -> list[Outcome]:
    """The cache's choice for each second text, before a threshold is applied."""
    outcomes = []
    for pair, candidates in zip(pairs, neighbours):
        chosen = select_candidate(pair.b, candidates, guards, threshold=-2.0, llm_string=EVAL_LLM_STRING)
        if chosen is None:
            outcomes.append(Outcome(None, False, pair.duplicate, pair.category))
        else:
            outcomes.append(
                Outcome(chosen.similarity, chosen.entry.text == pair.a, pair.duplicate, pair.category, chosen.entry.text)
            )
    return outcomes


def metrics_at(outcomes: Iterable[Outcome], threshold: float) -> Metrics:
    right = wrong = other = misses = duplicates = non_duplicates = 0
    for o in outcomes:
        if o.duplicate:
            duplicates += 1
        else:
            non_duplicates += 1
        if o.similarity is None or o.similarity < threshold:
            misses += 1
        elif not o.own:
            other += 1
        elif o.duplicate:
            right += 1
        else:
            wrong += 1
    return Metrics(threshold, right, wrong, other, misses, duplicates, non_duplicates)


def threshold_grid(spec: str | None = None) -> list[float]:
    """``"0.80:0.98:0.01"`` (start:stop:step, inclusive) or ``"0.85,0.9,0.95"``."""
    if not spec:
        spec = "0.80:0.98:0.01"
    try:
        if ":" in spec:
            start, stop, step = (float(x) for x in spec.split(":"))
            if step <= 0:
                raise ValueError
            count = int(round((stop - start) / step)) + 1
            return [round(start + i * step, 6) for i in range(count)]
        return sorted(float(x) for x in spec.split(","))
    except ValueError as exc:
        raise ConfigurationError(f"bad threshold grid {spec!r}: use start:stop:step or a,b,c") from exc


def threshold_table(outcomes: Sequence[Outcome], thresholds: Iterable[float]) -> list[Metrics]:
    return [metrics_at(outcomes, t) for t in thresholds]


def best_threshold(table: Sequence[Metrics], target_precision: float) -> Metrics | None:
    """The lowest threshold (highest recall) whose precision reaches the target."""
    for row in sorted(table, key=lambda m: m.threshold):
        if not math.isnan(row.precision) and row.precision >= target_precision and row.right > 0:
            return row
    return None


def by_category(outcomes: Sequence[Outcome], threshold: float) -> dict[str, Metrics]:
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(o.category or "-", []).append(o)
    return {name: metrics_at(group, threshold) for name, group in sorted(groups.items())}


def _fmt(value: float) -> str:
    return "  -  " if math.isnan(value) else f"{value:.3f}"


def format_table(table: Sequence[Metrics], gptcache_style: bool = False) -> str:
    """A Markdown table of the rows."""
    if gptcache_style:
        lines = ["| threshold | positive | negative | miss | hit rate |", "|---|---|---|---|---|"]
        for m in table:
            total = m.right + m.wrong + m.other + m.misses
            lines.append(f"| {m.threshold:.2f} | {m.right} | {m.other + m.wrong} | {m.misses} | {(m.right + m.other + m.wrong) / total:.3f} |")
        return "\n".join(lines)
    lines = [
        "| threshold | right | wrong | other | precision | recall | F1 | should-miss hit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in table:
        lines.append(
            f"| {m.threshold:.2f} | {m.right} | {m.wrong} | {m.other} | {_fmt(m.precision)} | {_fmt(m.recall)} "
            f"| {_fmt(m.f1)} | {_fmt(m.miss_hit_rate)} |"
        )
    return "\n".join(lines)


def iter_rows(table: Sequence[Metrics]) -> Iterator[dict[str, Any]]:
    for m in table:
        yield m.as_dict()


def evaluate_file(
    path: str | os.PathLike[str],
    *,
    guards: Any = "default",
    limit: int | None = None,
    k: int = 4,
    embedding: Any = None,
    progress: bool = False,
) -> tuple[list[Pair], list[Outcome]]:
    """Run the protocol on a pairs file with the cache's guards (``"default"``, names, ...)."""
    from .guards import resolve_guards

    resolved = resolve_guards(["default", "edits"] if guards == "strict" else guards)
    pairs = load_pairs(path, limit)
    if embedding is None:
        from .embeddings import LocalEmbeddings

        embedding = LocalEmbeddings()
    neighbours = collect_neighbours(pairs, embedding, k=k, progress=progress)
    return pairs, decide(pairs, neighbours, resolved)
