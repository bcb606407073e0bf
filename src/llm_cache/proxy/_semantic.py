"""Semantic mode: which caches can match by meaning, and the one built from a cache URL."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError
from ..urls import redact_url


def _is_semantic(cache: Any) -> bool:
    """Whether ``cache`` reports similarities: ``alookup_with_score`` -> a match or ``None``.

    The match has ``generations`` and ``similarity`` (1.0 for an exact hit), as
    :meth:`llm_cache.semantic.cache.SemanticCache.alookup_with_score` returns.
    """
    return callable(getattr(cache, "alookup_with_score", None)) and callable(
        getattr(cache, "aupdate", None)
    )


def semantic_cache_from_url(url: str, *, ttl: float | None = None, max_error_rate: float | None = None) -> Any:
    """The semantic cache that goes with an exact cache URL (``--semantic``).

    ``memory://`` -> an in-memory :class:`~llm_cache.semantic.cache.SemanticCache`;
    ``sqlite:///x.db`` -> ``SemanticCache(data_dir="x.semantic")`` beside the file;
    ``redis://...`` -> ``RedisSemanticCache``; ``postgresql://...`` -> ``PGVectorSemanticCache``.
    The URL's ``max_entries`` (and for the local index ``max_bytes``/``policy``) caps the
    index as it caps the cache; its ``timeout`` bounds the index's server calls.
    Embeddings are the offline default (``LocalEmbeddings``); ``max_error_rate`` makes the
    cache error-bounded (``None``: the static threshold).
    """
    from urllib.parse import urlsplit, urlunsplit

    from ..urls import url_options

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    bare = urlunsplit(parts._replace(query=""))
    # The index holds what the exact cache holds: the URL's size cap bounds both, and its
    # timeout bounds the index's server calls too.
    given = url_options(parts.query)
    options: dict[str, Any] = {"ttl": ttl, "max_error_rate": max_error_rate, "max_entries": given.get("max_entries")}
    if scheme in ("memory", "sqlite"):
        options.update({name: given[name] for name in ("max_bytes", "policy") if name in given})
    elif scheme in ("redis", "rediss") and "timeout" in given:
        options["socket_timeout"] = given["timeout"]
    elif "timeout" in given:
        options["timeout"] = given["timeout"]
    try:
        if scheme == "memory":
            from ..semantic.cache import SemanticCache

            return SemanticCache(**options)
        if scheme == "sqlite":
            from ..semantic.cache import SemanticCache

            path = parts.path.removeprefix("/")
            stem = path.removesuffix(".db")
            return SemanticCache(data_dir=stem + ".semantic", **options)
        if scheme in ("redis", "rediss"):
            from ..semantic.stores.redis import RedisSemanticCache

            return RedisSemanticCache(redis_url=bare, **options)
        if scheme.startswith(("postgresql", "postgres")):
            from ..semantic.stores.pgvector import PGVectorSemanticCache

            return PGVectorSemanticCache(bare, **options)
    except ImportError as exc:
        raise ConfigurationError(
            f"--semantic needs llm-cache's semantic cache ({exc}); install it with: pip install 'llm-cache[semantic]'"
        ) from exc
    raise ConfigurationError(
        f"--semantic works with memory://, sqlite:///, redis:// and postgresql:// caches, not {redact_url(url)!r}"
    )
