"""Listing, exporting and importing cache entries, whatever the backend.

The CLI (``llm-cache stats | inspect | search | export | import``) works on any cache that
follows :class:`InspectableCache`: ``entries()`` yielding objects with at least
``prompt``, ``llm_string`` and ``generations`` (and, where the store keeps them,
``created_at``, ``expires_at``, ``hit_count``, ``last_hit_at``), and ``count()``.
:class:`~llm_cache.SQLiteCache` has both; a backend adds them to take part, nothing here
needs to change. Until they have their own, :class:`~llm_cache.InMemoryCache`,
``RedisCache`` (SCAN of its namespace's keys) and ``SQLAlchemyCache`` (a SELECT of its
rows) are read by adapters below. Importing needs nothing but the cache contract's ``update``.

The JSONL form of an entry (one JSON object a line, what ``export`` writes and ``import``
reads)::

    {"prompt": "...", "llm_string": "{...}", "generations": [{"text": "...", ...}],
     "created_at": 1718000000.0, "expires_at": null, "hit_count": 3, "last_hit_at": ...}

Only ``prompt``, ``llm_string`` and ``generations`` are required. An imported entry keeps
its ``created_at``, ``expires_at``, ``hit_count`` and ``last_hit_at`` where the target store
keeps them (a cache with ``restore(entry)``: SQLite, the semantic caches); other stores
write it with :meth:`~llm_cache.BaseCache.update` (their own creation time and TTL). An
entry whose ``expires_at`` has passed is skipped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol, runtime_checkable

from .caches.base import BaseCache, CacheEntry, unstorable
from .chat_prompt import llm_string_model
from .errors import ConfigurationError, CorruptEntryError
from .eviction import usage_total
from .generation import Generation

logger = logging.getLogger("llm_cache")

__all__ = [
    "Entry",
    "entry_model",
    "InspectableCache",
    "is_inspectable",
    "iter_entries",
    "count_entries",
    "size_on_disk",
    "parse_entry_line",
    "import_entry",
    "entry_usage_tokens",
    "CacheSummary",
    "summarize",
    "entry_kind",
    "find_match",
    "list_namespaces",
    "entry_usage",
]


@runtime_checkable
class InspectableCache(Protocol):
    """A cache whose entries can be listed (what ``inspect``, ``search``, ``stats`` and
    ``export`` need)."""

    def entries(self) -> Iterable[Any]:
        """Every live entry of this cache's namespace; each has ``prompt``, ``llm_string``,
        ``generations`` and optionally ``created_at``, ``expires_at``, ``hit_count``,
        ``last_hit_at``."""
        ...

    def count(self) -> int:
        """Number of live entries of this cache's namespace."""
        ...


# Every backend yields this one type; the name Entry is kept for the CLI's readability.
Entry = CacheEntry


def entry_model(entry: CacheEntry) -> str | None:
    """The model named in the entry's llm_string (llm-cache's, the proxy's or LangChain's
    form; see :func:`llm_cache.chat_prompt.llm_string_model`)."""
    return llm_string_model(entry.llm_string)


def _inspectable(cache: Any) -> InspectableCache:
    if isinstance(cache, InspectableCache):
        return cache
    raise ConfigurationError(
        f"{type(cache).__name__} cannot list its entries (it has no entries()/count()); "
        "stats, inspect, search and export work with SQLite, Redis, SQL and memory caches"
    )


def is_inspectable(cache: BaseCache) -> bool:
    """Whether entries of ``cache`` can be listed."""
    return isinstance(cache, InspectableCache)


def iter_entries(cache: BaseCache) -> Iterator[Entry]:
    """Every live entry of ``cache``, in the backend's order."""
    return iter(_inspectable(cache).entries())


def count_entries(cache: BaseCache) -> int:
    """Number of live entries of ``cache``."""
    return int(_inspectable(cache).count())


def size_on_disk(cache: BaseCache) -> int | None:
    """Bytes the store occupies where that is known (an SQLite file with its WAL), else None.

    For SQLite this is the whole file, shared by every namespace in it.
    """
    from .caches.sqlite import SQLiteCache

    own = getattr(cache, "size_on_disk", None)
    if callable(own):  # a store that knows its own footprint (a semantic cache's directory)
        return int(own())
    if isinstance(cache, SQLiteCache):
        path = cache._path  # the real file (a ":memory:" cache uses a temporary one)
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.path.getsize(path + suffix)
            except OSError:
                continue
        return total
    return None


# -- import -----------------------------------------------------------------------------------
def parse_entry_line(line: str) -> Entry:
    """One JSONL line as an :class:`Entry`; ConfigurationError says what is wrong with it."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise ConfigurationError(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise ConfigurationError("JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigurationError("not a JSON object")
    for name in ("prompt", "llm_string"):
        if not isinstance(data.get(name), str):
            raise ConfigurationError(f"{name!r} must be a string")
    items = data.get("generations")
    if not isinstance(items, list) or not items:
        raise ConfigurationError("'generations' must be a non-empty list")
    try:
        generations = [Generation.from_dict(item) for item in items]
    except CorruptEntryError as exc:
        raise ConfigurationError(f"bad generation: {exc}") from None
    numbers: dict[str, float | None] = {}
    for name in ("created_at", "expires_at", "last_hit_at"):
        value = data.get(name)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and (not number or not math.isfinite(value)):
            raise ConfigurationError(f"{name!r} must be a number of seconds since the epoch or null")
        numbers[name] = value
    hits = data.get("hit_count")
    if hits is not None and (isinstance(hits, bool) or not isinstance(hits, int) or hits < 0):
        raise ConfigurationError("'hit_count' must be a non-negative integer or null")
    problem = unstorable(data["prompt"], data["llm_string"], generations)
    if problem is not None:
        raise ConfigurationError(problem)
    return Entry(
        data["prompt"],
        data["llm_string"],
        generations,
        numbers["created_at"],
        numbers["expires_at"],
        hits,
        numbers["last_hit_at"],
    )


def import_entry(cache: BaseCache, entry: Entry, *, now: float | None = None) -> bool:
    """Write ``entry`` into ``cache``; False if it was skipped because it has expired.

    A cache with ``restore(entry)`` keeps the entry's times and hit count; any other gets it
    through ``update`` (a store error is then raised only if the cache is strict).
    """
    if entry.expires_at is not None and entry.expires_at <= (time.time() if now is None else now):
        return False
    restore = getattr(cache, "restore", None)
    if callable(restore):
        restore(entry)
    else:
        cache.update(entry.prompt, entry.llm_string, entry.generations)
    return True


# -- statistics -------------------------------------------------------------------------------
def _usage_split(usage: Any) -> tuple[int, int] | None:
    """``(input tokens, output tokens)`` of a usage dict (OpenAI's or Anthropic's names)."""
    if not isinstance(usage, dict):
        return None

    def number(*names: str) -> int | None:
        for name in names:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    given = number("prompt_tokens", "input_tokens")
    taken = number("completion_tokens", "output_tokens")
    if given is None and taken is None:
        total = number("total_tokens")
        return None if total is None else (total, 0)
    return (given or 0, taken or 0)


def _usage_records(entry: Entry) -> list[dict[str, Any]]:
    """The usage stored with ``entry``: the call's usage from the first generation that
    carries one (one call made the entry), else every LangChain chat message's
    ``usage_metadata`` (one per generation, to be summed); [] when there is none.

    Looked for where llm-cache's writers put it: the OpenAI response envelope
    (``generation_info["response"]["usage"]`` from :mod:`llm_cache.integrations.openai_client`,
    ``generation_info["proxy"]["response"]["usage"]`` from the proxy),
    ``generation_info["usage"]`` (the models of :mod:`llm_cache.llms`) / ``["token_usage"]``.
    """
    for generation in entry.generations:
        info = generation.generation_info or {}
        response = info.get("response")
        proxy = info.get("proxy")
        proxy_response = proxy.get("response") if isinstance(proxy, dict) else None
        for candidate in (
            response.get("usage") if isinstance(response, dict) else None,
            proxy_response.get("usage") if isinstance(proxy_response, dict) else None,
            info.get("usage"),
            info.get("token_usage"),
        ):
            if isinstance(candidate, dict) and _usage_split(candidate) is not None:
                return [candidate]
    records: list[dict[str, Any]] = []
    for generation in entry.generations:
        message = generation.message or {}
        data = message.get("data") if isinstance(message.get("data"), dict) else message
        usage = data.get("usage_metadata") if isinstance(data, dict) else None
        if isinstance(usage, dict) and _usage_split(usage) is not None:
            records.append(usage)
    return records


def entry_usage(entry: Entry) -> tuple[int, int] | None:
    """``(input tokens, output tokens)`` the call that created ``entry`` cost, from the usage
    stored with it (see :func:`entry_usage_tokens`), or None."""
    splits = [split for split in map(_usage_split, _usage_records(entry)) if split is not None]
    if not splits:
        return None
    return sum(s[0] for s in splits), sum(s[1] for s in splits)


def entry_usage_tokens(entry: Entry) -> int | None:
    """Tokens the call that created ``entry`` cost, from the usage stored with it, if any
    (where :func:`_usage_records` looks; LangChain's per-message usage is summed)."""
    records = _usage_records(entry)
    if not records:
        return None
    return sum(usage_total(usage) or 0 for usage in records)


@dataclass
class CacheSummary:
    """What ``llm-cache stats`` reports."""

    entries: int = 0
    hits: int = 0
    hits_known: bool = False
    size_bytes: int | None = None
    tokens_saved: int = 0
    entries_with_usage: int = 0
    #: estimated USD saved (hits x the entry's price at the price table), None without a table
    cost_saved: float | None = None
    oldest: float | None = None
    newest: float | None = None
    models: dict[str, int] = field(default_factory=dict)
    top: list[tuple[int, str]] = field(default_factory=list)

    @property
    def hit_rate(self) -> float | None:
        """Stored hits over lookups of stored entries (each entry's first call was a miss).

        An estimate: misses that stored nothing (errors, expired and cleared entries) are
        not counted. None when the store keeps no hit counts.
        """
        if not self.hits_known:
            return None
        lookups = self.hits + self.entries
        return self.hits / lookups if lookups else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "size_bytes": self.size_bytes,
            "hits": self.hits if self.hits_known else None,
            "hit_rate": self.hit_rate,
            "tokens_saved": self.tokens_saved,
            "entries_with_usage": self.entries_with_usage,
            "cost_saved_usd": None if self.cost_saved is None else round(self.cost_saved, 6),
            "oldest": self.oldest,
            "newest": self.newest,
            "models": self.models,
            "top_prompts": [{"hits": hits, "prompt": prompt} for hits, prompt in self.top],
        }


def summarize(entries: Iterable[Entry], *, top: int = 5, prices: Any = None) -> CacheSummary:
    """Statistics over ``entries`` (one pass). ``prices``: an object with ``cost(model,
    input_tokens, output_tokens) -> USD`` (the proxy's PriceTable) for ``cost_saved``."""
    summary = CacheSummary()
    if prices is not None:
        summary.cost_saved = 0.0
    ranked: list[tuple[int, str]] = []
    for entry in entries:
        summary.entries += 1
        hits = entry.hit_count
        if hits is not None:
            summary.hits_known = True
            summary.hits += hits
            ranked.append((hits, entry.prompt))
            if len(ranked) > 4 * top:  # keep the list short on big caches
                ranked.sort(key=lambda item: -item[0])
                del ranked[top:]
        tokens = entry_usage_tokens(entry)
        if tokens is not None:
            summary.entries_with_usage += 1
            summary.tokens_saved += tokens * (hits or 0)
            split = entry_usage(entry) if prices is not None and hits else None
            if split is not None and summary.cost_saved is not None:
                summary.cost_saved += hits * prices.cost(entry_model(entry), split[0], split[1])
        if entry.created_at is not None:
            summary.oldest = entry.created_at if summary.oldest is None else min(summary.oldest, entry.created_at)
            summary.newest = entry.created_at if summary.newest is None else max(summary.newest, entry.created_at)
        model = entry_model(entry) or "?"
        summary.models[model] = summary.models.get(model, 0) + 1
    ranked.sort(key=lambda item: -item[0])
    summary.top = [item for item in ranked[:top] if item[0] > 0]
    return summary


# -- what a listing shows ---------------------------------------------------------------------
_CHAT_APIS = ("chat.completions", "messages", "responses")


def _llm_params(entry: Entry) -> dict[str, Any]:
    try:
        data = json.loads(entry.llm_string)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def entry_kind(entry: Entry) -> tuple[str, str | None]:
    """``(kind, api)`` of an entry: kind is ``"chat"``, ``"completion"`` or ``"embedding"``;
    api is ``"provider.api"`` (``"openai.chat.completions"``, ``"anthropic.messages"``) when
    the llm_string names them (the models, SDK wrappers and proxy write both), else None."""
    params = _llm_params(entry)
    provider, api = params.get("provider"), params.get("api")
    if isinstance(api, str) and api:
        name = f"{provider}.{api}" if isinstance(provider, str) and provider else api
        if api in _CHAT_APIS or api.endswith(".chat.completions"):
            return "chat", name
        if "embedding" in api:
            return "embedding", name
        return "completion", name
    if entry.prompt.startswith("["):
        try:
            messages = json.loads(entry.prompt)
        except ValueError:
            messages = None
        if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
            return "chat", None
    return "completion", None


def find_match(needle: str, entry: Entry, *, answers: bool = False) -> tuple[str, str, int, int] | None:
    """Where ``needle`` (case-insensitive) occurs in ``entry``: ``(field, text, start, end)``
    with ``field`` one of ``"prompt"``, ``"answer"``; ``text`` is the searched text (the
    readable prompt for chat). None when it does not occur."""
    from .commands._common import prompt_text

    folded = needle.casefold()
    candidates = [("prompt", prompt_text(entry.prompt)), ("prompt", entry.prompt)]
    if answers:
        candidates += [("answer", g.text) for g in entry.generations]
    for field_name, text in candidates:
        # casefold can change lengths (ß -> ss): search the folded text only when it keeps them
        folded_text = text.casefold()
        at = folded_text.find(folded)
        if at >= 0:
            if len(folded_text) != len(text):
                return field_name, text, 0, 0
            return field_name, text, at, at + len(needle)
    return None


def list_namespaces(cache: BaseCache) -> list[tuple[str, int, int | None]]:
    """``(namespace, live entries, bytes or None)`` of every namespace in the cache's store,
    largest first. Stores without a ``namespaces()`` report the cache's own namespace."""
    namespaces = getattr(cache, "namespaces", None)
    if callable(namespaces):
        return [(ns, count, size) for ns, count, size in namespaces()]
    own = getattr(cache, "namespace", None) or ""
    return [(own, count_entries(cache), None)]
