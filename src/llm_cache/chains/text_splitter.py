"""``CharacterTextSplitter``: cut a text into chunks of at most ``chunk_size``, with overlap.

The behaviour is LangChain's ``CharacterTextSplitter`` (langchain-text-splitters),
reproduced so that the same settings give the same chunks (checked in
tests/test_text_splitter.py against LangChain itself on the State of the Union text
and on random texts):

1. **Split** the text on ``separator`` (a literal string; ``""`` splits into single
   characters). Empty pieces are dropped. With ``keep_separator`` the separator stays
   attached to the piece after it (``True`` or ``"start"``) or before it (``"end"``).
2. **Merge** consecutive pieces, joined by the separator (or by nothing when the
   pieces keep their separators), into chunks whose length is at most ``chunk_size``.
   The length of a chunk is counted as the sum of ``length_function`` over its pieces
   plus one separator between each two, before whitespace stripping.
3. **Overlap**: when a chunk is full, the next one starts with the longest run of
   pieces from the end of the previous chunk whose length is at most
   ``chunk_overlap`` *and* that still leaves room for the next piece. The overlap is
   made of whole pieces, so it can be shorter than ``chunk_overlap`` (or empty).
4. A single piece longer than ``chunk_size`` becomes a chunk of its own (it is never
   cut inside) and a warning is logged. This is the only way a chunk can exceed
   ``chunk_size``.
5. With ``strip_whitespace`` each chunk is stripped; chunks that are empty after that
   are dropped, so an empty (or all-whitespace) text gives no chunks.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from ..errors import ConfigurationError
from .documents import Document

__all__ = ["CharacterTextSplitter"]

logger = logging.getLogger(__name__)

KeepSeparator = bool | Literal["start", "end"]


class CharacterTextSplitter:
    """Split text on a separator, then merge the pieces into chunks of bounded size.

    Args:
        separator: the literal string to split on (default: a blank line, ``"\\n\\n"``).
            ``""`` splits into characters.
        chunk_size: the largest chunk, as measured by ``length_function``; only a
            single piece longer than this can make a longer chunk.
        chunk_overlap: the most text (whole pieces) a chunk repeats from the end of
            the previous one. Must not exceed ``chunk_size``.
        keep_separator: ``False`` drops separators from the pieces and puts them back
            between pieces when joining; ``True``/``"start"`` keeps each separator at
            the start of the piece after it, ``"end"`` at the end of the piece before it.
        strip_whitespace: strip each chunk (and drop chunks that become empty).
        length_function: how a piece is measured (default ``len``: characters). A
            token counter works too; the chunk's length is then the sum over its pieces.
        add_start_index: :meth:`create_documents` records each chunk's character offset
            in the source text as ``metadata["start_index"]``.

    See the module docstring for the exact algorithm (LangChain's).
    """

    def __init__(
        self,
        separator: str = "\n\n",
        chunk_size: int = 4000,
        chunk_overlap: int = 200,
        keep_separator: KeepSeparator = False,
        strip_whitespace: bool = True,
        length_function: Callable[[str], int] = len,
        *,
        add_start_index: bool = False,
    ) -> None:
        if not isinstance(separator, str):
            raise ConfigurationError(f"separator must be a string, not {type(separator).__name__}")
        for name, value in (("chunk_size", chunk_size), ("chunk_overlap", chunk_overlap)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigurationError(f"{name} must be an int, not {type(value).__name__}")
        if chunk_size <= 0:
            raise ConfigurationError(f"chunk_size must be > 0, got {chunk_size}")
        if chunk_overlap < 0:
            raise ConfigurationError(f"chunk_overlap must be >= 0, got {chunk_overlap}")
        if chunk_overlap > chunk_size:
            raise ConfigurationError(
                f"chunk_overlap ({chunk_overlap}) is larger than chunk_size ({chunk_size}): "
                "make the overlap smaller than the chunk size"
            )
        if keep_separator not in (True, False, "start", "end"):
            raise ConfigurationError(
                f"keep_separator must be True, False, 'start' or 'end', got {keep_separator!r}"
            )
        if not callable(length_function):
            raise ConfigurationError("length_function must be callable, e.g. len")
        self.separator = separator
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.keep_separator = keep_separator
        self.strip_whitespace = strip_whitespace
        self.length_function = length_function
        self.add_start_index = add_start_index

    def __repr__(self) -> str:
        return (
            f"CharacterTextSplitter(separator={self.separator!r}, chunk_size={self.chunk_size}, "
            f"chunk_overlap={self.chunk_overlap})"
        )

    # -- public API --------------------------------------------------------------------
    def split_text(self, text: str) -> list[str]:
        """Return the chunks of ``text`` (an empty list for empty text)."""
        if not isinstance(text, str):
            raise ConfigurationError(f"split_text takes a str, not {type(text).__name__}")
        pieces = self._split(text)
        # Pieces that keep their separator are joined with nothing, or the separator
        # would appear twice.
        joiner = "" if self.keep_separator else self.separator
        return self._merge(pieces, joiner)

    def create_documents(
        self, texts: Sequence[str], metadatas: Sequence[dict[str, Any]] | None = None
    ) -> list[Document]:
        """Split each text; each chunk becomes a :class:`Document` with a deep copy of the
        text's metadata (plus ``start_index`` when ``add_start_index`` is set)."""
        if isinstance(texts, str):
            raise ConfigurationError(
                "create_documents takes a list of texts; wrap a single text in a list"
            )
        texts = list(texts)
        if metadatas is None:
            metadatas = [{}] * len(texts)
        elif len(metadatas) != len(texts):
            raise ConfigurationError(
                f"create_documents got {len(texts)} texts but {len(metadatas)} metadatas: "
                "give one per text"
            )
        documents = []
        for text, metadata in zip(texts, metadatas):
            index, previous_length = 0, 0
            for chunk in self.split_text(text):
                chunk_metadata = copy.deepcopy(metadata)
                if self.add_start_index:
                    # Search from where this chunk can start at the earliest (the previous
                    # chunk's end minus the overlap), so a repeated passage is located at
                    # this occurrence, not an earlier one.
                    offset = index + previous_length - self.chunk_overlap
                    index = text.find(chunk, max(0, offset))
                    chunk_metadata["start_index"] = index
                    previous_length = len(chunk)
                documents.append(Document(page_content=chunk, metadata=chunk_metadata))
        return documents

    def split_documents(self, documents: Iterable[Document]) -> list[Document]:
        """Split each document's text; every chunk keeps (a copy of) its document's metadata."""
        texts, metadatas = [], []
        for document in documents:
            if not isinstance(document, Document):
                raise ConfigurationError(
                    f"split_documents takes Document objects, not {type(document).__name__}; "
                    "use split_text or create_documents for strings"
                )
            texts.append(document.page_content)
            metadatas.append(document.metadata)
        return self.create_documents(texts, metadatas)

    # -- the algorithm -------------------------------------------------------------------
    def _split(self, text: str) -> list[str]:
        """Step 1: the non-empty pieces, with separators attached when asked to keep them."""
        separator = self.separator
        if not separator:
            pieces = list(text)
        else:
            parts = text.split(separator)
            if not self.keep_separator:
                pieces = parts
            elif self.keep_separator == "end":
                pieces = [part + separator for part in parts[:-1]] + parts[-1:]
            else:  # True or "start"
                pieces = parts[:1] + [separator + part for part in parts[1:]]
        return [piece for piece in pieces if piece]

    def _merge(self, pieces: list[str], joiner: str) -> list[str]:
        """Steps 2-5: greedy packing with a carried-over tail of whole pieces.

        ``total`` is the length of ``joiner.join(window)`` computed as the sum of the
        pieces' lengths plus the joiners, so that it also means something for a
        non-additive ``length_function`` such as a token counter (LangChain's rule).
        """
        joiner_length = self.length_function(joiner)
        chunks: list[str] = []
        window: list[str] = []
        lengths: list[int] = []
        total = 0
        for piece in pieces:
            length = self.length_function(piece)
            if window and total + joiner_length + length > self.chunk_size:
                self._emit(window, total, joiner, chunks)
                # Drop pieces from the front until what is left fits in the overlap and
                # leaves room for the new piece (or nothing is left).
                while total > self.chunk_overlap or (
                    total > 0
                    and total + length + (joiner_length if window else 0) > self.chunk_size
                ):
                    total -= lengths[0] + (joiner_length if len(window) > 1 else 0)
                    del window[0], lengths[0]
            window.append(piece)
            lengths.append(length)
            total += length + (joiner_length if len(window) > 1 else 0)
        if window:
            self._emit(window, total, joiner, chunks)
        return chunks

    def _emit(self, window: list[str], total: int, joiner: str, chunks: list[str]) -> None:
        if total > self.chunk_size:
            # Only a single piece can get here: the merge never adds a piece that overflows.
            logger.warning(
                "Created a chunk of size %d, which is longer than the specified %d",
                total,
                self.chunk_size,
            )
        chunk = joiner.join(window)
        if self.strip_whitespace:
            chunk = chunk.strip()
        if chunk:
            chunks.append(chunk)
