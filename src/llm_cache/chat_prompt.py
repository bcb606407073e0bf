"""Reading the chat prompts and model strings that caches store (pure functions, no I/O).

A cache sees a chat conversation only as its ``prompt`` string. Two writers produce them:

* llm-cache itself (``llm_cache.llms``, the SDK wrappers, the proxy): the canonical JSON of
  OpenAI-style messages, ``[{"role": "user", "content": "..."}]``
  (:func:`llm_cache.keys.messages_prompt`);
* LangChain chat models (through :class:`~llm_cache.integrations.langchain.LangChainCache`):
  ``langchain_core.load.dumps(messages)``, a list of serialised message objects such as
  ``{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages",
  "HumanMessage"], "kwargs": {"content": "...", "type": "human"}}``.

Every reader of chat prompts (semantic partitioning, ``llm-cache inspect | search | stats``)
goes through :func:`parse_chat_prompt`, which turns both into one shape: a list of dicts
with a ``role`` (``user``, ``assistant``, ``system``, ``tool``, ``function``, a
``ChatMessage``'s own role) and a ``content``; a LangChain message keeps every other
field it was serialised with (``tool_calls``, ``tool_call_id``, ``name``, ``id``,
``additional_kwargs``, ...), so nothing that shaped the answer is lost. Nothing here
imports LangChain or resolves the class names of the ``lc`` form: they are read as data.

:func:`llm_string_model` finds the model name in either writer's ``llm_string``
(llm-cache's canonical JSON, the proxy's, LangChain's ``<json>---[params]`` and its plain
``[('param', value), ...]`` form).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "parse_chat_prompt",
    "split_content",
    "last_user_index",
    "readable_prompt",
    "llm_string_model",
]

# LangChain message classes (and their streaming chunks) -> OpenAI-style roles.
_LANGCHAIN_ROLES = {
    "HumanMessage": "user",
    "AIMessage": "assistant",
    "SystemMessage": "system",
    "ToolMessage": "tool",
    "FunctionMessage": "function",
}
# The ``type`` field LangChain puts in each message's kwargs, for a message whose class
# name is not one of the above (a subclass): the same roles.
_LANGCHAIN_TYPES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function"}


def _langchain_message(item: dict[str, Any]) -> dict[str, Any] | None:
    """One message of LangChain's ``lc`` serialisation in the common shape, or None."""
    if item.get("lc") != 1 or item.get("type") != "constructor":
        return None
    path, kwargs = item.get("id"), item.get("kwargs")
    if not isinstance(path, list) or not path or not isinstance(path[-1], str) or not isinstance(kwargs, dict):
        return None
    if "role" in kwargs and not isinstance(kwargs["role"], str):
        return None
    name = path[-1].removesuffix("Chunk")
    if name == "ChatMessage":
        role = kwargs.get("role")
    else:
        role = _LANGCHAIN_ROLES.get(name) or _LANGCHAIN_TYPES.get(str(kwargs.get("type")))
    if role is None:
        # A message class this module does not know: kept whole under a role no reader
        # treats as a question, so it shapes the partition and is never embedded.
        role = "langchain:" + ".".join(str(p) for p in path)
    message = {k: v for k, v in kwargs.items() if k != "role"}
    message["role"] = role
    message.setdefault("content", "")
    return message


def parse_chat_prompt(prompt: str) -> list[dict[str, Any]] | None:
    """The messages of a chat prompt in the common ``{"role", "content", ...}`` shape, or
    None when ``prompt`` is not a chat prompt (a completion prompt, or any other text).

    A prompt is a chat prompt when it is a non-empty JSON list whose items are all
    llm-cache messages (dicts with a string ``role``) or all LangChain serialised messages.
    """
    if not prompt.startswith("[{"):
        return None
    try:
        items = json.loads(prompt)
    except ValueError:
        return None
    if not isinstance(items, list) or not items or not all(isinstance(m, dict) for m in items):
        return None
    if all(isinstance(m.get("role"), str) and "lc" not in m for m in items):
        return items
    messages = [_langchain_message(m) for m in items]
    if any(m is None for m in messages):
        return None
    return messages  # type: ignore[return-value]  # no None left


# Text parts of a content list: "text" (OpenAI chat, Anthropic, LangChain) and
# "input_text" (the OpenAI Responses API).
_TEXT_PARTS = ("text", "input_text")


def split_content(content: Any) -> tuple[str | None, Any]:
    """(the text, what is not text) of a message's content.

    ``content`` is a string, or a list of parts: OpenAI / Anthropic / LangChain content
    blocks (``{"type": "text" | "input_text", "text": ...}``, images, files, ...) and, in
    LangChain, plain strings. The text parts are joined by newlines; the rest is returned as a list (None
    for a string). Text is None when there is none (an image-only message).
    """
    if isinstance(content, str):
        return content, None
    if isinstance(content, list):
        texts: list[str] = []
        rest: list[Any] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") in _TEXT_PARTS and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                rest.append(part)
        if texts:
            return "\n".join(texts), rest
    return None, content


def last_user_index(messages: list[dict[str, Any]]) -> int | None:
    """Index of the last message a user wrote (role ``user``), or None."""
    return max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)


def readable_prompt(prompt: str) -> str:
    """What a person would call the prompt: for a chat prompt, the text of its messages
    joined by `` | ``; any other prompt as it is."""
    messages = parse_chat_prompt(prompt)
    if messages is None:
        return prompt
    parts = []
    for message in messages:
        text, _ = split_content(message.get("content"))
        if text is None:
            text = "[" + ", ".join(_part_type(p) for p in message.get("content") or []) + "]"
        parts.append(text)
    return " | ".join(parts)


def _part_type(part: Any) -> str:
    return str(part.get("type", "?")) if isinstance(part, dict) else type(part).__name__


# ('model_name', 'gpt-4o') / ("model", "x") in the Python repr of LangChain's sorted params.
_LANGCHAIN_PARAM_MODEL = re.compile(r"""\(['"](?:model_name|model|model_id)['"], ['"]([^'"]+)['"]\)""")


def llm_string_model(llm_string: str) -> str | None:
    """The model an ``llm_string`` names, or None when it names none that can be read.

    Reads llm-cache's canonical JSON (``model`` / ``model_name``, also nested in the
    proxy's ``params``), LangChain's chat-model form ``<serialised model JSON>---[params]``
    (its ``kwargs``' ``model_name`` / ``model``, else a call-time ``model`` parameter) and
    LangChain's ``[('param', value), ...]`` form. The Python repr is matched with a regular
    expression, never evaluated.
    """
    head, separator, params = llm_string.partition("---")
    if separator:
        model = _json_model(head, nested="kwargs")
        if model is None:
            found = _LANGCHAIN_PARAM_MODEL.search(params)
            model = found.group(1) if found else None
        return model
    if llm_string.startswith("[("):
        found = _LANGCHAIN_PARAM_MODEL.search(llm_string)
        return found.group(1) if found else None
    return _json_model(llm_string, nested="params")


def _json_model(text: str, *, nested: str) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    inner = data.get(nested)
    if isinstance(inner, str):  # the proxy nests the request parameters as a JSON string
        try:
            inner = json.loads(inner)
        except ValueError:
            return None
    if isinstance(inner, dict):
        data = inner
    if not isinstance(data, dict):
        return None
    model = data.get("model") or data.get("model_name")
    return model if isinstance(model, str) else None
