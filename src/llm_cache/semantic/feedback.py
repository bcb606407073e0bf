"""``SemanticCache.feedback``: a caller says whether the last answer for a prompt was right.

* A wrong **exact** hit: the stored answer for that very prompt is wrong, so the entry is
  deleted (the next call goes to the provider and stores a fresh answer).
* A wrong **semantic** hit (error-bounded caches): the outcome is learned (the context's
  counters, so the bound tightens) and the entry that answered is blocked for that query
  for good and vetoed up to that similarity (:class:`~.bounded.EntryRecord`).
* A right answer: learned as a right outcome.

What answered is what this process served last for the prompt; when it served nothing
(the feedback comes from another process or the command line), the candidate a lookup
would pick now stands in for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from .partition import split_prompt

if TYPE_CHECKING:  # pragma: no cover
    from .cache import SemanticCache

__all__ = ["apply_feedback"]


def apply_feedback(cache: "SemanticCache", prompt: str, llm_string: str, correct: bool) -> str:
    """Apply one verdict; returns what it concerned: ``"exact"``, ``"semantic"`` or ``"none"``."""
    sk = split_prompt(prompt, llm_string)
    learning = cache.learning
    served: Any = learning.served(sk.key) if learning is not None else None
    if served is None:
        entry = cache.store.get(sk.key)
        if entry is not None and entry.prompt == prompt and entry.llm_string == llm_string:
            if not correct:
                cache.store.delete([sk.key])
                cache.semantic_stats["feedback_deleted"] += 1
            return "exact"
        if learning is None:
            if not correct:
                raise ConfigurationError(
                    "feedback on a semantic hit needs an error-bounded cache: SemanticCache(max_error_rate=...)"
                )
            return "none"
        if sk.text is None:
            return "none"
        from .learning import _Served, admissible

        neighbours = cache.store.search(sk.partition, cache._embed(sk.text), cache._search_k)
        found = learning.candidate(admissible(sk.text, neighbours, cache.guards, learning.policy.floor, llm_string, sk.context))
        if found is None:
            return "none"
        served = _Served(found[0].entry.key, found[1], False)
    if served.exact:
        if not correct:
            cache.store.delete([sk.key])
            cache.semantic_stats["feedback_deleted"] += 1
        return "exact"
    assert learning is not None
    learning.feedback(sk.key, served, correct)
    return "semantic"
