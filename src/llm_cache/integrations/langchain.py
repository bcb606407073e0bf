"""LangChainCache: any llm-cache cache as a langchain-core ``BaseCache``.

::

    from langchain_core.globals import set_llm_cache
    from llm_cache import SQLiteCache
    from llm_cache.integrations.langchain import LangChainCache

    set_llm_cache(LangChainCache(SQLiteCache(database_path=".langchain.db")))
    # every LangChain LLM and chat model now answers repeated calls from the SQLite file;
    # a model built with cache=False still bypasses it (LangChain's own rule).

LangChain hands a cache its own prompt and llm_string (for chat models, its serialised
messages and model parameters) and ``Generation`` / ``ChatGeneration`` objects; this
adapter keeps LangChain's strings as they are and converts the generations to llm-cache's
JSON :class:`~llm_cache.Generation`:

* a ``Generation`` keeps ``text`` and ``generation_info``;
* a ``ChatGeneration`` keeps ``generation_info`` and its message as
  ``langchain_core.messages.message_to_dict`` gives it, ``{"type": "ai", "data": {...}}``,
  in the Generation's ``message`` (with content, ``tool_calls``, ``usage_metadata``,
  ``response_metadata``, ``additional_kwargs``, ``id``; chunk types keep their type).

Why reading it back is safe: stored values are a trust boundary. They are parsed with
:func:`json.loads` by the llm-cache codec and the message is rebuilt with
``langchain_core.messages.messages_from_dict``, which maps the ``type`` field onto a fixed
set of message classes (``human``, ``ai``, ``system``, ``tool``, ... and their chunks)
and calls that class with the stored JSON values as pydantic-validated fields. Nothing is
unpickled, no import path or class name from the store is resolved (unlike
``langchain_core.load.loads``, whose ``lc`` serialisation names classes to instantiate and
which this adapter never calls), and no code is run. Unknown keys become plain data
attributes (``BaseMessage`` allows extra fields), which can carry only JSON values. A
value that is not a valid message is a miss.

A generation whose ``generation_info`` or message is not JSON (a Python object a custom
model put there) is not stored: the call is answered normally, logged, and a later call
misses, instead of storing something that cannot be read back faithfully.

Over a semantic cache (``LangChainCache(SemanticCache(...))``), a chat model's prompt is
read as its messages by :mod:`llm_cache.chat_prompt` (LangChain's ``dumps`` form): the last
human message is embedded, and the system prompt, earlier turns and tool messages, with the
llm_string (model, parameters, bound tools), decide which entries it may match.

Misses, store failures and corrupt entries follow llm-cache's one fail-open policy (the
wrapped cache's ``strict``/breaker settings); ``clear()`` removes the wrapped cache's
entries (only its namespace) and takes no options.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Sequence

from .._imports import require
from ..caches.base import BaseCache
from ..errors import ConfigurationError
from ..generation import Generation

if TYPE_CHECKING:  # the base class is found at import time; a type checker needs its name
    from langchain_core.caches import BaseCache as _LangChainBaseCache
else:
    _LangChainBaseCache = require("langchain_core.caches", "langchain", "LangChainCache").BaseCache
_outputs = require("langchain_core.outputs", "langchain", "LangChainCache")
_messages = require("langchain_core.messages", "langchain", "LangChainCache")

__all__ = ["LangChainCache", "to_llm_cache_generation", "to_langchain_generation"]

logger = logging.getLogger("llm_cache")


def _json_copy(value: Any) -> Any:
    """``value`` as plain JSON data (a deep copy); TypeError/ValueError if it is not JSON."""
    return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False))


def to_llm_cache_generation(generation: Any) -> Generation:
    """A LangChain ``Generation`` / ``ChatGeneration`` as an llm-cache :class:`Generation`.

    Raises TypeError or ValueError when it holds something that is not JSON.
    """
    info = generation.generation_info
    info = _json_copy(info) if info is not None else None
    message = getattr(generation, "message", None)
    if message is not None:
        return Generation(
            text=generation.text, generation_info=info, message=_json_copy(_messages.message_to_dict(message))
        )
    return Generation(text=generation.text, generation_info=info)


def to_langchain_generation(generation: Generation) -> Any:
    """An llm-cache :class:`Generation` as a LangChain ``Generation`` or ``ChatGeneration``.

    Raises ValueError (or TypeError) for a message that is not a valid LangChain message.
    """
    message = generation.message
    if message is None:
        return _outputs.Generation(text=generation.text, generation_info=generation.generation_info)
    if isinstance(message.get("type"), str) and isinstance(message.get("data"), dict):
        (lc_message,) = _messages.messages_from_dict([message])
    elif isinstance(message.get("role"), str):
        # An OpenAI-style assistant message written by llm_cache.llms through a shared cache.
        content = message.get("content")
        lc_message = _messages.AIMessage(content=content if isinstance(content, str) else generation.text)
    else:
        raise ValueError("stored chat message is neither a LangChain message dict nor a role/content message")
    return _outputs.ChatGeneration(message=lc_message, generation_info=generation.generation_info)


class LangChainCache(_LangChainBaseCache):
    """An llm-cache cache (``SQLiteCache``, ``RedisCache``, ``InMemoryCache``, ...) behind
    langchain-core's ``BaseCache`` interface, for ``langchain_core.globals.set_llm_cache``
    or a model's ``cache=`` argument.

    Args:
        cache: the llm-cache cache that stores the entries.
    """

    def __init__(self, cache: BaseCache) -> None:
        if not isinstance(cache, BaseCache):
            raise ConfigurationError(
                f"LangChainCache wraps an llm-cache cache such as SQLiteCache(), not {type(cache).__name__}"
            )
        self.cache = cache

    def __repr__(self) -> str:
        return f"LangChainCache({self.cache!r})"

    # -- conversions with the policy's "corrupt is a miss" ----------------------------------
    def _to_langchain(self, generations: list[Generation] | None) -> list[Any] | None:
        if generations is None:
            return None
        try:
            # A list, not another sequence: LangChain checks ``isinstance(value, list)``.
            return [to_langchain_generation(g) for g in generations]
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            self.cache.stats.corrupt += 1
            logger.warning("llm-cache: LangChainCache: stored entry is not a valid LangChain generation: %s", exc)
            return None

    def _from_langchain(self, return_val: Sequence[Any]) -> list[Generation] | None:
        try:
            return [to_llm_cache_generation(g) for g in return_val]
        except (ValueError, TypeError) as exc:
            logger.warning("llm-cache: LangChainCache: generation not cached, it is not JSON: %s", exc)
            return None

    # -- langchain-core's BaseCache -----------------------------------------------------------
    def lookup(self, prompt: str, llm_string: str) -> list[Any] | None:
        """LangChain generations stored for this prompt and model, or ``None``."""
        return self._to_langchain(self.cache.lookup(prompt, llm_string))

    def update(self, prompt: str, llm_string: str, return_val: Sequence[Any]) -> None:
        """Store LangChain generations for this prompt and model."""
        generations = self._from_langchain(return_val)
        if generations is not None:
            self.cache.update(prompt, llm_string, generations)

    def clear(self, **kwargs: Any) -> None:
        """Remove every entry of the wrapped cache (its namespace only)."""
        _no_options(kwargs)
        self.cache.clear()

    async def alookup(self, prompt: str, llm_string: str) -> list[Any] | None:
        """Async :meth:`lookup`, through the wrapped cache's native async path."""
        return self._to_langchain(await self.cache.alookup(prompt, llm_string))

    async def aupdate(self, prompt: str, llm_string: str, return_val: Sequence[Any]) -> None:
        """Async :meth:`update`."""
        generations = self._from_langchain(return_val)
        if generations is not None:
            await self.cache.aupdate(prompt, llm_string, generations)

    async def aclear(self, **kwargs: Any) -> None:
        """Async :meth:`clear`."""
        _no_options(kwargs)
        await self.cache.aclear()


def _no_options(kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise ConfigurationError(
            f"LangChainCache.clear() takes no options (got {', '.join(sorted(kwargs))}): it removes "
            "every entry of the wrapped cache's namespace; use a separate namespace for a separate set"
        )
