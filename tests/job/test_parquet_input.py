"""Parquet interactions (a file or a directory of files): the same matrix as the CSV reader and as a dense matrix
built here from the rows; every problem named by file and row; bad input through the CLI publishes nothing."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.artifacts import build_in_process

from models.artifact.manifest import MANIFEST
from models.artifact.store import ArtifactStore
from models.errors import InputError
from models.inputs.csv_file import read_interactions_csv
from models.inputs.parquet_files import read_interactions_parquet


def _rows(seed: int, n: int) -> list[tuple[str, str, float]]:
    rng = np.random.default_rng(seed)
    users = [f"u{j}" for j in range(30)] + [" padded ", "ü"]
    items = [str(100 + j) for j in range(20)]  # digits: an integer column in the files that want one
    return [(users[rng.integers(len(users))], items[rng.integers(len(items))], float(rng.integers(0, 6)) / 2) for _ in range(n)]


def _write_parts(root: Path, rows: list[tuple[str, str, float]], cuts: list[int]) -> None:
    """rows split at `cuts` into files part-0.parquet, sub/part-1.parquet, ...; odd parts hold item ids as int64,
    values as int32 halves doubled (so every file has its own types), plus the files a directory reader must skip."""
    bounds = [0, *cuts, len(rows)]
    for j, (a, b) in enumerate(itertools.pairwise(bounds)):
        chunk = rows[a:b]
        u = pa.array([r[0] for r in chunk], type=pa.string())
        if j % 2:
            i = pa.array([int(r[1]) for r in chunk], type=pa.int64())
            v = pa.array([r[2] for r in chunk], type=pa.float32())
        else:
            i = pa.array([r[1] for r in chunk]).dictionary_encode()
            v = pa.array([r[2] for r in chunk], type=pa.float64())
        target = root / ("sub" if j % 3 == 2 else "") / f"part-{j}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"note": pa.array(["x"] * len(chunk)), "value": v, "item_id": i, "user_id": u}), target)
    (root / "_SUCCESS").write_text("")
    (root / ".part-0.parquet.crc").write_text("not parquet")
    (root / "_temporary").mkdir()
    (root / "_temporary" / "half-written.parquet").write_text("not parquet")


def _dense(rows: list[tuple[str, str, float]], user_ids: list[str], item_ids: list[str], duplicates: str) -> np.ndarray:
    dense = np.zeros((len(user_ids), len(item_ids)))
    for u, i, v in rows:
        a, b = user_ids.index(u.strip()), item_ids.index(i)
        dense[a, b] = dense[a, b] + v if duplicates == "sum" else max(dense[a, b], v)
    return dense


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("duplicates", ["sum", "max"])
def test_directory_equals_csv_reader_and_dense_matrix(tmp_path, seed, duplicates):
    rows = _rows(seed, 500)
    _write_parts(tmp_path / "d", rows, [120, 121, 300, 420])
    got = read_interactions_parquet(tmp_path / "d", duplicates=duplicates, min_value=0.5)
    kept = [r for r in rows if r[2] >= 0.5]
    # parts are read in path order: part-0..part-4 at the top level before sub/ ("p" < "s")
    bounds = [0, 120, 121, 300, 420, 500]
    by_file = {
        f"part-{j}.parquet" if j % 3 != 2 else f"sub/part-{j}.parquet": rows[a:b]
        for j, (a, b) in enumerate(itertools.pairwise(bounds))
    }
    ordered = [r for name in sorted(by_file) for r in by_file[name] if r[2] >= 0.5]
    assert got.user_ids == list(dict.fromkeys(u.strip() for u, _, _ in ordered))
    assert got.item_ids == list(dict.fromkeys(i for _, i, _ in ordered))
    np.testing.assert_allclose(got.X.toarray(), _dense(kept, got.user_ids, got.item_ids, duplicates))
    assert got.source["files"] == 5 and got.source["rows"] == len(kept) and got.source["kind"] == "parquet"

    csv_path = tmp_path / "same.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "value"])
        w.writerows(ordered)
    from_csv = read_interactions_csv(csv_path, duplicates=duplicates)
    assert from_csv.fingerprint() == got.fingerprint()


def test_single_file_without_value_column_counts_one_per_row(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"user_id": [1, 1, 2], "item_id": ["a", "b", "a"]}), path)
    ds = read_interactions_parquet(path)
    assert ds.user_ids == ["1", "2"] and ds.item_ids == ["a", "b"]
    np.testing.assert_array_equal(ds.X.toarray(), [[1, 1], [1, 0]])
    assert ds.source["columns"]["value"] is None


def _two_files(tmp_path: Path, second: pa.Table) -> Path:
    root = tmp_path / "d"
    root.mkdir()
    pq.write_table(
        pa.table({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "value": [1.0, 2.0, 3.0]}), root / "p0.parquet"
    )
    pq.write_table(second, root / "p1.parquet")
    return root


def _second(users: list, items: list, values: list | None = None, value_type: pa.DataType | None = None) -> pa.Table:
    cols = {"user_id": users, "item_id": items}
    if values is not None:
        cols["value"] = pa.array(values, type=value_type or pa.float64())
    return pa.table(cols)


BAD = {
    "null-id": (_second(["a", None, "b"], ["x", "y", "z"], [1.0, 1.0, 1.0]), "p1.parquet: row 1: empty user or item id"),
    "blank-id": (_second(["a", "b", "c"], ["x", "y", "  "], [1.0, 1.0, 1.0]), "p1.parquet: row 2: empty user or item id"),
    "nan": (_second(["a", "b"], ["x", "y"], [1.0, float("nan")]), "p1.parquet: row 1: value nan is not finite"),
    "negative": (_second(["a", "b"], ["x", "y"], [-2.0, 1.0]), "p1.parquet: row 0: negative value -2.0"),
    "null-value": (_second(["a", "b"], ["x", "y"], [1.0, None]), "p1.parquet: row 1: empty value"),
    "float-ids": (_second([1.5, 2.5], ["x", "y"], [1.0, 1.0]), "p1.parquet: column 'user_id' has type double"),
    "text-values": (_second(["a"], ["x"], ["lots"], pa.string()), "p1.parquet: value column 'value' has type string"),
    "missing-column": (pa.table({"user": ["a"], "item_id": ["x"], "value": [1.0]}), "p1.parquet: missing column(s) user_id"),
    "no-value-column": (_second(["a"], ["x"]), "p1.parquet: no value column 'value', which other files"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_problem_names_file_and_row(tmp_path, case):
    table, message = BAD[case]
    root = _two_files(tmp_path, table)
    with pytest.raises(InputError) as e:
        read_interactions_parquet(root)
    assert message in str(e.value) and str(root) in str(e.value)


def test_duplicate_rejected_names_the_repeat_across_files(tmp_path):
    root = _two_files(tmp_path, _second(["q", "b"], ["q", "y"], [1.0, 1.0]))
    with pytest.raises(InputError, match=r"p1\.parquet: row 1: duplicate \(user, item\) pair \('b', 'y'\)"):
        read_interactions_parquet(root, duplicates="error")


def test_row_after_min_value_filter_is_the_files_row(tmp_path):
    root = _two_files(tmp_path, _second(["a", "b", "c", "a"], ["x", "q", "r", "x"], [0.1, 0.2, 5.0, 7.0]))
    with pytest.raises(InputError, match=r"p1\.parquet: row 3: duplicate"):
        read_interactions_parquet(root, duplicates="error", min_value=0.5)


@pytest.mark.parametrize("kind", ["not-parquet", "empty-dir", "missing"])
def test_unreadable_inputs(tmp_path, kind):
    target = tmp_path / "in"
    if kind == "not-parquet":
        target = tmp_path / "in.parquet"
        target.write_text("user_id,item_id\n")
        message = "not a readable Parquet file"
    elif kind == "empty-dir":
        target.mkdir()
        (target / "notes.txt").write_text("")
        message = "a directory without *.parquet files"
    else:
        message = "no such file or directory"
    with pytest.raises(InputError) as e:
        read_interactions_parquet(target)
    assert str(e.value).startswith(f"{target}: {message}")


def test_cli_publishes_parquet_and_refuses_a_bad_directory_without_publishing(tmp_path):
    rows = _rows(5, 300)
    _write_parts(tmp_path / "good", rows, [100, 200])
    out = tmp_path / "art"
    ok = build_in_process(
        ["--out", str(out), "--quiet", "--dataset", "parquet", "--input", str(tmp_path / "good"), "--k", "4", "--no-diagnostics"]
    )
    assert ok.returncode == 0, ok.stderr
    store = ArtifactStore(out)
    version = store.current_version()
    manifest = json.loads((out / "versions" / version / MANIFEST).read_text())
    assert manifest["dataset"]["kind"] == "parquet" and manifest["dataset"]["files"] == 3

    bad = _two_files(tmp_path, BAD["negative"][0])
    proc = build_in_process(["--out", str(out), "--quiet", "--dataset", "parquet", "--input", str(bad), "--k", "4"])
    assert proc.returncode == 2
    assert f"{bad / 'p1.parquet'}: row 0: negative value" in proc.stderr and "nothing was published" in proc.stderr
    assert store.current_version() == version and store.list_versions() == [version]
