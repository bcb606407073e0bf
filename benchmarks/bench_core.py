"""Foundation benchmark: cache lookups and cached model calls, beside LangChain's, in one run.

    python benchmarks/bench_core.py            # ~2 minutes on 2 cores
    python benchmarks/bench_core.py --quick    # smaller sizes, for a smoke run

(a) ``lookup(prompt, llm_string)`` hit p50 for InMemoryCache and SQLiteCache at 1,000 and
100,000 entries, beside langchain-core's InMemoryCache and langchain-community's
SQLiteCache, with the floors (a bare dict get; a raw sqlite3 point SELECT); SQLite update
cost for both. (b) a model call answered from the cache: ``llm(prompt)`` beside
langchain-openai's ``OpenAI.invoke`` (and chat beside ``ChatOpenAI``), sync and async,
against the same local OpenAI-compatible server.

Figures are medians of repeated blocks; every row of one table comes from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(__file__))

from _timing import fmt_us, markdown_table, median, per_call_seconds, per_call_seconds_async  # noqa: E402

from llm_cache import Generation, InMemoryCache, SQLiteCache  # noqa: E402

warnings.filterwarnings("ignore")
LLM_STRING = '{"model":"gpt-3.5-turbo-instruct","provider":"openai","temperature":0.7}'
ANSWER = "Why did the chicken cross the road? To get to the other side." * 2


def prompt_of(i: int) -> str:
    return f"Question number {i}: tell me something interesting about the number {i * 7919 % 100_003}."


def bench_lookups(sizes: list[int], calls: int) -> list[list[str]]:
    from langchain_community.cache import SQLiteCache as LCSQLiteCache
    from langchain_core.caches import InMemoryCache as LCInMemoryCache
    from langchain_core.outputs import Generation as LCGeneration

    rows = []
    tmp = tempfile.mkdtemp(prefix="llm-cache-bench-")
    for size in sizes:
        probe = prompt_of(size // 2)
        ours_mem, ours_sql = InMemoryCache(), SQLiteCache(os.path.join(tmp, f"ours-{size}.db"))
        lc_mem = LCInMemoryCache()
        lc_sql = LCSQLiteCache(database_path=os.path.join(tmp, f"lc-{size}.db"))
        floor_dict: dict[tuple[str, str], object] = {}
        ours_gen, lc_gen = [Generation(ANSWER)], [LCGeneration(text=ANSWER)]
        for i in range(size):
            p = prompt_of(i)
            ours_mem.update(p, LLM_STRING, ours_gen)
            lc_mem.update(p, LLM_STRING, lc_gen)
            floor_dict[(p, LLM_STRING)] = ours_gen
        _fill_sqlite(ours_sql, size, ours_gen)
        _fill_langchain_sqlite(lc_sql, size, lc_gen)
        raw = sqlite3.connect(os.path.join(tmp, f"ours-{size}.db"))
        row_id = ours_sql._row_id(probe, LLM_STRING)
        select = "SELECT response FROM llm_cache WHERE id = ?"
        assert ours_sql.lookup(probe, LLM_STRING) and lc_sql.lookup(probe, LLM_STRING)

        results = {
            "dict get (floor)": per_call_seconds(lambda: floor_dict.get((probe, LLM_STRING)), calls),
            "llm-cache InMemoryCache": per_call_seconds(lambda: ours_mem.lookup(probe, LLM_STRING), calls),
            "LangChain InMemoryCache": per_call_seconds(lambda: lc_mem.lookup(probe, LLM_STRING), calls),
            "sqlite3 point SELECT (floor)": per_call_seconds(
                lambda: raw.execute(select, (row_id,)).fetchone(), calls
            ),
            "llm-cache SQLiteCache": per_call_seconds(lambda: ours_sql.lookup(probe, LLM_STRING), calls),
            "LangChain SQLiteCache": per_call_seconds(lambda: lc_sql.lookup(probe, LLM_STRING), max(calls // 20, 50)),
        }
        counter = iter(range(10**9))
        results["llm-cache SQLiteCache update"] = per_call_seconds(
            lambda: ours_sql.update(f"new {next(counter)}", LLM_STRING, ours_gen), 200, repeats=7
        )
        results["LangChain SQLiteCache update"] = per_call_seconds(
            lambda: lc_sql.update(f"new {next(counter)}", LLM_STRING, lc_gen), 50, repeats=7
        )
        for name, samples in results.items():
            rows.append([f"{size:,}", name, fmt_us(median(samples))])
        ours_sql.close()
    return rows


def _fill_sqlite(cache: SQLiteCache, size: int, generations: list[Generation]) -> None:
    # One transaction instead of `size` autocommits: the benchmark measures lookups, not filling.
    conn = cache._conn()
    conn.execute("BEGIN")
    for i in range(size):
        cache._update(prompt_of(i), LLM_STRING, generations)
    conn.execute("COMMIT")


def _fill_langchain_sqlite(cache: object, size: int, generations: list) -> None:
    # LangChain's update takes ~2 ms each (a session and a commit per call); insert its rows
    # in bulk with its own serialisation so 100k entries take seconds, not minutes.
    from langchain_core.load import dumps

    cache.update(prompt_of(0), LLM_STRING, generations)  # type: ignore[attr-defined]
    response = dumps(generations[0])
    engine = cache.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO full_llm_cache (prompt, llm, idx, response) VALUES (?, ?, ?, ?)",
            [(prompt_of(i), LLM_STRING, 0, response) for i in range(1, size)],
        )


def bench_model_calls(calls: int) -> list[list[str]]:
    from langchain_community.cache import SQLiteCache as LCSQLiteCache
    from langchain_core.caches import InMemoryCache as LCInMemoryCache
    from langchain_core.globals import set_llm_cache as lc_set_llm_cache
    from langchain_openai import ChatOpenAI as LCChatOpenAI
    from langchain_openai import OpenAI as LCOpenAI

    from llm_cache import set_llm_cache
    from llm_cache.llms import ChatOpenAI, OpenAI
    from llm_cache.testing.fake_openai import FakeOpenAIServer

    rows = []
    tmp = tempfile.mkdtemp(prefix="llm-cache-bench-")
    with FakeOpenAIServer() as server:
        common = {"base_url": server.base_url, "api_key": "sk-bench"}
        ours_llm = OpenAI(model_name="gpt-3.5-turbo-instruct", **common)
        ours_chat = ChatOpenAI(model="gpt-4o-mini", **common)
        lc_llm = LCOpenAI(model="gpt-3.5-turbo-instruct", **common)
        lc_chat = LCChatOpenAI(model="gpt-4o-mini", **common)
        prompt = "Tell me a joke"
        for label, ours_cache, lc_cache in [
            ("in-memory", InMemoryCache(), LCInMemoryCache()),
            ("SQLite", SQLiteCache(os.path.join(tmp, "ours.db")), LCSQLiteCache(os.path.join(tmp, "lc.db"))),
        ]:
            set_llm_cache(ours_cache)
            lc_set_llm_cache(lc_cache)
            ours_llm(prompt), ours_chat.invoke(prompt), lc_llm.invoke(prompt), lc_chat.invoke(prompt)
            before = server.request_count
            pairs = [
                ("completion, sync", lambda: ours_llm(prompt), lambda: lc_llm.invoke(prompt), False),
                ("chat, sync", lambda: ours_chat.invoke(prompt), lambda: lc_chat.invoke(prompt), False),
                ("completion, async", lambda: ours_llm.ainvoke(prompt), lambda: lc_llm.ainvoke(prompt), True),
                ("chat, async", lambda: ours_chat.ainvoke(prompt), lambda: lc_chat.ainvoke(prompt), True),
            ]
            for name, ours, theirs, is_async in pairs:
                timer = per_call_seconds_async if is_async else per_call_seconds
                ours_t = median(timer(ours, calls))
                theirs_t = median(timer(theirs, max(calls // 10, 50)))
                rows.append([label, name, fmt_us(ours_t), fmt_us(theirs_t), f"{theirs_t / ours_t:.1f}×"])
            assert server.request_count == before, "a timed call reached the provider: not a hit"
            set_llm_cache(None)
            lc_set_llm_cache(None)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 entries, fewer calls")
    args = parser.parse_args()
    sizes = [1_000, 10_000] if args.quick else [1_000, 100_000]
    calls = 500 if args.quick else 2_000

    print(f"# llm-cache foundation benchmark (python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version})\n")
    print("## (a) cache lookup on a hit, p50 per call\n")
    print(markdown_table(["entries", "what", "p50"], bench_lookups(sizes, calls)))
    print("\n## (b) a model call answered from the cache, p50 per call\n")
    print(markdown_table(["cache", "call", "llm-cache", "LangChain", "LangChain / llm-cache"], bench_model_calls(calls)))


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
