"""The offline job end to end as a subprocess: artifacts, atomic publish, retention, index contents.

The subprocess runs are slow (`-m slow`); each has a fast twin below, the same test body with the CLI
called in this process (support.artifacts.build_in_process), and the goodbooks reader on a small
hand-made folder of that layout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
from support.artifacts import ROOT, build_in_process

import models.artifact.manifest
from models.artifact.manifest import METRICS
from models.artifact.store import ArtifactStore, verify_version
from models.fit.closed_forms import DENOISING_VARIANTS, MODELS, model_factors
from models.indexes.faiss_index import read_index

SMALL_SIM = [
    "--sim-users",
    "1500",
    "--sim-items",
    "120",
    "--k",
    "12",
    "--lambda-denoising",
    "200",
    "--lambda-weight-decay",
    "10",
    "--no-diagnostics",
]  # diagnostics: tests/job/test_diagnostics.py


def run_build(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "models.build", "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("art")
    proc = run_build(out, "--dataset", "simulation", *SMALL_SIM)
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.mark.slow
def test_publishes_a_verified_version(built):
    out, proc = built
    store = ArtifactStore(out)
    version = store.current_version()
    assert version and store.list_versions() == [version]
    manifest = verify_version(store.version_dir(version))
    assert manifest["counts"] == {"users": 1500, "items": 120, "interactions": manifest["counts"]["interactions"], "k": 12}
    assert set(manifest["models"]) == set(MODELS)
    assert {f"{side}/{m}/{x}" for side in ("items", "users") for m in MODELS for x in METRICS} == set(manifest["indexes"])
    assert 0 <= manifest["svd"]["relative_residual"] < 0.05
    assert len(manifest["svd"]["singular_values"]) == 12
    for key in ("fingerprint",):
        assert len(manifest["dataset"][key]) == 64
    assert manifest["libraries"]["faiss"]
    assert not list(out.glob(".staging-*"))
    # progress on stderr for each step, a summary on stdout
    assert "svd" in proc.stderr and "index users-weight-decay-projected" in proc.stderr
    assert f"published {version}" in proc.stdout and "weight-decay" in proc.stdout


@pytest.mark.slow
def test_projected_stored_once_for_denoising(built):
    out, _ = built
    store = ArtifactStore(out)
    manifest = verify_version(store.version_dir(store.current_version()))
    for side in ("items", "users"):
        files = {manifest["indexes"][f"{side}/{v}/projected"]["file"] for v in DENOISING_VARIANTS}
        assert len(files) == 1
        assert manifest["indexes"][f"{side}/weight-decay/projected"]["file"] not in files


@pytest.mark.slow
def test_index_contents_match_an_independent_fit(tmp_path):
    """Index vectors equal B, XA and the projected cosines recomputed from a dense SVD of X.

    The simulation's tail singular values are close together, so the randomised SVD gets enough
    power iterations here to match LAPACK to the tolerance below.
    """
    out = tmp_path
    proc = run_build(out, "--dataset", "simulation", *SMALL_SIM, "--svd-n-iter", "40", "--quiet")
    assert proc.returncode == 0, proc.stderr
    vdir = ArtifactStore(out).version_dir(ArtifactStore(out).current_version())
    manifest = json.loads((vdir / "manifest.json").read_text())
    X = sp.load_npz(vdir / "interactions.npz").toarray().astype(np.float64)
    _, s_all, Vt = np.linalg.svd(X, full_matrices=False)
    s, V = s_all[:12], Vt[:12].T
    lam1, lam2 = 200.0, 10.0

    def vectors(key: str) -> np.ndarray:
        idx = read_index(vdir / manifest["indexes"][key]["file"])
        return idx.reconstruct_n(0, idx.ntotal)

    def same_up_to_sign(got: np.ndarray, want: np.ndarray) -> None:
        # singular vectors carry an arbitrary sign per dimension
        signs = np.sign(np.sum(got * want, axis=0))
        signs[signs == 0] = 1
        np.testing.assert_allclose(got * signs, want, atol=2e-4 * max(1.0, np.abs(want).max()))

    for model in MODELS:
        A, B = model_factors(V, s, model, lam1, lam2)
        P = X @ A
        same_up_to_sign(vectors(f"items/{model}/dot"), B)
        same_up_to_sign(vectors(f"users/{model}/dot"), P)
        Xhat = P @ B.T
        for side, M in (("items", Xhat.T), ("users", Xhat)):
            proj = vectors(f"{side}/{model}/projected").astype(np.float64)
            norms = np.linalg.norm(M, axis=1)
            ok = norms > 0
            want = (M[ok] @ M[ok].T) / np.outer(norms[ok], norms[ok])
            np.testing.assert_allclose(proj[ok] @ proj[ok].T, want, atol=1e-4)
            cos = vectors(f"{side}/{model}/cosine")
            np.testing.assert_allclose(np.linalg.norm(cos[np.linalg.norm(cos, axis=1) > 0], axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_metadata_and_id_maps(built):
    out, _ = built
    vdir = ArtifactStore(out).version_dir(ArtifactStore(out).current_version())
    items = json.loads((vdir / "items.json").read_text())
    users = json.loads((vdir / "users.json").read_text())
    assert len(items) == 120 and len(users) == 1500
    assert all(it["categories"] and it["title"] for it in items)
    assert len({it["id"] for it in items}) == 120
    pop = np.load(vdir / "item_popularity.npy")
    X = sp.load_npz(vdir / "interactions.npz")
    np.testing.assert_array_equal(pop, np.asarray((X > 0).sum(axis=0)).ravel())


@pytest.mark.slow
def test_rebuild_publishes_new_version_and_retention(tmp_path):
    versions = []
    for seed in range(3):
        proc = run_build(tmp_path, "--dataset", "simulation", *SMALL_SIM, "--seed", str(seed), "--keep", "2", "--quiet")
        assert proc.returncode == 0, proc.stderr
        versions.append(ArtifactStore(tmp_path).current_version())
    assert len(set(versions)) == 3
    assert ArtifactStore(tmp_path).list_versions() == sorted(versions[1:])


@pytest.mark.slow
def test_leftover_staging_of_a_killed_build_is_cleaned(tmp_path):
    dead = tmp_path / ".staging-20200101T000000Z-deadbeef-999999999"
    dead.mkdir(parents=True)
    (dead / "junk").write_text("partial")
    proc = run_build(tmp_path, "--dataset", "simulation", *SMALL_SIM)
    assert proc.returncode == 0, proc.stderr
    assert not dead.exists()
    assert "leftovers" in proc.stderr


@pytest.mark.slow
def test_hnsw_recall_recorded(tmp_path):
    proc = run_build(tmp_path, "--dataset", "simulation", *SMALL_SIM, "--hnsw", "--quiet")
    assert proc.returncode == 0, proc.stderr
    store = ArtifactStore(tmp_path)
    manifest = verify_version(store.version_dir(store.current_version()))
    for key, entry in manifest["indexes"].items():
        h = entry["hnsw"]
        assert 0.0 <= h["recall_at_10"] <= 1.0, key
        assert (store.version_dir(store.current_version()) / h["file"]).is_file()
    # on a catalogue this small HNSW with efSearch 128 is essentially exact on normalised vectors
    assert manifest["indexes"]["items/denoising-symmetric/cosine"]["hnsw"]["recall_at_10"] > 0.95


@pytest.mark.slow
def test_goodbooks_build(tmp_path):
    data = ROOT.parent / "shared" / "data" / "goodbooks"
    if not (data / "ratings.csv").is_file():
        pytest.skip(f"goodbooks dataset absent at {data}")
    proc = run_build(tmp_path, "--dataset", "goodbooks", "--input", str(data), "--k", "32", "--quiet", "--no-diagnostics")
    assert proc.returncode == 0, proc.stderr
    store = ArtifactStore(tmp_path)
    vdir = store.version_dir(store.current_version())
    manifest = verify_version(vdir)
    assert manifest["counts"]["items"] == 1188 and manifest["counts"]["users"] == 50768
    assert manifest["counts"]["interactions"] == 571989
    items = json.loads((vdir / "items.json").read_text())
    titles = {it["title"] for it in items}
    assert "The Kite Runner" in titles
    # the folder README's rule: a genre shelf used at least a tenth as often as the book's top shelf
    genres = {it["title"]: it["categories"] for it in items}
    assert "historical-fiction" in genres["The Kite Runner"]
    assert {"memoir", "non-fiction"} <= set(genres["The Diary of a Young Girl"])
    assert sum(bool(c) for c in genres.values()) > 0.25 * len(items)


# --------------------------------------------------------------------------- in-process (fast)
# The tests above with the CLI called in this process (`make test-fast`): the same bodies and assertions.


def run_build_in_process(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return build_in_process(["--out", str(out), *args])


@pytest.fixture
def in_process(monkeypatch) -> None:
    """This module's run_build calls the CLI in this process instead of a subprocess."""
    monkeypatch.setattr(sys.modules[__name__], "run_build", run_build_in_process)


@pytest.fixture
def one_version_per_second(monkeypatch) -> None:
    """Version names sort by their build second (models.artifact.manifest.version_name); builds in this
    process take less than a second, so each one sees a clock one second later than the one before."""
    clock = iter(range(int(time.time()), 2**31))
    fake = SimpleNamespace(strftime=time.strftime, gmtime=lambda: time.gmtime(next(clock)))
    monkeypatch.setattr(models.artifact.manifest, "time", fake)


@pytest.fixture(scope="module")
def built_in_process(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("art-in-process")
    proc = run_build_in_process(out, "--dataset", "simulation", *SMALL_SIM)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_publishes_a_verified_version_in_process(built_in_process):
    test_publishes_a_verified_version(built_in_process)


def test_projected_stored_once_for_denoising_in_process(built_in_process):
    test_projected_stored_once_for_denoising(built_in_process)


def test_index_contents_match_an_independent_fit_in_process(in_process, tmp_path):
    test_index_contents_match_an_independent_fit(tmp_path)


def test_metadata_and_id_maps_in_process(built_in_process):
    test_metadata_and_id_maps(built_in_process)


def test_rebuild_publishes_new_version_and_retention_in_process(in_process, one_version_per_second, tmp_path):
    test_rebuild_publishes_new_version_and_retention(tmp_path)


def test_leftover_staging_of_a_killed_build_is_cleaned_in_process(in_process, tmp_path):
    test_leftover_staging_of_a_killed_build_is_cleaned(tmp_path)


def test_hnsw_recall_recorded_in_process(in_process, tmp_path):
    test_hnsw_recall_recorded(tmp_path)


def write_goodbooks(folder: Path) -> None:
    """A goodbooks folder in miniature: 40 readers of 6 books, their titles, and shelves (tags) per book."""
    folder.mkdir(parents=True, exist_ok=True)
    ratings = ["user_id,book_id,rating"]
    for u in range(1, 41):
        books = (1, 2, 3) if u % 2 else (4, 5, 6)
        ratings += [f"{u},{b},{1 + (u + b) % 5}" for b in books]
    (folder / "ratings.csv").write_text("\n".join(ratings) + "\n", encoding="utf-8")
    titles = ["The Kite Runner", "Dune", "Emma", "The Diary of a Young Girl", "Dracula", "Untagged"]
    books = ["book_id,goodreads_book_id,title"] + [f'{b},{100 + b},"{t}"' for b, t in enumerate(titles, start=1)]
    (folder / "books.csv").write_text("\n".join(books) + "\n", encoding="utf-8")
    tags = {1: "to-read", 2: "historical-fiction", 3: "sci-fi", 4: "memoir", 5: "nonfiction", 6: "horror", 7: "classics"}
    (folder / "tags.csv").write_text("tag_id,tag_name\n" + "".join(f"{i},{name}\n" for i, name in tags.items()), encoding="utf-8")
    shelves = {  # goodreads_book_id -> {tag_id: count}; a genre counts at >= a tenth of the book's top shelf
        101: {1: 1000, 2: 150, 7: 99},  # historical-fiction (150 >= 100); classics (99) just below the share
        102: {3: 500, 1: 400},  # sci-fi is science-fiction
        103: {1: 10, 7: 1},  # classics: exactly a tenth
        104: {4: 300, 5: 200, 1: 250},  # memoir and non-fiction ("nonfiction")
        105: {6: 5, 1: 5000},  # horror far below a tenth of to-read
    }
    rows = ["goodreads_book_id,tag_id,count"] + [f"{g},{t},{c}" for g, by_tag in shelves.items() for t, c in by_tag.items()]
    (folder / "book_tags.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_goodbooks_build_in_process(tmp_path):
    """test_goodbooks_build's checks on a miniature folder of the same layout (the real one is 570k ratings)."""
    data = tmp_path / "goodbooks"
    write_goodbooks(data)
    out = tmp_path / "art"
    proc = run_build_in_process(out, "--dataset", "goodbooks", "--input", str(data), "--k", "4", "--quiet", "--no-diagnostics")
    assert proc.returncode == 0, proc.stderr
    store = ArtifactStore(out)
    vdir = store.version_dir(store.current_version())
    manifest = verify_version(vdir)
    assert manifest["counts"]["items"] == 6 and manifest["counts"]["users"] == 40
    assert manifest["counts"]["interactions"] == 120
    items = json.loads((vdir / "items.json").read_text())
    genres = {it["title"]: it["categories"] for it in items}
    assert set(genres) == {"The Kite Runner", "Dune", "Emma", "The Diary of a Young Girl", "Dracula", "Untagged"}
    # the folder README's rule: a genre shelf used at least a tenth as often as the book's top shelf
    assert genres["The Kite Runner"] == ["historical-fiction"]
    assert genres["Dune"] == ["science-fiction"]
    assert genres["Emma"] == ["classics"]
    assert genres["The Diary of a Young Girl"] == ["memoir", "non-fiction"]
    assert genres["Dracula"] == [] and genres["Untagged"] == []
