"""Models on the official ``openai`` SDK, for OpenAI and any OpenAI-compatible server."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from functools import partial
from typing import Any, AsyncIterator, Callable, Iterator, Sequence, TypeVar

from .._imports import require
from ..errors import ConfigurationError
from ..generation import Generation
from ..keys import canonical_messages, canonical_json
from .base import BaseLLM
from .plans import Call, Plan, adrive, chat_plan, completions_plan, drive
from .plans import sum_usage as _sum_usage

__all__ = ["OpenAI", "ChatOpenAI"]

Messages = Sequence[Any]
T = TypeVar("T")


class _OpenAIClientMixin:
    """Creates the SDK clients on first use (importing ``openai`` takes a few hundred ms)."""

    base_url: str | None
    _api_key: str | None
    timeout: float | None
    max_retries: int
    _client: Any
    _async_client: Any
    _client_lock: threading.Lock

    def _client_kwargs(self) -> dict[str, Any]:
        api_key = self._api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise ConfigurationError(
                "no API key: pass api_key=... or set OPENAI_API_KEY "
                "(for a local OpenAI-compatible server any non-empty string works)"
            )
        kwargs: dict[str, Any] = {"api_key": api_key, "max_retries": self.max_retries}
        if self.base_url:
            kwargs["base_url"] = self.base_url
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        return kwargs

    @property
    def client(self) -> Any:
        """The ``openai.OpenAI`` client this model calls (created on first use)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    openai = require("openai", "openai", type(self).__name__)
                    object.__setattr__(self, "_client", openai.OpenAI(**self._client_kwargs()))
        return self._client

    @property
    def async_client(self) -> Any:
        """The ``openai.AsyncOpenAI`` client this model calls (created on first use)."""
        if self._async_client is None:
            with self._client_lock:
                if self._async_client is None:
                    openai = require("openai", "openai", type(self).__name__)
                    object.__setattr__(self, "_async_client", openai.AsyncOpenAI(**self._client_kwargs()))
        return self._async_client

    # (request field, attribute) pairs sent with every request; each class lists its own.
    _REQUEST_FIELDS: tuple[tuple[str, str], ...] = ()
    _API = ""
    provider = "openai"
    model_kwargs: dict[str, Any]

    def _request_params(self) -> dict[str, Any]:
        """The parameters every request carries (``None`` means the provider's default)."""
        params = {field: getattr(self, attribute) for field, attribute in self._REQUEST_FIELDS}
        params.update(self.model_kwargs)
        return {k: v for k, v in params.items() if v is not None}

    def _identifying_params(self) -> dict[str, Any]:
        return {"provider": self.provider, "api": self._API, **self._request_params()}

    def _send(self, client: Any, call: Call) -> Any:
        """The SDK's create method for this model's API, called for one planned request."""
        if call.probe and hasattr(client, "with_options"):
            client = client.with_options(max_retries=0)
        create = client.completions.create if self._API == "completions" else client.chat.completions.create
        return create(**call.params)

    def _run_plan(self, make_plan: Callable[[Any], Plan[T]]) -> T:
        """Run the plan made for the sync client, sending each request with it."""
        client = self.client
        return drive(make_plan(client), lambda call: self._send(client, call))

    async def _arun_plan(self, make_plan: Callable[[Any], Plan[T]]) -> T:
        """Async :meth:`_run_plan`."""
        client = self.async_client

        async def send(call: Call) -> Any:
            return await self._send(client, call)

        return await adrive(make_plan(client), send)

    def _init_clients(
        self, base_url: str | None, api_key: str | None, timeout: float | None, max_retries: int,
        client: Any, async_client: Any,
    ) -> None:
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self._client = client
        self._async_client = async_client
        self._client_lock = threading.Lock()


def _server_key(client: Any) -> str:
    """The base URL by which what was learned about a server is remembered."""
    return str(getattr(client, "base_url", "") or "")


def _with_usage(generations: list[Generation], usage: dict[str, int], shared_by: int = 1) -> list[Generation]:
    """``generations`` with the provider's usage in the first one's ``generation_info["usage"]``,
    so that the stored entry says what the call cost (``llm-cache stats`` multiplies it by the
    entry's hits). Usage that ``shared_by`` prompts shared (one completions call for a batch:
    the API reports usage per request, not per prompt) is split evenly between their entries
    and marked ``"shared_by"``."""
    if not usage or not generations:
        return generations
    if shared_by > 1:
        usage = {name: value // shared_by for name, value in usage.items()}
        usage["shared_by"] = shared_by
    first = generations[0]
    info = {**(first.generation_info or {}), "usage": usage}
    return [dataclasses.replace(first, generation_info=info), *generations[1:]]


def _one_model_name(value: str | None, alias: str | None, alias_name: str, default: str) -> str:
    """The model from the positional/primary argument or its alias (LangChain accepts both)."""
    if value is not None and alias is not None and value != alias:
        raise ConfigurationError(f"two different models given: {value!r} and {alias_name}={alias!r}")
    return value if value is not None else alias if alias is not None else default


class _Alias:
    """An attribute that reads and writes another one (``model`` / ``model_name``, both
    accepted as LangChain's models accept both)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.__doc__ = f"Alias of ``{target}``."

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        return self if obj is None else getattr(obj, self.target)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.target, value)


def _finish_info(choice: Any) -> dict[str, Any] | None:
    info: dict[str, Any] = {}
    if getattr(choice, "finish_reason", None) is not None:
        info["finish_reason"] = choice.finish_reason
    logprobs = getattr(choice, "logprobs", None)
    if logprobs is not None:
        info["logprobs"] = logprobs.model_dump() if hasattr(logprobs, "model_dump") else logprobs
    return info or None


class OpenAI(_OpenAIClientMixin, BaseLLM[str]):
    """A completions model (``/v1/completions``), e.g. ``gpt-3.5-turbo-instruct``.

    ``llm("Tell me a joke")`` returns the text; ``generate([...])`` returns all ``n``
    generations of every prompt. ``model_kwargs`` are sent with every request and are
    part of the cache key, like every keyword argument given at call time.

    The model is ``model_name`` (or its alias ``model=``, as LangChain's).

    Misses of one ``generate`` call go to the provider in requests of up to
    ``batch_size`` prompts (20, as LangChain's; ``None``: all in one; ``1``: one per
    request). Many OpenAI-compatible servers (llama.cpp, Ollama) take one prompt per
    request and refuse a list: the batch is then sent one prompt per request, and later
    batches to the same base URL go one by one straight away.

    A server that ignores ``n`` (llama.cpp, Ollama) answers fewer choices than asked:
    the model then makes the missing requests (with ``n`` set to the number still
    missing), so every result and every cached entry holds ``n`` generations. With such
    a server ``n=2`` costs two requests per prompt.
    """

    _API = "completions"
    _REQUEST_FIELDS = (
        ("model", "model_name"),
        ("temperature", "temperature"),
        ("max_tokens", "max_tokens"),
        ("top_p", "top_p"),
        ("n", "n"),
        ("best_of", "best_of"),
        ("stop", "stop"),
        ("seed", "seed"),
        ("logit_bias", "logit_bias"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
    )

    def __init__(
        self,
        model_name: str | None = None,
        *,
        model: str | None = None,
        temperature: float | None = 0.7,
        max_tokens: int | None = 256,
        top_p: float | None = None,
        n: int = 1,
        best_of: int | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        logit_bias: dict[str, float] | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        model_kwargs: dict[str, Any] | None = None,
        batch_size: int | None = 20,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
        client: Any = None,
        async_client: Any = None,
        cache: Any = None,
    ) -> None:
        super().__init__(cache=cache)
        if n < 1 or (best_of is not None and best_of < n):
            raise ConfigurationError(f"need n >= 1 and best_of >= n (got n={n}, best_of={best_of})")
        if batch_size is not None and batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1 (or None for one request), got {batch_size}")
        self.model_name = _one_model_name(model_name, model, "model", "gpt-3.5-turbo-instruct")
        self.batch_size = batch_size
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.top_p = top_p
        self.n = n
        self.best_of = best_of
        self.stop = stop
        self.seed = seed
        self.logit_bias = logit_bias
        self.frequency_penalty = frequency_penalty
        self.presence_penalty = presence_penalty
        self.model_kwargs = dict(model_kwargs or {})
        self._init_clients(base_url, api_key, timeout, max_retries, client, async_client)

    def _cache_prompt(self, value: str) -> str:
        if not isinstance(value, str):
            raise ConfigurationError(f"OpenAI takes a prompt string, not {type(value).__name__}")
        return value

    model = _Alias("model_name")

    def _request(self, prompts: list[str], kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**self._request_params(), **kwargs, "prompt": prompts}

    def _plan(self, inputs: list[str], kwargs: dict[str, Any], client: Any) -> Plan[tuple[list[list[Any]], dict[str, int]]]:
        params = {**self._request_params(), **kwargs}
        return completions_plan(inputs, params, batch_size=self.batch_size, base_url=_server_key(client))

    def _result(self, planned: tuple[list[list[Any]], dict[str, int]]) -> tuple[list[list[Generation]], dict[str, Any]]:
        per_prompt, usage = planned
        generations = [
            _with_usage([Generation(text=c.text, generation_info=_finish_info(c)) for c in choices], usage, len(per_prompt))
            for choices in per_prompt
        ]
        return generations, {"token_usage": usage, "model_name": self.model_name}

    def _call_provider(self, inputs: list[str], kwargs: dict[str, Any]) -> tuple[list[list[Generation]], dict[str, Any]]:
        return self._result(self._run_plan(partial(self._plan, inputs, kwargs)))

    async def _acall_provider(
        self, inputs: list[str], kwargs: dict[str, Any]
    ) -> tuple[list[list[Generation]], dict[str, Any]]:
        return self._result(await self._arun_plan(partial(self._plan, inputs, kwargs)))

    def _stream_provider(self, value: str, kwargs: dict[str, Any], finish: dict[str, Any]) -> Iterator[str]:
        request = {**self._request([value], kwargs), "prompt": value, "stream": True, "n": 1}
        request.pop("best_of", None)
        for chunk in self.client.completions.create(**request):
            for choice in chunk.choices:
                if choice.text:
                    yield choice.text
                if choice.finish_reason is not None:
                    finish["finish_reason"] = choice.finish_reason

    async def _astream_provider(self, value: str, kwargs: dict[str, Any], finish: dict[str, Any]) -> AsyncIterator[str]:
        request = {**self._request([value], kwargs), "prompt": value, "stream": True, "n": 1}
        request.pop("best_of", None)
        async for chunk in await self.async_client.completions.create(**request):
            for choice in chunk.choices:
                if choice.text:
                    yield choice.text
                if choice.finish_reason is not None:
                    finish["finish_reason"] = choice.finish_reason


class ChatOpenAI(_OpenAIClientMixin, BaseLLM[Any]):
    """A chat model (``/v1/chat/completions``).

    An input is a string (one user message) or a list of messages, each a dict
    ``{"role": ..., "content": ...}`` or a ``(role, content)`` pair. ``invoke`` returns
    the assistant's text; ``generate`` returns :class:`~llm_cache.Generation` objects whose
    ``message`` is the whole assistant message (tool calls included).

    The model is ``model`` (or its alias ``model_name=``, as LangChain's). A server that
    ignores ``n`` (llama.cpp, Ollama) answers fewer choices than asked: the model then
    makes the missing requests, so every result and cached entry holds ``n`` generations.
    """

    _API = "chat.completions"
    _REQUEST_FIELDS = (
        ("model", "model"),
        ("temperature", "temperature"),
        ("max_tokens", "max_tokens"),
        ("top_p", "top_p"),
        ("n", "n"),
        ("stop", "stop"),
        ("seed", "seed"),
        ("tools", "tools"),
        ("tool_choice", "tool_choice"),
        ("response_format", "response_format"),
        ("logit_bias", "logit_bias"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
    )

    def __init__(
        self,
        model: str | None = None,
        *,
        model_name: str | None = None,
        temperature: float | None = 0.7,
        max_tokens: int | None = None,
        top_p: float | None = None,
        n: int = 1,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        response_format: dict[str, Any] | None = None,
        logit_bias: dict[str, float] | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        model_kwargs: dict[str, Any] | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
        client: Any = None,
        async_client: Any = None,
        cache: Any = None,
    ) -> None:
        super().__init__(cache=cache)
        if n < 1:
            raise ConfigurationError(f"n must be at least 1, got {n}")
        self.model = _one_model_name(model, model_name, "model_name", "gpt-4o-mini")
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.top_p = top_p
        self.n = n
        self.stop = stop
        self.seed = seed
        self.tools = tools
        self.tool_choice = tool_choice
        self.response_format = response_format
        self.logit_bias = logit_bias
        self.frequency_penalty = frequency_penalty
        self.presence_penalty = presence_penalty
        self.model_kwargs = dict(model_kwargs or {})
        self._init_clients(base_url, api_key, timeout, max_retries, client, async_client)

    model_name = _Alias("model")

    @staticmethod
    def _messages(value: Any) -> list[dict[str, Any]]:
        if isinstance(value, str):
            return [{"role": "user", "content": value}]
        return canonical_messages(value)

    def _cache_prompt(self, value: Any) -> str:
        if isinstance(value, str):
            # The canonical JSON of [{"role": "user", "content": value}], built directly:
            # the common single-message case then costs one string dump, not a sorted dump
            # of a list of dicts (keys.canonical_json gives the same bytes; a test checks it).
            return '[{"content":' + json.dumps(value, ensure_ascii=False) + ',"role":"user"}]'
        return canonical_json(self._messages(value))

    def _request(self, value: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**self._request_params(), **kwargs, "messages": self._messages(value)}

    @staticmethod
    def _generations(choices: list[Any]) -> list[Generation]:
        return [
            Generation(
                text=choice.message.content or "",
                generation_info=_finish_info(choice),
                message=choice.message.model_dump(exclude_none=True),
            )
            for choice in choices
        ]

    def _plan(self, value: Any, kwargs: dict[str, Any], client: Any) -> Plan[tuple[list[Any], dict[str, int]]]:
        return chat_plan(self._request(value, kwargs), base_url=_server_key(client))

    def _results(
        self, planned: list[tuple[list[Any], dict[str, int]]]
    ) -> tuple[list[list[Generation]], dict[str, Any]]:
        usage: dict[str, int] = {}
        for _, part in planned:
            _sum_usage(usage, part)
        generations = [_with_usage(self._generations(choices), part) for choices, part in planned]
        return generations, {"token_usage": usage, "model_name": self.model}

    def _call_provider(self, inputs: list[Any], kwargs: dict[str, Any]) -> tuple[list[list[Generation]], dict[str, Any]]:
        # The chat API takes one conversation per request.
        return self._results([self._run_plan(partial(self._plan, value, kwargs)) for value in inputs])

    async def _acall_provider(
        self, inputs: list[Any], kwargs: dict[str, Any]
    ) -> tuple[list[list[Generation]], dict[str, Any]]:
        import asyncio

        return self._results(
            await asyncio.gather(*(self._arun_plan(partial(self._plan, v, kwargs)) for v in inputs))
        )

    def invoke_message(self, value: Any, **kwargs: Any) -> dict[str, Any]:
        """The first generation's whole assistant message (content, tool calls, ...)."""
        generation = self.generate([value], **kwargs).generations[0][0]
        return generation.message or {"role": "assistant", "content": generation.text}

    async def ainvoke_message(self, value: Any, **kwargs: Any) -> dict[str, Any]:
        """Async :meth:`invoke_message`."""
        generation = (await self.agenerate([value], **kwargs)).generations[0][0]
        return generation.message or {"role": "assistant", "content": generation.text}

    def _stream_request(self, value: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**self._request(value, kwargs), "stream": True, "n": 1}

    def _stream_provider(self, value: Any, kwargs: dict[str, Any], finish: dict[str, Any]) -> Iterator[str]:
        for chunk in self.client.chat.completions.create(**self._stream_request(value, kwargs)):
            for choice in chunk.choices:
                if choice.delta is not None and choice.delta.content:
                    yield choice.delta.content
                if choice.finish_reason is not None:
                    finish["finish_reason"] = choice.finish_reason

    async def _astream_provider(self, value: Any, kwargs: dict[str, Any], finish: dict[str, Any]) -> AsyncIterator[str]:
        async for chunk in await self.async_client.chat.completions.create(**self._stream_request(value, kwargs)):
            for choice in chunk.choices:
                if choice.delta is not None and choice.delta.content:
                    yield choice.delta.content
                if choice.finish_reason is not None:
                    finish["finish_reason"] = choice.finish_reason

    def _streamed_generation(self, text: str, finish: dict[str, Any]) -> Generation:
        return Generation(text=text, generation_info=finish or None, message={"role": "assistant", "content": text})
