"""Summarize chains: map-reduce (with recursive collapse) and stuff, over cached models.

The point of running these through llm-cache: in a map-reduce summary the map steps
(one model call per document) are the expensive, repeatable part, so a caching model
answers them from the store on the next run, while the reduce step can use a model
built with ``cache=False`` so the final answer is always recomputed::

    from llm_cache import set_llm_cache, SQLiteCache
    from llm_cache.llms import OpenAI
    from llm_cache.chains import CharacterTextSplitter, Document, load_summarize_chain

    set_llm_cache(SQLiteCache(".llm_cache.db"))
    llm = OpenAI(model_name="gpt-3.5-turbo-instruct")
    no_cache_llm = OpenAI(model_name="gpt-3.5-turbo-instruct", cache=False)
    docs = [Document(t) for t in CharacterTextSplitter().split_text(text)[:3]]
    chain = load_summarize_chain(llm, chain_type="map_reduce", reduce_llm=no_cache_llm)
    chain.run(docs)          # 3 map calls + 1 reduce call
    chain.run(docs)          # the 3 map steps hit the cache; only the reduce call is made

How a chain calls its models:

* **map**: every document's prompt in one ``llm.generate([...])`` call, so the cache
  answers the hits and only the misses reach the provider (a completions model sends
  them in batched requests, or one per request to a server that takes one prompt per
  request; a chat model sends one request per miss). The async path
  uses ``llm.agenerate([...])``: lookups and chat requests run concurrently.
* **collapse** (only when needed): while the reduce prompt would be longer than
  ``token_max``, the summaries are packed in order into groups whose collapse prompt
  fits ``token_max`` and each group is summarised again (one ``generate`` call per
  round). A single summary that alone exceeds ``token_max`` is an error: no grouping
  can make it fit.
* **reduce**: one call of ``reduce_llm or llm`` on all summaries, joined by a blank line.

Token counts are estimated, not tokenised (no tokenizer is a dependency):
:func:`approximate_tokens` is ``ceil(len(text) / 4)``, OpenAI's rule of thumb of about
four characters a token for English. Pass ``token_counter=`` to use a real tokenizer.

Sync and async share one plan (:meth:`_SummarizeChain._plan`, a generator that yields
the model calls it needs and does no I/O itself); the two drivers differ only in how
they call the model.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, ProviderError
from .documents import Document
from .prompts import COMBINE_PROMPT, MAP_PROMPT, STUFF_PROMPT, PromptTemplate, as_prompt

__all__ = [
    "load_summarize_chain",
    "MapReduceSummarizeChain",
    "StuffSummarizeChain",
    "StepReport",
    "approximate_tokens",
    "CHAIN_TYPES",
]

#: The chain types :func:`load_summarize_chain` accepts.
CHAIN_TYPES = ("map_reduce", "stuff")

#: How documents (or summaries) are joined into one ``{text}``: LangChain's default.
DOCUMENT_SEPARATOR = "\n\n"


def approximate_tokens(text: str) -> int:
    """Estimated tokens in ``text``: ``ceil(len(text) / 4)`` (about four characters a token)."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class StepReport:
    """One model call's worth of a chain run, for one prompt.

    Attributes:
        kind: ``"map"``, ``"collapse"``, ``"reduce"`` (map_reduce) or ``"stuff"``.
        index: the prompt's position in its step (the document's index for ``map``).
        cached: whether the answer came from the cache (``False`` for a model built
            with ``cache=False``).
        seconds: wall time of the model call that produced this step. Prompts sent in
            one batch (all map steps, all collapse steps of one round) share that call,
            so they report the same figure.
        round: the collapse round (1, 2, ...) for ``collapse`` steps, else 0.
        output: the text the model returned.
    """

    kind: str
    index: int
    cached: bool
    seconds: float
    round: int = 0
    output: str = ""


@dataclass
class _Call:
    """A request from a plan to its driver: run ``llm`` on ``prompts``."""

    llm: Any
    kind: str
    prompts: list[str]
    round: int = 0


_Plan = Generator[_Call, list[str], "tuple[str, list[str]]"]


def _check_llm(llm: Any, role: str) -> None:
    if not (callable(getattr(llm, "generate", None)) and callable(getattr(llm, "agenerate", None))):
        raise ConfigurationError(
            f"{role} must be an llm_cache model such as llm_cache.llms.OpenAI(...) "
            f"(with generate and agenerate), not {type(llm).__name__}"
        )


def _documents(value: Any) -> list[Document]:
    """The documents of ``invoke``'s input: ``{"input_documents": [...]}`` or a list."""
    if isinstance(value, Mapping):
        if "input_documents" not in value:
            raise ConfigurationError(
                "the chain's input needs an 'input_documents' key; "
                f"got keys {sorted(map(str, value))}"
            )
        value = value["input_documents"]
    if isinstance(value, (str, bytes, Document)) or not isinstance(value, Sequence):
        raise ConfigurationError(
            "a summarize chain takes a list of Document objects "
            "(or {'input_documents': [...]}); wrap a single text as [Document(text)]"
        )
    docs = list(value)
    for doc in docs:
        if not isinstance(doc, Document):
            raise ConfigurationError(
                f"a summarize chain takes Document objects, not {type(doc).__name__}; "
                "build them with Document(text) or CharacterTextSplitter().create_documents(texts)"
            )
    if not docs:
        raise ConfigurationError("there are no documents to summarise (the list is empty)")
    return docs


def _texts(result: Any, call: _Call) -> list[str]:
    texts = []
    for index, generations in enumerate(result.generations):
        if not generations:
            raise ProviderError(f"the model returned no text for {call.kind} step {index + 1}")
        texts.append(generations[0].text)
    if len(texts) != len(call.prompts):
        raise ProviderError(
            f"the model answered {len(texts)} of {len(call.prompts)} {call.kind} prompts"
        )
    return texts


class _SummarizeChain:
    """What both chain types share: input handling, the sync and async drivers, reports."""

    chain_type = ""

    def __init__(self, *, verbose: bool = False) -> None:
        self.verbose = verbose

    def _plan(self, docs: list[Document]) -> _Plan:
        """Yield the model calls this chain needs, receiving each call's texts; return
        ``(output_text, intermediate_steps)``. No I/O happens here."""
        raise NotImplementedError

    # -- public API --------------------------------------------------------------------
    def invoke(self, input: Any) -> dict[str, Any]:
        """Summarise ``input`` (``{"input_documents": docs}`` or ``docs``).

        Returns a dict with ``input_documents``, ``output_text`` (the summary),
        ``intermediate_steps`` (the map step's summaries, in document order; empty for
        ``stuff``) and ``steps`` (a :class:`StepReport` per prompt, in call order).
        """
        docs = _documents(input)
        plan = self._plan(docs)
        steps: list[StepReport] = []
        call = next(plan)  # every plan makes at least one call
        while True:
            start = time.perf_counter()
            result = call.llm.generate(call.prompts)
            texts = self._record(call, result, time.perf_counter() - start, steps)
            try:
                call = plan.send(texts)
            except StopIteration as done:
                output, intermediate = done.value
                return self._result(docs, output, intermediate, steps)

    async def ainvoke(self, input: Any) -> dict[str, Any]:
        """Async :meth:`invoke`: each step's prompts go to ``agenerate`` together, so
        cache lookups and provider requests of one step run concurrently."""
        docs = _documents(input)
        plan = self._plan(docs)
        steps: list[StepReport] = []
        call = next(plan)  # every plan makes at least one call
        while True:
            start = time.perf_counter()
            result = await call.llm.agenerate(call.prompts)
            texts = self._record(call, result, time.perf_counter() - start, steps)
            try:
                call = plan.send(texts)
            except StopIteration as done:
                output, intermediate = done.value
                return self._result(docs, output, intermediate, steps)

    def run(self, docs: Sequence[Document]) -> str:
        """The summary of ``docs``, as text."""
        return self.invoke(docs)["output_text"]

    async def arun(self, docs: Sequence[Document]) -> str:
        """Async :meth:`run`."""
        return (await self.ainvoke(docs))["output_text"]

    # -- helpers ------------------------------------------------------------------------
    def _record(
        self, call: _Call, result: Any, seconds: float, steps: list[StepReport]
    ) -> list[str]:
        texts = _texts(result, call)
        cached = list(getattr(result, "cached", [False] * len(texts)))
        for index, text in enumerate(texts):
            step = StepReport(call.kind, index, bool(cached[index]), seconds, call.round, text)
            steps.append(step)
            if self.verbose:
                where = "cache hit" if step.cached else "computed"
                label = f"{call.kind} (round {call.round})" if call.round else call.kind
                print(
                    f"[{self.chain_type}] {label} {index + 1}/{len(texts)}: {where} "
                    f"({seconds * 1000:.1f} ms for the call)",
                    file=sys.stderr,
                )
        return texts

    @staticmethod
    def _result(
        docs: list[Document], output: str, intermediate: list[str], steps: list[StepReport]
    ) -> dict[str, Any]:
        return {
            "input_documents": docs,
            "output_text": output,
            "intermediate_steps": intermediate,
            "steps": steps,
        }


class MapReduceSummarizeChain(_SummarizeChain):
    """Summarise each document (map), collapse if needed, then combine (reduce).

    Build it with :func:`load_summarize_chain` (``chain_type="map_reduce"``).
    """

    chain_type = "map_reduce"

    def __init__(
        self,
        llm: Any,
        *,
        reduce_llm: Any = None,
        collapse_llm: Any = None,
        map_prompt: PromptTemplate = MAP_PROMPT,
        combine_prompt: PromptTemplate = COMBINE_PROMPT,
        collapse_prompt: PromptTemplate | None = None,
        token_max: int = 3000,
        token_counter: Callable[[str], int] = approximate_tokens,
        collapse_max_rounds: int = 10,
        verbose: bool = False,
    ) -> None:
        super().__init__(verbose=verbose)
        self.llm = llm
        self.reduce_llm = reduce_llm if reduce_llm is not None else llm
        self.collapse_llm = collapse_llm if collapse_llm is not None else self.reduce_llm
        self.map_prompt = map_prompt
        self.combine_prompt = combine_prompt
        self.collapse_prompt = collapse_prompt if collapse_prompt is not None else combine_prompt
        self.token_max = token_max
        self.token_counter = token_counter
        self.collapse_max_rounds = collapse_max_rounds

    def _too_long(self, summaries: list[str]) -> bool:
        return (
            self.token_counter(self.combine_prompt.format(text=DOCUMENT_SEPARATOR.join(summaries)))
            > self.token_max
        )

    def _groups(self, summaries: list[str]) -> list[list[str]]:
        """Pack summaries, in order, into groups whose collapse prompt fits ``token_max``
        (LangChain's ``split_list_of_docs``, measured with the prompt actually sent)."""
        groups: list[list[str]] = []
        group: list[str] = []
        for summary in summaries:
            group.append(summary)
            tokens = self.token_counter(
                self.collapse_prompt.format(text=DOCUMENT_SEPARATOR.join(group))
            )
            if tokens > self.token_max:
                if len(group) == 1:
                    raise ConfigurationError(
                        f"one summary alone makes a collapse prompt of about {tokens} tokens, over "
                        f"token_max={self.token_max}: raise token_max, or split the documents "
                        "smaller"
                    )
                groups.append(group[:-1])
                group = group[-1:]
        groups.append(group)
        return groups

    def _plan(self, docs: list[Document]) -> _Plan:
        summaries = yield _Call(
            self.llm, "map", [self.map_prompt.format(text=d.page_content) for d in docs]
        )
        intermediate = list(summaries)
        round_ = 0
        while self._too_long(summaries):
            round_ += 1
            if round_ > self.collapse_max_rounds:
                raise ProviderError(
                    f"the summaries still exceed token_max={self.token_max} after "
                    f"{self.collapse_max_rounds} collapse rounds (the model's summaries are not "
                    "getting shorter): raise token_max or collapse_max_rounds"
                )
            prompts = [
                self.collapse_prompt.format(text=DOCUMENT_SEPARATOR.join(group))
                for group in self._groups(summaries)
            ]
            summaries = yield _Call(self.collapse_llm, "collapse", prompts, round_)
        (output,) = yield _Call(
            self.reduce_llm,
            "reduce",
            [self.combine_prompt.format(text=DOCUMENT_SEPARATOR.join(summaries))],
        )
        return output, intermediate

    def __repr__(self) -> str:
        return (
            f"MapReduceSummarizeChain(llm={self.llm!r}, reduce_llm={self.reduce_llm!r}, "
            f"token_max={self.token_max})"
        )


class StuffSummarizeChain(_SummarizeChain):
    """Put every document into one prompt and summarise it in one call.

    Build it with :func:`load_summarize_chain` (``chain_type="stuff"``).
    """

    chain_type = "stuff"

    def __init__(
        self, llm: Any, *, prompt: PromptTemplate = STUFF_PROMPT, verbose: bool = False
    ) -> None:
        super().__init__(verbose=verbose)
        self.llm = llm
        self.prompt = prompt

    def _plan(self, docs: list[Document]) -> _Plan:
        text = DOCUMENT_SEPARATOR.join(d.page_content for d in docs)
        (output,) = yield _Call(self.llm, "stuff", [self.prompt.format(text=text)])
        return output, []

    def __repr__(self) -> str:
        return f"StuffSummarizeChain(llm={self.llm!r})"


def load_summarize_chain(
    llm: Any,
    chain_type: str = "map_reduce",
    *,
    reduce_llm: Any = None,
    collapse_llm: Any = None,
    map_prompt: PromptTemplate | str | None = None,
    combine_prompt: PromptTemplate | str | None = None,
    collapse_prompt: PromptTemplate | str | None = None,
    token_max: int = 3000,
    token_counter: Callable[[str], int] = approximate_tokens,
    collapse_max_rounds: int = 10,
    prompt: PromptTemplate | str | None = None,
    verbose: bool = False,
) -> MapReduceSummarizeChain | StuffSummarizeChain:
    """Build a summarize chain, as LangChain's function of the same name does.

    Args:
        llm: an :mod:`llm_cache.llms` model (``OpenAI`` or ``ChatOpenAI``); it runs the
            map steps (map_reduce) or the single call (stuff), through its cache.
        chain_type: ``"map_reduce"`` or ``"stuff"``.
        reduce_llm: map_reduce only: the model for the final combine step, default
            ``llm``. Give it ``cache=False`` to always recompute the final summary.
        collapse_llm: map_reduce only: the model for collapse steps, default the reduce
            model (collapsing is part of reducing). LangChain instead uses ``llm`` when
            a ``collapse_prompt`` is given.
        map_prompt, combine_prompt: map_reduce only: templates with a ``{text}`` field
            (a :class:`PromptTemplate` or a template string); default LangChain's
            "Write a concise summary of the following" prompt.
        collapse_prompt: map_reduce only: template for collapse steps, default
            ``combine_prompt``.
        token_max: map_reduce only: the largest reduce prompt, in estimated tokens,
            before summaries are collapsed.
        token_counter: map_reduce only: how tokens are counted (default
            :func:`approximate_tokens`, ``ceil(len/4)``).
        collapse_max_rounds: map_reduce only: give up (``ProviderError``) if the
            summaries still do not fit after this many collapse rounds.
        prompt: stuff only: the template, default the same summary prompt.
        verbose: print each step (hit or computed, time) to stderr.

    Raises:
        ConfigurationError: an unknown ``chain_type``, an option the chain type does not
            use, a template without ``{text}``, or a model that is not a model.
    """
    if chain_type not in CHAIN_TYPES:
        raise ConfigurationError(
            f"unknown chain_type {chain_type!r}; valid chain types: "
            + ", ".join(repr(t) for t in CHAIN_TYPES)
        )
    _check_llm(llm, "llm")
    if chain_type == "stuff":
        map_reduce_only = {
            "reduce_llm": reduce_llm,
            "collapse_llm": collapse_llm,
            "map_prompt": map_prompt,
            "combine_prompt": combine_prompt,
            "collapse_prompt": collapse_prompt,
        }
        given = [name for name, value in map_reduce_only.items() if value is not None]
        if given:
            raise ConfigurationError(
                f"{', '.join(given)} only apply to chain_type='map_reduce'; "
                "the 'stuff' chain takes prompt="
            )
        return StuffSummarizeChain(
            llm, prompt=as_prompt(prompt, STUFF_PROMPT, "prompt"), verbose=verbose
        )

    if prompt is not None:
        raise ConfigurationError(
            "prompt= is for chain_type='stuff'; "
            "a map_reduce chain takes map_prompt= and combine_prompt="
        )
    if reduce_llm is not None:
        _check_llm(reduce_llm, "reduce_llm")
    if collapse_llm is not None:
        _check_llm(collapse_llm, "collapse_llm")
    if isinstance(token_max, bool) or not isinstance(token_max, int) or token_max <= 0:
        raise ConfigurationError(f"token_max must be a positive int, got {token_max!r}")
    if (
        isinstance(collapse_max_rounds, bool)
        or not isinstance(collapse_max_rounds, int)
        or collapse_max_rounds < 1
    ):
        raise ConfigurationError(
            f"collapse_max_rounds must be an int >= 1, got {collapse_max_rounds!r}"
        )
    if not callable(token_counter):
        raise ConfigurationError("token_counter must be callable: text -> number of tokens")
    combine = as_prompt(combine_prompt, COMBINE_PROMPT, "combine_prompt")
    return MapReduceSummarizeChain(
        llm,
        reduce_llm=reduce_llm,
        collapse_llm=collapse_llm,
        map_prompt=as_prompt(map_prompt, MAP_PROMPT, "map_prompt"),
        combine_prompt=combine,
        collapse_prompt=as_prompt(collapse_prompt, combine, "collapse_prompt"),
        token_max=token_max,
        token_counter=token_counter,
        collapse_max_rounds=collapse_max_rounds,
        verbose=verbose,
    )
