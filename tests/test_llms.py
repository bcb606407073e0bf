"""Models with caches, against the built-in OpenAI-compatible server over real HTTP."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import openai
import pytest

from llm_cache import (
    BaseCache,
    CacheBackendError,
    ConfigurationError,
    Generation,
    InMemoryCache,
    SQLiteCache,
    set_llm_cache,
    use_llm_cache,
)
from llm_cache.llms import ChatOpenAI, OpenAI
from llm_cache.llms.coalesce import COALESCER


def make_llm(server: Any, **kwargs: Any) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, **kwargs)


def make_chat(server: Any, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, **kwargs)


class BrokenCache(BaseCache):
    """A store that is down: every operation raises a connection error."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.down = True
        self.inner = InMemoryCache()

    def _check(self) -> None:
        if self.down:
            raise ConnectionRefusedError("store is down")

    def _lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        self._check()
        return self.inner._lookup(prompt, llm_string)

    def _update(self, prompt: str, llm_string: str, generations: list[Generation]) -> None:
        self._check()
        self.inner._update(prompt, llm_string, generations)

    def _clear(self) -> None:
        self._check()
        self.inner._clear()


def test_miss_then_hit(upstream) -> None:
    set_llm_cache(InMemoryCache())
    llm = make_llm(upstream)
    first = llm("Tell me a joke")
    assert llm("Tell me a joke") == first
    assert upstream.request_count == 1


def test_n_generations_are_stored_and_returned_together(upstream) -> None:
    cache = InMemoryCache()
    llm = make_llm(upstream, n=2, best_of=2, cache=cache)
    first = llm.generate(["Tell me a joke"])
    again = llm.generate(["Tell me a joke"])
    assert len(first.generations[0]) == 2
    assert first.generations[0][0].text != first.generations[0][1].text
    assert again.generations == first.generations
    assert again.cached == [True] and first.cached == [False]
    assert upstream.request_count == 1


def test_batch_with_partial_hits_sends_only_the_misses(upstream) -> None:
    llm = make_llm(upstream, cache=InMemoryCache())
    llm.generate(["a", "b"])
    upstream.reset()
    result = llm.generate(["a", "c", "b", "d", "c"])
    assert result.cached == [True, False, True, False, False]
    assert upstream.request_count == 1
    assert upstream.requests[0]["body"]["prompt"] == ["c", "d"]  # duplicates sent once
    assert result.generations[1] == result.generations[4]
    assert result.llm_output and result.llm_output["token_usage"]["total_tokens"] > 0


def test_cache_false_never_caches(upstream) -> None:
    cache = InMemoryCache()
    set_llm_cache(cache)
    llm = make_llm(upstream, cache=False)
    llm("Tell me a joke")
    llm("Tell me a joke")
    assert upstream.request_count == 2
    assert len(cache) == 0 and cache.stats.misses == 0


def test_cache_true_requires_a_global_cache(upstream) -> None:
    llm = make_llm(upstream, cache=True)
    with pytest.raises(ConfigurationError, match="set_llm_cache"):
        llm("hi")
    set_llm_cache(InMemoryCache())
    llm("hi")
    llm("hi")
    assert upstream.request_count == 1


def test_cache_instance_is_used_directly_and_global_is_ignored(upstream) -> None:
    own, global_cache = InMemoryCache(), InMemoryCache()
    set_llm_cache(global_cache)
    make_llm(upstream, cache=own)("hi")
    assert len(own) == 1 and len(global_cache) == 0


def test_invalid_cache_setting_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="cache must be"):
        OpenAI(api_key="k", cache="sqlite")  # type: ignore[arg-type]


def test_scoped_override_is_local_to_its_context(upstream) -> None:
    global_cache, scoped = InMemoryCache(), InMemoryCache()
    set_llm_cache(global_cache)
    llm = make_llm(upstream)
    seen_in_thread: list[Any] = []
    with use_llm_cache(scoped):
        llm("inside")
        thread = threading.Thread(target=lambda: seen_in_thread.append(llm.resolve_cache()))
        thread.start()
        thread.join()
    llm("outside")
    assert seen_in_thread == [global_cache]  # other threads keep the global cache
    assert len(scoped) == 1 and len(global_cache) == 1


def test_scoped_override_under_asyncio(upstream) -> None:
    first, second = InMemoryCache(), InMemoryCache()
    llm = make_llm(upstream)

    async def task(cache: InMemoryCache, prompt: str) -> None:
        with use_llm_cache(cache):
            await asyncio.sleep(0.01)  # interleave with the other task
            await llm.ainvoke(prompt)

    async def main() -> None:
        await asyncio.gather(task(first, "one"), task(second, "two"))

    asyncio.run(main())
    assert first.lookup("one", llm.llm_string()) and not first.lookup("two", llm.llm_string())
    assert second.lookup("two", llm.llm_string()) and not second.lookup("one", llm.llm_string())


def test_async_paths_end_to_end(upstream) -> None:
    llm = make_llm(upstream, cache=InMemoryCache())
    chat = make_chat(upstream, cache=InMemoryCache())

    async def main() -> None:
        text = await llm.ainvoke("async prompt")
        assert await llm.ainvoke("async prompt") == text
        result = await llm.agenerate(["async prompt", "another"])
        assert result.cached == [True, False]
        reply = await chat.ainvoke("hello")
        assert await chat.ainvoke("hello") == reply

    asyncio.run(main())
    assert upstream.request_count == 3


def test_chat_tool_calls_are_cached_whole(upstream) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    chat = make_chat(upstream, tools=tools, tool_choice="required", cache=InMemoryCache())
    message = chat.invoke_message("weather in Paris?")
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"
    assert chat.invoke_message("weather in Paris?") == message
    assert upstream.request_count == 1


def test_chat_history_is_part_of_the_key(upstream) -> None:
    chat = make_chat(upstream, cache=InMemoryCache())
    chat.invoke([("user", "hi")])
    chat.invoke([("system", "be terse"), ("user", "hi")])
    chat.invoke([{"role": "user", "content": "hi"}])  # same as the first
    assert upstream.request_count == 2


def test_sync_coalescing_makes_one_provider_call(upstream) -> None:
    upstream.latency = 0.3
    llm = make_llm(upstream, cache=InMemoryCache())
    barrier = threading.Barrier(8)
    answers: list[str] = []

    def call() -> None:
        barrier.wait()
        answers.append(llm("same question"))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 8 and len(set(answers)) == 1
    assert upstream.request_count == 1
    assert len(COALESCER) == 0


def test_async_coalescing_makes_one_provider_call(upstream) -> None:
    upstream.latency = 0.3
    llm = make_llm(upstream, cache=InMemoryCache())

    async def main() -> list[str]:
        return await asyncio.gather(*(llm.ainvoke("same async question") for _ in range(20)))

    answers = asyncio.run(main())
    assert len(set(answers)) == 1
    assert upstream.request_count == 1


def test_coalesced_waiters_see_the_provider_error(upstream) -> None:
    upstream.latency = 0.3
    upstream.fail_next(500, count=1)
    llm = make_llm(upstream, cache=InMemoryCache())

    async def main() -> list[Any]:
        return await asyncio.gather(*(llm.ainvoke("will fail") for _ in range(5)), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, openai.InternalServerError) for r in results)
    assert upstream.request_count == 1
    assert len(COALESCER) == 0
    upstream.latency = 0.0
    assert llm("will fail")  # nothing poisoned: the next call goes through


def test_stream_miss_is_stored_and_hit_is_replayed(upstream) -> None:
    cache = InMemoryCache()
    chat = make_chat(upstream, cache=cache)
    streamed = list(chat.stream("stream this please"))
    assert len(streamed) > 1
    replayed = list(chat.stream("stream this please"))
    assert "".join(replayed) == "".join(streamed)
    assert chat.invoke("stream this please") == "".join(streamed)
    assert upstream.request_count == 1

    llm = make_llm(upstream, cache=cache)

    async def main() -> tuple[str, str]:
        first = "".join([piece async for piece in llm.astream("complete this")])
        second = "".join([piece async for piece in llm.astream("complete this")])
        return first, second

    first, second = asyncio.run(main())
    assert first == second and first
    assert upstream.request_count == 2


def test_broken_cache_never_breaks_the_call(upstream, caplog) -> None:
    cache = BrokenCache()
    llm = make_llm(upstream, cache=cache)
    answers = [llm("still answered") for _ in range(5)]
    assert len(set(answers)) == 1 and answers[0]
    assert upstream.request_count == 5
    assert cache.stats.errors == 3  # then the breaker opened and calls skipped the store
    assert cache.stats.skipped >= 2
    assert "continuing without the cache" in caplog.text
    assert "sk-test" not in caplog.text


def test_strict_cache_raises(upstream) -> None:
    llm = make_llm(upstream, cache=BrokenCache(strict=True))
    with pytest.raises(CacheBackendError, match="store is down"):
        llm("strict")
    assert upstream.request_count == 0


def test_breaker_closes_when_the_store_is_back(upstream) -> None:
    cache = BrokenCache(probe_interval=0.05)
    llm = make_llm(upstream, cache=cache)
    for _ in range(3):
        llm("x")
    assert cache.breaker.is_open
    cache.down = False
    for _ in range(200):  # the background probe closes the breaker
        if not cache.breaker.is_open:
            break
        threading.Event().wait(0.05)
    assert not cache.breaker.is_open
    llm("x")
    llm("x")
    assert cache.stats.hits == 1


def test_corrupt_sqlite_entry_is_a_miss_and_is_rewritten(tmp_path, upstream) -> None:
    cache = SQLiteCache(tmp_path / "c.db")
    llm = make_llm(upstream, cache=cache)
    answer = llm("p")
    cache._conn().execute(
        "UPDATE llm_cache SET response = 'garbage' WHERE id = ?", (cache._row_id("p", llm.llm_string()),)
    )
    assert llm("p") == answer
    assert cache.stats.corrupt == 1
    assert llm("p") == answer
    assert upstream.request_count == 2


def test_generate_rejects_a_bare_string(upstream) -> None:
    with pytest.raises(ConfigurationError, match="list of prompts"):
        make_llm(upstream).generate("not a list")  # type: ignore[arg-type]


def test_provider_error_is_not_cached(upstream) -> None:
    cache = InMemoryCache()
    llm = make_llm(upstream, cache=cache)
    upstream.fail_next(400)
    with pytest.raises(openai.BadRequestError):
        llm("bad")
    assert len(cache) == 0
    assert llm("bad")
