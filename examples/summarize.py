"""Map-reduce summary with a cached map step and an uncached reduce step.

The last section of LangChain's "How to cache LLM calls" notebook, with llm-cache:

    python examples/summarize.py            # the built-in test server (simulated latency)
    OPENAI_BASE_URL=... [OPENAI_API_KEY=...] python examples/summarize.py   # a real server

The model is $LLM_CACHE_DEMO_MODEL, else the first one the server lists (e.g. a
llama.cpp server's GGUF file). Within one run, the second pass answers the three map
steps from .llm_cache.db; only the reduce step goes to the provider.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from llm_cache import SQLiteCache, set_llm_cache
from llm_cache.chains import CharacterTextSplitter, Document, load_summarize_chain
from llm_cache.demo import DEFAULT_MODEL, MODEL_ENV, choose_model
from llm_cache.llms import OpenAI

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def provider() -> Iterator[tuple[str, str, str]]:
    """(base_url, api_key, model): the environment's server, or the built-in test server."""
    requested = os.environ.get(MODEL_ENV)
    if os.environ.get("OPENAI_BASE_URL"):
        base_url = os.environ["OPENAI_BASE_URL"]
        api_key = os.environ.get("OPENAI_API_KEY") or "no-key-needed"  # local servers need none
        model, _ = choose_model(base_url, api_key, requested)
        print(f"(using {base_url}, model {model}; set {MODEL_ENV} to choose another)")
        yield base_url, api_key, model
        return
    from llm_cache.testing.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(latency=1.0) as server:
        print(f"(using the built-in test server at {server.base_url}, 1 s simulated latency)")
        yield server.base_url, "not-a-secret", requested or DEFAULT_MODEL


def main() -> None:
    text = (HERE / "state_of_the_union.txt").read_text(encoding="utf-8")
    texts = CharacterTextSplitter().split_text(text)  # chunk_size=4000, chunk_overlap=200
    docs = [Document(page_content=t) for t in texts[:3]]

    set_llm_cache(SQLiteCache(database_path=".llm_cache.db"))
    with provider() as (base_url, api_key, model):
        llm = OpenAI(model_name=model, base_url=base_url, api_key=api_key)
        no_cache_llm = OpenAI(model_name=model, base_url=base_url, api_key=api_key, cache=False)
        _ = (llm.client, no_cache_llm.client)  # create the SDK clients (slow import) before timing
        chain = load_summarize_chain(llm, chain_type="map_reduce", reduce_llm=no_cache_llm)
        for run in (1, 2):
            start = time.perf_counter()
            result = chain.invoke({"input_documents": docs})
            seconds = time.perf_counter() - start
            hits = [s.kind for s in result["steps"] if s.cached]
            print(f"run {run}: {seconds:.2f} s, steps answered by the cache: {hits or 'none'}")
            print(f"  {result['output_text'].strip()}\n")


if __name__ == "__main__":
    main()
