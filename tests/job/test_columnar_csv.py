"""The columnar CSV reader against the row-by-row reader and against a dense matrix built here from the rows."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from models.inputs import csv_file
from models.inputs.csv_file import read_interactions_csv, read_interactions_csv_rows


def _quirky_csv(rng: np.random.Generator, n: int) -> tuple[str, list[tuple[str, str, float]]]:
    """A CSV with padded and quoted ids (commas, quotes), an extra column, columns out of order, blank lines and
    CRLF endings; and its rows as (user, item, value) with ids stripped, as both readers must see them."""
    users = [f"u{j}" for j in range(40)] + ['user "q"', "a, b", "  padded  "]
    items = [f"item {j}" for j in range(25)] + ["i,comma", "ü-ß"]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["note", "value", "item_id", "user_id"])
    rows = []
    for r in range(n):
        u, i = users[rng.integers(len(users))], items[rng.integers(len(items))]
        v = float(rng.integers(0, 6)) / 2
        w.writerow([f"x{r}", v, i, u])
        rows.append((u.strip(), i.strip(), v))
        if r % 17 == 0:
            out.write("\r\n")
    return "\ufeff" + out.getvalue(), rows


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("duplicates", ["sum", "max"])
def test_columnar_reader_equals_rows_reader_and_dense_matrix(tmp_path, seed, duplicates):
    text, rows = _quirky_csv(np.random.default_rng(seed), 600)
    path = tmp_path / "q.csv"
    path.write_text(text, encoding="utf-8")
    fast = read_interactions_csv(path, duplicates=duplicates, min_value=0.5)
    slow = read_interactions_csv_rows(path, duplicates=duplicates, min_value=0.5)
    assert fast.fingerprint() == slow.fingerprint()
    assert fast.source == slow.source
    kept = [r for r in rows if r[2] >= 0.5]
    dense = np.zeros((len(fast.user_ids), len(fast.item_ids)))
    for u, i, v in kept:
        a, b = fast.user_ids.index(u), fast.item_ids.index(i)
        dense[a, b] = dense[a, b] + v if duplicates == "sum" else max(dense[a, b], v)
    np.testing.assert_allclose(fast.X.toarray(), dense)
    assert fast.user_ids == list(dict.fromkeys(u for u, _, _ in kept))  # first appearance order
    assert fast.source["rows"] == len(kept)


def test_good_file_is_read_in_one_columnar_pass(tmp_path, monkeypatch):
    text, _ = _quirky_csv(np.random.default_rng(3), 200)
    path = tmp_path / "q.csv"
    path.write_text(text, encoding="utf-8")

    def refuse(*args, **kwargs):
        raise AssertionError("the row-by-row pass ran on a good file")

    monkeypatch.setattr(csv_file, "read_interactions_csv_rows", refuse)
    assert read_interactions_csv(path).X.nnz > 0


def test_a_blank_line_of_spaces_is_accepted_by_the_second_pass(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("user_id,item_id,value\nu1,i1,2\n   \nu2,i1,1_000\n")
    ds = read_interactions_csv(path)
    np.testing.assert_array_equal(ds.X.toarray(), [[2.0], [1000.0]])
