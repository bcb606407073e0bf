"""Summarize chains over cached models, against the built-in OpenAI-compatible server.

Provider calls are counted on the server. A completions model (``OpenAI``) sends the
misses of one ``generate`` call as ONE batched ``/v1/completions`` request, so for it the
tests count prompts sent (the length of each request's ``prompt`` list) as well as
requests; a chat model (``ChatOpenAI``) sends one request per prompt.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from llm_cache import ConfigurationError, InMemoryCache, ProviderError, set_llm_cache
from llm_cache.chains import (
    CharacterTextSplitter,
    Document,
    PromptTemplate,
    StepReport,
    approximate_tokens,
    load_summarize_chain,
)
from llm_cache.chains.prompts import DEFAULT_SUMMARY_TEMPLATE
from llm_cache.demo_summary import run_summary_demo, state_of_the_union
from llm_cache.llms import ChatOpenAI, OpenAI


def make_llm(server: Any, **kwargs: Any) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, **kwargs)


def make_chat(server: Any, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, **kwargs)


def prompts_sent(server: Any) -> list[str]:
    """Every prompt the server received, in order (a batched request counts each prompt)."""
    sent: list[str] = []
    for request in server.requests:
        body = request["body"]
        if request["path"] == "/v1/completions":
            prompt = body["prompt"]
            sent.extend(prompt if isinstance(prompt, list) else [prompt])
        else:
            sent.append(body["messages"][-1]["content"])
    return sent


def map_prompt(text: str) -> str:
    return DEFAULT_SUMMARY_TEMPLATE.format(text=text)


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    """The notebook's input: the first three chunks of the State of the Union."""
    return [
        Document(t, {"chunk": i})
        for i, t in enumerate(CharacterTextSplitter().split_text(state_of_the_union())[:3])
    ]


def kinds(steps: list[StepReport]) -> list[tuple[str, bool]]:
    return [(s.kind, s.cached) for s in steps]


# -- the notebook's scenario: cached map, uncached reduce -----------------------------------------


def test_completions_model_first_run_three_maps_and_a_reduce_second_run_only_the_reduce(
    upstream, docs
) -> None:
    set_llm_cache(InMemoryCache())
    chain = load_summarize_chain(
        make_llm(upstream), chain_type="map_reduce", reduce_llm=make_llm(upstream, cache=False)
    )

    first = chain.invoke({"input_documents": docs})
    sent = prompts_sent(upstream)
    assert sent[:3] == [map_prompt(d.page_content) for d in docs]
    assert len(sent) == 4  # 3 map prompts + 1 reduce prompt ...
    assert upstream.request_count == 2  # ... in two requests: the map batch, then the reduce
    assert len(upstream.requests[0]["body"]["prompt"]) == 3
    assert sent[3] == map_prompt("\n\n".join(first["intermediate_steps"]))
    assert kinds(first["steps"]) == [("map", False)] * 3 + [("reduce", False)]

    upstream.reset()
    second = chain.invoke({"input_documents": docs})
    assert upstream.request_count == 1
    assert prompts_sent(upstream) == [sent[3]]  # only the reduce prompt went out again
    assert kinds(second["steps"]) == [("map", True)] * 3 + [("reduce", False)]
    assert second["intermediate_steps"] == first["intermediate_steps"]


def test_chat_model_first_run_four_requests_second_run_one(upstream, docs) -> None:
    set_llm_cache(InMemoryCache())
    chain = load_summarize_chain(make_chat(upstream), reduce_llm=make_chat(upstream, cache=False))
    first = chain.run(docs)
    assert upstream.request_count == 4
    assert prompts_sent(upstream)[:3] == [map_prompt(d.page_content) for d in docs]
    upstream.reset()
    second = chain.run(docs)
    assert upstream.request_count == 1
    assert upstream.requests[0]["path"] == "/v1/chat/completions"
    assert second == first  # the built-in server is deterministic; a real model may differ


def test_map_outputs_are_the_models_answers_in_document_order(upstream, docs) -> None:
    llm = make_llm(upstream, cache=False)
    result = load_summarize_chain(llm).invoke(docs)
    expected = [llm.invoke(map_prompt(d.page_content)) for d in docs]
    assert result["intermediate_steps"] == expected
    assert [s.output for s in result["steps"][:3]] == expected
    assert [s.index for s in result["steps"]] == [0, 1, 2, 0]
    assert result["output_text"] == result["steps"][-1].output
    assert result["input_documents"] == docs
    assert all(s.seconds >= 0 for s in result["steps"])


def test_reduce_llm_with_cache_false_bypasses_the_global_cache(upstream, docs) -> None:
    cache = InMemoryCache()
    set_llm_cache(cache)
    llm, reduce_llm = make_llm(upstream), make_llm(upstream, cache=False)
    result = load_summarize_chain(llm, reduce_llm=reduce_llm).invoke(docs)
    reduce_prompt = map_prompt("\n\n".join(result["intermediate_steps"]))
    assert len(cache) == 3  # the three map entries, nothing else
    for doc in docs:
        assert cache.lookup(map_prompt(doc.page_content), llm.llm_string()) is not None
    assert cache.lookup(reduce_prompt, reduce_llm.llm_string()) is None
    assert cache.lookup(reduce_prompt, llm.llm_string()) is None
    assert cache.stats.updates == 3


def test_without_reduce_llm_the_reduce_step_is_cached_too(upstream, docs) -> None:
    set_llm_cache(InMemoryCache())
    chain = load_summarize_chain(make_llm(upstream))
    chain.run(docs)
    upstream.reset()
    result = chain.invoke(docs)
    assert upstream.request_count == 0
    assert kinds(result["steps"]) == [("map", True)] * 3 + [("reduce", True)]


def test_partial_hits_send_only_the_missing_map_prompts(upstream, docs) -> None:
    set_llm_cache(InMemoryCache())
    chain = load_summarize_chain(make_llm(upstream), reduce_llm=make_llm(upstream, cache=False))
    chain.run(docs[:2])
    upstream.reset()
    result = chain.invoke(docs)
    # The one missing map prompt, alone (a string: one-prompt servers refuse even a list of one).
    assert upstream.requests[0]["body"]["prompt"] == map_prompt(docs[2].page_content)
    assert [s.cached for s in result["steps"] if s.kind == "map"] == [True, True, False]


# -- async ----------------------------------------------------------------------------------------


async def test_async_completions_same_calls_as_sync(upstream, docs) -> None:
    set_llm_cache(InMemoryCache())
    chain = load_summarize_chain(make_llm(upstream), reduce_llm=make_llm(upstream, cache=False))
    first = await chain.ainvoke({"input_documents": docs})
    assert upstream.request_count == 2 and len(prompts_sent(upstream)) == 4
    upstream.reset()
    second = await chain.ainvoke(docs)
    assert upstream.request_count == 1
    assert kinds(second["steps"]) == [("map", True)] * 3 + [("reduce", False)]
    assert second["intermediate_steps"] == first["intermediate_steps"]
    # The sync path gives the same answer for the same documents.
    assert chain.run(docs) == first["output_text"] == await chain.arun(docs)


async def test_async_chat_map_requests_are_in_flight_together(upstream, docs) -> None:
    set_llm_cache(InMemoryCache())
    upstream.latency = 0.05  # so that overlapping requests really overlap at the server
    llm = make_chat(upstream)
    create = llm.async_client.chat.completions.create
    in_flight, peak = 0, 0

    async def counting_create(**kwargs: Any) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await create(**kwargs)
        finally:
            in_flight -= 1

    llm.async_client.chat.completions.create = counting_create
    chain = load_summarize_chain(llm, reduce_llm=make_chat(upstream, cache=False))
    await chain.ainvoke(docs)
    assert peak == 3  # the three map requests, concurrently
    assert upstream.request_count == 4
    upstream.reset()
    await chain.ainvoke(docs)
    assert upstream.request_count == 1


async def test_async_chains_run_concurrently_and_share_the_cache(upstream, docs) -> None:
    set_llm_cache(InMemoryCache())
    chain = load_summarize_chain(make_chat(upstream), reduce_llm=make_chat(upstream, cache=False))
    results = await asyncio.gather(*(chain.ainvoke(docs) for _ in range(3)))
    assert len({r["output_text"] for r in results}) == 1
    # Coalescing in the model: concurrent identical map prompts go out once.
    assert upstream.request_count == 3 + 3


# -- collapse -------------------------------------------------------------------------------------

WORDS = lambda text: len(text.split())  # noqa: E731  a token counter the test controls
TEMPLATE_WORDS = WORDS(
    DEFAULT_SUMMARY_TEMPLATE.replace("{text}", "")
)  # 9: the prompt around {text}


def short_docs(count: int) -> list[Document]:
    return [Document(f"Paragraph {i} says something. It says more.") for i in range(count)]


def test_collapse_runs_recursively_until_the_reduce_prompt_fits(upstream) -> None:
    # Every answer is cut to 8 words (max_tokens counts words on the built-in server), so a
    # prompt over n summaries has TEMPLATE_WORDS + 8n words: two fit in token_max, three not.
    set_llm_cache(InMemoryCache())
    llm = make_llm(upstream, max_tokens=8)
    token_max = TEMPLATE_WORDS + 2 * 8
    chain = load_summarize_chain(
        llm,
        reduce_llm=make_llm(upstream, max_tokens=8, cache=False),
        token_max=token_max,
        token_counter=WORDS,
    )
    result = chain.invoke(short_docs(5))
    steps = result["steps"]
    # Round 1: 5 summaries -> groups [1,2] [3,4] [5]; round 2: 3 -> [1,2] [3]; then 2 fit.
    assert [(s.kind, s.round) for s in steps] == (
        [("map", 0)] * 5 + [("collapse", 1)] * 3 + [("collapse", 2)] * 2 + [("reduce", 0)]
    )
    assert len(prompts_sent(upstream)) == 5 + 3 + 2 + 1
    assert upstream.request_count == 4  # one batch per step
    collapse_round_1 = [b["body"]["prompt"] for b in upstream.requests][1]
    summaries = result["intermediate_steps"]
    assert collapse_round_1 == [
        map_prompt("\n\n".join(summaries[0:2])),
        map_prompt("\n\n".join(summaries[2:4])),
        map_prompt(summaries[4]),
    ]
    assert all(WORDS(p) <= token_max for p in prompts_sent(upstream)[5:])

    # Collapsing is part of the reduce: with reduce_llm cache=False it is recomputed too.
    upstream.reset()
    again = chain.invoke(short_docs(5))
    assert [s.cached for s in again["steps"]] == [True] * 5 + [False] * 6
    assert len(prompts_sent(upstream)) == 6


def test_collapse_llm_can_be_the_cached_model(upstream) -> None:
    set_llm_cache(InMemoryCache())
    llm = make_llm(upstream, max_tokens=8)
    chain = load_summarize_chain(
        llm,
        reduce_llm=make_llm(upstream, max_tokens=8, cache=False),
        collapse_llm=llm,
        token_max=TEMPLATE_WORDS + 16,
        token_counter=WORDS,
    )
    chain.run(short_docs(3))
    upstream.reset()
    result = chain.invoke(short_docs(3))
    assert len(prompts_sent(upstream)) == 1  # maps and collapses hit; the reduce is asked again
    assert [(s.kind, s.cached) for s in result["steps"]][-1] == ("reduce", False)


def test_collapse_prompt_is_used_for_collapse_steps(upstream) -> None:
    chain = load_summarize_chain(
        make_llm(upstream, max_tokens=8, cache=False),
        collapse_prompt="Summarize these summaries:\n{text}",
        token_max=TEMPLATE_WORDS + 16,
        token_counter=WORDS,
    )
    chain.run(short_docs(3))
    collapse_prompts = upstream.requests[1]["body"]["prompt"]
    assert all(p.startswith("Summarize these summaries:\n") for p in collapse_prompts)
    assert upstream.requests[2]["body"]["prompt"].startswith("Write a concise summary")


def test_no_collapse_when_the_summaries_fit(upstream, docs) -> None:
    result = load_summarize_chain(make_llm(upstream, cache=False)).invoke(docs)
    assert [s.kind for s in result["steps"]] == ["map"] * 3 + ["reduce"]
    reduce_prompt = prompts_sent(upstream)[-1]
    assert approximate_tokens(reduce_prompt) <= 3000


def test_a_summary_longer_than_token_max_is_an_error(upstream) -> None:
    chain = load_summarize_chain(
        make_llm(upstream, max_tokens=8, cache=False),
        token_max=TEMPLATE_WORDS + 4,
        token_counter=WORDS,
    )
    with pytest.raises(ConfigurationError, match="raise token_max"):
        chain.run(short_docs(2))


def test_collapse_gives_up_when_summaries_do_not_shrink(upstream) -> None:
    # The reduce prompt never fits (the counter says so), while every collapse prompt does.
    counter = lambda text: 10_000 if text.startswith("Write a concise") else 1  # noqa: E731
    chain = load_summarize_chain(
        make_llm(upstream, cache=False),
        collapse_prompt="Summarize: {text}",
        token_counter=counter,
        collapse_max_rounds=2,
    )
    with pytest.raises(ProviderError, match="after 2 collapse rounds"):
        chain.run(short_docs(3))
    assert len(prompts_sent(upstream)) == 3 + 1 + 1  # maps, then one collapse per round


def test_approximate_tokens() -> None:
    assert approximate_tokens("") == 0
    assert approximate_tokens("abcd") == 1
    assert approximate_tokens("abcde") == 2


# -- stuff ----------------------------------------------------------------------------------------


def test_stuff_sends_every_document_in_one_prompt(upstream, docs) -> None:
    set_llm_cache(InMemoryCache())
    chain = load_summarize_chain(make_llm(upstream), chain_type="stuff")
    first = chain.invoke(docs)
    assert prompts_sent(upstream) == [map_prompt("\n\n".join(d.page_content for d in docs))]
    assert kinds(first["steps"]) == [("stuff", False)]
    assert first["intermediate_steps"] == []
    upstream.reset()
    assert chain.run(docs) == first["output_text"]
    assert upstream.request_count == 0  # answered by the cache


def test_stuff_with_a_custom_prompt(upstream, docs) -> None:
    chain = load_summarize_chain(
        make_chat(upstream, cache=False), "stuff", prompt="Summarize in one line:\n{text}"
    )
    chain.run(docs[:1])
    assert prompts_sent(upstream) == ["Summarize in one line:\n" + docs[0].page_content]


async def test_stuff_async(upstream, docs) -> None:
    chain = load_summarize_chain(make_chat(upstream, cache=False), chain_type="stuff")
    assert await chain.arun(docs) == chain.run(docs)
    assert upstream.request_count == 2


# -- prompt templates -----------------------------------------------------------------------------


def test_custom_map_and_combine_templates(upstream, docs) -> None:
    map_template = PromptTemplate(
        "Summarize this part of a speech:\n{text}", input_variables=["text"]
    )
    chain = load_summarize_chain(
        make_llm(upstream, cache=False),
        map_prompt=map_template,
        combine_prompt="Summarize these summaries of a speech:\n{text}\nSUMMARY:",
    )
    result = chain.invoke(docs)
    sent = prompts_sent(upstream)
    assert sent[:3] == [f"Summarize this part of a speech:\n{d.page_content}" for d in docs]
    assert (
        sent[3]
        == "Summarize these summaries of a speech:\n"
        + "\n\n".join(result["intermediate_steps"])
        + "\nSUMMARY:"
    )


def test_partial_templates_bind_other_fields(upstream, docs) -> None:
    template = PromptTemplate.from_template("Summarize in {language}:\n{text}").partial(
        language="French"
    )
    load_summarize_chain(make_llm(upstream, cache=False), map_prompt=template).run(docs[:1])
    assert prompts_sent(upstream)[0] == "Summarize in French:\n" + docs[0].page_content


def test_literal_braces_in_templates() -> None:
    assert (
        PromptTemplate('JSON {{"summary": ...}} of: {text}').format(text="x")
        == 'JSON {"summary": ...} of: x'
    )


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("Summarize this.", r"exactly one unfilled field, \{text\}"),
        ("Summarize {document}", r"exactly one unfilled field"),
        ("Summarize {text} in {language}", r"bind the others with \.partial\(\)"),
        ("Summarize {} please", "positional field"),
        ("Summarize {text.upper} please", "plain name"),
        ("Summarize {text", "not a valid format string"),
    ],
)
def test_bad_templates_are_rejected_when_the_chain_is_built(
    upstream, template: str, match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        load_summarize_chain(make_llm(upstream), map_prompt=template)


def test_template_variables_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="do not match"):
        PromptTemplate("Summarize {text}", input_variables=["text", "language"])
    with pytest.raises(ConfigurationError, match="missing"):
        PromptTemplate("Summarize {text}").format()
    with pytest.raises(ConfigurationError, match="unexpected"):
        PromptTemplate("Summarize {text}").format(text="a", other="b")


# -- configuration and input errors ---------------------------------------------------------------


def test_unknown_chain_type_lists_the_valid_ones(upstream) -> None:
    with pytest.raises(ConfigurationError, match="'map_reduce', 'stuff'"):
        load_summarize_chain(make_llm(upstream), chain_type="refine")


@pytest.mark.parametrize(
    ("chain_type", "kwargs", "match"),
    [
        ("stuff", {"map_prompt": "S {text}"}, "only apply to chain_type='map_reduce'"),
        ("stuff", {"reduce_llm": "R"}, "reduce_llm only apply"),
        ("map_reduce", {"prompt": "S {text}"}, "prompt= is for chain_type='stuff'"),
        ("map_reduce", {"token_max": 0}, "token_max must be a positive int"),
        ("map_reduce", {"collapse_max_rounds": 0}, "collapse_max_rounds"),
        ("map_reduce", {"reduce_llm": "not a model"}, "reduce_llm must be an llm_cache model"),
        ("map_reduce", {"map_prompt": 3}, "map_prompt must be a PromptTemplate"),
    ],
)
def test_options_are_checked(upstream, chain_type: str, kwargs: dict, match: str) -> None:
    if kwargs.get("reduce_llm") == "R":
        kwargs = {"reduce_llm": make_llm(upstream)}
    with pytest.raises(ConfigurationError, match=match):
        load_summarize_chain(make_llm(upstream), chain_type, **kwargs)


def test_llm_must_be_a_model() -> None:
    with pytest.raises(ConfigurationError, match="llm must be an llm_cache model"):
        load_summarize_chain("gpt-3.5-turbo-instruct")


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ([], "no documents"),
        ({"docs": []}, "'input_documents' key"),
        ("some text", "list of Document"),
        (Document("x"), "list of Document"),
        (["some text"], "Document objects, not str"),
    ],
)
def test_bad_chain_input(upstream, value: Any, match: str) -> None:
    chain = load_summarize_chain(make_llm(upstream))
    with pytest.raises(ConfigurationError, match=match):
        chain.invoke(value)
    assert upstream.request_count == 0


def test_verbose_prints_each_step(upstream, docs, capsys) -> None:
    set_llm_cache(InMemoryCache())
    chain = load_summarize_chain(
        make_llm(upstream), reduce_llm=make_llm(upstream, cache=False), verbose=True
    )
    chain.run(docs)
    chain.run(docs)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("[map_reduce] map 1/3: computed")
    assert err[4].startswith("[map_reduce] map 1/3: cache hit")
    assert err[7].startswith("[map_reduce] reduce 1/1: computed")


def test_provider_failure_propagates_and_nothing_is_cached(upstream, docs) -> None:
    cache = InMemoryCache()
    set_llm_cache(cache)
    # The map batch's request, then the one-prompt request a refused batch falls back to.
    upstream.fail_next(500, count=2)
    chain = load_summarize_chain(make_llm(upstream), reduce_llm=make_llm(upstream, cache=False))
    with pytest.raises(Exception) as info:
        chain.run(docs)
    assert "500" in str(info.value) or "injected" in str(info.value)
    assert len(cache) == 0


# -- the demo section -----------------------------------------------------------------------------


def test_summary_demo_section(upstream, tmp_path) -> None:
    out = io.StringIO()
    previous = InMemoryCache()
    set_llm_cache(previous)
    results = run_summary_demo(
        upstream.base_url, "sk-test", "gpt-3.5-turbo-instruct", str(tmp_path / "demo.db"), out
    )
    text = out.getvalue()
    assert "== Map-reduce summary of the State of the Union (3 chunks), run twice ==" in text
    lines = text.splitlines()
    run1 = lines[next(i for i, line in enumerate(lines) if line.startswith("  run 1 ")) + 1]
    run2 = lines[next(i for i, line in enumerate(lines) if line.startswith("  run 2 ")) + 1]
    assert run1.split() == "map: 3 misses (one call,".split() + run1.split()[5:]
    assert "; reduce: sent to the provider (" in run1
    assert run2.split()[:5] == "map: 3 hits (one call,".split()
    assert "; reduce: sent to the provider (" in run2
    assert "3 of 3 map steps came from the cache" in text
    assert len(prompts_sent(upstream)) == 3 + 1 + 1
    assert kinds(results[1]["steps"]) == [("map", True)] * 3 + [("reduce", False)]
    from llm_cache import get_llm_cache

    assert get_llm_cache() is previous  # restored
    assert len(previous) == 0

    # A second demo run starts from a cleared namespace, so its first run misses again.
    upstream.reset()
    run_summary_demo(
        upstream.base_url,
        "sk-test",
        "gpt-3.5-turbo-instruct",
        str(tmp_path / "demo.db"),
        io.StringIO(),
    )
    assert len(prompts_sent(upstream)) == 5
    assert json.dumps(upstream.requests[0]["body"]["prompt"]).count("CONCISE SUMMARY") == 3
