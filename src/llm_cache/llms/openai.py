"""Models on the official ``openai`` SDK, for OpenAI and any OpenAI-compatible server."""

from __future__ import annotations

import dataclasses
import os
import threading
from functools import partial
from typing import Any, AsyncIterator, Callable, Iterator, Sequence, TypeVar

from .._imports import require
from ..errors import ConfigurationError, ProviderError
from ..generation import Generation
from ..keys import canonical_messages
from ..protocols import CHAT, COMPLETIONS
from ..protocols._choices import ChoicesProtocol
from .base import BaseLLM
from .plans import Answer, Call, Plan, adrive, chat_plan, completions_plan, drive
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
    # The wire protocol (llm_cache.protocols) that decides the cache key and the stored
    # entry: the same as cached_client's and the proxy's for the same request.
    _PROTOCOL: ChoicesProtocol
    provider = "openai"
    model_kwargs: dict[str, Any]
    namespace: str | None
    _cache_prompt: Callable[[Any], str]  # each model's own

    def _request_params(self) -> dict[str, Any]:
        """The parameters every request carries (``None`` means the provider's default)."""
        params = {field: getattr(self, attribute) for field, attribute in self._REQUEST_FIELDS}
        params.update(self.model_kwargs)
        return {k: v for k, v in params.items() if v is not None}

    def _identifying_params(self) -> dict[str, Any]:
        return {"provider": self.provider, "api": self._API, **self._request_params()}

    def _make_llm_string(self, kwargs: dict[str, Any]) -> str:
        # The request body's llm_string, as the protocol layer computes it for the proxy
        # and cached_client: {"provider", "api", "namespace"?, every keyed request field}.
        return self._PROTOCOL.llm_string_for({**self._request_params(), **kwargs}, self.namespace)

    def _entry(self, answer: Answer) -> list[Generation]:
        """An answer as the generations the cache stores, in the protocol layer's shape
        (the shape cached_client and the proxy store and rebuild)."""
        # Imported here: that module imports this package (the coalescer) on its own import.
        from ..integrations.openai_client import answer_body

        shared = answer.shared
        try:
            entry = self._PROTOCOL.to_entry(
                answer_body(answer.response, answer.choices, answer.usage if shared is None else None)
            )
        except ValueError as exc:
            raise ProviderError(f"the provider's answer cannot be used: {exc}") from exc
        if shared is None:
            return entry
        # One request answered several prompts: its usage is not this entry's, so the
        # response envelope has none; the entry's even share of it (plus any requests made
        # for this prompt alone) goes in generation_info["usage"], marked "shared_by", so
        # that ``llm-cache stats`` can still say what the entry saves.
        usage = _sum_usage({k: v for k, v in shared.items() if k != "shared_by"}, answer.usage)
        usage["shared_by"] = shared["shared_by"]
        first = entry[0]
        return [dataclasses.replace(first, generation_info={**(first.generation_info or {}), "usage": usage}), *entry[1:]]

    def _stream_key(self, value: Any, kwargs: dict[str, Any]) -> tuple[str, str]:
        # The key of the request a stream sends (one choice, no best_of), not generate()'s.
        request = self._stream_request(value, kwargs)
        return self._cache_prompt(value), self._PROTOCOL.llm_string_for(request, self.namespace)

    def _stream_request(self, value: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _stream_chunks(self, request: dict[str, Any], finish: dict[str, Any]) -> Iterator[str]:
        """The text pieces of a streamed request; ``finish["response"]`` is the assembled
        response once the stream ended normally."""
        assembler = self._PROTOCOL.assembler()
        for chunk in self._create(self.client, request):
            assembler.add(None, chunk.model_dump(mode="json", warnings=False))
            yield from _chunk_texts(chunk)
        if assembler.complete:
            finish["response"] = assembler.response()

    async def _astream_chunks(self, request: dict[str, Any], finish: dict[str, Any]) -> AsyncIterator[str]:
        """Async :meth:`_stream_chunks`."""
        assembler = self._PROTOCOL.assembler()
        async for chunk in await self._create(self.async_client, request):
            assembler.add(None, chunk.model_dump(mode="json", warnings=False))
            for text in _chunk_texts(chunk):
                yield text
        if assembler.complete:
            finish["response"] = assembler.response()

    def _stream_provider(self, value: Any, kwargs: dict[str, Any], finish: dict[str, Any]) -> Iterator[str]:
        return self._stream_chunks(self._stream_request(value, kwargs), finish)

    def _astream_provider(self, value: Any, kwargs: dict[str, Any], finish: dict[str, Any]) -> AsyncIterator[str]:
        return self._astream_chunks(self._stream_request(value, kwargs), finish)

    def _streamed_entry(self, text: str, finish: dict[str, Any]) -> list[Generation] | None:
        response = finish.get("response")
        if response is None:
            return None  # cut off or failed: never stored
        try:
            return self._PROTOCOL.to_entry(response)
        except ValueError:
            return None

    def _create(self, client: Any, params: dict[str, Any]) -> Any:
        """The SDK's create method for this model's API, called with ``params``."""
        create = client.completions.create if self._API == "completions" else client.chat.completions.create
        return create(**params)

    def _send(self, client: Any, call: Call) -> Any:
        """One planned request."""
        if call.probe and hasattr(client, "with_options"):
            client = client.with_options(max_retries=0)
        return self._create(client, call.params)

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
        client: Any, async_client: Any, namespace: str | None,
    ) -> None:
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ConfigurationError("namespace must be a non-empty string or None")
        self.namespace = namespace
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


def _chunk_texts(chunk: Any) -> Iterator[str]:
    """The text pieces of one streamed chunk (chat deltas or completion texts)."""
    for choice in chunk.choices:
        delta = getattr(choice, "delta", None)
        text = delta.content if delta is not None else getattr(choice, "text", None)
        if text:
            yield text


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

    ``namespace`` partitions entries inside one cache, as ``cached_client``'s does: a
    model and ``cached_client`` (or the proxy) with the same namespace share entries.
    """

    _API = "completions"
    _PROTOCOL = COMPLETIONS
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
        namespace: str | None = None,
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
        self._init_clients(base_url, api_key, timeout, max_retries, client, async_client, namespace)

    def _cache_prompt(self, value: str) -> str:
        if not isinstance(value, str):
            raise ConfigurationError(f"OpenAI takes a prompt string, not {type(value).__name__}")
        return self._PROTOCOL.prompt_of(value)

    model = _Alias("model_name")

    def _request(self, prompts: list[str], kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**self._request_params(), **kwargs, "prompt": prompts}

    def _plan(self, inputs: list[str], kwargs: dict[str, Any], client: Any) -> Plan[tuple[list[Answer], dict[str, int]]]:
        params = {**self._request_params(), **kwargs}
        return completions_plan(inputs, params, batch_size=self.batch_size, base_url=_server_key(client))

    def _result(self, planned: tuple[list[Answer], dict[str, int]]) -> tuple[list[list[Generation]], dict[str, Any]]:
        answers, usage = planned
        return [self._entry(answer) for answer in answers], {"token_usage": usage, "model_name": self.model_name}

    def _call_provider(self, inputs: list[str], kwargs: dict[str, Any]) -> tuple[list[list[Generation]], dict[str, Any]]:
        return self._result(self._run_plan(partial(self._plan, inputs, kwargs)))

    async def _acall_provider(
        self, inputs: list[str], kwargs: dict[str, Any]
    ) -> tuple[list[list[Generation]], dict[str, Any]]:
        return self._result(await self._arun_plan(partial(self._plan, inputs, kwargs)))

    def _stream_request(self, value: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        request = {**self._request([value], kwargs), "prompt": value, "stream": True, "n": 1}
        request.pop("best_of", None)
        return request


class ChatOpenAI(_OpenAIClientMixin, BaseLLM[Any]):
    """A chat model (``/v1/chat/completions``).

    An input is a string (one user message) or a list of messages, each a dict
    ``{"role": ..., "content": ...}`` or a ``(role, content)`` pair. ``invoke`` returns
    the assistant's text; ``generate`` returns :class:`~llm_cache.Generation` objects whose
    ``message`` is the whole assistant message (tool calls included).

    The model is ``model`` (or its alias ``model_name=``, as LangChain's). A server that
    ignores ``n`` (llama.cpp, Ollama) answers fewer choices than asked: the model then
    makes the missing requests, so every result and cached entry holds ``n`` generations.

    ``namespace`` partitions entries inside one cache, as ``cached_client``'s does: a
    model and ``cached_client`` (or the proxy) with the same namespace share entries.
    """

    _API = "chat.completions"
    _PROTOCOL = CHAT
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
        namespace: str | None = None,
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
        self._init_clients(base_url, api_key, timeout, max_retries, client, async_client, namespace)

    model_name = _Alias("model")

    @staticmethod
    def _messages(value: Any) -> list[dict[str, Any]]:
        if isinstance(value, str):
            return [{"role": "user", "content": value}]
        return canonical_messages(value)

    def _cache_prompt(self, value: Any) -> str:
        return self._PROTOCOL.prompt_of(self._messages(value))

    def _request(self, value: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**self._request_params(), **kwargs, "messages": self._messages(value)}

    def _plan(self, value: Any, kwargs: dict[str, Any], client: Any) -> Plan[tuple[Answer, dict[str, int]]]:
        return chat_plan(self._request(value, kwargs), base_url=_server_key(client))

    def _results(
        self, planned: list[tuple[Answer, dict[str, int]]]
    ) -> tuple[list[list[Generation]], dict[str, Any]]:
        usage: dict[str, int] = {}
        for _, part in planned:
            _sum_usage(usage, part)
        return [self._entry(answer) for answer, _ in planned], {"token_usage": usage, "model_name": self.model}

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
