"""The vector-store contract behind :class:`~llm_cache.semantic.cache.SemanticCache`.

A store keeps :class:`SemanticEntry` rows and finds the nearest ones to a query vector
within one *partition*. The semantic cache decides everything else (what is embedded,
thresholds, guards, TTL policy); a store only stores, filters and ranks, so a new store
(Redis vector sets, pgvector, a local index) is one small module.

Conventions every store follows:

* vectors are float32, L2-normalised, of the store's fixed ``dimension``; similarity is
  cosine similarity (higher is closer), whatever the index measures internally;
* ``partition`` is an opaque string (a hash of the llm_string and of the conversation
  before the last user message); a search never returns an entry of another partition;
* ``key`` (hex sha256 of the full prompt and llm_string, :func:`llm_cache.keys.cache_key_hex`)
  identifies an entry; ``add`` replaces an entry with the same key;
* ``namespace`` separates caches sharing one server or directory; ``clear`` removes only
  the store's own namespace;
* expired entries (``expires_at`` in the past) are never returned; stores with native TTL
  use it, others filter on read and purge lazily;
* payload values are JSON strings from :func:`llm_cache.generation.encode_generations`;
  nothing is unpickled.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from ...errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SemanticEntry", "Neighbour", "VectorStore"]


@dataclass(frozen=True)
class SemanticEntry:
    """One cached answer as a vector store keeps it."""

    key: str  # hex sha256 of (full prompt, llm_string): the exact-match identity
    partition: str  # entries are only compared within one partition
    text: str  # the text that was embedded (the completion prompt or the last user message)
    prompt: str  # the full prompt as cached (for chat: canonical JSON of every message)
    llm_string: str
    response: str  # encode_generations(...) JSON
    created_at: float
    expires_at: float | None = None


@dataclass(frozen=True)
class Neighbour:
    """A search result: an entry and its cosine similarity to the query (1.0 = identical)."""

    entry: SemanticEntry
    similarity: float


class VectorStore(ABC):
    """Storage and nearest-neighbour search for semantic cache entries."""

    dimension: int
    namespace: str

    @abstractmethod
    def add(self, entry: SemanticEntry, vector: "np.ndarray") -> None:
        """Insert or replace (by ``entry.key``) one entry with its vector."""

    @abstractmethod
    def get(self, key: str) -> SemanticEntry | None:
        """The live entry with this exact key, or ``None``."""

    @abstractmethod
    def search(self, partition: str, vector: "np.ndarray", k: int = 4) -> list[Neighbour]:
        """Up to ``k`` live entries of ``partition`` nearest to ``vector``, most similar first."""

    @abstractmethod
    def delete(self, keys: Sequence[str]) -> None:
        """Remove these entries (missing keys are ignored)."""

    @abstractmethod
    def clear(self) -> None:
        """Remove every entry of this store's namespace, and nothing else."""

    def count(self) -> int:
        """Number of entries in this namespace (may include expired ones not yet purged)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections, files and indexes."""

    def record_hit(self, key: str) -> None:
        """Note that the cache answered from entry ``key`` (for eviction policies).

        Must be cheap (it is on the hit path): stores that keep hit statistics buffer them.
        The default keeps nothing.
        """

    # Async twins: stores with a native async driver override them; the default runs
    # the sync method in a worker thread so the event loop never blocks on I/O.
    async def aadd(self, entry: SemanticEntry, vector: "np.ndarray") -> None:
        await asyncio.to_thread(self.add, entry, vector)

    async def aget(self, key: str) -> SemanticEntry | None:
        return await asyncio.to_thread(self.get, key)

    async def asearch(self, partition: str, vector: "np.ndarray", k: int = 4) -> list[Neighbour]:
        return await asyncio.to_thread(self.search, partition, vector, k)

    async def adelete(self, keys: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete, keys)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aclose(self) -> None:
        """Release what the store holds for the running event loop (it stays usable)."""


# -- helpers for store modules (no I/O) --------------------------------------------------------
def positive_int(value: Any, name: str) -> int:
    """``value`` if it is a positive ``int`` (not a bool); ConfigurationError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive integer, not {value!r}")
    return value


def embedding_with_dimension(embedding: Any) -> tuple[Any, int]:
    """The embedding model a store-backed semantic cache uses and the dimension of its vectors.

    ``None`` means :class:`~llm_cache.embeddings.LocalEmbeddings`. The dimension is the model's
    ``dimension`` attribute when it has a positive one, otherwise the length of one embedding.
    """
    if embedding is None:
        from ..embeddings import LocalEmbeddings

        embedding = LocalEmbeddings()
    dimension = getattr(embedding, "dimension", None)
    if not (isinstance(dimension, int) and dimension > 0):
        dimension = len(embedding.embed_query("dimension probe"))
    return embedding, dimension
