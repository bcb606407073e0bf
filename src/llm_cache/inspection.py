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

Only ``prompt``, ``llm_string`` and ``generations`` are required; the rest is informational.
An imported entry is written with :meth:`~llm_cache.BaseCache.update`, so it gets the
target cache's own creation time and TTL (an entry whose ``expires_at`` has passed is
skipped), and starts with no hits.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol, runtime_checkable

from .caches.base import BaseCache
from .errors import ConfigurationError, CorruptEntryError
from .generation import Generation

logger = logging.getLogger("llm_cache")

__all__ = [
    "Entry",
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


@dataclass(frozen=True)
class Entry:
    """One cache entry, backend-neutral."""

    prompt: str
    llm_string: str
    generations: list[Generation]
    created_at: float | None = None
    expires_at: float | None = None
    hit_count: int | None = None
    last_hit_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The JSONL form (see the module docstring)."""
        return {
            "prompt": self.prompt,
            "llm_string": self.llm_string,
            "generations": [g.to_dict() for g in self.generations],
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "hit_count": self.hit_count,
            "last_hit_at": self.last_hit_at,
        }

    @property
    def model(self) -> str | None:
        """The ``model`` named in the llm_string, when it is llm-cache's JSON form."""
        try:
            data = json.loads(self.llm_string)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        if isinstance(data.get("params"), str):  # the proxy nests the request parameters
            try:
                data = json.loads(data["params"])
            except ValueError:
                return None
        elif isinstance(data.get("params"), dict):
            data = data["params"]
        model = data.get("model") or data.get("model_name") if isinstance(data, dict) else None
        return model if isinstance(model, str) else None


def _memory_entries(cache: Any) -> Iterator[Entry]:
    # InMemoryCache keeps (prompt, llm_string) -> (generations, expires_at on its own clock);
    # that clock is monotonic, so expiry is reported as seconds from now in wall-clock time.
    now_clock, now_wall = cache._clock(), time.time()
    with cache._lock:
        items = list(cache._data.items())
    for (prompt, llm_string), (generations, expiry) in items:
        if expiry is not None and now_clock >= expiry:
            continue
        yield Entry(
            prompt,
            llm_string,
            list(generations),
            expires_at=None if expiry is None else now_wall + (expiry - now_clock),
        )


# -- adapters for backends without entries() --------------------------------------------------------
# They read the backend's own storage layout (documented in each backend's module docstring)
# through its private attributes, and exist only until the backend grows entries()/count():
# a backend's own methods always take precedence (see _adapter).
_REDIS_BATCH = 500


def _redis_entries(cache: Any) -> Iterator[Entry]:
    client = cache._sync()
    batch: list[Any] = []
    for key in client.scan_iter(match=cache._match, count=1000):
        batch.append(key)
        if len(batch) >= _REDIS_BATCH:
            yield from _redis_batch(client, batch)
            batch = []
    if batch:
        yield from _redis_batch(client, batch)


def _redis_batch(client: Any, keys: list[Any]) -> Iterator[Entry]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.pttl(key)
    results = pipe.execute()
    now = time.time()
    for position in range(len(keys)):
        raw, pttl = results[2 * position], results[2 * position + 1]
        if raw is None:  # expired or deleted since SCAN saw it
            continue
        try:
            data = json.loads(raw)
            prompt, llm_string, items = data["p"], data["l"], data["g"]
            texts_ok = isinstance(prompt, str) and isinstance(llm_string, str)
            if not texts_ok or not isinstance(items, list) or not items:
                raise CorruptEntryError("not an llm-cache entry")
            generations = [Generation.from_dict(item) for item in items]
        except (ValueError, TypeError, KeyError, CorruptEntryError) as exc:
            logger.warning("llm-cache: skipping a Redis value that is not an llm-cache entry: %s", exc)
            continue
        expiry = now + pttl / 1000 if isinstance(pttl, int) and pttl > 0 else None
        yield Entry(prompt, llm_string, generations, expires_at=expiry)


def _redis_count(cache: Any) -> int:
    return sum(1 for _ in cache._sync().scan_iter(match=cache._match, count=1000))


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):  # a DateTime column of a user schema
        return float(value.timestamp())
    return float(value)


def _sql_entries(cache: Any) -> Iterator[Entry]:
    from sqlalchemy import select

    info = cache.info
    table = info.table
    columns = [table.c.prompt, table.c.llm, table.c.idx, table.c.response]
    columns.append(table.c.created_at if info.has_created_at else None)  # type: ignore[arg-type]
    columns.append(table.c.expires_at if info.has_expiry else None)  # type: ignore[arg-type]
    stmt = select(*[c for c in columns if c is not None])
    if info.has_namespace:
        stmt = stmt.where(table.c.namespace == cache.namespace)
    if info.has_expiry:
        stmt = stmt.where(table.c.expires_at.is_(None) | (table.c.expires_at > cache._clock()))
    # The rows of one entry must be adjacent: by key hash on the keyed table, else by the texts.
    order = [table.c.key_hash] if info.keyed else [table.c.prompt, table.c.llm]
    stmt = stmt.order_by(*order, table.c.idx)
    # Read at once: the CLI lists caches of the size a person inspects; a backend-side
    # entries() could stream instead.
    rows = cache._core(lambda conn: conn.execute(stmt).all(), read=True)
    from_db = getattr(cache, "_from_db", lambda value: value)
    current: tuple[Any, Any] | None = None
    generations: list[Generation] = []
    times: tuple[float | None, float | None] = (None, None)

    def flush() -> Entry:
        assert current is not None
        return Entry(from_db(current[0]), from_db(current[1]), list(generations), times[0], times[1])

    for row in rows:
        prompt, llm, _idx, response = row[0], row[1], row[2], row[3]
        rest = list(row[4:])
        created = _epoch(rest.pop(0)) if info.has_created_at else None
        expiry = _epoch(rest.pop(0)) if info.has_expiry else None
        if current != (prompt, llm):
            if current is not None and generations:
                yield flush()
            current, generations, times = (prompt, llm), [], (created, expiry)
        try:
            raw = response
            if isinstance(raw, (bytes, bytearray, memoryview)):
                raw = bytes(raw).decode("utf-8", "replace")
            generations.append(Generation.from_dict(json.loads(raw)))
        except (ValueError, TypeError, CorruptEntryError) as exc:
            logger.warning("llm-cache: skipping an SQL cache row that is not an llm-cache generation: %s", exc)
    if current is not None and generations:
        yield flush()


def _adapter(cache: Any) -> tuple[Any, Any] | None:
    """``(entries, count)`` functions for ``cache``, or None if its entries cannot be listed."""
    own_entries, own_count = getattr(cache, "entries", None), getattr(cache, "count", None)
    if callable(own_entries) and callable(own_count):
        return (lambda c: c.entries()), (lambda c: int(c.count()))
    from .caches.memory import InMemoryCache

    if isinstance(cache, InMemoryCache):
        return _memory_entries, lambda c: sum(1 for _ in _memory_entries(c))
    redis_module = sys.modules.get("llm_cache.caches.redis")
    if redis_module is not None and isinstance(cache, redis_module.RedisCache):
        return _redis_entries, _redis_count
    sql_module = sys.modules.get("llm_cache.caches.sql")
    if sql_module is not None and isinstance(cache, sql_module.SQLAlchemyCache):
        count = (lambda c: int(c.count())) if callable(own_count) else (lambda c: sum(1 for _ in _sql_entries(c)))
        return _sql_entries, count
    return None


def is_inspectable(cache: BaseCache) -> bool:
    """Whether entries of ``cache`` can be listed."""
    return _adapter(cache) is not None


def _not_inspectable(cache: BaseCache) -> ConfigurationError:
    return ConfigurationError(
        f"{type(cache).__name__} cannot list its entries (it has no entries()/count()); "
        "stats, inspect, search and export work with SQLite, Redis, SQL and memory caches"
    )


def iter_entries(cache: BaseCache) -> Iterator[Entry]:
    """Every live entry of ``cache`` as :class:`Entry`, in the backend's order."""
    adapter = _adapter(cache)
    if adapter is None:
        raise _not_inspectable(cache)
    for item in adapter[0](cache):
        if isinstance(item, Entry):
            yield item
            continue
        yield Entry(
            prompt=item.prompt,
            llm_string=item.llm_string,
            generations=list(item.generations),
            created_at=getattr(item, "created_at", None),
            expires_at=getattr(item, "expires_at", None),
            hit_count=getattr(item, "hit_count", None),
            last_hit_at=getattr(item, "last_hit_at", None),
        )


def count_entries(cache: BaseCache) -> int:
    """Number of live entries of ``cache``."""
    adapter = _adapter(cache)
    if adapter is None:
        raise _not_inspectable(cache)
    return adapter[1](cache)


def size_on_disk(cache: BaseCache) -> int | None:
    """Bytes the store occupies where that is known (an SQLite file with its WAL), else None.

    For SQLite this is the whole file, shared by every namespace in it.
    """
    from .caches.sqlite import SQLiteCache

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
    """Write ``entry`` into ``cache``; False if it was skipped because it has expired."""
    if entry.expires_at is not None and entry.expires_at <= (time.time() if now is None else now):
        return False
    cache.update(entry.prompt, entry.llm_string, entry.generations)
    return True


# -- statistics -------------------------------------------------------------------------------
def _usage_tokens(usage: Any) -> int | None:
    if not isinstance(usage, dict):
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int) and not isinstance(total, bool):
        return total
    parts = [usage.get(k) for k in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")]
    numbers = [p for p in parts if isinstance(p, int) and not isinstance(p, bool)]
    return sum(numbers) if numbers else None


def entry_usage_tokens(entry: Entry) -> int | None:
    """Tokens the call that created ``entry`` cost, from the usage stored with it, if any.

    Looked for where llm-cache's writers put it: the OpenAI response envelope
    (``generation_info["response"]["usage"]`` from :mod:`llm_cache.integrations.openai_client`,
    ``generation_info["proxy"]["response"]["usage"]`` from the proxy),
    ``generation_info["usage"]`` / ``["token_usage"]``, and LangChain chat messages'
    ``usage_metadata``.
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
            tokens = _usage_tokens(candidate)
            if tokens is not None:
                return tokens
    # LangChain chat generations carry usage per message: sum over the generations.
    total, found = 0, False
    for generation in entry.generations:
        message = generation.message or {}
        data = message.get("data") if isinstance(message.get("data"), dict) else message
        tokens = _usage_tokens(data.get("usage_metadata")) if isinstance(data, dict) else None
        if tokens is not None:
            total, found = total + tokens, True
    return total if found else None


@dataclass
class CacheSummary:
    """What ``llm-cache stats`` reports."""

    entries: int = 0
    hits: int = 0
    hits_known: bool = False
    size_bytes: int | None = None
    tokens_saved: int = 0
    entries_with_usage: int = 0
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
            "oldest": self.oldest,
            "newest": self.newest,
            "models": self.models,
            "top_prompts": [{"hits": hits, "prompt": prompt} for hits, prompt in self.top],
        }


def summarize(entries: Iterable[Entry], *, top: int = 5) -> CacheSummary:
    """Statistics over ``entries`` (one pass)."""
    summary = CacheSummary()
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
        if entry.created_at is not None:
            summary.oldest = entry.created_at if summary.oldest is None else min(summary.oldest, entry.created_at)
            summary.newest = entry.created_at if summary.newest is None else max(summary.newest, entry.created_at)
        model = entry.model or "?"
        summary.models[model] = summary.models.get(model, 0) + 1
    ranked.sort(key=lambda item: -item[0])
    summary.top = [item for item in ranked[:top] if item[0] > 0]
    return summary
