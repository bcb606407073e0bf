"""The proxy's cache reads and writes, fail-open: a broken cache is a miss, a failed write is logged.

Used by the cached endpoints (:mod:`._cached`, lookups) and the flights (:mod:`._relay`,
which store an answer when its upstream call completes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ._http import _dumps
from ._state import _ProxyState
from .codec import response_to_generations, stored_created_at
from .keys import RequestKey

logger = logging.getLogger("llm_cache.proxy")


def _storable(body: dict[str, Any]) -> bool:
    """Whether every store can hold ``body``: valid Unicode (UTF-8) JSON of sane depth."""
    try:
        _dumps(body)  # encodes to UTF-8: raises on an unpaired surrogate
    except (UnicodeEncodeError, RecursionError, ValueError, TypeError):
        return False
    return True


class _CacheIO(_ProxyState):
    """Mixin of :class:`~.app.CachingProxy`: entries in and out of the exact and semantic caches."""

    async def _lookup(
        self, key: RequestKey, max_age: float | None, semantic: bool = False
    ) -> tuple[list[Any], float | None, float | None] | None:
        """(generations, stored-at time, similarity of a semantic hit) of a usable entry, or ``None``."""
        similarity: float | None = None
        try:
            generations = await self.cache.alookup(key.prompt, key.llm_string)
        except Exception as exc:  # noqa: BLE001 - a cache that raises (strict mode, a bug) must not fail the request
            logger.warning(
                "llm-cache proxy: cache lookup failed, answering from upstream: %s: %s",
                type(exc).__name__,
                exc,
            )
            generations = None
        if not generations and semantic and self.semantic_cache is not None:
            try:
                match = await self.semantic_cache.alookup_with_score(key.prompt, key.llm_string)
            except Exception as exc:  # noqa: BLE001 - fail open: a broken semantic index is a miss
                logger.warning(
                    "llm-cache proxy: semantic lookup failed: %s: %s", type(exc).__name__, exc
                )
                match = None
            if match is not None:
                generations, similarity = match.generations, float(match.similarity)
        if not generations:
            return None
        created = stored_created_at(generations)
        if created is None:
            # Written by a model (no storage time): usable unless an age limit applies.
            if max_age is not None or self.ttl is not None:
                return None
            return generations, None, similarity
        age = time.time() - created
        if (max_age is not None and age > max_age) or (self.ttl is not None and age > self.ttl):
            return None
        return generations, created, similarity

    async def _store(self, key: RequestKey, body: dict[str, Any], semantic: bool = False) -> None:
        # Writes of one key land in the order their answers arrived. Without this, a
        # `Cache-Control: no-cache` refresh whose write overtook the still-running write of
        # the answer before it (writes run in worker threads) was overwritten by that older
        # answer (seen as a flaky test: 3 runs in 14).
        previous = self._stores.get(key.flight_key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stores[key.flight_key] = mine
        try:
            if previous is not None:
                await asyncio.shield(previous)
            if not _storable(body):
                # Bad input, not a store failure: never let it reach (and trip) the store.
                self.metrics.not_stored_answer(key.endpoint, "unencodable")
                logger.warning(
                    "llm-cache proxy: an answer was not stored: it holds text no store can "
                    "keep (unpaired surrogates or nesting too deep)"
                )
                return
            try:
                generations = response_to_generations(key.endpoint, body)
            except ValueError as exc:  # e.g. a Responses answer that failed: nothing to keep
                logger.info("llm-cache proxy: %s answer not stored: %s", key.endpoint, exc)
                return
            targets = [self.cache]
            if semantic and self.semantic_cache is not None:
                targets.append(self.semantic_cache)
            for cache in targets:
                try:
                    await cache.aupdate(key.prompt, key.llm_string, generations)
                except Exception as exc:  # noqa: BLE001 - fail open: the answer was already given
                    logger.warning(
                        "llm-cache proxy: cache write failed: %s: %s", type(exc).__name__, exc
                    )
        finally:
            mine.set_result(None)
            if self._stores.get(key.flight_key) is mine:
                del self._stores[key.flight_key]
