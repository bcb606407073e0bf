"""CharacterTextSplitter: documented examples, edge cases, properties on random texts,
and chunk-for-chunk agreement with LangChain's splitter."""

from __future__ import annotations

import logging
import random
import string
from pathlib import Path

import pytest

from llm_cache import ConfigurationError
from llm_cache.chains import CharacterTextSplitter, Document
from llm_cache.demo_summary import state_of_the_union

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# -- examples (the ones langchain-text-splitters' own tests use) ----------------------------------


def test_overlap_of_one_word() -> None:
    splitter = CharacterTextSplitter(separator=" ", chunk_size=7, chunk_overlap=3)
    assert splitter.split_text("foo bar baz 123") == ["foo bar", "bar baz", "baz 123"]


def test_empty_pieces_are_dropped() -> None:
    splitter = CharacterTextSplitter(separator=" ", chunk_size=2, chunk_overlap=0)
    assert splitter.split_text("foo  bar") == ["foo", "bar"]


def test_a_piece_longer_than_chunk_size_is_its_own_chunk_with_a_warning(caplog) -> None:
    splitter = CharacterTextSplitter(separator=" ", chunk_size=3, chunk_overlap=1)
    with caplog.at_level(logging.WARNING, logger="llm_cache.chains.text_splitter"):
        chunks = splitter.split_text("foo bar bazooka a a")
    assert chunks == ["foo", "bar", "bazooka", "a a"]
    assert any("size 7" in r.getMessage() and "3" in r.getMessage() for r in caplog.records)


def test_no_warning_when_every_chunk_fits(caplog) -> None:
    splitter = CharacterTextSplitter(separator=" ", chunk_size=7, chunk_overlap=3)
    with caplog.at_level(logging.WARNING, logger="llm_cache.chains.text_splitter"):
        splitter.split_text("foo bar baz 123")
    assert caplog.records == []


def test_oversized_last_piece_is_also_reported(caplog) -> None:
    splitter = CharacterTextSplitter(separator=" ", chunk_size=3, chunk_overlap=0)
    with caplog.at_level(logging.WARNING, logger="llm_cache.chains.text_splitter"):
        assert splitter.split_text("a abcdef") == ["a", "abcdef"]
    assert len(caplog.records) == 1


def test_short_pieces_first() -> None:
    splitter = CharacterTextSplitter(separator=" ", chunk_size=3, chunk_overlap=1)
    assert splitter.split_text("a a foo bar baz") == ["a a", "foo", "bar", "baz"]


def test_overlap_takes_as_many_whole_pieces_as_fit() -> None:
    splitter = CharacterTextSplitter(separator=" ", chunk_size=9, chunk_overlap=5)
    # "a b c d" (7) cannot take "eeee"; the overlap "c d" (3) fits in 5 and leaves room.
    assert splitter.split_text("a b c d eeee f") == ["a b c d", "c d eeee", "eeee f"]


def test_overlap_is_dropped_when_it_would_leave_no_room_for_the_next_piece() -> None:
    splitter = CharacterTextSplitter(separator=" ", chunk_size=5, chunk_overlap=3)
    # The overlap "c" would fit the budget of 3, but "c" + " " + "dddd" is 6 > 5.
    assert splitter.split_text("a b c dddd") == ["a b c", "dddd"]


def test_zero_overlap_partitions_the_pieces() -> None:
    splitter = CharacterTextSplitter(separator=",", chunk_size=5, chunk_overlap=0)
    assert splitter.split_text("a,b,c,d,e,f,g") == ["a,b,c", "d,e,f", "g"]


def test_empty_and_whitespace_text_give_no_chunks() -> None:
    splitter = CharacterTextSplitter()
    assert splitter.split_text("") == []
    assert splitter.split_text("\n\n\n\n") == []
    assert splitter.split_text("  \n\n \t ") == []
    assert splitter.split_documents([Document("")]) == []


def test_text_shorter_than_chunk_size_is_one_stripped_chunk() -> None:
    assert CharacterTextSplitter().split_text("  Hello.\n\nWorld.  \n") == ["Hello.\n\nWorld."]


def test_strip_whitespace_false_keeps_it() -> None:
    splitter = CharacterTextSplitter(
        separator="|", chunk_size=4, chunk_overlap=0, strip_whitespace=False
    )
    assert splitter.split_text(" a | b |c") == [" a ", " b ", "c"]


def test_empty_separator_splits_into_characters() -> None:
    splitter = CharacterTextSplitter(separator="", chunk_size=3, chunk_overlap=1)
    assert splitter.split_text("abcdefg") == ["abc", "cde", "efg"]


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        (True, ["foo", ".bar", ".baz"]),
        ("start", ["foo", ".bar", ".baz"]),
        ("end", ["foo.", "bar.", "baz"]),
    ],
)
def test_keep_separator(keep: object, expected: list[str]) -> None:
    splitter = CharacterTextSplitter(
        separator=".", chunk_size=4, chunk_overlap=0, keep_separator=keep
    )
    assert splitter.split_text("foo.bar.baz") == expected


def test_keep_separator_does_not_double_it_when_merging() -> None:
    splitter = CharacterTextSplitter(
        separator=".", chunk_size=100, chunk_overlap=0, keep_separator=True
    )
    assert splitter.split_text("foo.bar.baz") == ["foo.bar.baz"]


def test_length_function_counts_words() -> None:
    words = lambda s: len(s.split())  # noqa: E731
    splitter = CharacterTextSplitter(
        separator="\n", chunk_size=4, chunk_overlap=2, length_function=words
    )
    text = "one two\nthree four\nfive\nsix seven eight"
    # The separator "\n" counts 0 words, so a chunk holds up to 4 words; "five" (1 word)
    # is the overlap that still leaves room for the 3 words after it.
    assert splitter.split_text(text) == [
        "one two\nthree four",
        "three four\nfive",
        "five\nsix seven eight",
    ]


# -- configuration errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_size": 10, "chunk_overlap": 11}, "larger than chunk_size"),
        ({"chunk_size": 0}, "chunk_size must be > 0"),
        ({"chunk_overlap": -1}, "chunk_overlap must be >= 0"),
        ({"chunk_size": 10.5}, "chunk_size must be an int"),
        ({"separator": None}, "separator must be a string"),
        ({"keep_separator": "middle"}, "keep_separator"),
        ({"length_function": 3}, "callable"),
    ],
)
def test_bad_settings_are_configuration_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        CharacterTextSplitter(**kwargs)


def test_overlap_equal_to_chunk_size_is_allowed() -> None:
    CharacterTextSplitter(chunk_size=10, chunk_overlap=10)


def test_non_text_input_is_rejected() -> None:
    splitter = CharacterTextSplitter()
    with pytest.raises(ConfigurationError):
        splitter.split_text(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="list of texts"):
        splitter.create_documents("a text")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Document objects"):
        splitter.split_documents(["a text"])  # type: ignore[list-item]


# -- documents and metadata -----------------------------------------------------------------------


def test_split_documents_copies_metadata_to_every_chunk() -> None:
    splitter = CharacterTextSplitter(separator=" ", chunk_size=3, chunk_overlap=0)
    source = {"source": "a.txt", "tags": ["x"]}
    docs = splitter.split_documents(
        [Document("foo bar", source), Document("baz", {"source": "b.txt"})]
    )
    assert [(d.page_content, d.metadata["source"]) for d in docs] == [
        ("foo", "a.txt"),
        ("bar", "a.txt"),
        ("baz", "b.txt"),
    ]
    docs[0].metadata["tags"].append("changed")  # a deep copy: no chunk shares the original
    assert source["tags"] == ["x"] and docs[1].metadata["tags"] == ["x"]


def test_create_documents_with_and_without_metadatas() -> None:
    splitter = CharacterTextSplitter(separator=" ", chunk_size=3, chunk_overlap=0)
    docs = splitter.create_documents(["foo bar", "baz"], metadatas=[{"i": 0}, {"i": 1}])
    assert [(d.page_content, d.metadata) for d in docs] == [
        ("foo", {"i": 0}),
        ("bar", {"i": 0}),
        ("baz", {"i": 1}),
    ]
    plain = splitter.create_documents(["foo bar"])
    assert [d.metadata for d in plain] == [{}, {}]
    plain[0].metadata["x"] = 1
    assert plain[1].metadata == {}  # not one shared dict
    with pytest.raises(ConfigurationError, match="2 texts but 1 metadatas"):
        splitter.create_documents(["a", "b"], metadatas=[{}])


def test_add_start_index_locates_repeated_text_at_the_right_place() -> None:
    splitter = CharacterTextSplitter(
        separator=" ", chunk_size=7, chunk_overlap=3, add_start_index=True
    )
    text = "foo bar foo bar foo"
    docs = splitter.create_documents([text])
    assert [d.page_content for d in docs] == ["foo bar", "bar foo", "foo bar", "bar foo"]
    for doc in docs:
        start = doc.metadata["start_index"]
        assert text[start : start + len(doc.page_content)] == doc.page_content
    assert [d.metadata["start_index"] for d in docs] == [0, 4, 8, 12]


def test_document_defaults_and_validation() -> None:
    a, b = Document("x"), Document("y")
    a.metadata["k"] = 1
    assert b.metadata == {}
    with pytest.raises(ConfigurationError, match="page_content"):
        Document(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="metadata"):
        Document("x", ["not", "a", "dict"])  # type: ignore[arg-type]


# -- properties on random texts -------------------------------------------------------------------


def _random_pieces(rng: random.Random, count: int, max_length: int) -> list[str]:
    """Unique pieces (each starts with its number) without whitespace at either end, so
    every chunk maps back to exactly one run of pieces."""
    pieces = []
    for i in range(count):
        body = "".join(
            rng.choice(string.ascii_lowercase + " ") for _ in range(rng.randint(0, max_length))
        )
        pieces.append(f"p{i}{body}".rstrip() or f"p{i}")
    return pieces


def _spans(chunks: list[str], pieces: list[str], separator: str) -> list[tuple[int, int]]:
    """Each chunk as the (start, end) run of pieces it joins; fails if it is not one."""
    where = {piece: i for i, piece in enumerate(pieces)}
    spans = []
    for chunk in chunks:
        parts = chunk.split(separator)
        start = where[parts[0]]
        assert parts == pieces[start : start + len(parts)], (
            f"chunk {chunk!r} is not a run of pieces"
        )
        spans.append((start, start + len(parts)))
    return spans


CASES = [(seed, sep) for seed in range(40) for sep in ("\n\n", "|", "\n")]


@pytest.mark.parametrize(("seed", "separator"), CASES)
def test_properties_on_random_texts(seed: int, separator: str) -> None:
    rng = random.Random(seed)
    chunk_size = rng.randint(8, 120)
    chunk_overlap = rng.randint(0, chunk_size)
    pieces = _random_pieces(rng, rng.randint(1, 60), max_length=rng.choice([10, 40, 150]))
    splitter = CharacterTextSplitter(
        separator=separator, chunk_size=chunk_size, chunk_overlap=chunk_overlap
    )
    chunks = splitter.split_text(separator.join(pieces))
    join = separator.join
    spans = _spans(chunks, pieces, separator)

    for chunk, (start, end) in zip(chunks, spans):
        # Only a single piece can make a chunk longer than chunk_size.
        assert len(chunk) <= chunk_size or end - start == 1

    # Concatenating the chunks minus their overlaps gives back every piece, in order.
    rebuilt: list[str] = []
    previous_end = 0
    for start, end in spans:
        assert start <= previous_end, "a gap between chunks"
        rebuilt.extend(pieces[max(start, previous_end) : end])
        previous_end = end
    assert rebuilt == pieces

    for (start, end), (next_start, next_end) in zip(spans, spans[1:]):
        assert start < next_start and end < next_end  # always progresses
        overlap = pieces[next_start:end]
        # The overlap stays within chunk_overlap ...
        assert len(join(overlap)) <= chunk_overlap
        # ... and is the longest tail that does, given that the next piece must still fit
        # (unless that next piece is oversized on its own).
        if next_start > start:
            longer = pieces[next_start - 1 : end]
            room = len(join(longer + [pieces[end]])) <= chunk_size
            assert len(join(longer)) > chunk_overlap or not room
        # A chunk is closed only when the next piece would not fit into it.
        assert len(join(pieces[start : end + 1])) > chunk_size


@pytest.mark.parametrize(("seed", "separator"), CASES[::3])
def test_same_chunks_as_langchain_on_random_texts(seed: int, separator: str) -> None:
    lc = pytest.importorskip(
        "langchain_text_splitters", reason="add langchain-text-splitters to the test extra"
    )
    rng = random.Random(1000 + seed)
    chunk_size = rng.randint(5, 200)
    chunk_overlap = rng.randint(0, chunk_size)
    # Messy text: runs of separators, whitespace at the edges of pieces, empty pieces.
    alphabet = string.ascii_letters + "  \n|"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3000)))
    for kwargs in (
        {},
        {"keep_separator": True},
        {"keep_separator": "end"},
        {"strip_whitespace": False},
    ):
        ours = CharacterTextSplitter(separator, chunk_size, chunk_overlap, **kwargs).split_text(
            text
        )
        theirs = lc.CharacterTextSplitter(
            separator=separator, chunk_size=chunk_size, chunk_overlap=chunk_overlap, **kwargs
        ).split_text(text)
        assert ours == theirs, kwargs


# -- the State of the Union, with the notebook's settings -----------------------------------------

# Measured with CharacterTextSplitter() on the shipped text; LangChain gives the same.
SOTU_CHUNK_LENGTHS = [3849, 3995, 3950, 3965, 3998, 3987, 3957, 3945, 801]


def test_packaged_text_is_the_examples_copy() -> None:
    assert state_of_the_union() == (EXAMPLES / "state_of_the_union.txt").read_text(encoding="utf-8")


def test_state_of_the_union_with_the_notebook_settings() -> None:
    text = state_of_the_union()
    chunks = CharacterTextSplitter().split_text(text)
    assert [len(c) for c in chunks] == SOTU_CHUNK_LENGTHS
    assert chunks[0].startswith("Madam Speaker, Madam Vice President")
    # Every paragraph of the speech is in some chunk, in order.
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    joined = "\n\n".join(chunks)
    position = 0
    for paragraph in paragraphs:
        found = joined.find(paragraph, position)
        assert found >= 0, paragraph[:40]
        position = found


def test_state_of_the_union_same_chunks_as_langchain() -> None:
    lc = pytest.importorskip(
        "langchain_text_splitters", reason="add langchain-text-splitters to the test extra"
    )
    text = state_of_the_union()
    assert CharacterTextSplitter().split_text(text) == lc.CharacterTextSplitter().split_text(text)
    ours = CharacterTextSplitter(chunk_size=1000, chunk_overlap=100).split_text(text)
    assert ours == lc.CharacterTextSplitter(chunk_size=1000, chunk_overlap=100).split_text(text)
