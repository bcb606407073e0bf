"""Cache LLM calls in a PostgreSQL table with a full-text index, then search the cached prompts.

The schema is the one from LangChain's "How to cache LLM calls" notebook, unchanged: a
``FulltextLLMCache`` model whose computed tsvector column has a GIN index.

    python examples/fulltext_postgres.py postgresql+psycopg://user:password@localhost:5432/db

Needs: pip install 'llm-cache[sql,openai]' sqlalchemy-utils. The model talks to
$OPENAI_BASE_URL with $OPENAI_API_KEY when set; otherwise to llm-cache's built-in fake
OpenAI-compatible server, so the example runs offline.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

from sqlalchemy import (
    Column,
    Computed,
    Index,
    Integer,
    Sequence,
    String,
    cast,
    create_engine,
    desc,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import REGCONFIG
from sqlalchemy.orm import declarative_base
from sqlalchemy_utils import TSVectorType

from llm_cache import set_llm_cache
from llm_cache.caches.sql import SQLAlchemyCache
from llm_cache.llms import OpenAI

Base = declarative_base()


class FulltextLLMCache(Base):  # type: ignore[misc, valid-type]
    """Postgres table for fulltext-indexed LLM Cache"""

    __tablename__ = "llm_cache_fulltext"
    id = Column(Integer, Sequence("cache_id"), primary_key=True)
    prompt = Column(String, nullable=False)
    llm = Column(String, nullable=False)
    idx = Column(Integer)
    response = Column(String)
    prompt_llm_idx = Column(
        TSVectorType(),
        Computed(
            "to_tsvector('english', llm || ' ' || prompt)",
            persisted=True,
        ),
    )
    __table_args__ = (Index("idx_fulltext_prompt_tsv", prompt_llm_idx, postgresql_using="gin"),)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "url", help="SQLAlchemy URL of a PostgreSQL database, e.g. postgresql+psycopg://..."
    )
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        if os.environ.get("OPENAI_BASE_URL"):
            llm = OpenAI(model_name="gpt-3.5-turbo-instruct", n=2, best_of=2)
        else:
            from llm_cache.testing.fake_openai import FakeOpenAIServer

            # Half a second per call, a provider's typical delay.
            server = stack.enter_context(FakeOpenAIServer(latency=0.5))
            llm = OpenAI(
                model_name="gpt-3.5-turbo-instruct",
                n=2,
                best_of=2,
                base_url=server.base_url,
                api_key="sk-fake",
            )

        engine = create_engine(args.url)
        cache = SQLAlchemyCache(engine, FulltextLLMCache)
        set_llm_cache(cache)

        for prompt in [
            "Tell me a joke",
            "What is the weather forecast for Paris?",
            "Tell me a joke",
        ]:
            start = time.perf_counter()
            result = llm.generate([prompt])
            took = time.perf_counter() - start
            source = "cache" if result.cached[0] else "provider"
            print(
                f"{prompt!r}: {took * 1e3:.1f} ms from the {source}: {result.generations[0][0].text!r}"
            )

        # 1. The helper: websearch_to_tsquery syntax, best matches first.
        for hit in cache.search("joke"):
            print(
                f"search('joke') -> {hit.prompt!r} (rank {hit.rank:.3f}), {len(hit.generations or [])} generations"
            )

        # 2. The same with plain SQLAlchemy, for queries of your own (the GIN index serves @@).
        query = func.websearch_to_tsquery(cast("english", REGCONFIG), "weather forecast")
        rank = func.ts_rank(FulltextLLMCache.prompt_llm_idx, query)
        stmt = (
            select(FulltextLLMCache.prompt, rank)
            .where(FulltextLLMCache.prompt_llm_idx.op("@@")(query), FulltextLLMCache.idx == 0)
            .order_by(desc(rank))
            .limit(5)
        )
        with engine.connect() as conn:
            for prompt, score in conn.execute(stmt):
                print(f"SQL 'weather forecast' -> {prompt!r} (rank {score:.3f})")

        set_llm_cache(None)
        cache.close()
        engine.dispose()


if __name__ == "__main__":
    main()
