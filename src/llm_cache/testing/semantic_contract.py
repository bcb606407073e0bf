"""The semantic-cache suite: every vector store behind ``SemanticCache`` runs it.

A store's test module subclasses :class:`SemanticCacheContract` (which includes the whole
:class:`~llm_cache.testing.contract.CacheContract`) and provides a fixture
``cache_factory`` returning ``factory(namespace="default", ttl=None, **kwargs)`` that
builds a fresh, empty :class:`~llm_cache.semantic.cache.SemanticCache` over that store.
Keyword arguments it must pass through to ``SemanticCache``: ``embedding``,
``threshold``, ``guards``. Use :func:`shared_embeddings` as the embedding by default
(one model load for the whole session).

Optional hooks, as in ``CacheContract``: ``advance(cache, seconds)``,
``corrupt(cache, prompt, llm_string)``, ``shares_namespaces``; and, for persistence,
``process_source(cache) -> str``: Python source defining ``make_cache()`` that builds,
in another process, a cache over the same data (same directory, server, namespace).

Load with ``pytest.register_assert_rewrite("llm_cache.testing.semantic_contract")``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any, Callable

import pytest

from ..generation import Generation
from ..keys import messages_prompt
from .contract import LLM, CacheContract, sample_generations

__all__ = ["SemanticCacheContract", "shared_embeddings", "CountingEmbeddings", "PARAPHRASES", "TRAPS"]

# From traps_dev (CC BY 4.0) and plain English: pairs that need the same answer ...
PARAPHRASES = [
    ("How do I cancel my mobile contract?", "How can I cancel my mobile contract?"),
    ("Can I bring my own wine to the restaurant?", "Is it OK to bring my own wine to the restaurant?"),
    ("What is the capital of France?", "What's the capital city of France?"),
    ("How do I reset my password?", "How can I reset my password?"),
]
# ... and look-alikes that need different answers. Each is above a 0.85 cosine threshold
# or rejected by a guard, so they test the guards, not only the threshold.
TRAPS = [
    ("Which items can be recycled?", "Which items can't be recycled?"),
    ("Remind me at 7am", "Remind me at 7pm"),
    ("How much is a 2-hour clean?", "How much is a 4-hour clean?"),
    ("How do I turn on two-factor authentication?", "How do I turn off two-factor authentication?"),
    ("How do I lock my debit card in the app?", "How do I unlock my debit card in the app?"),
]

_SHARED: dict[str, Any] = {}


def shared_embeddings() -> Any:
    """One :class:`~llm_cache.embeddings.LocalEmbeddings` for the whole test session."""
    if "local" not in _SHARED:
        from ..semantic.embeddings import LocalEmbeddings

        _SHARED["local"] = LocalEmbeddings()
    return _SHARED["local"]


class CountingEmbeddings:
    """Wraps an embedding model and counts the texts it is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dimension = inner.dimension
        self.calls = 0

    def embed_array(self, texts: list[str]) -> Any:
        from ..semantic.embeddings import as_array

        self.calls += len(texts)
        return as_array(self.inner, texts)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += len(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += len(texts)
        return await self.inner.aembed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]


def _chat(system: str, *turns: str) -> str:
    messages = [{"role": "system", "content": system}]
    for i, turn in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": turn})
    return messages_prompt(messages)


def _answer(tag: str) -> list[Generation]:
    return [Generation(text=f"answer to {tag}", generation_info={"finish_reason": "stop"})]


def _texts(generations: list[Generation] | None) -> list[str] | None:
    return None if generations is None else [g.text for g in generations]


class SemanticCacheContract(CacheContract):
    """Semantic behaviour on top of the exact-cache contract. Subclass as ``TestXxxSemantic``."""

    CacheFactory = Callable[..., Any]

    def process_source(self, cache: Any) -> str:
        pytest.skip("this store's test module gives no way to open its data from another process")

    # -- the exact-cache contract, adapted: a near-identical prompt is a hit here ------------
    def test_prompt_and_llm_string_both_matter(self, cache: Any) -> None:  # type: ignore[override]
        cache.update("prompt", LLM, sample_generations("x"))
        assert cache.lookup("prompt", LLM.replace('"temperature":0', '"temperature":1')) is None
        assert cache.lookup("prompt", LLM) == sample_generations("x")  # exact: unchanged
        match = cache.lookup_with_score("Prompt ", LLM)  # same text to the embedding
        assert match is not None and not match.exact and match.similarity > 0.99
        assert _texts(match.generations) == _texts(sample_generations("x"))

    # -- semantic hits and misses ---------------------------------------------------------------
    def test_paraphrases_hit_with_their_similarity(self, cache: Any) -> None:
        for question, _ in PARAPHRASES:
            cache.update(question, LLM, _answer(question))
        for question, paraphrase in PARAPHRASES:
            generations = cache.lookup(paraphrase, LLM)
            assert _texts(generations) == [f"answer to {question}"], paraphrase
            info = generations[0].generation_info["llm_cache"]
            assert info["semantic"] is True and cache.threshold <= info["similarity"] < 1.0
            assert info["matched_prompt"] == question
            assert generations[0].generation_info["finish_reason"] == "stop"  # kept
            last = cache.last_match
            assert last is not None and not last.exact and last.matched_text == question
            assert last.similarity == info["similarity"]

    def test_traps_miss(self, cache_factory: CacheFactory) -> None:
        # A low threshold, so that the guards, not the threshold, must reject the traps.
        cache = cache_factory(threshold=0.85)
        for question, _ in TRAPS:
            cache.update(question, LLM, _answer(question))
        for _, trap in TRAPS:
            assert cache.lookup(trap, LLM) is None, trap
        for question, _ in TRAPS:  # and the originals still hit exactly
            assert _texts(cache.lookup(question, LLM)) == [f"answer to {question}"]

    def test_without_guards_a_trap_hits(self, cache_factory: CacheFactory) -> None:
        cache = cache_factory(threshold=0.85, guards=None)
        question, trap = TRAPS[0]
        cache.update(question, LLM, _answer(question))
        match = cache.lookup_with_score(trap, LLM)
        assert match is not None and match.matched_text == question  # what guards are for

    def test_unrelated_prompt_misses(self, cache: Any) -> None:
        cache.update("What is the capital of France?", LLM, _answer("france"))
        assert cache.lookup("How do I bake sourdough bread?", LLM) is None
        assert cache.last_match is None

    def test_lookup_with_score_reports_exact_hits(self, cache: Any) -> None:
        cache.update("What is the capital of France?", LLM, _answer("france"))
        match = cache.lookup_with_score("What is the capital of France?", LLM)
        assert match is not None and match.exact and match.similarity == 1.0
        assert match.generations == _answer("france")  # exact hits are not annotated
        assert cache.lookup_with_score("How do I bake sourdough bread?", LLM) is None

    def test_exact_hit_needs_no_embedding(self, cache_factory: CacheFactory) -> None:
        counting = CountingEmbeddings(shared_embeddings())
        cache = cache_factory(embedding=counting)
        cache.update("What is the capital of France?", LLM, _answer("france"))
        calls, stats = counting.calls, dict(cache.semantic_stats)
        assert cache.lookup("What is the capital of France?", LLM) == _answer("france")
        assert counting.calls == calls
        used = ("embeddings", "embeddings_reused")
        assert [cache.semantic_stats[k] for k in used] == [stats.get(k, 0) for k in used]
        assert cache.lookup("What's the capital city of France?", LLM) is not None
        assert counting.calls == calls + 1

    # -- partitions ----------------------------------------------------------------------------
    def test_other_llm_string_never_matches(self, cache: Any) -> None:
        question, paraphrase = PARAPHRASES[0]
        cache.update(question, LLM, _answer(question))
        other = LLM.replace('"model":"m"', '"model":"other"')
        assert cache.lookup(paraphrase, other) is None
        assert cache.lookup(question, other) is None
        assert cache.lookup(paraphrase, LLM) is not None

    def test_chat_history_partitions_matches(self, cache: Any) -> None:
        question, paraphrase = PARAPHRASES[2]
        cache.update(_chat("Be terse.", question), LLM, _answer("terse"))
        cache.update(_chat("Answer in French.", question), LLM, _answer("french"))
        cache.update(_chat("Be terse.", "Hi", "Hello! How can I help?", question), LLM, _answer("after hi"))
        assert _texts(cache.lookup(_chat("Be terse.", paraphrase), LLM)) == ["answer to terse"]
        assert _texts(cache.lookup(_chat("Answer in French.", paraphrase), LLM)) == ["answer to french"]
        assert _texts(cache.lookup(_chat("Be terse.", "Hi", "Hello! How can I help?", paraphrase), LLM)) == [
            "answer to after hi"
        ]
        assert cache.lookup(_chat("Be verbose.", paraphrase), LLM) is None
        assert cache.lookup(_chat("Be terse.", "Hey", "Hello! How can I help?", paraphrase), LLM) is None
        # Only the last user message is embedded: an earlier turn's words do not count.
        assert cache.lookup(_chat("Be terse.", question, "Paris.", "And of Italy?"), LLM) is None

    def test_completion_and_chat_do_not_mix(self, cache: Any) -> None:
        question, paraphrase = PARAPHRASES[0]
        cache.update(question, LLM, _answer("completion"))
        assert cache.lookup(messages_prompt([{"role": "user", "content": paraphrase}]), LLM) is None
        assert _texts(cache.lookup(paraphrase, LLM)) == ["answer to completion"]

    def test_chat_without_user_message_is_exact_only(self, cache: Any) -> None:
        prompt = messages_prompt([{"role": "system", "content": "Say hello."}])
        cache.update(prompt, LLM, _answer("hello"))
        assert cache.lookup(prompt, LLM) == _answer("hello")
        assert cache.lookup(messages_prompt([{"role": "system", "content": "Say hello!"}]), LLM) is None

    # -- TTL, clear, async -----------------------------------------------------------------------
    def test_semantic_hits_expire_too(self, cache_factory: CacheFactory) -> None:
        cache = cache_factory(ttl=0.5)
        question, paraphrase = PARAPHRASES[1]
        cache.update(question, LLM, _answer(question))
        assert cache.lookup(paraphrase, LLM) is not None
        self.advance(cache, 0.8)
        assert cache.lookup(paraphrase, LLM) is None
        assert cache.lookup(question, LLM) is None

    def test_clear_leaves_other_namespaces_semantic_entries(self, cache_factory: CacheFactory) -> None:
        if not self.shares_namespaces:
            pytest.skip("each cache object of this store has a store of its own")
        question, paraphrase = PARAPHRASES[3]
        mine, theirs = cache_factory(namespace="sem-mine"), cache_factory(namespace="sem-theirs")
        mine.update(question, LLM, _answer("mine"))
        theirs.update(question, LLM, _answer("theirs"))
        assert _texts(theirs.lookup(paraphrase, LLM)) == ["answer to theirs"]
        mine.clear()
        assert mine.lookup(paraphrase, LLM) is None
        assert _texts(theirs.lookup(paraphrase, LLM)) == ["answer to theirs"]
        mine.update(question, LLM, _answer("mine again"))
        assert _texts(mine.lookup(paraphrase, LLM)) == ["answer to mine again"]

    def test_replaced_entry_is_not_found_by_its_old_vector(self, cache: Any) -> None:
        question, paraphrase = PARAPHRASES[0]
        cache.update(question, LLM, _answer("old"))
        assert _texts(cache.lookup(paraphrase, LLM)) == ["answer to old"]
        cache.update(question, LLM, _answer("new"))
        assert _texts(cache.lookup(paraphrase, LLM)) == ["answer to new"]
        assert cache.count() == 1

    def test_async_semantic_lookup(self, cache: Any) -> None:
        question, paraphrase = PARAPHRASES[3]

        async def scenario() -> None:
            await cache.aupdate(question, LLM, _answer(question))
            generations = await cache.alookup(paraphrase, LLM)
            assert _texts(generations) == [f"answer to {question}"]
            match = await cache.alookup_with_score(paraphrase, LLM)
            assert match is not None and not match.exact
            results = await asyncio.gather(*(cache.alookup(paraphrase, LLM) for _ in range(5)))
            assert all(_texts(r) == [f"answer to {question}"] for r in results)
            assert await cache.alookup(TRAPS[0][1], LLM) is None

        asyncio.run(scenario())

    # -- persistence across processes ---------------------------------------------------------------
    def test_persists_across_processes(self, cache: Any) -> None:
        source = self.process_source(cache)
        question, paraphrase = PARAPHRASES[0]
        other_question, other_paraphrase = PARAPHRASES[3]
        cache.update(question, LLM, _answer("parent"))
        child = textwrap.dedent(
            """
            import json, sys
            from llm_cache import Generation
            {source}
            cache = make_cache()
            q, p, oq, llm = json.loads(sys.argv[1])
            hit = cache.lookup(p, llm)
            cache.update(oq, llm, [Generation("answer to child")])
            print(json.dumps([g.text for g in hit] if hit else None))
            cache.close()
            """
        ).format(source=source)
        out = subprocess.run(
            [sys.executable, "-c", child, json.dumps([question, paraphrase, other_question, LLM])],
            capture_output=True, text=True, timeout=300,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1]) == ["answer to parent"]
        # The child's write is visible here, semantically, without reopening.
        assert _texts(cache.lookup(other_paraphrase, LLM)) == ["answer to child"]
        assert _texts(cache.lookup(paraphrase, LLM)) == ["answer to parent"]
