"""The state of a :class:`~.app.CachingProxy`, declared once for the mixins that share it.

:meth:`CachingProxy.__init__ <.app.CachingProxy>` sets every attribute; each mixin
inherits these declarations, so what it reads is typed and checked.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import Any

from ..caches.base import BaseCache
from ._http import Refusal
from .auth import ClientKeys
from .flights import Flight
from .limits import ProxyLimits
from .metrics import Metrics
from .upstream import Upstream


class _LRU(OrderedDict):  # type: ignore[type-arg]
    """A small bounded mapping; the least recently used entry goes first."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def get_recent(self, key: Any) -> Any:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        if len(self) > self.maxsize:
            self.popitem(last=False)


class _ProxyState:
    upstream: Upstream
    cache: BaseCache
    semantic_cache: Any  # a SemanticCache (or a cache with alookup_with_score), or None
    share_across_keys: bool
    namespace_header: str  # lower-cased
    ttl: float | None
    stream_usage: bool
    models_ttl: float
    metrics: Metrics
    lease_store: Any  # a .leases.LeaseStore (coalescing across processes), or None
    _flights: dict[Any, Flight]
    _stores: dict[Any, asyncio.Future[None]]
    _completions: int
    _models: dict[str, tuple[float, bytes, list[tuple[str, str]]]]
    _parse_memo: _LRU
    _namespace_memo: _LRU
    _render_memo: _LRU
    limits: ProxyLimits
    client_keys: ClientKeys | None
    _upstream_calls: int
    semantic_hits: deque[Any]  # recent semantic hits, for the dashboard (bounded)

    # The cap on concurrent upstream calls: taken before a miss or a pass-through calls
    # upstream (hits and coalesced requests never take one), freed when its answer ends.
    def _take_upstream_slot(self) -> None:
        """Count one more upstream call, or raise a 503 :class:`Refusal` at the cap."""
        if self._upstream_calls >= self.limits.max_upstream:
            raise Refusal(
                503,
                f"the proxy is already making {self.limits.max_upstream} upstream calls, "
                f"its limit; retry in {self.limits.retry_after} s",
                "upstream_busy",
                retry_after=self.limits.retry_after,
            )
        self._upstream_calls += 1

    def _free_upstream_slot(self) -> None:
        self._upstream_calls -= 1
