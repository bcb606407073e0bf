"""The state of a :class:`~.app.CachingProxy`, declared once for the mixins that share it.

:meth:`CachingProxy.__init__ <.app.CachingProxy>` sets every attribute; each mixin
inherits these declarations, so what it reads is typed and checked.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from ..caches.base import BaseCache
from .flights import Flight
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
    _flights: dict[Any, Flight]
    _stores: dict[Any, asyncio.Future[None]]
    _completions: int
    _models: dict[str, tuple[float, bytes, list[tuple[str, str]]]]
    _parse_memo: _LRU
    _namespace_memo: _LRU
    _render_memo: _LRU
