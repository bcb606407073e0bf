"""Which requests an OpenAI-compatible model sends, planned without I/O.

Real OpenAI-compatible servers differ from OpenAI's API in two ways that break a naive
client (both seen with llama.cpp's server and Ollama):

* **One prompt per completions request.** A ``/v1/completions`` request whose
  ``prompt`` is a list of several prompts is refused (llama.cpp answers HTTP 500).
  A batch is then sent again one prompt per request, and the refusal is remembered
  per base URL (:data:`SERVER_QUIRKS`), so later batches go there one by one at once.
* **``n`` ignored.** The server answers one choice where ``n=2`` asked for two. The
  missing choices are asked for with further requests (``n`` set to what is missing),
  so a cached entry always holds the ``n`` generations its key promises.

A plan is a generator: it yields a :class:`Call` (the request's parameters), receives
the SDK's response, or the exception the SDK raised thrown into it, and returns an
:class:`Answer` per prompt (its choices, the response they came in, its own usage).
:func:`drive` and :func:`adrive` run a plan with a sync or an async send, so both paths
share every decision.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generator, Sequence, TypeVar

from ..errors import ProviderError

__all__ = ["Answer", "Call", "ServerQuirks", "SERVER_QUIRKS", "drive", "adrive", "completions_plan", "chat_plan"]

logger = logging.getLogger("llm_cache.llms")

T = TypeVar("T")

#: The statuses with which servers refuse a list of prompts: llama.cpp 500 (a failed
#: assertion), others 400 or 422 (validation), 413 (body too large), 501.
REFUSAL_STATUSES = frozenset({400, 413, 422, 500, 501})


@dataclass(frozen=True)
class Call:
    """One request: its parameters, and whether it is a probe. A probe is sent without
    the SDK's retries: its failure may be a refusal to learn from, not a transient error
    worth retrying three times."""

    params: dict[str, Any]
    probe: bool = False


Plan = Generator[Call, Any, T]


@dataclass
class Answer:
    """The ``n`` choices of one prompt (or conversation), as the cache stores them.

    ``response`` is the first SDK response that answered it (its id, model, created are
    the entry's); ``usage`` is the tokens of the requests made for this prompt alone.
    ``shared`` is set when one request answered several prompts at once: the API reports
    usage per request, so each prompt gets an even share of it, with ``"shared_by"``.
    """

    choices: list[Any]
    response: Any
    usage: dict[str, int]
    shared: dict[str, int] | None = None


class ServerQuirks:
    """What was learned about servers, per base URL, for the life of the process.

    Thread-safe; :meth:`forget` clears everything (tests use it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prompt_lists: dict[str, bool] = {}
        self._ignores_n: set[str] = set()

    def accepts_prompt_lists(self, base_url: str) -> bool | None:
        """Whether a completions request with a list of prompts works there (None: unknown)."""
        with self._lock:
            return self._prompt_lists.get(base_url)

    def record_prompt_lists(self, base_url: str, accepted: bool) -> None:
        with self._lock:
            first = base_url not in self._prompt_lists
            self._prompt_lists[base_url] = accepted
        if first and not accepted:
            logger.info(
                "%s refused a completions request with several prompts; "
                "sending one prompt per request to it from now on", base_url,
            )

    def record_ignores_n(self, base_url: str, asked: int, got: int) -> None:
        with self._lock:
            first = base_url not in self._ignores_n
            self._ignores_n.add(base_url)
        if first:
            logger.info(
                "%s returned %d of n=%d choices; making the missing requests (logged once per server)",
                base_url, got, asked,
            )

    def forget(self) -> None:
        """Forget everything learned (every server is unknown again)."""
        with self._lock:
            self._prompt_lists.clear()
            self._ignores_n.clear()


#: The process-wide record used by :class:`~llm_cache.llms.OpenAI` and ``ChatOpenAI``.
SERVER_QUIRKS = ServerQuirks()


def drive(plan: Plan[T], send: Callable[[Call], Any]) -> T:
    """Run ``plan``, sending each call with ``send``."""
    try:
        call = next(plan)
        while True:
            try:
                response = send(call)
            except Exception as exc:
                call = plan.throw(exc)
            else:
                call = plan.send(response)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def adrive(plan: Plan[T], send: Callable[[Call], Awaitable[Any]]) -> T:
    """Async :func:`drive`."""
    try:
        call = next(plan)
        while True:
            try:
                response = await send(call)
            except Exception as exc:
                call = plan.throw(exc)
            else:
                call = plan.send(response)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


# -- response helpers (no I/O) ---------------------------------------------------------
def usage_dict(response: Any) -> dict[str, int]:
    """The token counts of an SDK response (empty when the server sent none)."""
    usage = getattr(response, "usage", None)
    if usage is None:
        return {}
    return {
        name: getattr(usage, name)
        for name in ("prompt_tokens", "completion_tokens", "total_tokens")
        if isinstance(getattr(usage, name, None), int)
    }


def sum_usage(total: dict[str, int], part: dict[str, int]) -> dict[str, int]:
    for name, value in part.items():
        total[name] = total.get(name, 0) + value
    return total


def _sorted_choices(response: Any) -> list[Any]:
    return sorted(response.choices or [], key=lambda c: c.index)


def split_choices(choices: Sequence[Any], count: int, n: int) -> list[list[Any]]:
    """Cut a completions response's choices (sorted by index) into one list per prompt.

    OpenAI sends ``n`` per prompt, prompt-major; a server that ignores ``n`` sends fewer,
    the same number for every prompt. Anything else cannot be attributed to prompts.
    """
    total = len(choices)
    if count and total % count == 0 and 1 <= total // count <= n:
        per = total // count
        return [list(choices[i * per : (i + 1) * per]) for i in range(count)]
    raise ProviderError(f"expected {count * n} choices for {count} prompts with n={n}, got {total}")


def _is_refusal(exc: BaseException) -> bool:
    return getattr(exc, "status_code", None) in REFUSAL_STATUSES


@dataclass
class _Context:
    base_url: str
    n: int
    quirks: ServerQuirks
    usage: dict[str, int] = field(default_factory=dict)


# -- plans -------------------------------------------------------------------------------
def _top_up(params: dict[str, Any], answer: Answer, ctx: _Context) -> Plan[Answer]:
    """Ask again until ``answer`` holds ``n`` choices (for servers that ignore ``n``)."""
    if len(answer.choices) < ctx.n:
        ctx.quirks.record_ignores_n(ctx.base_url, ctx.n, len(answer.choices))
    while len(answer.choices) < ctx.n:
        missing = ctx.n - len(answer.choices)
        response = yield Call({**params, "n": missing})
        part = usage_dict(response)
        sum_usage(ctx.usage, part)
        sum_usage(answer.usage, part)
        more = _sorted_choices(response)[:missing]
        if not more:
            raise ProviderError("the provider returned no choices")
        answer.choices = answer.choices + more
    return answer


def _completions_chunk(prompts: list[str], params: dict[str, Any], ctx: _Context) -> Plan[list[Answer]]:
    if len(prompts) == 1:
        # A plain string: servers that take one prompt per request may refuse even a list of one.
        response = yield Call({**params, "prompt": prompts[0]})
    else:
        known = ctx.quirks.accepts_prompt_lists(ctx.base_url)
        call = Call({**params, "prompt": list(prompts)}, probe=known is None)
        try:
            response = yield call
        except Exception as exc:
            if _is_refusal(exc):
                return (yield from _one_by_one(prompts, params, ctx))
            if not call.probe:
                raise
            response = yield Call(call.params)  # not a refusal: the SDK's retry policy decides
        if known is None:
            ctx.quirks.record_prompt_lists(ctx.base_url, True)
    part = usage_dict(response)
    sum_usage(ctx.usage, part)
    per_prompt = split_choices(_sorted_choices(response), len(prompts), ctx.n)
    results = []
    shared = None
    if len(prompts) > 1 and part:
        shared = {name: value // len(prompts) for name, value in part.items()}
        shared["shared_by"] = len(prompts)
    for prompt, choices in zip(prompts, per_prompt):
        answer = Answer(choices, response, dict(part) if shared is None else {}, shared)
        results.append((yield from _top_up({**params, "prompt": prompt}, answer, ctx)))
    return results


def _one_by_one(prompts: list[str], params: dict[str, Any], ctx: _Context) -> Plan[list[Answer]]:
    """The fallback after a refused list: one request per prompt. The refusal is
    remembered only once a single prompt worked, so a request that fails either way
    (a prompt too long, say) does not mislabel the server."""
    results: list[Answer] = []
    for prompt in prompts:
        results.extend((yield from _completions_chunk([prompt], params, ctx)))
        if len(results) == 1:
            ctx.quirks.record_prompt_lists(ctx.base_url, False)
    return results


def completions_plan(
    prompts: Sequence[str], params: dict[str, Any], *, batch_size: int | None, base_url: str,
    quirks: ServerQuirks = SERVER_QUIRKS,
) -> Plan[tuple[list[Answer], dict[str, int]]]:
    """The ``/v1/completions`` requests for ``prompts``: lists of up to ``batch_size``
    prompts (``None``: all in one), one by one where the server refuses lists.
    Returns every prompt's :class:`Answer` (``n`` choices) and the summed token usage."""
    ctx = _Context(base_url, params.get("n") or 1, quirks)
    results: list[Answer] = []
    start = 0
    while start < len(prompts):
        size = len(prompts) if batch_size is None else batch_size
        if quirks.accepts_prompt_lists(base_url) is False:
            size = 1
        chunk = list(prompts[start : start + size])
        results.extend((yield from _completions_chunk(chunk, params, ctx)))
        start += len(chunk)
    return results, ctx.usage


def chat_plan(
    params: dict[str, Any], *, base_url: str, quirks: ServerQuirks = SERVER_QUIRKS
) -> Plan[tuple[Answer, dict[str, int]]]:
    """The ``/v1/chat/completions`` requests for one conversation: one, plus one per
    missing choice where the server ignores ``n``. Returns its :class:`Answer` and token usage."""
    ctx = _Context(base_url, params.get("n") or 1, quirks)
    response = yield Call(params)
    part = usage_dict(response)
    sum_usage(ctx.usage, part)
    choices = _sorted_choices(response)[: ctx.n]
    if not choices:
        raise ProviderError("the provider returned no choices")
    return (yield from _top_up(params, Answer(choices, response, dict(part)), ctx)), ctx.usage
