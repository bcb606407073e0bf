"""The learning half of an error-bounded :class:`~llm_cache.semantic.cache.SemanticCache`.

``SemanticCache(max_error_rate=δ)`` holds one :class:`ErrorBound`. On a lookup without an
exact hit, the cache hands it the admissible neighbours (same partition, every guard
passed) and it answers with one of them only when the learned bound keeps the error
under δ (:mod:`.bounded` has the rule and its reasons). Otherwise the lookup is a miss
and is remembered as *pending*: the caller's ``update(prompt, llm_string, generations)``
that follows brings the provider's fresh answer, the judge (:mod:`.judges`) compares it
with the candidate's cached answer, and the outcome is added to the shared counters (and,
when wrong, to the candidate entry's record). Explicit :meth:`ErrorBound.feedback` does
the same for a served answer and blocks that entry for that query.

The learned state lives in the store (:mod:`.learned_state`): counters are re-read at
most every ``refresh`` seconds (a process sees its own outcomes at once), an entry's
record is read with the candidate.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Sequence

from ..errors import ConfigurationError
from ..generation import Generation, decode_generations
from . import bounded
from .bounded import BoundPolicy, Context, EntryRecord
from .guards import GuardLike
from .judges import Judge, TextEqualityJudge
from .learned_state import LearnedState
from .stores.base import Neighbour

__all__ = ["ErrorBound", "make_error_bound", "make_policy", "load_prior", "PRIOR_FILE", "answer_text", "admissible"]

logger = logging.getLogger("llm_cache")

#: The shipped prior: outcome counts fitted on CLINC150 train streams (CC BY 3.0, Clinc;
#: see semantic/data/NOTICE) by benchmarks/fit_semantic_prior.py.
PRIOR_FILE = os.path.join(os.path.dirname(__file__), "data", "bounded_prior.json")

_MEMO = 10_000  # pending explorations and served answers remembered per process


def answer_text(generations: Sequence[Generation]) -> str:
    """The text a judge compares: the generations' texts (or message contents), joined."""
    parts = []
    for g in generations:
        text = g.text
        if not text and isinstance(g.message, dict):
            content = g.message.get("content")
            text = content if isinstance(content, str) else json.dumps(content, sort_keys=True) if content else ""
            if not text and g.message.get("tool_calls"):
                text = json.dumps(g.message["tool_calls"], sort_keys=True)
        parts.append(text or "")
    return "\n".join(parts)


def admissible(
    query_text: str,
    neighbours: Sequence[Neighbour],
    guards: Sequence[GuardLike],
    floor: float,
    llm_string: str,
    context: str | None,
) -> list[Neighbour]:
    """The neighbours (most similar first) at or above ``floor`` that a lookup may use:
    decided one by one by the cache's own :func:`~.cache.select_candidate`."""
    from .cache import select_candidate

    return [
        n for n in neighbours
        if select_candidate(query_text, [n], guards, floor, llm_string=llm_string, context=context) is not None
    ]


def make_policy(max_error_rate: Any, options: Mapping[str, Any] | BoundPolicy | None) -> BoundPolicy:
    """A validated :class:`~.bounded.BoundPolicy` from ``max_error_rate`` and overrides."""
    if isinstance(max_error_rate, bool) or not isinstance(max_error_rate, (int, float)) or not 0.0 < max_error_rate < 1.0:
        raise ConfigurationError(f"max_error_rate must be a number in (0, 1), e.g. 0.02, not {max_error_rate!r}")
    if isinstance(options, BoundPolicy):
        return replace(options, max_error_rate=float(max_error_rate))
    known = {f.name for f in fields(BoundPolicy)} - {"max_error_rate"}
    options = dict(options or {})
    unknown = set(options) - known
    if unknown:
        raise ConfigurationError(f"unknown learning option(s) {sorted(unknown)}; known: {sorted(known)}")
    return BoundPolicy(float(max_error_rate), **options)


def load_prior(prior: Any, policy: BoundPolicy) -> bounded.Counts | None:
    """``"default"`` (the shipped fit, when it was fitted with the policy's k, floor and
    support), ``None`` (start from nothing), or counter fields ``{field: value}``."""
    if prior is None:
        return None
    if isinstance(prior, Mapping):
        return bounded.counts_from_fields(prior)
    if prior != "default":
        raise ConfigurationError("prior must be 'default', None or a mapping of counter fields")
    try:
        with open(PRIOR_FILE, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        logger.warning("llm-cache: the shipped semantic prior %s cannot be read; starting from nothing", PRIOR_FILE)
        return None
    fitted = data.get("policy", {})
    if any(fitted.get(name) != getattr(policy, name) for name in ("k", "floor", "support")):
        return None  # fitted for another context definition: it would mislead
    return bounded.counts_from_fields(data.get("fields", {}))


@dataclass(frozen=True)
class _Pending:
    """A miss that had a candidate: judged when the fresh answer arrives."""

    entry_key: str
    cached_answer: str
    context: Context


@dataclass(frozen=True)
class _Served:
    """A semantic hit, remembered so that feedback can find what answered."""

    entry_key: str
    context: Context
    exact: bool


class ErrorBound:
    """Decisions, outcomes and feedback of one error-bounded cache (see the module docstring)."""

    def __init__(
        self,
        policy: BoundPolicy,
        judge: Judge,
        state: LearnedState,
        prior: bounded.Counts | None,
        *,
        refresh: float = 1.0,
        seed: int | None = None,
    ) -> None:
        self.policy = policy
        self.judge = judge
        # Neighbours' answers are compared on the lookup path: only a cheap judge there.
        self._same = judge.same if getattr(judge, "cheap", False) else TextEqualityJudge().same
        self.state = state
        self.prior = prior
        self.refresh = refresh
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counts: bounded.Counts = {}
        self._admitted: dict[str, int] | None = None  # the error budget (bounded.admitted_cells)
        self._loaded_at = -float("inf")
        self._pending: collections.OrderedDict[str, _Pending] = collections.OrderedDict()
        self._served: collections.OrderedDict[str, _Served] = collections.OrderedDict()
        self.stats: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------------ state
    def counts(self) -> bounded.Counts:
        """The shared counters, re-read from the store at most every ``refresh`` seconds."""
        now = time.monotonic()
        if now - self._loaded_at >= self.refresh:
            fresh = bounded.counts_from_fields(self.state.read_counters())
            admitted = bounded.admitted_cells(fresh, self.prior, self.policy) if self.policy.budget else None
            with self._lock:
                self._counts, self._loaded_at, self._admitted = fresh, now, admitted
        return self._counts

    def _record(self, key: str) -> EntryRecord | None:
        raw = self.state.get_record(key)
        return None if raw is None else EntryRecord.from_json(raw)

    def _learn(self, ctx: Context, wrong: bool) -> None:
        increments = bounded.counts_fields(ctx, wrong)
        self.state.add_counters(increments)
        with self._lock:
            bounded.merge_counts(self._counts, increments)
            counts = self._counts
        if self.policy.budget:
            # Re-ranked here, on the update path (after a provider call), not on lookups.
            admitted = bounded.admitted_cells(counts, self.prior, self.policy)
            with self._lock:
                self._admitted = admitted
        self.stats["outcomes"] += 1
        self.stats["outcomes_wrong"] += int(wrong)

    def _mark_wrong(self, entry_key: str, similarity: float, query_key: str | None) -> None:
        record = self._record(entry_key) or EntryRecord()
        record.add_wrong(similarity)
        if query_key is not None:
            record.block(query_key)
        self.state.put_record(entry_key, record.to_json())

    @staticmethod
    def _remember(memo: "collections.OrderedDict[str, Any]", key: str, value: Any) -> None:
        memo[key] = value
        memo.move_to_end(key)
        while len(memo) > _MEMO:
            memo.popitem(last=False)

    # ------------------------------------------------------------------ lookups
    def candidate(self, neighbours: Sequence[Neighbour]) -> tuple[Neighbour, Context] | None:
        """The candidate among admissible neighbours and its context (no I/O)."""
        answers = [answer_text(decode_generations(n.entry.response)) for n in neighbours]
        chosen = bounded.choose([n.similarity for n in neighbours], answers, self._same, self.policy.floor, self.policy.support)
        if chosen is None:
            return None
        return neighbours[chosen[0]], chosen[1]

    def decide(self, query_key: str, neighbours: Sequence[Neighbour]) -> Neighbour | None:
        """The neighbour to answer with, or ``None`` (a miss, remembered for learning)."""
        found = self.candidate(neighbours)
        if found is None:
            return None
        neighbour, ctx = found
        counts = self.counts()
        verdict = bounded.decide(
            ctx, counts, self.prior, self._record(neighbour.entry.key), self.policy,
            self._rng.random(), query_key, self._admitted,
        )
        if verdict == "hit":
            with self._lock:
                self._pending.pop(query_key, None)
                self._remember(self._served, query_key, _Served(neighbour.entry.key, ctx, False))
            self.stats["hits"] += 1
            return neighbour
        self.stats["explorations" if verdict == "explore" else "bound_misses"] += 1
        cached = answer_text(decode_generations(neighbour.entry.response))
        with self._lock:
            self._remember(self._pending, query_key, _Pending(neighbour.entry.key, cached, ctx))
        return None

    def explain(self, query_key: str, neighbours: Sequence[Neighbour]) -> list[tuple[Neighbour, str]]:
        """What a lookup would make of each admissible neighbour, in words: the candidate's
        verdict and why, the others' relation to it. No side effect and no exploration draw
        (a lookup whose bound is met may still be explored)."""
        found = self.candidate(neighbours)
        if found is None:  # admissible neighbours are all at or above the floor: none given
            return []
        chosen, ctx = found
        allowed, why, _ = bounded.assess(
            ctx, self.counts(), self.prior, self._record(chosen.entry.key), self.policy, query_key, self._admitted
        )
        answer = answer_text(decode_generations(chosen.entry.response))
        verdicts = []
        for n in neighbours:
            if n is chosen:
                verdicts.append((n, ("hit: " if allowed else "miss: ") + why))
            elif self._same(answer_text(decode_generations(n.entry.response)), answer):
                verdicts.append((n, "the candidate's answer (supports it)"))
            else:
                verdicts.append((n, "another answer (counts against the candidate)"))
        return verdicts

    def served_exact(self, query_key: str) -> None:
        """An exact hit answered ``query_key`` (feedback then concerns the entry itself)."""
        with self._lock:
            self._remember(self._served, query_key, _Served(query_key, Context(1.0, 1, 0), True))

    # ------------------------------------------------------------------ outcomes
    def observe(self, query_key: str, generations: Sequence[Generation]) -> bool | None:
        """Judge a fresh answer against the pending candidate of ``query_key``; the outcome
        trains the bound. Returns whether the candidate was right (``None``: nothing pending)."""
        with self._lock:
            pending = self._pending.pop(query_key, None)
        if pending is None:
            return None
        right = self.judge.same(answer_text(generations), pending.cached_answer)
        self._learn(pending.context, not right)
        if not right:
            self._mark_wrong(pending.entry_key, pending.context.similarity, None)
        return right

    def served(self, query_key: str) -> _Served | None:
        with self._lock:
            return self._served.get(query_key)

    def feedback(self, query_key: str, served: _Served | None, correct: bool) -> None:
        """Learn from a caller's verdict on the answer ``served`` for ``query_key``."""
        if served is None or served.exact:
            return  # an exact hit's answer is the entry itself: the cache deletes it
        self._learn(served.context, not correct)
        self.stats["feedback_wrong" if not correct else "feedback_right"] += 1
        if not correct:
            self._mark_wrong(served.entry_key, served.context.similarity, query_key)
            with self._lock:
                self._served.pop(query_key, None)

    def clear(self) -> None:
        self.state.clear()
        with self._lock:
            self._counts, self._loaded_at, self._admitted = {}, -float("inf"), None
            self._pending.clear()
            self._served.clear()


def make_error_bound(cache: Any, max_error_rate: Any, judge: Any, learning: Any, prior: Any, seed: int | None) -> ErrorBound:
    """The :class:`ErrorBound` of ``cache`` (a :class:`~.cache.SemanticCache`), its state in the cache's store."""
    from .judges import resolve_judge
    from .learned_state import learned_state_for

    policy = make_policy(max_error_rate, learning)
    resolved = resolve_judge(judge, cache.embedding)
    return ErrorBound(policy, resolved, learned_state_for(cache.store), load_prior(prior, policy), seed=seed)
