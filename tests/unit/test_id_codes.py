"""codes_of: codes into the distinct ids in first-appearance order, whatever the chunking, checked against a dict."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from models.inputs.dataset import codes_of


def _expected(ids: list[str]) -> tuple[list[int], list[str]]:
    first: dict[str, int] = {}
    return [first.setdefault(x, len(first)) for x in ids], list(first)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunks", [1, 2, 7, 40])
def test_codes_match_first_appearance_for_any_chunking(seed, chunks):
    rng = np.random.default_rng(seed)
    ids = [f"id{x}" for x in rng.zipf(1.3, size=3000) % 500]
    cuts = sorted(rng.integers(0, len(ids), size=chunks - 1).tolist())
    parts = [ids[a:b] for a, b in zip([0, *cuts], [*cuts, len(ids)], strict=True)]
    column = pa.chunked_array([pa.array(p, type=pa.string()) for p in parts], type=pa.string())
    codes, distinct = codes_of(column)
    want_codes, want_distinct = _expected(ids)
    assert distinct == want_distinct
    np.testing.assert_array_equal(codes, want_codes)
    assert codes.dtype == np.int32


def test_chunks_encoded_separately_are_unified():
    # Chunks that arrive already dictionary-encoded on their own do not share a prefix: codes_of must not trust them.
    a, b = pa.array(["x", "y", "x"]).dictionary_encode(), pa.array(["z", "y", "w"]).dictionary_encode()
    assert not b.dictionary.slice(0, 2).equals(a.dictionary)
    codes, distinct = codes_of(pa.chunked_array([a, b]))
    assert distinct == ["x", "y", "z", "w"]
    np.testing.assert_array_equal(codes, [0, 1, 0, 2, 1, 3])


def test_plain_array_and_empty_column():
    codes, distinct = codes_of(pa.array(["b", "a", "b"]))
    assert distinct == ["b", "a"] and codes.tolist() == [0, 1, 0]
    codes, distinct = codes_of(pa.chunked_array([], type=pa.string()))
    assert distinct == [] and codes.size == 0
