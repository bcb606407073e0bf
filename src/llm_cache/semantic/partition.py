"""What a semantic cache embeds and which entries a prompt may match (no I/O).

A semantic hit may only reuse an answer given to the *same model settings* in the *same
conversation*: only the question itself may be worded differently. So a prompt is split
into

* ``text``: what is embedded and compared — the completion prompt, or for chat the text
  of the last user message;
* ``context``: everything else that shaped the answer — for chat, every other message
  (system prompt, earlier turns, tool results, the non-text parts of the last user
  message such as images) in canonical JSON;
* ``partition``: sha256 of the llm_string and the context. Stores compare vectors only
  within one partition (an exact filter), so a different system prompt or chat history
  can never produce a hit, however similar the question.

Chat prompts are recognised by :func:`llm_cache.chat_prompt.parse_chat_prompt`: the
canonical JSON list of messages that :func:`llm_cache.keys.messages_prompt` produces, and
the serialised messages LangChain chat models hand a cache (``langchain_core.load.dumps``),
whose ``HumanMessage`` is the user's question and whose system prompt, history and tool
messages are the context. A LangChain model's tools and parameters are in its llm_string.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..chat_prompt import last_user_index, parse_chat_prompt, split_content
from ..keys import cache_key_hex, canonical_json

__all__ = ["SemanticKey", "split_prompt", "PARTITION_VERSION"]

# Part of every partition hash: bump it if what goes into a partition changes, so old
# entries stop matching instead of matching wrongly.
PARTITION_VERSION = "llmc-sem1"


@dataclass(frozen=True)
class SemanticKey:
    """How one (prompt, llm_string) pair is cached semantically."""

    key: str  # exact identity: cache_key_hex(prompt, llm_string)
    partition: str  # hex sha256 of (version, llm_string, context)
    context: str  # canonical JSON of what surrounds the embedded text ("" for completions)
    text: str | None  # what is embedded; None when there is nothing to embed (exact match only)


def split_prompt(prompt: str, llm_string: str) -> SemanticKey:
    """Split a prompt into the text to embed and the partition it may match in."""
    key = cache_key_hex(prompt, llm_string)
    messages = parse_chat_prompt(prompt)
    if messages is None:
        context = ""
        text: str | None = prompt
    else:
        last_user = last_user_index(messages)
        if last_user is None:
            text, context = None, prompt  # nothing a user asked: exact matches only
        else:
            message = dict(messages[last_user])
            text, rest = split_content(message.pop("content", None))
            if text is None:
                context = prompt  # no text to embed (e.g. an image only): exact matches only
            else:
                # The embedded message keeps its place, its role, its other fields (name)
                # and its non-text parts in the context; only its text is left out.
                message["content"] = {"llm_cache_embedded_text": True, "other_parts": rest}
                context = canonical_json(messages[:last_user] + [message] + messages[last_user + 1 :])
    digest = hashlib.sha256()
    for part in (PARTITION_VERSION, llm_string, "chat" if messages is not None else "completion", context):
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(f"{len(encoded)}:".encode())
        digest.update(encoded)
    if text is None:
        # Nothing to embed: put the entry in a partition of its own so that no other
        # prompt can ever be compared with it.
        digest.update(b"exact:" + key.encode())
    return SemanticKey(key=key, partition=digest.hexdigest(), context=context, text=text)
