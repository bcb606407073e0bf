"""Chains over cached models: documents, a text splitter, and summarize chains.

from llm_cache.chains import CharacterTextSplitter, Document, load_summarize_chain

chunks = CharacterTextSplitter().split_text(text)
chain = load_summarize_chain(llm, chain_type="map_reduce", reduce_llm=no_cache_llm)
chain.run([Document(c) for c in chunks[:3]])
"""

from __future__ import annotations

from .documents import Document
from .prompts import PromptTemplate
from .summarize import (
    MapReduceSummarizeChain,
    StepReport,
    StuffSummarizeChain,
    approximate_tokens,
    load_summarize_chain,
)
from .text_splitter import CharacterTextSplitter

__all__ = [
    "Document",
    "CharacterTextSplitter",
    "load_summarize_chain",
    "PromptTemplate",
    "StepReport",
    "MapReduceSummarizeChain",
    "StuffSummarizeChain",
    "approximate_tokens",
]
