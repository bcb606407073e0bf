"""SemanticCache: answer a prompt from the cached answer to a prompt that means the same.

A lookup goes, in order:

1. **exact match** (``store.get`` by key): no embedding is computed, so a repeated prompt
   costs what an exact cache costs;
2. **nearest neighbours** of the embedded text (the completion prompt, or the last user
   message of a chat) among entries of the same *partition* — the same llm_string and,
   for chat, the same conversation before that message (see :mod:`.partition`);
3. the most similar candidate whose **cosine similarity** reaches ``threshold`` (higher is
   stricter, the same meaning for every store and embedding) and that every **guard**
   accepts (see :mod:`.guards`) is the hit.

Every semantic hit reports its similarity: :meth:`SemanticCache.lookup_with_score`
returns a :class:`SemanticMatch`, ``cache.last_match`` holds the last one of this thread,
and the returned generations carry ``generation_info["llm_cache"] = {"semantic": True,
"similarity": ..., "matched_prompt": ...}`` (a copy; exact hits are returned unchanged).

The default threshold and guards were chosen by measurement: docs/semantic.md.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ..caches.base import BaseCache
from ..errors import ConfigurationError, CorruptEntryError
from ..generation import Generation, decode_generations, encode_generations
from .._ttl import expires_at, validate_ttl
from .guards import GuardLike, first_rejection, resolve_guards
from .partition import SemanticKey, split_prompt
from .stores.base import Neighbour, SemanticEntry, VectorStore

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .learning import ErrorBound

    from .embeddings import Embeddings

__all__ = [
    "SemanticCache",
    "SemanticMatch",
    "Candidate",
    "DEFAULT_THRESHOLD",
    "CONFIG_FILE",
    "read_config",
    "write_config",
    "select_candidate",
]

logger = logging.getLogger("llm_cache")

#: Cosine similarity a candidate needs with the default guards; fitted on traps_dev
#: (CC BY 4.0) only — see docs/semantic.md for how, and for its measured precision.
DEFAULT_THRESHOLD = 0.92

#: The JSON file in ``data_dir`` where ``llm-cache calibrate`` stores the threshold.
CONFIG_FILE = "semantic_config.json"

_EMBED_MEMO = 256  # recent query vectors kept, so a miss followed by update embeds once


class _CorruptCandidate(Exception):
    """The chosen neighbour's stored value cannot be decoded (internal to ``_semantic``)."""

    def __init__(self, neighbour: Neighbour, cause: CorruptEntryError) -> None:
        super().__init__(str(cause))
        self.neighbour = neighbour


@dataclass(frozen=True)
class Candidate:
    """A neighbour and what the cache made of it (see :meth:`SemanticCache.explain`)."""

    text: str  # the cached entry's embedded text
    similarity: float
    verdict: str  # "hit", "below threshold", "guard <name>: <reason>", "other conversation"
    entry: SemanticEntry = field(repr=False)


@dataclass(frozen=True)
class SemanticMatch:
    """A cache hit and how it was found."""

    generations: list[Generation]
    similarity: float  # 1.0 for an exact hit
    exact: bool
    matched_prompt: str  # the cached entry's full prompt
    matched_text: str  # the cached entry's embedded text (its question)
    key: str  # the cached entry's key


def read_config(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The semantic cache config stored in ``data_dir`` ({} when there is none)."""
    path = os.path.join(os.fspath(data_dir), CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}; fix or delete it") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path} must hold a JSON object; fix or delete it")
    return data


def write_config(data_dir: str | os.PathLike[str], **values: Any) -> dict[str, Any]:
    """Merge ``values`` into the config in ``data_dir`` (atomically) and return it."""
    os.makedirs(os.fspath(data_dir), exist_ok=True)
    config = read_config(data_dir)
    config.update(values)
    path = os.path.join(os.fspath(data_dir), CONFIG_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return config


def _check_threshold(value: Any, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise ConfigurationError(f"threshold ({source}) must be a cosine similarity in [-1, 1], not {value!r}")
    return float(value)


def select_candidate(
    query_text: str,
    neighbours: Sequence[Neighbour],
    guards: Sequence[GuardLike],
    threshold: float,
    *,
    llm_string: str | None = None,
    context: str | None = None,
    verdicts: list[Candidate] | None = None,
) -> Neighbour | None:
    """The hit among ``neighbours`` (most similar first): the first one at or above
    ``threshold`` that belongs to the same model and conversation and passes every guard.

    Pure (no I/O): the sync and async lookups, ``explain`` and the evaluation tools all
    decide through it. ``verdicts``, when given, receives one :class:`Candidate` per
    neighbour examined.
    """
    for neighbour in neighbours:
        entry = neighbour.entry
        if neighbour.similarity < threshold:
            if verdicts is None:
                return None  # sorted: nothing further can pass
            verdicts.append(Candidate(entry.text, neighbour.similarity, "below threshold", entry))
            continue
        if (llm_string is not None and entry.llm_string != llm_string) or (
            context is not None and split_prompt(entry.prompt, entry.llm_string).context != context
        ):
            # A partition hash collision (or a store that filtered loosely): never a hit.
            if verdicts is not None:
                verdicts.append(Candidate(entry.text, neighbour.similarity, "other conversation", entry))
            continue
        rejection = first_rejection(guards, query_text, entry.text)
        if rejection is not None:
            if verdicts is not None:
                verdicts.append(Candidate(entry.text, neighbour.similarity, f"guard {rejection[0]}: {rejection[1]}", entry))
            continue
        if verdicts is not None:
            verdicts.append(Candidate(entry.text, neighbour.similarity, "hit", entry))
        return neighbour
    return None


class SemanticCache(BaseCache):
    """A cache that also answers prompts that mean the same as a cached one.

    Args:
        embedding: any :class:`~llm_cache.embeddings.Embeddings`; default
            :class:`~llm_cache.embeddings.LocalEmbeddings` (offline all-MiniLM-L6-v2).
        data_dir: a directory to persist the cache in (SQLite + usearch index, shared by
            processes). ``None`` with no ``store``: an in-memory cache.
        store: any :class:`~llm_cache.semantic.stores.base.VectorStore` (Redis, pgvector,
            ...) instead of the local one.
        threshold: cosine similarity a semantic hit needs (higher is stricter). ``None``:
            the threshold ``llm-cache calibrate`` stored in ``data_dir``, else
            :data:`DEFAULT_THRESHOLD`.
        guards: ``"default"``, ``"strict"`` (default + the ``edits`` guard), ``None`` /
            ``"none"``, or a list of guard names and callables (see :mod:`.guards`).
        ttl: seconds an entry lives (``None``: until cleared).
        namespace: separates caches sharing a directory or server; ``clear()`` removes
            only this namespace.
        k: neighbours fetched per lookup (a rejected best candidate falls through to the next).
        strict: raise store errors instead of treating them as misses.
        annotate: add ``generation_info["llm_cache"]`` (similarity, matched prompt) to
            the generations of semantic hits.
        clock: wall-clock time source for TTL (tests pass a fake one).
        max_entries, max_bytes, policy, evict_batch: size caps of the local store and the
            eviction policy (``"lru"``, ``"lfu"``, ``"cost"``; see :mod:`llm_cache.eviction`).
            Other stores take their caps in their own constructor.
        max_error_rate: make the cache *error-bounded* and learn from its own traffic
            (docs/semantic.md, :mod:`.learning`): answer only when the learned bound keeps
            the share of wrong semantic hits under this rate (e.g. ``0.02``). ``None``
            (default): the static ``threshold``.
        judge: with ``max_error_rate``, how a fresh answer is compared with a cached one:
            ``"equal"`` (default), ``"embedding"``, a callable ``(fresh, cached) -> bool``
            or a :class:`~llm_cache.semantic.judges.Judge` (e.g. ``LLMJudge(model)``).
        learning: with ``max_error_rate``, overrides of
            :class:`~llm_cache.semantic.bounded.BoundPolicy` (a dict or a policy).
        prior: with ``max_error_rate``, where the bound starts: ``"default"`` (the shipped
            fit), ``None`` (nothing: the cache explores until it has evidence) or counter
            fields.
        learning_seed: seed of the exploration draws (reproducible evaluations).
    """

    def __init__(
        self,
        embedding: "Embeddings | None" = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        store: VectorStore | None = None,
        threshold: float | None = None,
        guards: "str | Iterable[str | GuardLike] | None" = "default",
        ttl: float | None = None,
        namespace: str = "default",
        k: int = 4,
        strict: bool = False,
        annotate: bool = True,
        clock: Callable[[], float] = time.time,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        policy: str = "lru",
        evict_batch: int | None = None,
        max_error_rate: float | None = None,
        judge: Any = "equal",
        learning: Any = None,
        prior: Any = "default",
        learning_seed: int | None = None,
    ) -> None:
        super().__init__(strict=strict)
        if store is not None and data_dir is not None:
            raise ConfigurationError("pass either data_dir (the local store) or store, not both")
        if store is not None and (max_entries, max_bytes, policy, evict_batch) != (None, None, "lru", None):
            raise ConfigurationError(
                "max_entries/max_bytes/policy apply to the local store: pass them to the store you give "
                "(e.g. RedisVectorStore(..., max_entries=N))"
            )
        if not isinstance(k, int) or k < 1:
            raise ConfigurationError("k must be a positive integer")
        if embedding is None:
            from .embeddings import LocalEmbeddings

            embedding = LocalEmbeddings()
        self.embedding = embedding
        self.ttl = validate_ttl(ttl)
        self.k = k
        self.annotate = annotate
        self.data_dir = None if data_dir is None else os.fspath(data_dir)
        self._clock = clock
        if guards == "strict":
            guards = ["default", "edits"]
        self.guards: tuple[GuardLike, ...] = resolve_guards(guards)
        config = read_config(self.data_dir) if self.data_dir is not None else {}
        if threshold is not None:
            self.threshold = _check_threshold(threshold, "argument")
        elif "threshold" in config:
            self.threshold = _check_threshold(config["threshold"], f"{self.data_dir}/{CONFIG_FILE}")
        else:
            self.threshold = DEFAULT_THRESHOLD
        self._owns_store = store is None
        if store is None:
            from .stores.local import LocalVectorStore

            store = LocalVectorStore(
                self.data_dir, dimension=int(embedding.dimension), namespace=namespace, clock=clock,
                max_entries=max_entries, max_bytes=max_bytes, policy=policy, evict_batch=evict_batch,
            )
        self.store = store
        self.namespace = getattr(store, "namespace", namespace)
        self.semantic_stats: collections.Counter[str] = collections.Counter()
        self._memo: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._memo_lock = threading.Lock()
        self._thread = threading.local()
        self._unit: Any = None
        self.learning: ErrorBound | None = None
        if max_error_rate is not None:
            from .learning import make_error_bound

            self.learning = make_error_bound(self, max_error_rate, judge, learning, prior, learning_seed)

    def __repr__(self) -> str:
        return (
            f"SemanticCache(store={self.store!r}, threshold={self.threshold}, "
            f"guards={[getattr(g, 'name', g) for g in self.guards]})"
        )

    # ------------------------------------------------------------------ embedding
    def _embed(self, text: str) -> "np.ndarray":
        with self._memo_lock:
            vector = self._memo.get(text)
            if vector is not None:
                self._memo.move_to_end(text)
                self.semantic_stats["embeddings_reused"] += 1
                return vector
        from .embeddings import as_array

        vector = as_array(self.embedding, [text])[0]
        self.semantic_stats["embeddings"] += 1
        self._remember(text, vector)
        return vector

    async def _aembed(self, text: str) -> "np.ndarray":
        with self._memo_lock:
            vector = self._memo.get(text)
            if vector is not None:
                self._memo.move_to_end(text)
                self.semantic_stats["embeddings_reused"] += 1
                return vector
        import numpy as np

        if hasattr(self.embedding, "embed_array"):
            import asyncio

            # Local models are CPU-bound: run them off the event loop.
            from .embeddings import as_array

            vector = (await asyncio.to_thread(as_array, self.embedding, [text]))[0]
        else:
            vector = np.asarray(await self.embedding.aembed_query(text), dtype=np.float32)
            norm = float(np.linalg.norm(vector))
            if norm > 0:
                vector = vector / norm
        self.semantic_stats["embeddings"] += 1
        self._remember(text, vector)
        return vector

    def _remember(self, text: str, vector: Any) -> None:
        with self._memo_lock:
            self._memo[text] = vector
            self._memo.move_to_end(text)
            while len(self._memo) > _EMBED_MEMO:
                self._memo.popitem(last=False)

    def _placeholder_vector(self) -> "np.ndarray":
        # Entries with nothing to embed sit alone in a partition of their own; any unit
        # vector will do and costs no embedding call.
        if self._unit is None:
            import numpy as np

            unit = np.zeros(int(self.store.dimension), dtype=np.float32)
            unit[0] = 1.0
            self._unit = unit
        return self._unit

    # ------------------------------------------------------------------ decisions (no I/O)
    def _exact(self, entry: SemanticEntry | None, prompt: str, llm_string: str) -> SemanticMatch | None:
        if entry is None or entry.prompt != prompt or entry.llm_string != llm_string:
            return None  # absent, or a hash collision: a miss, never a wrong answer
        generations = decode_generations(entry.response)
        self.semantic_stats["exact_hits"] += 1
        return SemanticMatch(generations, 1.0, True, entry.prompt, entry.text, entry.key)

    def _semantic(self, sk: SemanticKey, llm_string: str, neighbours: Sequence[Neighbour]) -> SemanticMatch | None:
        # A candidate whose stored value is unreadable is skipped (counted in
        # semantic_stats["corrupt_candidates"]) and the next one considered: one malformed row
        # must not turn every lookup near it into a miss.
        remaining = list(neighbours)
        while True:
            try:
                return self._semantic_once(sk, llm_string, remaining)
            except _CorruptCandidate as bad:
                self.semantic_stats["corrupt_candidates"] += 1
                self.stats.corrupt += 1
                logger.warning("llm-cache: skipping a semantic candidate whose stored value is corrupt: %s", bad)
                remaining = [n for n in remaining if n.entry is not bad.neighbour.entry]

    def _semantic_once(
        self, sk: SemanticKey, llm_string: str, neighbours: Sequence[Neighbour]
    ) -> SemanticMatch | None:
        assert sk.text is not None
        if self.learning is not None:
            from .learning import admissible

            usable = admissible(sk.text, neighbours, self.guards, self.learning.policy.floor, llm_string, sk.context)
            return self._semantic_hit(self.learning.decide(sk.key, usable))
        verdicts: list[Candidate] = []
        chosen = select_candidate(
            sk.text, neighbours, self.guards, self.threshold,
            llm_string=llm_string, context=sk.context, verdicts=verdicts,
        )
        for verdict in verdicts:
            if verdict.verdict.startswith("guard "):
                self.semantic_stats["guard_rejections"] += 1
                self.semantic_stats["rejected_by_" + verdict.verdict.split()[1].rstrip(":")] += 1
        if chosen is None:
            if neighbours and neighbours[0].similarity < self.threshold:
                self.semantic_stats["below_threshold"] += 1
            return None
        return self._semantic_hit(chosen)

    def _semantic_hit(self, chosen: Neighbour | None) -> SemanticMatch | None:
        if chosen is None:
            return None
        entry = chosen.entry
        try:
            generations = decode_generations(entry.response)
        except CorruptEntryError as exc:
            raise _CorruptCandidate(chosen, exc) from exc
        similarity = round(float(chosen.similarity), 6)
        if self.annotate:
            generations = [self._annotated(g, similarity, entry) for g in generations]
        self.semantic_stats["semantic_hits"] += 1
        return SemanticMatch(generations, similarity, False, entry.prompt, entry.text, entry.key)

    @staticmethod
    def _annotated(generation: Generation, similarity: float, entry: SemanticEntry) -> Generation:
        info = dict(generation.generation_info or {})
        info["llm_cache"] = {"semantic": True, "similarity": similarity, "matched_prompt": entry.text}
        return replace(generation, generation_info=info)

    def _entry(self, sk: SemanticKey, prompt: str, llm_string: str, generations: list[Generation]) -> SemanticEntry:
        now = self._clock()
        return SemanticEntry(
            key=sk.key,
            partition=sk.partition,
            text=sk.text if sk.text is not None else "",
            prompt=prompt,
            llm_string=llm_string,
            response=encode_generations(generations),
            created_at=now,
            expires_at=expires_at(now, self.ttl),
        )

    # ------------------------------------------------------------------ the contract
    @property
    def _search_k(self) -> int:
        # An error-bounded cache looks at exactly the neighbours its bound was learned on.
        return self.k if self.learning is None else self.learning.policy.k

    def _match(self, prompt: str, llm_string: str) -> SemanticMatch | None:
        sk = split_prompt(prompt, llm_string)
        match = self._exact(self.store.get(sk.key), prompt, llm_string)
        if match is not None and self.learning is not None:
            self.learning.served_exact(sk.key)
        if match is None and sk.text is not None:
            neighbours = self.store.search(sk.partition, self._embed(sk.text), self._search_k)
            match = self._semantic(sk, llm_string, neighbours)
        self._thread.last_match = match
        if match is not None:
            self.store.record_hit(match.key)
        return match

    async def _amatch(self, prompt: str, llm_string: str) -> SemanticMatch | None:
        sk = split_prompt(prompt, llm_string)
        match = self._exact(await self.store.aget(sk.key), prompt, llm_string)
        if match is not None and self.learning is not None:
            self.learning.served_exact(sk.key)
        if match is None and sk.text is not None:
            neighbours = await self.store.asearch(sk.partition, await self._aembed(sk.text), self._search_k)
            if self.learning is None:
                match = self._semantic(sk, llm_string, neighbours)
            else:  # the learned state is read from the store: off the event loop
                import asyncio

                match = await asyncio.to_thread(self._semantic, sk, llm_string, neighbours)
        self._thread.last_match = match
        if match is not None:
            self.store.record_hit(match.key)
        return match

    def _lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        match = self._match(prompt, llm_string)
        return None if match is None else match.generations

    async def _alookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        match = await self._amatch(prompt, llm_string)
        return None if match is None else match.generations

    def _update(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        sk = split_prompt(prompt, llm_string)
        vector = self._placeholder_vector() if sk.text is None else self._embed(sk.text)
        self.store.add(self._entry(sk, prompt, llm_string, generations), vector)
        if self.learning is not None:
            self._observe(sk.key, generations)

    async def _aupdate(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        sk = split_prompt(prompt, llm_string)
        vector = self._placeholder_vector() if sk.text is None else await self._aembed(sk.text)
        await self.store.aadd(self._entry(sk, prompt, llm_string, generations), vector)
        if self.learning is not None:
            import asyncio

            await asyncio.to_thread(self._observe, sk.key, generations)

    def _observe(self, query_key: str, generations: list[Generation]) -> None:
        # Learning never costs the caller its write: a failure here is logged, not raised.
        assert self.learning is not None
        try:
            self.learning.observe(query_key, generations)
        except Exception as exc:  # noqa: BLE001 - the entry is stored; only the lesson is lost
            logger.warning("llm-cache: could not record a judged outcome (%s: %s)", type(exc).__name__, exc)

    def _clear(self) -> None:
        self.store.clear()
        if self.learning is not None:
            self.learning.clear()

    async def _aclear(self) -> None:
        await self.store.aclear()
        if self.learning is not None:
            import asyncio

            await asyncio.to_thread(self.learning.clear)

    # ------------------------------------------------------------------ feedback
    @property
    def accepts_semantic_feedback(self) -> bool:
        """Whether :meth:`feedback` can act on a semantic hit (it needs ``max_error_rate``)."""
        return self.learning is not None

    def feedback(self, prompt: str, llm_string: str, correct: bool) -> None:
        """Report whether the last answer this cache gave for ``prompt`` was right.

        ``correct=False`` on a semantic hit: that entry is never served for this prompt
        again and its boundary tightens; on an exact hit: the entry is deleted. The outcome
        trains the error bound (``max_error_rate``); without one, only a wrong exact hit
        has an effect (the entry is deleted). When this process did not serve the answer
        (another process, the CLI), the candidate a lookup would pick now is taken as the
        one that answered. Store errors are raised (feedback is never silently lost).
        """
        from .feedback import apply_feedback

        apply_feedback(self, prompt, llm_string, bool(correct))

    async def afeedback(self, prompt: str, llm_string: str, correct: bool) -> None:
        """Async :meth:`feedback` (runs in a worker thread)."""
        import asyncio

        await asyncio.to_thread(self.feedback, prompt, llm_string, correct)

    def _probe(self) -> None:
        # The breaker's health probe: a point read, never an embedding call.
        self.store.get("0" * 64)

    # ------------------------------------------------------------------ scores and diagnostics
    def lookup_with_score(self, prompt: str, llm_string: str) -> SemanticMatch | None:
        """Like :meth:`lookup`, returning the match with its similarity (``None``: a miss).

        The same fail-open policy applies: a store error is a logged miss unless ``strict``.
        """
        if self.breaker.is_open:
            self.stats.skipped += 1
            return None
        try:
            match = self._match(prompt, llm_string)
        except Exception as exc:
            self._lookup_failed(exc, prompt, llm_string)
            return None
        self._lookup_done(None if match is None else match.generations)
        return match

    async def alookup_with_score(self, prompt: str, llm_string: str) -> SemanticMatch | None:
        """Async :meth:`lookup_with_score`."""
        if self.breaker.is_open:
            self.stats.skipped += 1
            return None
        try:
            match = await self._amatch(prompt, llm_string)
        except Exception as exc:
            self._lookup_failed(exc, prompt, llm_string)
            return None
        self._lookup_done(None if match is None else match.generations)
        return match

    @property
    def last_match(self) -> SemanticMatch | None:
        """The match of this thread's last lookup (``None`` after a miss)."""
        return getattr(self._thread, "last_match", None)

    def explain(self, prompt: str, llm_string: str) -> list[Candidate]:
        """Every neighbour a lookup of this prompt would consider, with the cache's verdict
        on each ("hit", "below threshold", "guard numbers: ..."; for an error-bounded cache
        the bound's verdict on the candidate, e.g. "miss: error bound 7.2% > 0.02 (14
        outcomes)", and how the others relate to it). Does not count as a lookup; store
        errors are raised."""
        sk = split_prompt(prompt, llm_string)
        if sk.text is None:
            return []
        neighbours = self.store.search(sk.partition, self._embed(sk.text), self._search_k)
        if self.learning is not None:
            return self._explain_bounded(sk, llm_string, neighbours)
        verdicts: list[Candidate] = []
        select_candidate(
            sk.text, neighbours, self.guards, self.threshold,
            llm_string=llm_string, context=sk.context, verdicts=verdicts,
        )
        seen = {id(v.entry) for v in verdicts}
        verdicts += [Candidate(n.entry.text, n.similarity, "not examined (a better one hit)", n.entry) for n in neighbours if id(n.entry) not in seen]
        return verdicts

    def _explain_bounded(self, sk: SemanticKey, llm_string: str, neighbours: Sequence[Neighbour]) -> list[Candidate]:
        """:meth:`explain` for an error-bounded cache: the learned bound's verdict."""
        from .learning import admissible

        assert self.learning is not None and sk.text is not None
        floor = self.learning.policy.floor
        usable = admissible(sk.text, neighbours, self.guards, floor, llm_string, sk.context)
        judged = {id(n.entry): why for n, why in self.learning.explain(sk.key, usable)}
        verdicts = []
        for n in neighbours:
            why = judged.get(id(n.entry))
            if why is None:  # not admissible: the static selection says why (floor, guard, conversation)
                reasons: list[Candidate] = []
                select_candidate(sk.text, [n], self.guards, floor, llm_string=llm_string, context=sk.context, verdicts=reasons)
                why = reasons[0].verdict if reasons else "not admissible"
                if why == "below threshold":
                    why = f"below the floor {floor:.2f}"
            verdicts.append(Candidate(n.entry.text, n.similarity, why, n.entry))
        return verdicts

    def _init_owning(self, store: Any, **options: Any) -> None:
        """``__init__`` for a subclass that built ``store`` itself: close() then closes it
        (a store closes only the clients or engine it made, never ones the caller passed)."""
        SemanticCache.__init__(self, store=store, **options)
        self._owns_store = True

    def count(self) -> int:
        """Entries in this cache's namespace."""
        return self.store.count()

    def restore(self, entry: Any) -> None:
        """Store a :class:`~llm_cache.caches.base.CacheEntry` keeping its ``created_at`` and
        ``expires_at`` (what ``llm-cache import`` uses; ``update`` would date it now)."""
        sk = split_prompt(entry.prompt, entry.llm_string)
        vector = self._placeholder_vector() if sk.text is None else self._embed(sk.text)
        stored = self._entry(sk, entry.prompt, entry.llm_string, list(entry.generations))
        if entry.created_at is not None:
            stored = replace(stored, created_at=float(entry.created_at))
        if entry.expires_at is not None:
            stored = replace(stored, expires_at=float(entry.expires_at))
        self.store.add(stored, vector)

    def prune(self, **options: Any) -> Any:
        """Expiry sweep and eviction by the store (see :meth:`LocalVectorStore.prune`);
        ConfigurationError for a store that cannot prune."""
        prune = getattr(self.store, "prune", None)
        if prune is None:
            raise ConfigurationError(f"{type(self.store).__name__} cannot prune; it relies on its server's expiry")
        return prune(**options)

    def close(self) -> None:
        """Close the store if this cache created it (a local store saves its index)."""
        if self.learning is not None:
            self.learning.state.close()
        if self._owns_store:
            self.store.close()

    async def aclose(self) -> None:
        """Release the store's client for the running event loop (Redis); it stays usable."""
        await self.store.aclose()
