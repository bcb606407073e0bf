"""Semantic cache benchmark: hit latency, insert throughput and memory, beside GPTCache, in one run.

    python benchmarks/bench_semantic.py                      # 1k, 10k, 100k entries, both caches
    python benchmarks/bench_semantic.py --million            # + 1M entries, llm-cache only (~15-25 min)
    python benchmarks/bench_semantic.py --sizes 1000 --quick # smoke run
    python benchmarks/bench_semantic.py --filler random      # random unit vectors as filler

Needs the semantic extra and, for the comparison, ``gptcache==0.1.44`` and ``faiss-cpu``
(its similar cache: SQLite + faiss). GPTCache is configured as its ``init_similar_cache``
would be, with two changes for fairness: the same embedding function as ours (our
LocalEmbeddings, all-MiniLM-L6-v2 int8) and ``max_size`` raised above the entry count
(its default of 1,000 silently evicts).

What is measured, per size N:

* **semantic hit latency** (p50, p99): ``lookup(paraphrase)`` for paraphrases of real cached
  questions (traps_dev's should-hit pairs), embedding + search + fetch, each query once
  per round (our per-cache embedding memo is emptied between calls, GPTCache has none), on
  a cache holding the real questions plus N filler entries with small payloads: by
  default the embeddings of real questions (``--filler questions``, see :class:`Filler`),
  or uniform random unit vectors (``--filler random``, HNSW's worst case). Only lookups
  that hit are counted.
* the same without the embedding (``search + fetch``), to show where the time goes;
* **insert throughput**: ``update()`` with embedding (real texts) and bulk store loads;
* **memory per entry** at the largest size: process RSS growth over the index build
  divided by N, and usearch's own accounting.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before onnxruntime is imported: offline
import onnxruntime  # noqa: E402,F401  (loaded before usearch: see stores/local.py)

from _timing import markdown_table  # noqa: E402

from llm_cache import Generation  # noqa: E402
from llm_cache.semantic.cache import SemanticCache  # noqa: E402
from llm_cache.semantic.embeddings import LocalEmbeddings  # noqa: E402
from llm_cache.semantic.partition import split_prompt  # noqa: E402
from llm_cache.semantic.stores.base import SemanticEntry  # noqa: E402

LLM = '{"model":"gpt-4o-mini","provider":"openai","temperature":0}'
DATA = os.environ.get("LLM_CACHE_EVAL_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "eval"))
ANSWER = "A cached answer of a typical length, a sentence or two, as an LLM would give it." * 2


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def db_bytes(directory: str) -> int:
    """SQLite database plus its write-ahead log (recent writes live there until a checkpoint)."""
    return sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory) if f.startswith("semantic.db"))


def probe_pairs(limit: int) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in open(os.path.join(DATA, "traps_dev.jsonl"), encoding="utf-8")]
    pairs = [(r["a"], r["b"]) for r in rows if r["same_answer"]]
    return pairs[:limit]


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


class Filler:
    """Vectors of the N entries around the probes.

    ``random``: uniform random unit vectors, every entry nearly orthogonal to every other;
    the worst case for an HNSW graph, unlike any real cache. ``questions``: the embeddings
    of real questions (the distinct questions of qqp_dev.jsonl, none of them a probe),
    then, past that pool, the normalised sum of three random pool vectors: vectors that
    stay where real question embeddings lie without duplicating any one of them. The pool
    is embedded once and kept in ``cache_dir``.
    """

    def __init__(self, kind: str, embed: LocalEmbeddings, cache_dir: str, probes: list[tuple[str, str]]) -> None:
        self.pool: np.ndarray | None = None
        if kind == "questions":
            self.pool = self._question_pool(embed, cache_dir, {t for pair in probes for t in pair})

    @staticmethod
    def _question_pool(embed: LocalEmbeddings, cache_dir: str, exclude: set[str]) -> np.ndarray:
        texts: dict[str, None] = {}
        with open(os.path.join(DATA, "qqp_dev.jsonl"), encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                for text in (row["a"], row["b"]):
                    if text not in exclude:
                        texts[text] = None
        model = hashlib.sha256(repr(embed).encode()).hexdigest()[:12]  # vectors depend on the model
        path = os.path.join(cache_dir, f"filler-questions-{len(texts)}-{model}.npy")
        if os.path.exists(path):
            return np.load(path)
        progress = Progress(f"embedding {len(texts):,} filler questions (once)")
        chunks = []
        ordered = list(texts)
        for start in range(0, len(ordered), 1000):
            chunks.append(embed.embed_array(ordered[start : start + 1000]))
            progress(start + len(chunks[-1]), len(ordered))
        pool = np.concatenate(chunks)
        os.makedirs(cache_dir, exist_ok=True)
        np.save(path, pool)
        return pool

    def vectors(self, start: int, count: int, seed: int) -> np.ndarray:
        """Rows ``start .. start + count`` of an N-entry filler (the same for both caches)."""
        if self.pool is None:
            return unit_vectors(count, 384, seed + start)
        pool = self.pool
        rng = np.random.default_rng(seed + start)
        out = np.empty((count, pool.shape[1]), dtype=np.float32)
        real = max(0, min(count, len(pool) - start))
        out[:real] = pool[start : start + real]
        picks = rng.integers(0, len(pool), size=(count - real, 3))
        mixed = pool[picks].sum(axis=1)
        out[real:] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
        return out


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


class Progress:
    def __init__(self, label: str) -> None:
        self.label, self.start = label, time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        print(f"\r  {self.label}: {done:,}/{total:,} ({time.monotonic() - self.start:.0f}s)", end="", file=sys.stderr, flush=True)
        if done >= total:
            print(file=sys.stderr)


# ---------------------------------------------------------------------- llm-cache


def fill_ours(cache: SemanticCache, n: int, probes: list[tuple[str, str]], filler: Filler, seed: int) -> dict[str, float]:
    partition = split_prompt("x", LLM).partition
    response = '{"v":1,"g":[{"text":"synthetic"}]}'
    progress = Progress(f"llm-cache: loading {n:,} synthetic entries")
    start = time.perf_counter()
    for offset in range(0, n, 20_000):
        m = min(20_000, n - offset)
        entries = [
            SemanticEntry(f"{offset + i:064x}", partition, f"synthetic {offset + i}", f"synthetic {offset + i}", LLM, response, 0.0)
            for i in range(m)
        ]
        cache.store.add_many(entries, filler.vectors(offset, m, seed))
        progress(offset + m, n)
    bulk = time.perf_counter() - start
    # The first search builds the HNSW index (a process reopening the directory loads its
    # snapshot instead); measured apart as "index build".
    rss_before = rss_bytes()
    start = time.perf_counter()
    cache.store.search(partition, unit_vectors(1, 384, 1)[0], 4)
    build = time.perf_counter() - start
    rss_after = rss_bytes()
    start = time.perf_counter()
    for question, _ in probes:
        cache.update(question, LLM, [Generation(ANSWER)])
    update = (time.perf_counter() - start) / len(probes)
    return {"bulk_per_s": n / bulk if n else 0.0, "index_build_s": build, "update_s": update,
            "index_rss_per_entry": (rss_after - rss_before) / n if n else 0.0,
            "usearch_bytes_per_entry": cache.store.memory_bytes() / n if n else 0.0}


def time_ours(cache: SemanticCache, probes: list[tuple[str, str]], rounds: int) -> tuple[list[float], list[float], list[float], int]:
    with_embedding, search_only, embed_only, hits = [], [], [], 0
    vectors = {p: cache._embed(p) for _, p in probes}
    sk = {p: split_prompt(p, LLM) for _, p in probes}
    for _ in range(rounds):
        for _, paraphrase in probes:
            cache._memo.clear()
            gc.disable()
            start = time.perf_counter()
            result = cache.lookup(paraphrase, LLM)
            elapsed = time.perf_counter() - start
            gc.enable()
            if result is None:
                continue
            hits += 1
            with_embedding.append(elapsed)
            start = time.perf_counter()  # the same lookup without the embedding call
            cache.store.get(sk[paraphrase].key)
            cache._semantic(sk[paraphrase], LLM, cache.store.search(sk[paraphrase].partition, vectors[paraphrase], cache.k))
            search_only.append(time.perf_counter() - start)
            start = time.perf_counter()  # and the embedding alone, for the breakdown
            cache.embedding.embed_array([paraphrase])  # type: ignore[attr-defined]
            embed_only.append(time.perf_counter() - start)
    return with_embedding, search_only, embed_only, hits // rounds


# ---------------------------------------------------------------------- GPTCache


def make_gptcache(directory: str, n: int, embed: LocalEmbeddings, threshold: float) -> tuple[object, object]:
    from gptcache import Cache, Config
    from gptcache.manager import CacheBase, VectorBase, get_data_manager
    from gptcache.processor.pre import get_prompt
    from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation

    def to_vector(data: str, **_: object) -> np.ndarray:
        return embed.embed_array([data])[0]

    manager = get_data_manager(
        CacheBase("sqlite", sql_url=f"sqlite:///{directory}/gptcache.db"),
        VectorBase("faiss", dimension=384, index_path=f"{directory}/faiss.index"),
        max_size=n + 100_000,
    )
    cache = Cache()
    cache.init(
        pre_embedding_func=get_prompt, embedding_func=to_vector, data_manager=manager,
        similarity_evaluation=SearchDistanceEvaluation(), config=Config(similarity_threshold=threshold),
    )
    return cache, manager


def fill_gptcache(cache: object, manager: object, n: int, probes: list[tuple[str, str]], filler: Filler, seed: int) -> dict[str, float]:
    from gptcache.adapter.api import put

    progress = Progress(f"GPTCache: loading {n:,} synthetic entries")
    start = time.perf_counter()
    for offset in range(0, n, 20_000):
        m = min(20_000, n - offset)
        manager.import_data(  # type: ignore[attr-defined]
            [f"synthetic {offset + i}" for i in range(m)], ["synthetic"] * m,
            list(filler.vectors(offset, m, seed)), [None] * m,
        )
        progress(offset + m, n)
    bulk = time.perf_counter() - start
    start = time.perf_counter()
    for question, _ in probes:
        put(question, ANSWER, cache_obj=cache)
    update = (time.perf_counter() - start) / len(probes)
    return {"bulk_per_s": n / bulk if n else 0.0, "update_s": update}


def time_gptcache(cache: object, probes: list[tuple[str, str]], rounds: int) -> tuple[list[float], int]:
    from gptcache.adapter.api import get

    samples, hits = [], 0
    for _ in range(rounds):
        for _, paraphrase in probes:
            gc.disable()
            start = time.perf_counter()
            result = get(paraphrase, cache_obj=cache)
            elapsed = time.perf_counter() - start
            gc.enable()
            if result is not None:
                hits += 1
                samples.append(elapsed)
    return samples, hits // rounds


# ---------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="entry counts for both caches")
    parser.add_argument("--million", action="store_true", help="also 1,000,000 entries for llm-cache")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probes", type=int, default=150)
    parser.add_argument("--quick", action="store_true", help="fewer probes and rounds")
    parser.add_argument("--no-gptcache", action="store_true")
    parser.add_argument("--keep", default=None, help="keep each size's directories under KEEP/<size> (for semantic_index_recall.py)")
    parser.add_argument("--filler", choices=["questions", "random"], default="questions",
                        help="what the N entries are: real question embeddings (default) or random unit vectors (HNSW's worst case)")
    parser.add_argument("--filler-cache", default=os.path.join(tempfile.gettempdir(), "llm-cache-bench-filler"),
                        help="where the embedded filler questions are kept between runs")
    parser.add_argument("--gptcache-threshold", type=float, default=0.8,
                        help="GPTCache similarity_threshold (its default 0.8)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.probes = 1, 40
    sizes = [int(s) for s in args.sizes.split(",") if s]
    probes = probe_pairs(args.probes)
    embed = LocalEmbeddings()
    embed.embed_array(["warm up"])
    filler = Filler(args.filler, embed, args.filler_cache, probes)
    print(f"filler: {args.filler}", file=sys.stderr)
    gptcache_ok = not args.no_gptcache
    if gptcache_ok:
        try:
            import gptcache  # noqa: F401
        except ImportError:
            print("gptcache is not installed: llm-cache only", file=sys.stderr)
            gptcache_ok = False

    latency_rows, insert_rows, memory_rows = [], [], []
    # GPTCache writes its faiss index from an atexit hook; directories it used are removed by
    # a hook registered before any GPTCache exists, so it runs after GPTCache's (LIFO).
    gptcache_dirs: list[str] = []
    atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in gptcache_dirs])
    plan = [(n, gptcache_ok) for n in sizes] + ([(1_000_000, False)] if args.million else [])
    for n, with_gptcache in plan:
        print(f"== {n:,} entries", file=sys.stderr)
        directory = os.path.join(args.keep, str(n)) if args.keep else tempfile.mkdtemp(prefix="llm-cache-bench-semantic-")
        os.makedirs(directory, exist_ok=True)
        ours = SemanticCache(embed, data_dir=os.path.join(directory, "ours"))
        fill = fill_ours(ours, n, probes, filler, seed=n)
        ours_lat, ours_search, ours_embed, ours_hits = time_ours(ours, probes, args.rounds)
        row = [f"{n:,}", "llm-cache SemanticCache (usearch i8)", ms(pct(ours_lat, 0.5)), ms(pct(ours_lat, 0.99)),
               ms(pct(ours_search, 0.5)), ms(pct(ours_search, 0.99)), ms(pct(ours_embed, 0.5)), f"{ours_hits}/{len(probes)}"]
        latency_rows.append(row)
        insert_rows.append([f"{n:,}", "llm-cache", f"{fill['bulk_per_s']:,.0f}/s", ms(fill["update_s"]), f"{fill['index_build_s']:.1f} s"])
        memory_rows.append([f"{n:,}", f"{fill['index_rss_per_entry']:.0f} B", f"{fill['usearch_bytes_per_entry']:.0f} B",
                            f"{db_bytes(os.path.join(directory, 'ours')) / max(n, 1):.0f} B"])
        ours.close()
        if with_gptcache:
            cache, manager = make_gptcache(directory, n, embed, args.gptcache_threshold)
            gfill = fill_gptcache(cache, manager, n, probes, filler, seed=n)
            g_lat, g_hits = time_gptcache(cache, probes, args.rounds)
            latency_rows.append([f"{n:,}", "GPTCache 0.1.44 similar cache (sqlite + faiss)",
                                 ms(pct(g_lat, 0.5)) if g_lat else "-", ms(pct(g_lat, 0.99)) if g_lat else "-",
                                 "-", "-", "(same model)", f"{g_hits}/{len(probes)}"])
            insert_rows.append([f"{n:,}", "GPTCache", f"{gfill['bulk_per_s']:,.0f}/s", ms(gfill["update_s"]), "-"])
            if g_lat and ours_lat:
                latency_rows.append([f"{n:,}", "ratio (GPTCache / llm-cache, p50)",
                                     f"{statistics.median(g_lat) / statistics.median(ours_lat):.1f}x", "", "", "", "", ""])
        print(markdown_table(["entries", "cache", "hit p50", "hit p99", "search+fetch p50", "search+fetch p99", "embedding p50", "hits"], latency_rows[-3:]), file=sys.stderr)
        if args.keep:
            pass
        elif with_gptcache:
            shutil.rmtree(os.path.join(directory, "ours"), ignore_errors=True)
            gptcache_dirs.append(directory)
        else:
            shutil.rmtree(directory, ignore_errors=True)

    print(f"\n## Semantic hit latency (embedding + search + fetch; filler: {args.filler})\n")
    print(markdown_table(["entries", "cache", "hit p50", "hit p99", "without embedding p50", "without embedding p99", "embedding alone p50", "hits / probes"], latency_rows))
    print("\n## Inserts\n")
    print(markdown_table(["entries", "cache", "bulk load (precomputed vectors)", "update() with embedding", "index build"], insert_rows))
    print("\n## Memory (llm-cache local store)\n")
    print(markdown_table(["entries", "process RSS growth per entry (index build)", "usearch index per entry", "SQLite file per entry (disk)"], memory_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
