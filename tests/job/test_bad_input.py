"""Every bad input: a message naming the file, line or parameter, exit 2, nothing published.

The offline job runs as a subprocess in the tests marked slow; each has a fast twin at the end, the same
test body with the CLI called in this process (support.artifacts.build_in_process).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.artifacts import ROOT, build_in_process

from models.artifact.store import ArtifactStore
from models.errors import InputError
from models.inputs.csv_file import read_interactions_csv

GOOD_CSV = "user_id,item_id,value\n" + "".join(f"u{u},i{(u * 7 + j) % 9},1\n" for u in range(30) for j in range(3))


def build(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "models.build", "--out", str(out), "--quiet", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def publish_good(root: Path, run) -> tuple[Path, str, list[str]]:
    """Publish GOOD_CSV into root/art with `run` (a build function): (artifacts root, live version, versions)."""
    good = root / "good.csv"
    good.write_text(GOOD_CSV)
    proc = run(root / "art", "--dataset", "csv", "--input", str(good), "--k", "4")
    assert proc.returncode == 0, proc.stderr
    store = ArtifactStore(root / "art")
    return root / "art", store.current_version(), store.list_versions()


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, str, list[str]]:
    """An artifacts root holding one good version, to check that failures leave it untouched."""
    return publish_good(tmp_path_factory.mktemp("root"), build)


CASES = {
    "malformed-row": ("user_id,item_id,value\nu1,i1,1\nu2,i2\n", [], "line 3: expected 3 fields, got 2"),
    "empty-file": ("", [], "empty file"),
    "header-only": ("user_id,item_id\n", [], "no interactions"),
    "missing-column": ("user,item_id\nu1,i1\n", [], "missing column(s) user_id"),
    "nan-value": ("user_id,item_id,value\nu1,i1,1\nu2,i2,nan\n", [], "line 3: value 'nan' is not finite"),
    "negative-value": ("user_id,item_id,value\nu1,i1,1\nu2,i2,-3\n", [], "line 3: negative value -3.0"),
    "text-value": ("user_id,item_id,value\nu1,i1,lots\n", [], "line 2: value 'lots' is not a number"),
    "empty-id": ("user_id,item_id,value\nu1,,1\n", [], "line 2: empty user or item id"),
    "duplicate-rejected": (
        "user_id,item_id,value\nu1,i1,1\nu2,i1,1\nu1,i1,2\n",
        ["--duplicates", "error"],
        "line 4: duplicate (user, item) pair ('u1', 'i1')",
    ),
    "bad-utf8": (b"user_id,item_id\nu1,i1\n\xff\xfe,i2\n", [], "not UTF-8"),
    "k-zero": (GOOD_CSV, ["--k", "0"], "--k must be an integer >= 1, got 0"),
    "negative-lambda": (GOOD_CSV, ["--lambda-denoising", "-1"], "--lambda-denoising must be a finite number >= 0"),
    "negative-lambda-wd": (GOOD_CSV, ["--lambda-weight-decay", "-0.5"], "--lambda-weight-decay must be a finite number >= 0"),
    "nan-lambda": (GOOD_CSV, ["--lambda-denoising", "nan"], "--lambda-denoising must be a finite number >= 0"),
    "keep-zero": (GOOD_CSV, ["--keep", "0"], "--keep must be >= 1"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_rejected_and_nothing_published(published, tmp_path, case):
    out, version, versions = published
    content, extra, message = CASES[case]
    path = tmp_path / f"{case}.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    proc = build(out, "--dataset", "csv", "--input", str(path), *extra)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    if not case.startswith(("k-", "negative-lambda", "nan-lambda", "keep")):
        assert str(path) in proc.stderr  # the message names the file
    assert "nothing was published" in proc.stderr
    store = ArtifactStore(out)
    assert store.current_version() == version
    assert store.list_versions() == versions
    assert not list(out.glob(".staging-*"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_path(published, tmp_path, kind):
    out, version, _ = published
    path = tmp_path / "nope.csv"
    if kind == "directory":
        path.mkdir()
    proc = build(out, "--dataset", "csv", "--input", str(path))
    assert proc.returncode == 2
    assert f"{path}: cannot read" in proc.stderr
    assert ArtifactStore(out).current_version() == version


@pytest.mark.slow
def test_csv_without_input_flag(published):
    out, version, _ = published
    proc = build(out, "--dataset", "csv")
    assert proc.returncode == 2 and "--input is required" in proc.stderr
    assert ArtifactStore(out).current_version() == version


@pytest.mark.slow
def test_goodbooks_folder_missing_files(published, tmp_path):
    out, version, _ = published
    proc = build(out, "--dataset", "goodbooks", "--input", str(tmp_path))
    assert proc.returncode == 2 and f"{tmp_path / 'ratings.csv'}: missing" in proc.stderr
    assert ArtifactStore(out).current_version() == version


@pytest.mark.slow
def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = build(blocker / "sub", "--dataset", "simulation", "--sim-users", "50", "--sim-items", "10", "--k", "2")
    assert proc.returncode == 2 and "--out" in proc.stderr and "cannot create" in proc.stderr


# ---- the CSV reader's accepted variants (documented policies) ----


def test_duplicates_summed_by_default(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("user_id,item_id,value\nu1,i1,1\nu1,i1,2.5\nu2,i1,1\n")
    ds = read_interactions_csv(p)
    assert ds.X.shape == (2, 1) and ds.X[0, 0] == pytest.approx(3.5)
    assert ds.source["duplicate_rows_merged"] == 1
    assert read_interactions_csv(p, duplicates="max").X[0, 0] == pytest.approx(2.5)
    assert read_interactions_csv(p, binarize=True).X[0, 0] == 1.0


def test_string_ids_value_optional_threshold_and_movielens(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("item_id,user_id\nbook one,alice\nbook two,alice\nbook one,bob\n")
    ds = read_interactions_csv(p)
    assert ds.user_ids == ["alice", "bob"] and ds.item_ids == ["book one", "book two"]
    np.testing.assert_array_equal(ds.X.toarray(), [[1, 1], [1, 0]])
    m = tmp_path / "ml.csv"
    m.write_text("userId,movieId,rating,timestamp\n1,10,4.5,0\n1,20,2.0,0\n2,10,5,0\n")
    ds = read_interactions_csv(m, user_col="userId", item_col="movieId", value_col="rating", min_value=3.0, binarize=True)
    assert ds.item_ids == ["10"] and ds.X.nnz == 2 and set(ds.X.data) == {1.0}


def test_reader_raises_input_error_type(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("user_id,item_id,value\nu,i,-1\n")
    with pytest.raises(InputError, match=r"x\.csv: line 2"):
        read_interactions_csv(p)


# --------------------------------------------------------------------------- in-process (fast)
# The subprocess tests above with the CLI called in this process (`make test-fast`): the same bodies.


def build_in_this_process(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return build_in_process(["--out", str(out), "--quiet", *args])


@pytest.fixture
def in_process(monkeypatch) -> None:
    """This module's build() calls the CLI in this process instead of a subprocess."""
    monkeypatch.setattr(sys.modules[__name__], "build", build_in_this_process)


@pytest.fixture(scope="module")
def published_in_process(tmp_path_factory) -> tuple[Path, str, list[str]]:
    """`published`, built in this process."""
    return publish_good(tmp_path_factory.mktemp("root-in-process"), build_in_this_process)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_rejected_and_nothing_published_in_process(in_process, published_in_process, tmp_path, case):
    test_bad_input_rejected_and_nothing_published(published_in_process, tmp_path, case)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_path_in_process(in_process, published_in_process, tmp_path, kind):
    test_unreadable_path(published_in_process, tmp_path, kind)


def test_csv_without_input_flag_in_process(in_process, published_in_process):
    test_csv_without_input_flag(published_in_process)


def test_goodbooks_folder_missing_files_in_process(in_process, published_in_process, tmp_path):
    test_goodbooks_folder_missing_files(published_in_process, tmp_path)


def test_unwritable_out_in_process(in_process, tmp_path):
    test_unwritable_out(tmp_path)
