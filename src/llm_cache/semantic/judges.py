"""Answer judges: do two answers to (possibly different) prompts say the same thing?

An error-bounded :class:`~llm_cache.semantic.cache.SemanticCache` (``max_error_rate=...``)
learns when a cached answer is right for a new prompt by comparing, after a miss, the
fresh answer the provider gave with the answer the best cached candidate would have
returned. A judge makes that comparison:

* ``"equal"`` (default) — :class:`TextEqualityJudge`: the texts are equal after Unicode
  normalisation, case folding and whitespace collapsing. Exact for classification-style
  answers and ``temperature=0`` models that answer a question the same way each time.
* ``"embedding"`` — :class:`EmbeddingJudge`: the cosine similarity of the two answers'
  embeddings reaches a threshold (free-text answers).
* any callable ``(fresh: str, cached: str) -> bool`` — :class:`CallableJudge`.
* :class:`LLMJudge` — asks any ``llm_cache.llms`` model whether the two answers agree.

A judge also decides whether two cached neighbours carry "the same answer" when the
cache counts how many of the nearest entries agree (see :mod:`.bounded`); only the cheap
judges are used there (an LLM or user judge is not called on the lookup path: answers are
compared with text equality instead).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import OrderedDict
from typing import Any, Callable, Protocol, runtime_checkable

from ..errors import ConfigurationError

__all__ = [
    "Judge",
    "TextEqualityJudge",
    "EmbeddingJudge",
    "CallableJudge",
    "LLMJudge",
    "resolve_judge",
    "normalise_answer",
]

_SPACE = re.compile(r"\s+")


def normalise_answer(text: str) -> str:
    """``text`` in the form equal answers share: NFKC, case-folded, whitespace collapsed,
    trailing sentence punctuation dropped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", text).strip().rstrip(".!").strip()


@runtime_checkable
class Judge(Protocol):
    """Decides whether a fresh answer and a cached answer say the same thing."""

    #: ``True`` when :meth:`same` is cheap enough for the lookup path (no model call).
    cheap: bool

    def same(self, fresh: str, cached: str) -> bool:
        """Whether ``cached`` would have been a right answer where ``fresh`` was given."""
        ...


class TextEqualityJudge:
    """Equal after :func:`normalise_answer` (the default judge)."""

    cheap = True
    name = "equal"

    def same(self, fresh: str, cached: str) -> bool:
        return fresh == cached or normalise_answer(fresh) == normalise_answer(cached)

    def __repr__(self) -> str:
        return "TextEqualityJudge()"


class EmbeddingJudge:
    """The two answers' embeddings have cosine similarity ``>= threshold``.

    Args:
        embedding: any :class:`~llm_cache.embeddings.Embeddings` (default: the offline
            MiniLM model the cache uses).
        threshold: cosine similarity two answers need to count as the same.
    """

    cheap = True
    name = "embedding"

    def __init__(self, embedding: Any = None, threshold: float = 0.9, memo: int = 1024) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0:
            raise ConfigurationError(f"EmbeddingJudge threshold must be a cosine similarity in [-1, 1], not {threshold!r}")
        if embedding is None:
            from .embeddings import LocalEmbeddings

            embedding = LocalEmbeddings()
        self.embedding = embedding
        self.threshold = float(threshold)
        self._memo: OrderedDict[str, Any] = OrderedDict()
        self._memo_size = memo
        self._lock = threading.Lock()

    def _vector(self, text: str) -> Any:
        with self._lock:
            vector = self._memo.get(text)
            if vector is not None:
                self._memo.move_to_end(text)
                return vector
        from .embeddings import as_array

        vector = as_array(self.embedding, [text])[0]
        with self._lock:
            self._memo[text] = vector
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return vector

    def same(self, fresh: str, cached: str) -> bool:
        if normalise_answer(fresh) == normalise_answer(cached):
            return True
        return float(self._vector(fresh) @ self._vector(cached)) >= self.threshold

    def __repr__(self) -> str:
        return f"EmbeddingJudge(threshold={self.threshold})"


class CallableJudge:
    """A user function ``(fresh, cached) -> bool``."""

    cheap = False
    name = "callable"

    def __init__(self, function: Callable[[str, str], bool]) -> None:
        self.function = function

    def same(self, fresh: str, cached: str) -> bool:
        return bool(self.function(fresh, cached))

    def __repr__(self) -> str:
        return f"CallableJudge({getattr(self.function, '__name__', self.function)!r})"


_LLM_PROMPT = (
    "Two answers were given to two questions that may mean the same.\n"
    "Answer A: {fresh}\n"
    "Answer B: {cached}\n"
    "Would answer B be a correct and complete reply wherever answer A was given? "
    "Reply with one word: yes or no."
)


class LLMJudge:
    """Asks a model (any ``llm_cache.llms`` model, e.g. ``ChatOpenAI(...)``) whether two
    answers agree. The model is called with ``cache=False`` semantics left to the caller:
    pass a model built with ``cache=False`` so that judgements are never cached answers.

    Args:
        model: an object with ``invoke(prompt: str) -> str``.
        prompt: the question template (``{fresh}`` and ``{cached}`` are filled in).
    """

    cheap = False
    name = "llm"

    def __init__(self, model: Any, prompt: str = _LLM_PROMPT) -> None:
        if not callable(getattr(model, "invoke", None)):
            raise ConfigurationError("LLMJudge needs a model with invoke(prompt) -> str (any llm_cache.llms model)")
        if "{fresh}" not in prompt or "{cached}" not in prompt:
            raise ConfigurationError("LLMJudge prompt must contain {fresh} and {cached}")
        self.model = model
        self.prompt = prompt

    def same(self, fresh: str, cached: str) -> bool:
        reply = str(self.model.invoke(self.prompt.format(fresh=fresh, cached=cached)))
        return normalise_answer(reply).lstrip("\"' ").startswith("yes")

    def __repr__(self) -> str:
        return f"LLMJudge({self.model!r})"


def resolve_judge(judge: Any, embedding: Any = None) -> Judge:
    """``"equal"`` / ``None``, ``"embedding"``, a :class:`Judge` or a callable -> a judge."""
    if judge is None or judge == "equal":
        return TextEqualityJudge()
    if judge == "embedding":
        return EmbeddingJudge(embedding)
    if isinstance(judge, str):
        raise ConfigurationError(f"unknown judge {judge!r}: use 'equal', 'embedding', a Judge or a callable(fresh, cached) -> bool")
    if callable(getattr(judge, "same", None)):
        return judge  # type: ignore[no-any-return]
    if callable(judge):
        return CallableJudge(judge)
    raise ConfigurationError(f"judge must be 'equal', 'embedding', a Judge or a callable, not {judge!r}")
