"""OpenAI chat completions (``POST /v1/chat/completions``) as a protocol (no I/O).

Identity: the prompt is the canonical JSON of ``messages`` (:func:`llm_cache.keys.messages_prompt`,
the string :class:`~llm_cache.llms.ChatOpenAI` caches under); every other field is in the
llm_string except :data:`~._openai_common.OPENAI_NOT_KEYED` (``stream``, ``stream_options``,
``user``, ``metadata``, ``store``, ``safety_identifier``, ``prompt_cache_*``). A chat
request may be matched by meaning (the last user text is embedded).
Entries, streams and usage: :mod:`._choices`.
"""

from __future__ import annotations

from ._choices import ChoicesProtocol

__all__ = ["CHAT"]

CHAT = ChoicesProtocol(
    name="chat.completions", prompt_field="messages", object_name="chat.completion", id_prefix="chatcmpl-"
)
