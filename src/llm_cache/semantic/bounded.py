"""Error-bounded decisions that learn from outcomes (``SemanticCache(max_error_rate=δ)``).

Pure logic, no I/O: the cache (:mod:`.learning`) reads and writes the learned state and
calls these functions, so the sync and async paths and the evaluation tools share them.

What a lookup looks at. Among the admissible neighbours of the query (same partition,
every guard passed) at or above the similarity ``floor``, the answers are grouped with
the judge ("the same answer"); the candidate is the answer carried by the most neighbours
(ties: the nearest), represented by its nearest entry. Its :class:`Context` is

* ``similarity`` of that entry to the query,
* ``agree``: neighbours above the floor with that answer (the entry included),
* ``disagree``: neighbours above the floor with another answer.

This is the structure measured in the issue (the k nearest agreeing is strong evidence;
a neighbour with another answer is a warning); ``agree`` and ``disagree`` are capped and
together form the context's *class*; the similarity is binned in steps of 0.01.

What is learned. For every class, counts of judged outcomes per similarity bin: ``n``
lookups whose candidate was compared with the provider's fresh answer, ``w`` of them wrong.
Every miss that had a candidate yields such an outcome for free (the caller's ``update``
brings the fresh answer), so the cache learns from the traffic it has to send to the
provider anyway. The cache answers a context at similarity ``s`` when the error of the
answers it would give there is bounded: it pools the outcomes of the class in the window
``[s, s + window)`` (what a hit at ``s`` and above looks like; only nearby outcomes count,
so evidence at 0.95 never vouches for 0.70) and takes a one-sided Wilson upper bound at
confidence ``z`` of ``wrong / n`` (plus the shipped prior's pseudo-counts, scaled down to
at most ``prior_weight`` of them); it answers only when the bound is ``<= max_error_rate``.

Per entry, outcomes refine the class: an entry judged wrong at similarity ``s`` is not
served below ``s + veto_margin`` any more (its own boundary moves up), and a reported
wrong hit (``feedback``) blocks that entry for that query for good.

The error budget (``budget=True``). A bound per context is stricter than the promise,
which is about the error of all the answers the cache gives: :func:`admitted_cells` ranks
the (class, bin) cells by estimated error and admits the longest prefix whose pooled
outcomes keep the Wilson bound under ``max_error_rate``; a context is answered when its
own bound is met *or* its cell is admitted. Measured on the tuning streams (CLINC150
train, a Banking77 draw other than the reported one): +3 points of correct hits on
CLINC150 at the same error, no change on Banking77.

The prior shapes estimates but never answers alone: a context needs ``min_outcomes`` of
this cache's own judged outcomes in its window first. Without that rule the prior (fitted
on intent queries) answered look-alike traps it had never seen: on traps_dev as a stream,
38 wrong hits of 88 at ``max_error_rate=0.05``; with it, 1 of 3 (2 of 4 with the window of 0.2).

Exploration. A lookup whose bound is not met is a miss (its outcome is learned). One whose
bound is met is still explored (turned into a miss) with probability
``explore / sqrt(1 + n)``, ``n`` the outcomes in its window: often while an estimate is
young, rarely once it is firm, so that the estimates keep being checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

__all__ = [
    "BoundPolicy",
    "Context",
    "Counts",
    "EntryRecord",
    "N_BINS",
    "choose",
    "wilson_upper",
    "error_bound",
    "assess",
    "decide",
    "exploration_rate",
    "merge_counts",
    "counts_from_fields",
    "counts_fields",
]

N_BINS = 100  # similarity bins of 0.01
AGREE_CAP = 4
DISAGREE_CAP = 2

#: class -> (n per bin, wrong per bin)
Counts = dict[str, tuple[list[float], list[float]]]


@dataclass(frozen=True)
class BoundPolicy:
    """The parameters of an error-bounded cache (see the module docstring).

    The defaults were chosen on streams of CLINC150 train and a Banking77 draw other than
    the reported one (docs/semantic.md); ``max_error_rate`` is the user's. ``window`` went
    from 0.1 to 0.2 when it answered more on both tuning draws and every exploration seed
    with no more wrong hits on traps.
    """

    max_error_rate: float
    floor: float = 0.6
    window: float = 0.2
    support: int = 2
    z: float = 1.28  # one-sided 90%
    explore: float = 0.1
    prior_weight: float = 300.0
    veto_margin: float = 0.03
    k: int = 4
    budget: bool = True
    smooth: int = 3
    budget_prior_weight: float = 300.0
    min_outcomes: int = 10


@dataclass(frozen=True)
class Context:
    """What the bound is conditioned on (see the module docstring)."""

    similarity: float
    agree: int
    disagree: int

    @property
    def cls(self) -> str:
        return f"a{min(self.agree, AGREE_CAP)}d{min(self.disagree, DISAGREE_CAP)}"

    @property
    def bin(self) -> int:
        return similarity_bin(self.similarity)


def similarity_bin(similarity: float) -> int:
    return min(N_BINS - 1, max(0, int(math.floor(similarity * N_BINS + 1e-9))))


@dataclass
class EntryRecord:
    """What was learned about one cached entry: similarities at which it was judged wrong
    (the highest few) and digests of queries it must never answer (reported wrong hits)."""

    wrong: list[float] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    MAX_WRONG = 8
    MAX_BLOCKED = 32

    def vetoes(self, similarity: float, margin: float) -> bool:
        return any(similarity <= w + margin for w in self.wrong)

    def add_wrong(self, similarity: float) -> None:
        self.wrong = sorted([*self.wrong, round(float(similarity), 4)], reverse=True)[: self.MAX_WRONG]

    def block(self, query_digest: str) -> None:
        if query_digest not in self.blocked:
            self.blocked = [query_digest, *self.blocked][: self.MAX_BLOCKED]

    def to_json(self) -> dict[str, list[object]]:
        return {"w": list(self.wrong), "b": list(self.blocked)}

    @classmethod
    def from_json(cls, data: object) -> "EntryRecord":
        """A record from stored JSON; anything malformed is ignored (a store is untrusted)."""
        if not isinstance(data, dict):
            return cls()
        wrong = [float(x) for x in data.get("w", []) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)]
        blocked = [x for x in data.get("b", []) if isinstance(x, str) and len(x) <= 64]
        return cls(sorted(wrong, reverse=True)[: cls.MAX_WRONG], blocked[: cls.MAX_BLOCKED])


def choose(
    similarities: Sequence[float],
    answers: Sequence[str],
    same: Callable[[str, str], bool],
    floor: float,
    support: int = 3,
) -> tuple[int, Context] | None:
    """The candidate among neighbours (most similar first) and its context, or ``None``
    when none reaches ``floor``. ``answers[i]`` is neighbour ``i``'s answer text."""
    groups: list[list[int]] = []
    for i, (similarity, answer) in enumerate(zip(similarities, answers)):
        if similarity < floor:
            break
        for group in groups:
            if same(answer, answers[group[0]]):
                group.append(i)
                break
        else:
            groups.append([i])
    if not groups:
        return None
    above = sum(len(g) for g in groups)
    best = max(groups, key=lambda g: (len(g), -g[0]))  # most votes, then the nearest
    index = best[0]
    # The context's similarity is that of the group's ``support``-th nearest member (its
    # last one when it has fewer): several agreeing neighbours all close to the query is
    # what the issue measured as the strongest evidence.
    weakest = best[min(len(best), support) - 1]
    return index, Context(float(similarities[weakest]), len(best), above - len(best))


def wilson_upper(wrong: float, n: float, z: float) -> float:
    """One-sided Wilson upper bound of a proportion (1.0 with no observation)."""
    if n <= 0:
        return 1.0
    p = min(1.0, max(0.0, wrong / n))
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z2 / n))


def _window(counts: Counts, cls: str, lo: int, hi: int) -> tuple[float, float]:
    row = counts.get(cls)
    if row is None:
        return 0.0, 0.0
    n, w = row
    return sum(n[lo : hi + 1]), sum(w[lo : hi + 1])


def error_bound(ctx: Context, counts: Counts, prior: Counts | None, policy: BoundPolicy) -> tuple[float, float]:
    """``(upper bound of the error at this context, observed outcomes in its window)``."""
    lo = ctx.bin
    hi = N_BINS - 1 if policy.window >= 1 else min(N_BINS - 1, lo + max(0, int(round(policy.window * N_BINS))) - 1)
    n, w = _window(counts, ctx.cls, lo, hi)
    pn = pw = 0.0
    if prior is not None:
        pn, pw = _window(prior, ctx.cls, lo, hi)
        if pn > policy.prior_weight:
            scale = policy.prior_weight / pn
            pn, pw = pn * scale, pw * scale
    return wilson_upper(w + pw, n + pn, policy.z), n


def admitted_cells(counts: Counts, prior: Counts | None, policy: BoundPolicy) -> dict[str, int]:
    """The error budget: per class, the lowest similarity bin the cache may answer from.

    Cells (class, bin) are ranked by their estimated error (outcomes pooled over ``smooth``
    bins upwards, the prior scaled to ``budget_prior_weight`` pseudo-outcomes in all); the cache
    admits cells in that order while the Wilson upper bound of the error of everything
    admitted stays ``<= max_error_rate``. Answers at a cell are thus allowed by the error
    of all the answers the cache would give, not by that cell's own, which lets a few
    riskier contexts share the budget with many safe ones (a static threshold does the
    same, blindly). Within a class, a cell is admitted only with every bin above it.
    """
    scale = 0.0
    if prior:
        total = sum(sum(n) for n, _ in prior.values())
        scale = min(1.0, policy.budget_prior_weight / total) if total > 0 else 0.0
    first = similarity_bin(policy.floor)
    cells = []
    for cls in set(counts) | set(prior or {}):
        own = counts.get(cls)
        fit = (prior or {}).get(cls)
        n = [(own[0][i] if own else 0.0) + (scale * fit[0][i] if fit else 0.0) for i in range(N_BINS)]
        w = [(own[1][i] if own else 0.0) + (scale * fit[1][i] if fit else 0.0) for i in range(N_BINS)]
        # Suffix sums: the class's outcomes at this bin and above.
        above_n, above_w, best = 0.0, 0.0, 1.0
        for b in range(N_BINS - 1, first - 1, -1):
            above_n += n[b]
            above_w += w[b]
            if n[b] <= 0:
                continue
            hi = min(N_BINS, b + policy.smooth)
            local = (sum(w[b:hi]) + 0.5) / (sum(n[b:hi]) + 1.0)
            # Monotone in similarity within a class: a bin is no safer than the ones above.
            best = local if best == 1.0 else max(best, local)
            cells.append((best, -b, cls, b, n[b], w[b]))
    cells.sort()
    # The longest prefix whose pooled bound is within the budget (a short prefix has a
    # loose bound, so the search does not stop at the first cell over it).
    total_n = total_w = 0.0
    longest = 0
    for i, (_, _, _, _, n_cell, w_cell) in enumerate(cells, 1):
        total_n += n_cell
        total_w += w_cell
        if wilson_upper(total_w, total_n, policy.z) <= policy.max_error_rate:
            longest = i
    admitted: dict[str, int] = {}
    for _, _, cls, b, _, _ in cells[:longest]:
        admitted[cls] = min(admitted.get(cls, N_BINS), b)
    return admitted


def assess(
    ctx: Context,
    counts: Counts,
    prior: Counts | None,
    record: EntryRecord | None,
    policy: BoundPolicy,
    query_digest: str | None = None,
    admitted: Mapping[str, int] | None = None,
) -> tuple[bool, str, float]:
    """Whether the bound lets the cache answer this context, why (words for people), and
    the outcomes in its window. No exploration draw: :func:`decide` adds it."""
    if record is not None:
        if query_digest is not None and query_digest in record.blocked:
            return False, "reported wrong for this prompt (feedback)", 0.0
        if record.vetoes(ctx.similarity, policy.veto_margin):
            worst = max(w for w in record.wrong if ctx.similarity <= w + policy.veto_margin)
            return False, f"this entry was judged wrong at similarity {worst:.2f}", 0.0
    bound, n = error_bound(ctx, counts, prior, policy)
    if n < policy.min_outcomes:
        # The prior shapes an estimate; only this cache's own outcomes can back it.
        return False, f"{n:g} judged outcomes near similarity {ctx.similarity:.2f}, {policy.min_outcomes} needed", n
    if bound <= policy.max_error_rate:
        return True, f"error bound {bound:.1%} <= {policy.max_error_rate:g} ({n:g} outcomes)", n
    if policy.budget and admitted is not None and ctx.bin >= admitted.get(ctx.cls, N_BINS):
        return True, f"within the error budget (own bound {bound:.1%}, {n:g} outcomes)", n
    return False, f"error bound {bound:.1%} > {policy.max_error_rate:g} ({n:g} outcomes)", n


def decide(
    ctx: Context,
    counts: Counts,
    prior: Counts | None,
    record: EntryRecord | None,
    policy: BoundPolicy,
    draw: float,
    query_digest: str | None = None,
    admitted: Mapping[str, int] | None = None,
) -> str:
    """``"hit"``, ``"explore"`` (bound met, checked anyway) or ``"miss"`` (bound not met,
    vetoed or blocked). ``draw`` is a uniform random number in [0, 1)."""
    allowed, _, n = assess(ctx, counts, prior, record, policy, query_digest, admitted)
    if not allowed:
        return "miss"
    if draw < exploration_rate(policy, n):
        return "explore"
    return "hit"


def exploration_rate(policy: BoundPolicy, outcomes: float) -> float:
    """How often a lookup whose bound is met is checked anyway: often while its estimate
    is young, rarely once it is firm."""
    return min(0.5, policy.explore / math.sqrt(1.0 + outcomes))


# -- counts <-> flat counter fields (how stores keep them: atomic increments) --------------------
def counts_fields(ctx: Context, wrong: bool) -> dict[str, float]:
    """The counter increments one judged outcome makes."""
    base = f"{ctx.cls}:{ctx.bin}"
    return {f"{base}:n": 1.0, f"{base}:w": 1.0 if wrong else 0.0}


def counts_from_fields(fields: Mapping[str, float]) -> Counts:
    """Counts from stored counter fields (malformed fields are ignored)."""
    counts: Counts = {}
    for name, value in fields.items():
        parts = name.split(":")
        if len(parts) != 3 or parts[2] not in ("n", "w") or not parts[1].isdigit():
            continue
        index = int(parts[1])
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not 0 <= index < N_BINS or not math.isfinite(number) or number < 0:
            continue
        row = counts.setdefault(parts[0], ([0.0] * N_BINS, [0.0] * N_BINS))
        row[0 if parts[2] == "n" else 1][index] += number
    return counts


def merge_counts(into: Counts, fields: Mapping[str, float]) -> None:
    """Add counter increments to in-memory counts."""
    for cls, (n, w) in counts_from_fields(fields).items():
        row = into.setdefault(cls, ([0.0] * N_BINS, [0.0] * N_BINS))
        for i in range(N_BINS):
            row[0][i] += n[i]
            row[1][i] += w[i]
