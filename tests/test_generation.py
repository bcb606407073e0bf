"""The stored-value codec: JSON only, checked field by field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm_cache import CorruptEntryError, Generation
from llm_cache.generation import decode_generations, encode_generations, loads_stored


def test_roundtrip() -> None:
    generations = [Generation("a", {"finish_reason": "stop"}), Generation("", None, {"role": "assistant"})]
    assert decode_generations(encode_generations(generations)) == generations
    assert decode_generations(encode_generations(generations).encode()) == generations


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '{"v": 2, "g": [{"text": "a"}]}',
        '{"v": 1, "g": []}',
        '{"v": 1, "g": [{"text": 5}]}',
        '{"v": 1, "g": [{"text": "a", "generation_info": [1]}]}',
        '{"v": 1, "g": [{"text": "a", "message": "str"}]}',
        '{"v": 1}',
        b"\xff\xfe",
    ],
)
def test_anything_else_is_corrupt(raw: str | bytes) -> None:
    with pytest.raises(CorruptEntryError):
        decode_generations(raw)


@pytest.mark.parametrize(
    "raw",
    [b'{"a":1}', b' {"a":1} ', b'{"a":1} x', b"\xef\xbb\xbf{}", '{"a":1}'.encode("utf-16"), b"\xff\xfe", b"",
     b"NaN", b'{"a":"\\ud800"}', '{"a":"\ud800"}'.encode("utf-8", "surrogatepass"), b'{"a":"x\x00"}', b"[1,2]",
     '{"a":"é"}', b'"str"', b'{"a":1,"a":2}'],
)
def test_fast_json_path_agrees_with_json_loads(raw: bytes | str) -> None:
    try:
        expected: Any = json.loads(raw)
    except ValueError:
        expected = CorruptEntryError
    try:
        got: Any = loads_stored(raw)
    except CorruptEntryError:
        got = CorruptEntryError
    if isinstance(expected, float) and expected != expected:  # NaN
        assert isinstance(got, float) and got != got
    else:
        assert got == expected
