"""Error-bounded semantic caching: SemanticCache(max_error_rate=...), judges, feedback, learned state."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest

np = pytest.importorskip("numpy")

from llm_cache import Generation  # noqa: E402
from llm_cache.errors import ConfigurationError  # noqa: E402
from llm_cache.semantic import bounded  # noqa: E402
from llm_cache.semantic.bounded import BoundPolicy, Context, EntryRecord  # noqa: E402
from llm_cache.semantic.cache import SemanticCache  # noqa: E402
from llm_cache.embeddings import ArrayEmbeddings  # noqa: E402
from llm_cache.semantic.judges import (  # noqa: E402
    CallableJudge,
    EmbeddingJudge,
    LLMJudge,
    TextEqualityJudge,
    normalise_answer,
    resolve_judge,
)
from llm_cache.semantic.stream_eval import StreamItem, format_stream_table, load_stream, run_stream  # noqa: E402

LLM = '{"model":"m","provider":"test","temperature":0}'
HERE = os.path.dirname(__file__)


class WordEmbeddings(ArrayEmbeddings):
    """Deterministic bag-of-words vectors: texts sharing words are similar (no model)."""

    dimension = 64

    def embed_array(self, texts: list[str]) -> Any:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
            norm = float(np.linalg.norm(out[row]))
            out[row] /= norm if norm else 1.0
        return out


WORDS = "red green blue black white old new big small cheap fast slow late early first last".split()
# A quick-learning policy: few outcomes make a bound, never explores when the bound is met.
QUICK = {"z": 1.0, "explore": 0.0, "floor": 0.5, "support": 1, "k": 4, "min_outcomes": 2}


def refund(i: int) -> str:
    return f"please refund my {WORDS[i % len(WORDS)]} {WORDS[(i * 7 + 3) % len(WORDS)]} order now"


def make(tmp: Path | None = None, **kwargs: Any) -> SemanticCache:
    kwargs.setdefault("max_error_rate", 0.2)
    kwargs.setdefault("learning", QUICK)
    kwargs.setdefault("prior", None)
    kwargs.setdefault("guards", None)
    kwargs.setdefault("learning_seed", 0)
    return SemanticCache(WordEmbeddings(), data_dir=tmp, **kwargs)


def serve(cache: SemanticCache, prompt: str, answer: str) -> bool:
    """One application call: lookup, and on a miss the provider's answer is stored. True on a hit."""
    if cache.lookup(prompt, LLM) is not None:
        return True
    cache.update(prompt, LLM, [Generation(text=answer)])
    return False


# -- the bound (pure) ----------------------------------------------------------------------------
def test_wilson_upper_bound() -> None:
    assert bounded.wilson_upper(0, 0, 1.645) == 1.0
    tight = [bounded.wilson_upper(0, n, 1.645) for n in (10, 100, 1000)]
    assert tight == sorted(tight, reverse=True) and tight[-1] < 0.003
    assert bounded.wilson_upper(10, 100, 1.645) > 0.1  # above the observed rate
    assert bounded.wilson_upper(100, 100, 1.645) == pytest.approx(1.0)


def test_choose_takes_the_answer_most_neighbours_carry() -> None:
    same = TextEqualityJudge().same
    index, ctx = bounded.choose([0.95, 0.9, 0.88, 0.5], ["a", "b", "b", "b"], same, floor=0.6, support=2)  # type: ignore[misc]
    assert index == 1 and ctx == Context(0.88, 2, 1)  # "b" twice above the floor; support = its 2nd member
    assert bounded.choose([0.55], ["a"], same, floor=0.6) is None


def test_decide_needs_evidence_and_honours_records() -> None:
    policy = BoundPolicy(0.05, explore=0.0)
    ctx = Context(0.9, 3, 0)
    assert bounded.decide(ctx, {}, None, None, policy, 0.5) == "miss"  # nothing learned yet
    counts: bounded.Counts = {}
    for _ in range(200):
        bounded.merge_counts(counts, bounded.counts_fields(ctx, wrong=False))
    assert bounded.decide(ctx, counts, None, None, policy, 0.5) == "hit"
    # Outcomes vouch only within the window above a context: those at 0.90 back 0.75
    # (window 0.2), not 0.70.
    assert bounded.decide(Context(0.75, 3, 0), counts, None, None, policy, 0.5) == "hit"
    assert bounded.decide(Context(0.7, 3, 0), counts, None, None, policy, 0.5) == "miss"
    record = EntryRecord()
    record.add_wrong(0.88)
    assert bounded.decide(ctx, counts, None, record, policy, 0.5) == "miss"  # vetoed up to 0.88 + margin
    record = EntryRecord()
    record.block("q1")
    assert bounded.decide(ctx, counts, None, record, policy, 0.5, "q1") == "miss"
    assert bounded.decide(ctx, counts, None, record, policy, 0.5, "q2") == "hit"
    # Explores while young, rarely once firm.
    explorer = BoundPolicy(0.05, explore=1.0)
    assert bounded.decide(ctx, counts, None, None, explorer, 0.01) == "explore"
    assert bounded.decide(ctx, counts, None, None, explorer, 0.2) == "hit"


def test_prior_counts_are_capped() -> None:
    ctx = Context(0.9, 3, 0)
    prior: bounded.Counts = {}
    bounded.merge_counts(prior, {f"{ctx.cls}:{ctx.bin}:n": 1e6, f"{ctx.cls}:{ctx.bin}:w": 0.0})
    bound, n = bounded.error_bound(ctx, {}, prior, BoundPolicy(0.02, prior_weight=10))
    assert n == 0 and bound == pytest.approx(bounded.wilson_upper(0, 10, BoundPolicy(0.02).z))


def test_malformed_state_is_ignored() -> None:
    assert EntryRecord.from_json("not a dict") == EntryRecord()
    record = EntryRecord.from_json({"w": ["x", 0.5, True, float("nan")], "b": ["q", 3, "x" * 100]})
    assert record.wrong == [0.5] and record.blocked == ["q"]
    counts = bounded.counts_from_fields({"a1d0:90:n": "2", "bad": 1, "a1d0:999:n": 1, "a1d0:90:w": -1, "a1d0:x:n": 1})
    assert counts["a1d0"][0][90] == 2.0 and sum(counts["a1d0"][1]) == 0


def test_policy_validation() -> None:
    for bad in (0, 1, -0.1, True, "0.02"):
        with pytest.raises(ConfigurationError):
            make(max_error_rate=bad)
    with pytest.raises(ConfigurationError, match="unknown learning option"):
        make(learning={"zz": 1})


# -- judges ----------------------------------------------------------------------------------------
def test_judges() -> None:
    assert normalise_answer("  Card   ARRIVAL.\n") == "card arrival"
    assert TextEqualityJudge().same("Card arrival", "card  arrival.")
    assert not TextEqualityJudge().same("card arrival", "card lost")
    judge = EmbeddingJudge(WordEmbeddings(), threshold=0.7)
    assert judge.same("your refund is on its way", "your refund is on its way now")
    assert not judge.same("your refund is on its way", "the card was blocked")
    user = resolve_judge(lambda a, b: a[0] == b[0])
    assert isinstance(user, CallableJudge) and user.same("abc", "axe") and not user.same("abc", "xbc")

    class Model:
        def __init__(self, reply: str) -> None:
            self.reply, self.prompts = reply, []  # type: ignore[var-annotated]

        def invoke(self, prompt: str) -> str:
            self.prompts.append(prompt)
            return self.reply

    yes, no = Model("Yes."), Model("no, B is about something else")
    assert LLMJudge(yes).same("A1", "B1") and "A1" in yes.prompts[0] and "B1" in yes.prompts[0]
    assert not LLMJudge(no).same("A1", "B1")
    with pytest.raises(ConfigurationError):
        LLMJudge(object())
    with pytest.raises(ConfigurationError):
        resolve_judge("nonsense")


# -- the cache -----------------------------------------------------------------------------------
def test_without_max_error_rate_nothing_changes(tmp_path: Path) -> None:
    cache = SemanticCache(WordEmbeddings(), data_dir=tmp_path, guards=None)
    assert cache.learning is None and cache._search_k == cache.k
    cache.update(refund(0), LLM, [Generation(text="refund")])
    assert cache.lookup(refund(0), LLM) is not None
    tables = {r[0] for r in cache.store._conn().execute("SELECT name FROM sqlite_master")}  # type: ignore[attr-defined]
    assert not any("learned" in t for t in tables)
    cache.close()


def test_learns_from_misses_then_answers_within_the_bound() -> None:
    cache = make()
    assert cache.learning is not None
    hits = [serve(cache, refund(i), "refund") for i in range(40)]
    assert not any(hits[:3])  # nothing learned yet: misses, each judged when the answer arrives
    assert any(hits[10:])  # enough right outcomes: the bound is met
    stats = cache.learning.stats
    assert stats["outcomes"] >= 3 and stats["outcomes_wrong"] == 0
    counters = cache.learning.state.read_counters()
    assert sum(v for k, v in counters.items() if k.endswith(":n")) == stats["outcomes"]
    cache.close()


def test_a_wrong_outcome_is_learned_and_vetoes_the_entry() -> None:
    cache = make()
    for i in range(12):
        serve(cache, refund(i), "refund")
    # A look-alike that needs another answer: the miss is judged wrong against the candidate.
    prompt = "please refund my red green order later"
    match_before = cache.lookup_with_score(prompt, LLM)
    if match_before is not None:  # answered: the caller reports it
        cache.feedback(prompt, LLM, correct=False)
    else:
        cache.update(prompt, LLM, [Generation(text="refund status")])
        assert cache.learning is not None and cache.learning.stats["outcomes_wrong"] == 1
    cache.close()


def test_feedback_blocks_that_entry_for_that_query() -> None:
    cache = make()
    for i in range(30):
        serve(cache, refund(i), "refund")
    probe = "please refund my blue black order quickly now"
    match = cache.lookup_with_score(probe, LLM)
    assert match is not None and not match.exact
    assert cache.learning is not None
    wrong_before = cache.learning.stats["outcomes_wrong"]
    cache.feedback(probe, LLM, correct=False)
    assert cache.learning.stats["outcomes_wrong"] == wrong_before + 1
    again = cache.lookup_with_score(probe, LLM)
    assert again is None or again.key != match.key  # never that entry for that query again
    record = cache.learning.state.get_record(match.key)
    assert record is not None and record["b"]
    cache.close()


def test_feedback_on_an_exact_hit_deletes_the_entry() -> None:
    cache = make()
    cache.update(refund(1), LLM, [Generation(text="wrong answer")])
    assert cache.lookup(refund(1), LLM) is not None
    cache.feedback(refund(1), LLM, correct=False)
    from llm_cache.keys import cache_key_hex

    assert cache.store.get(cache_key_hex(refund(1), LLM)) is None
    cache.close()


def test_feedback_on_a_semantic_hit_needs_a_bounded_cache() -> None:
    cache = SemanticCache(WordEmbeddings(), guards=None, threshold=0.5)
    cache.update(refund(1), LLM, [Generation(text="refund")])
    assert cache.lookup(refund(2), LLM) is not None
    with pytest.raises(ConfigurationError, match="max_error_rate"):
        cache.feedback(refund(2), LLM, correct=False)
    cache.close()


def test_async_lookups_learn_too() -> None:
    cache = make()

    async def scenario() -> list[bool]:
        hits = []
        for i in range(30):
            if await cache.alookup(refund(i), LLM) is not None:
                hits.append(True)
                continue
            hits.append(False)
            await cache.aupdate(refund(i), LLM, [Generation(text="refund")])
        return hits

    hits = asyncio.run(scenario())
    assert not any(hits[:3]) and any(hits[10:])
    assert cache.learning is not None and cache.learning.stats["outcomes"] >= 3
    cache.close()


def test_clear_forgets_what_was_learned(tmp_path: Path) -> None:
    cache = make(tmp_path)
    for i in range(10):
        serve(cache, refund(i), "refund")
    assert cache.learning is not None and cache.learning.state.read_counters()
    cache.clear()
    assert cache.learning.state.read_counters() == {}
    cache.close()


def test_corrupt_records_are_no_records(tmp_path: Path) -> None:
    cache = make(tmp_path)
    for i in range(10):
        serve(cache, refund(i), "refund")
    assert cache.learning is not None
    state = cache.learning.state
    state._conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO semantic_learned_entries (namespace, key, value, updated_at) VALUES ('default', 'k', '{nope', 0)"
    )
    assert state.get_record("k") is None
    cache.close()


# -- persisted and shared --------------------------------------------------------------------------
CHILD = """
import sys
sys.path.insert(0, {here!r})
from test_semantic_bounded import LLM, make, serve, refund
import json
cache = make({path!r})
start, count = {start}, {count}
for i in range(start, start + count):
    if serve(cache, refund(i), "refund"):
        cache.feedback(refund(i), LLM, correct=True)  # every hit confirmed: one outcome each
print(json.dumps(dict(cache.learning.stats)))
cache.close()
"""


def _child(path: Path, start: int, count: int) -> "subprocess.Popen[str]":
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    code = CHILD.format(here=HERE, path=str(path), start=start, count=count)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _outcomes(cache: SemanticCache) -> float:
    assert cache.learning is not None
    return sum(v for k, v in cache.learning.state.read_counters().items() if k.endswith(":n"))


@pytest.mark.slow
def test_learned_state_survives_a_restart_and_is_shared_by_two_processes(tmp_path: Path) -> None:
    first = _child(tmp_path, 0, 20)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    learned = json.loads(out)["outcomes"]
    assert learned >= 3
    # A restart: a new process (this one) opens the directory and starts where it stopped.
    cache = make(tmp_path)
    assert _outcomes(cache) == learned
    probe = "please refund my white old order quickly now"
    match = cache.lookup_with_score(probe, LLM)
    assert match is not None  # answered at once: the bound was learned by the other process
    cache.feedback(probe, LLM, correct=False)
    cache.close()
    # Two processes at once add to the same counters; nothing is lost.
    children = [_child(tmp_path, 100, 15), _child(tmp_path, 200, 15)]
    results = [c.communicate(timeout=300) for c in children]
    assert all(c.returncode == 0 for c in children), [e for _, e in results]
    added = sum(json.loads(o).get("outcomes", 0) for o, _ in results)
    assert added >= 5  # judged concurrently (repeated texts are exact hits, not outcomes)
    cache = make(tmp_path)
    assert _outcomes(cache) == learned + 1 + added  # + the feedback outcome
    again = cache.lookup_with_score(probe, LLM)
    assert again is None or again.key != match.key  # the block survived too
    cache.close()


def _shared_state_scenario(make_cache: Any) -> None:
    one, two = make_cache(), make_cache()
    for i in range(20):
        serve(one, refund(i), "refund")
    assert one.learning is not None and two.learning is not None
    assert _outcomes(two) == one.learning.stats["outcomes"] >= 3
    probe = "please refund my white old order quickly now"
    match = two.lookup_with_score(probe, LLM)
    assert match is not None
    two.feedback(probe, LLM, correct=False)
    record = one.learning.state.get_record(match.key)
    assert record is not None and record["b"]
    one.clear()
    assert two.learning.state.read_counters() == {} and two.learning.state.get_record(match.key) is None


@pytest.mark.redis
def test_redis_store_holds_the_learned_state(redis_url: str) -> None:
    from llm_cache.semantic.stores.redis import RedisVectorStore

    namespace = f"t-bounded:{uuid.uuid4().hex[:8]}"
    stores: list[Any] = []

    def make_cache() -> SemanticCache:
        store = RedisVectorStore(redis_url=redis_url, namespace=namespace, dimension=WordEmbeddings.dimension)
        stores.append(store)
        return make(store=store)

    try:
        _shared_state_scenario(make_cache)
    finally:
        for store in stores:
            store.clear()
            store.close()


@pytest.mark.postgres
def test_pgvector_store_holds_the_learned_state(postgres_url: str) -> None:
    sa = pytest.importorskip("sqlalchemy")
    from llm_cache.semantic.stores.pgvector import PGVectorStore

    table = f"t_bounded_{uuid.uuid4().hex[:8]}"
    stores: list[Any] = []

    def make_cache() -> SemanticCache:
        store = PGVectorStore(postgres_url, table=table, namespace="ns", dimension=WordEmbeddings.dimension)
        stores.append(store)
        return make(store=store)

    try:
        _shared_state_scenario(make_cache)
    finally:
        for store in stores:
            store.close()
        engine = sa.create_engine(postgres_url)
        with engine.begin() as conn:
            for suffix in ("", "_learned_counts", "_learned_entries"):
                conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}{suffix}"'))
        engine.dispose()


# -- the stream protocol ---------------------------------------------------------------------------
def test_stream_protocol_counts_right_wrong_and_unlabelled() -> None:
    class Scripted:
        """A cache whose answers are scripted, to check the bookkeeping alone."""

        def __init__(self, answers: list[str | None]) -> None:
            self.answers, self.updates = answers, []  # type: ignore[var-annotated]

        def lookup(self, prompt: str, llm_string: str) -> Any:
            answer = self.answers.pop(0)
            return None if answer is None else [Generation(text=answer)]

        def update(self, prompt: str, llm_string: str, generations: Any) -> None:
            self.updates.append((prompt, generations[0].text))

    items = [StreamItem("a", "x"), StreamItem("b", "x"), StreamItem("c", "y"), StreamItem("d", "oos"), StreamItem("e", "oos"), StreamItem("f", "y")]
    cache = Scripted([None, "x", "x", None, "oos", "oos"])
    m = run_stream(items, cache, "scripted")
    assert (m.queries, m.hits, m.right, m.wrong, m.unlabelled) == (6, 4, 1, 2, 1)
    assert m.error_rate == pytest.approx(2 / 3) and m.correct_hit_rate == pytest.approx(1 / 6)
    assert cache.updates == [("a", "x"), ("d", "oos")]
    assert "| scripted | 6 |" in format_stream_table([m])


def test_load_stream_shuffles_like_the_issue(tmp_path: Path) -> None:
    import random

    path = tmp_path / "s.jsonl"
    rows = [{"text": f"q{i}", "intent": f"i{i % 3}"} for i in range(10)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    expected = list(rows)
    random.Random(0).shuffle(expected)
    assert [i.text for i in load_stream(path, seed=0)] == [r["text"] for r in expected]
    path.write_text('{"text": 1}\n')
    with pytest.raises(ConfigurationError, match="text"):
        load_stream(path)


@pytest.fixture
def stream_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "stream.jsonl"
    texts = [(refund(i), "refund") for i in range(12)] + [(f"where is my {w} card now", "card") for w in WORDS[:8]]
    path.write_text("\n".join(json.dumps({"text": t, "intent": i}) for t, i in texts) + "\n")
    yield path


def test_cli_eval_stream(stream_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llm_cache.cli import main

    code = main(["eval", "--stream", str(stream_file), "--threshold-grid", "0.8,0.9", "--error-rates", "0.05", "--guards", "none", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "20 queries, 2 labels" in out and "| threshold 0.80 | 20 |" in out and "| max_error_rate 0.05 | 20 |" in out


def test_cli_feedback_blocks_from_another_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llm_cache.cli import main
    from llm_cache.semantic.embeddings import LocalEmbeddings

    cache = SemanticCache(LocalEmbeddings(), data_dir=tmp_path, guards=None, max_error_rate=0.2, prior=None,
                          learning={"floor": 0.5, "explore": 0.0, "z": 1.0})
    cache.update("How do I get a refund for my order?", LLM, [Generation(text="refund")])
    cache.close()
    probe = "How can I get my money back for my order?"
    assert main(["feedback", probe, "--data-dir", str(tmp_path), "--llm-string", LLM, "--wrong"]) == 0
    assert "never served for this prompt again" in capsys.readouterr().out
    cache = SemanticCache(LocalEmbeddings(), data_dir=tmp_path, guards=None, max_error_rate=0.2, prior=None)
    assert cache.learning is not None
    from llm_cache.keys import cache_key_hex

    record = cache.learning.state.get_record(cache_key_hex("How do I get a refund for my order?", LLM))
    assert record is not None and record["b"] == [cache_key_hex(probe, LLM)]
    cache.close()
    assert main(["feedback", "How do I get a refund for my order?", "--data-dir", str(tmp_path), "--llm-string", LLM, "--wrong"]) == 0
    assert "deleted" in capsys.readouterr().out


def test_error_budget_lets_safe_contexts_carry_a_riskier_one() -> None:
    policy = BoundPolicy(0.05, explore=0.0, prior_weight=0)
    counts: bounded.Counts = {}
    safe, risky = Context(0.95, 3, 0), Context(0.75, 3, 0)
    for _ in range(400):
        bounded.merge_counts(counts, bounded.counts_fields(safe, wrong=False))
    for i in range(40):
        bounded.merge_counts(counts, bounded.counts_fields(risky, wrong=i < 4))  # 10% wrong alone
    admitted = bounded.admitted_cells(counts, None, policy)
    assert admitted == {"a3d0": risky.bin}  # 4 wrong in 440: within 5% with confidence
    assert bounded.decide(risky, counts, None, None, policy, 0.5, admitted=admitted) == "hit"
    assert bounded.decide(risky, counts, None, None, replace(policy, budget=False), 0.5) == "miss"
    for _ in range(40):
        bounded.merge_counts(counts, bounded.counts_fields(risky, wrong=True))  # now too many
    assert bounded.admitted_cells(counts, None, policy) == {"a3d0": safe.bin}


def test_the_prior_alone_never_answers() -> None:
    ctx = Context(0.9, 3, 0)
    prior: bounded.Counts = {}
    bounded.merge_counts(prior, {f"{ctx.cls}:{ctx.bin}:n": 1e4})  # a confident prior: never wrong
    policy = BoundPolicy(0.05, explore=0.0)
    assert bounded.decide(ctx, {}, prior, None, policy, 0.5) == "miss"  # no outcome of its own yet
    assert bounded.decide(ctx, {}, prior, None, replace(policy, min_outcomes=0), 0.5) == "hit"
    own: bounded.Counts = {}
    for _ in range(policy.min_outcomes):
        bounded.merge_counts(own, bounded.counts_fields(ctx, wrong=False))
    assert bounded.decide(ctx, own, prior, None, policy, 0.5) == "hit"


def test_an_unreachable_database_does_not_stop_a_bounded_cache_from_starting() -> None:
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("pgvector")
    from llm_cache.semantic.stores.pgvector import PGVectorStore

    store = PGVectorStore("postgresql://u:p@127.0.0.1:1/none", dimension=WordEmbeddings.dimension)
    cache = make(store=store)  # the store and the learned state both fail open
    assert cache.lookup(refund(1), LLM) is None  # a logged miss
    cache.update(refund(1), LLM, [Generation(text="refund")])  # a dropped write, not an error
    store.close()


def test_explain_gives_the_bounds_verdict_and_agrees_with_lookups() -> None:
    """explain() of an error-bounded cache says what its bound decides, not what a static
    threshold would: first too few outcomes, then a hit that the lookup gives too."""
    cache = make()
    prompt = refund(1)
    cache.update(refund(0), LLM, [Generation(text="refund")])
    first = cache.explain(prompt, LLM)
    assert first and first[0].verdict.startswith("miss: 0 judged outcomes")
    for i in range(2, 40):
        serve(cache, refund(i), "refund")
    verdicts = cache.explain("please refund my blue red order now", LLM)
    candidate = [v for v in verdicts if v.verdict.startswith(("hit:", "miss:"))]
    assert len(candidate) == 1 and candidate[0].verdict.startswith("hit: ")
    assert any("supports it" in v.verdict for v in verdicts)
    assert cache.lookup("please refund my blue red order now", LLM) is not None  # QUICK never explores
    cache.close()
