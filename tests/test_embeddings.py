"""Embeddings: the local MiniLM model, the OpenAI-compatible client and the LRU wrapper."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import llm_cache.embeddings as public
from llm_cache.embeddings import CachedEmbeddings, DocumentEmbeddings, Embeddings, LocalEmbeddings, OpenAIEmbeddings
from llm_cache.errors import ConfigurationError, MissingDependencyError, ProviderError
from llm_cache.semantic.embeddings import as_array, default_model_path, default_tokenizer_path
from llm_cache.semantic.int8_matmul import with_int8_matmuls
from llm_cache.testing.fake_openai import FakeOpenAIServer, embed_text

PARAPHRASE = ("How do I learn Python?", "What is the best way to learn Python?")
UNRELATED = "What is the capital of France?"
# Texts of very different token counts, so a batch really pads.
MIXED = [
    "Hi",
    "How do I learn Python?",
    "",
    "A considerably longer sentence about caching the results of large language model "
    "calls so that repeated questions are answered in microseconds instead of seconds.",
    "What is the capital of France?",
]


@pytest.fixture(scope="module")
def local() -> LocalEmbeddings:
    """One model for the module: loading the ONNX session takes about a second."""
    return LocalEmbeddings()


def _cos(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


# ------------------------------------------------------------------ public module


def test_public_module_exports() -> None:
    assert sorted(public.__all__) == sorted(
        ["Embeddings", "DocumentEmbeddings", "ArrayEmbeddings", "LocalEmbeddings", "OpenAIEmbeddings", "CachedEmbeddings"]
    )
    for name in public.__all__:
        assert getattr(public, name) is not None


def test_import_does_not_load_the_model_stack() -> None:
    code = (
        "import sys, llm_cache.embeddings; "
        "print(sorted(m for m in ('onnxruntime', 'tokenizers', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bundled_files_are_found_through_their_packages() -> None:
    assert default_model_path().name == "model.onnx"
    assert default_model_path().is_file()
    assert default_tokenizer_path().name == "minilm_tokenizer.json"
    assert default_tokenizer_path().is_file()


# ------------------------------------------------------------------ LocalEmbeddings


def test_local_shape_and_norm(local: LocalEmbeddings) -> None:
    assert local.dimension == 384
    vectors = local.embed_documents(MIXED)
    assert len(vectors) == len(MIXED)
    for vector in vectors:
        assert len(vector) == 384
        assert all(isinstance(x, float) for x in vector[:3])
        assert math.isclose(math.hypot(*vector), 1.0, rel_tol=1e-5)
    array = local.embed_array(MIXED)
    assert array.dtype == np.float32 and array.shape == (len(MIXED), 384)
    np.testing.assert_allclose(np.linalg.norm(array, axis=1), 1.0, rtol=1e-5)


def test_local_is_an_embeddings(local: LocalEmbeddings) -> None:
    assert isinstance(local, Embeddings)


def test_local_deterministic(local: LocalEmbeddings) -> None:
    first = local.embed_array(MIXED)
    assert np.array_equal(first, local.embed_array(MIXED))
    other = LocalEmbeddings(batch_size=2)
    np.testing.assert_allclose(other.embed_array(MIXED), first, atol=1e-5)


def test_local_paraphrase_beats_unrelated(local: LocalEmbeddings) -> None:
    a, b, c = local.embed_documents([*PARAPHRASE, UNRELATED])
    paraphrase, unrelated = _cos(a, b), _cos(a, c)
    assert paraphrase > 0.8
    assert unrelated < 0.3
    assert paraphrase - unrelated > 0.5


def test_local_matches_published_sentence_transformers_score(local: LocalEmbeddings) -> None:
    # sentence-transformers' documentation reports 0.7553 for this pair with
    # all-MiniLM-L6-v2 (fp32); int8 weights may move it a little.
    a, b = local.embed_documents(["A man is eating food.", "A man is eating a piece of bread."])
    assert abs(_cos(a, b) - 0.7553) < 0.02


def test_local_batch_equals_single(local: LocalEmbeddings) -> None:
    batched = local.embed_array(MIXED)  # padded to the longest text in the batch
    for i, text in enumerate(MIXED):
        np.testing.assert_allclose(batched[i], local.embed_query(text), atol=1e-5)


def test_int8_matmul_rewrites_every_linear_layer_and_stays_close_to_float(local: LocalEmbeddings) -> None:
    import onnx

    rewritten = with_int8_matmuls(os.fspath(default_model_path()))
    assert rewritten is not None
    ops = Counter(node.op_type for node in onnx.load_model_from_string(rewritten).graph.node)
    assert ops["DynamicQuantizeMatMul"] == 36  # 6 layers x (q, k, v, output, 2 feed-forward)
    assert ops["Cast"] < 39  # the weights' casts went with them
    assert with_int8_matmuls(rewritten) is None  # nothing left to rewrite
    exact = LocalEmbeddings(int8_matmul=False).embed_array(MIXED)
    fast = local.embed_array(MIXED)
    assert local.int8_matmul and np.all(np.sum(exact * fast, axis=1) > 0.97)


def test_without_onnx_the_float_products_are_used_and_the_user_told(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with caplog.at_level("WARNING", logger="llm_cache"):
        vectors = LocalEmbeddings().embed_array(MIXED)
    assert "pip install" in caplog.text and "float products" in caplog.text
    np.testing.assert_allclose(vectors, LocalEmbeddings(int8_matmul=False).embed_array(MIXED), atol=1e-5)


def test_a_failed_int8_rewrite_falls_back_to_the_model_as_it_is(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import llm_cache.semantic.embeddings as module

    def broken(model: object) -> bytes:
        return b"not an onnx model"  # onnxruntime refuses it

    monkeypatch.setattr(module, "with_int8_matmuls", broken)
    with caplog.at_level("WARNING", logger="llm_cache"):
        vectors = LocalEmbeddings().embed_array(MIXED)
    assert "float products" in caplog.text
    np.testing.assert_allclose(vectors, LocalEmbeddings(int8_matmul=False).embed_array(MIXED), atol=1e-5)


def test_int8_vectors_do_not_depend_on_batch_mates(local: LocalEmbeddings) -> None:
    together = local.embed_array([*MIXED, "a much longer text " * 30])
    for i, text in enumerate(MIXED):
        assert np.array_equal(together[i], local.embed_array([text])[0])


def test_local_batches_keep_caller_order() -> None:
    texts = [f"sentence number {i} " + "word " * (i * 7 % 23) for i in range(11)]
    # The float computation batches (int8_matmul runs one text per call).
    small = LocalEmbeddings(batch_size=3, int8_matmul=False)  # several batches, sorted by length inside
    batched = small.embed_array(texts)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(batched[i], small.embed_array([text])[0], atol=1e-5)


def test_local_truncates_long_text(local: LocalEmbeddings) -> None:
    long = "the cache answers repeated questions quickly " * 120  # far past 256 tokens
    assert len(local._tokenizer.encode(long).ids) == 256
    tail = long + " and then something entirely different about volcanoes"
    a, b = local.embed_array([long, tail])
    assert np.linalg.norm(a) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)  # the tail is past the cut


def test_local_max_length_is_honoured() -> None:
    short = LocalEmbeddings(max_length=8)
    text = "one two three four five six seven eight nine ten"
    assert len(short.embed_query(text)) == 384
    assert len(short._tokenizer.encode(text).ids) == 8


def test_local_empty_string(local: LocalEmbeddings) -> None:
    vector = local.embed_query("")
    assert len(vector) == 384
    assert all(math.isfinite(x) for x in vector)
    assert math.isclose(math.hypot(*vector), 1.0, rel_tol=1e-5)


def test_local_empty_list_and_bad_input(local: LocalEmbeddings) -> None:
    assert local.embed_documents([]) == []
    assert local.embed_array([]).shape == (0, 384)
    with pytest.raises(TypeError):
        local.embed_documents("not a list")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        local.embed_documents(["ok", 3])  # type: ignore[list-item]


def test_local_explicit_paths(local: LocalEmbeddings) -> None:
    explicit = LocalEmbeddings(
        model_path=str(default_model_path()), tokenizer_path=str(default_tokenizer_path())
    )
    assert explicit.dimension == 384  # read from the model's output shape
    np.testing.assert_allclose(explicit.embed_array(MIXED), local.embed_array(MIXED), atol=1e-6)


def test_local_rejects_bad_configuration() -> None:
    with pytest.raises(ConfigurationError):
        LocalEmbeddings(max_length=1)
    with pytest.raises(ConfigurationError):
        LocalEmbeddings(max_length=513)
    with pytest.raises(ConfigurationError):
        LocalEmbeddings(batch_size=0)
    with pytest.raises(ConfigurationError):
        LocalEmbeddings(intra_op_threads=0)


async def test_local_async_matches_sync(local: LocalEmbeddings) -> None:
    expected = local.embed_documents(MIXED)
    got, one = await asyncio.gather(local.aembed_documents(MIXED), local.aembed_query(MIXED[1]))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(one, expected[1], atol=1e-5)


def test_local_lazy_init_is_thread_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    model = LocalEmbeddings(intra_op_threads=1)
    assert model._session is None  # constructing loads nothing
    loads = []
    original = LocalEmbeddings._load_session

    def counting(self: LocalEmbeddings) -> object:
        loads.append(1)
        return original(self)

    monkeypatch.setattr(LocalEmbeddings, "_load_session", counting)
    results: list[list[float]] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        results.append(model.embed_query("thread safety"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1
    assert len(results) == 4
    for vector in results[1:]:
        np.testing.assert_allclose(vector, results[0], atol=1e-6)


def test_local_missing_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(MissingDependencyError) as info:
        LocalEmbeddings().embed_query("hello")
    assert "pip install 'llm-cache[semantic]'" in str(info.value)
    assert "LocalEmbeddings" in str(info.value)


# ------------------------------------------------------------------ CachedEmbeddings


class CountingEmbeddings(DocumentEmbeddings):
    """A deterministic fake model that records what it was asked to embed."""

    dimension = 8

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def _vector(self, text: str) -> list[float]:
        raw = hashlib.sha256(text.encode()).digest()[: self.dimension]
        vector = [b - 127.5 for b in raw]
        norm = math.sqrt(sum(x * x for x in vector))
        return [x / norm for x in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self._vector(t) for t in texts]


def test_cached_sends_only_misses_once() -> None:
    inner = CountingEmbeddings()
    cached = CachedEmbeddings(inner)
    assert isinstance(cached, Embeddings) and isinstance(inner, Embeddings)
    first = cached.embed_documents(["a", "b", "a"])
    assert inner.calls == [["a", "b"]]  # deduplicated inside the batch
    assert (cached.hits, cached.misses) == (1, 2)
    assert first[0] == first[2] == inner._vector("a")

    second = cached.embed_documents(["b", "c", "a"])
    assert inner.calls[-1] == ["c"]
    assert second == [inner._vector("b"), inner._vector("c"), inner._vector("a")]
    assert (cached.hits, cached.misses) == (3, 3)

    cached.embed_query("c")
    assert len(inner.calls) == 2  # all cached: the inner model is not called at all
    assert (cached.hits, cached.misses) == (4, 3)
    assert len(cached) == 3 and cached.dimension == 8


def test_cached_is_lru() -> None:
    inner = CountingEmbeddings()
    cached = CachedEmbeddings(inner, maxsize=2)
    cached.embed_documents(["a", "b"])
    cached.embed_query("a")  # a is now the most recent
    cached.embed_query("c")  # evicts b
    assert len(cached) == 2
    cached.embed_query("a")
    assert inner.calls == [["a", "b"], ["c"]]
    cached.embed_query("b")
    assert inner.calls[-1] == ["b"]


def test_cached_vectors_cannot_be_corrupted_by_callers() -> None:
    cached = CachedEmbeddings(CountingEmbeddings())
    vector = cached.embed_query("a")
    vector[0] = 99.0
    assert cached.embed_query("a")[0] != 99.0


def test_cached_clear_and_validation() -> None:
    inner = CountingEmbeddings()
    cached = CachedEmbeddings(inner)
    cached.embed_query("a")
    cached.clear()
    assert (len(cached), cached.hits, cached.misses) == (0, 0, 0)
    cached.embed_query("a")
    assert len(inner.calls) == 2
    with pytest.raises(ConfigurationError):
        CachedEmbeddings(inner, maxsize=0)


async def test_cached_async() -> None:
    inner = CountingEmbeddings()
    cached = CachedEmbeddings(inner)
    got = await cached.aembed_documents(["x", "y", "x"])
    assert got == [inner._vector("x"), inner._vector("y"), inner._vector("x")]
    assert await cached.aembed_query("y") == inner._vector("y")
    assert inner.calls == [["x", "y"]]
    assert (cached.hits, cached.misses) == (2, 2)


def test_cached_array_without_inner_fast_path() -> None:
    inner = CountingEmbeddings()
    cached = CachedEmbeddings(inner)
    array = cached.embed_array(["a", "b"])
    assert array.dtype == np.float32 and array.shape == (2, 8)
    np.testing.assert_allclose(array[1], inner._vector("b"), rtol=1e-6)
    np.testing.assert_allclose(as_array(inner, ["a"])[0], inner._vector("a"), rtol=1e-6)
    assert as_array(inner, []).shape == (0, 8)


def test_cached_in_front_of_local(local: LocalEmbeddings) -> None:
    cached = CachedEmbeddings(local)
    array = cached.embed_array(MIXED)
    np.testing.assert_allclose(array, local.embed_array(MIXED), atol=1e-6)
    again = cached.embed_array(list(reversed(MIXED)))
    np.testing.assert_array_equal(again, array[::-1])
    assert cached.misses == len(MIXED) and cached.hits == len(MIXED)


def test_cached_counters_are_thread_safe() -> None:
    cached = CachedEmbeddings(CountingEmbeddings())
    texts = [f"t{i % 7}" for i in range(50)]

    def worker() -> None:
        for text in texts:
            cached.embed_query(text)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cached.hits + cached.misses == 4 * len(texts)
    assert len(cached) == 7


# ------------------------------------------------------------------ OpenAIEmbeddings

API_KEY = "sk-test-secret-do-not-leak"


@pytest.fixture
def server(upstream: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """The session's fake OpenAI-compatible server, counters reset."""
    yield upstream


def test_openai_embeds_and_normalises(server: FakeOpenAIServer) -> None:
    model = OpenAIEmbeddings(base_url=server.base_url, api_key=API_KEY)
    texts = ["hello world", "hello there", "something else"]
    vectors = model.embed_documents(texts)
    assert server.request_count == 1
    assert model.dimension == server.embedding_dim  # learnt from the response, no probe
    assert server.request_count == 1
    for text, vector in zip(texts, vectors):
        assert math.isclose(math.hypot(*vector), 1.0, rel_tol=1e-6)
        np.testing.assert_allclose(vector, embed_text(text, server.embedding_dim), atol=1e-6)
    body = server.requests[0]["body"]
    assert body["model"] == "text-embedding-3-small"
    assert body["encoding_format"] == "float"
    assert "dimensions" not in body
    assert isinstance(model, Embeddings)


def test_openai_dimension_probe(server: FakeOpenAIServer) -> None:
    model = OpenAIEmbeddings(base_url=server.base_url, api_key=API_KEY)
    assert model.dimension == server.embedding_dim
    assert server.request_count == 1
    assert model.dimension == server.embedding_dim
    assert server.request_count == 1


def test_openai_dimensions_and_batching(server: FakeOpenAIServer) -> None:
    model = OpenAIEmbeddings(
        model="text-embedding-3-large", base_url=server.base_url, api_key=API_KEY,
        dimensions=16, batch_size=2,
    )
    assert model.dimension == 16 and server.request_count == 0  # given: no probe
    texts = [f"text number {i}" for i in range(5)]
    vectors = model.embed_documents(texts)
    assert server.request_count == 3
    assert [len(v) for v in vectors] == [16] * 5
    for text, vector in zip(texts, vectors):
        np.testing.assert_allclose(vector, embed_text(text, 16), atol=1e-6)
    assert {r["body"]["dimensions"] for r in server.requests} == {16}
    array = model.embed_array(texts[:2])
    assert array.dtype == np.float32 and array.shape == (2, 16)
    assert model.embed_documents([]) == []


async def test_openai_async(server: FakeOpenAIServer) -> None:
    model = OpenAIEmbeddings(base_url=server.base_url, api_key=API_KEY)
    texts = ["alpha beta", "gamma delta"]
    got = await model.aembed_documents(texts)
    one = await model.aembed_query("alpha beta")
    for text, vector in zip(texts, got):
        np.testing.assert_allclose(vector, embed_text(text, server.embedding_dim), atol=1e-6)
    assert one == got[0]
    assert server.request_count == 2


def test_openai_errors_are_provider_errors_without_the_key(server: FakeOpenAIServer) -> None:
    model = OpenAIEmbeddings(base_url=server.base_url, api_key=API_KEY)
    server.fail_next(400, message="bad request for testing")
    with pytest.raises(ProviderError) as info:
        model.embed_query("hello")
    assert "bad request for testing" in str(info.value)
    assert API_KEY not in str(info.value)
    assert API_KEY not in repr(model)
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {API_KEY}"


def test_openai_local_server_needs_no_key(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = OpenAIEmbeddings(base_url=server.base_url)
    assert len(model.embed_query("hello")) == server.embedding_dim


def test_openai_reuses_a_given_client(server: FakeOpenAIServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY)
    model = OpenAIEmbeddings(model="fake-model", client=client)
    assert len(model.embed_query("hi")) == server.embedding_dim
    # The async client is derived from the given one: same server, same key.
    vector = asyncio.run(model.aembed_query("hi"))
    assert len(vector) == server.embedding_dim
    assert [r["headers"]["authorization"] for r in server.requests] == [f"Bearer {API_KEY}"] * 2


def test_cached_in_front_of_openai(server: FakeOpenAIServer) -> None:
    cached = CachedEmbeddings(OpenAIEmbeddings(base_url=server.base_url, api_key=API_KEY))
    cached.embed_documents(["one", "two"])
    cached.embed_documents(["two", "one", "three"])
    assert server.request_count == 2
    assert server.requests[1]["body"]["input"] == ["three"]


def test_openai_rejects_bad_configuration() -> None:
    with pytest.raises(ConfigurationError):
        OpenAIEmbeddings(dimensions=0)
    with pytest.raises(ConfigurationError):
        OpenAIEmbeddings(batch_size=5000)


def test_model_files_inside_a_zip_archive_are_read_as_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local: LocalEmbeddings
) -> None:
    """A package imported from a zip gives Traversables that are not paths: still loads."""
    import zipfile

    import llm_cache.semantic.embeddings as module

    archive = tmp_path / "models.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("model.onnx", default_model_path().read_bytes())
        zf.writestr("tokenizer.json", default_tokenizer_path().read_bytes())
    monkeypatch.setattr(module, "default_model_path", lambda: zipfile.Path(archive, "model.onnx"))
    monkeypatch.setattr(
        module, "default_tokenizer_path", lambda: zipfile.Path(archive, "tokenizer.json")
    )
    zipped = LocalEmbeddings()
    text = "Where is the nearest train station?"
    assert _cos(zipped.embed_query(text), local.embed_query(text)) > 0.9999
