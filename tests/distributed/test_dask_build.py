"""`--engine dask` against the in-process job on the same Parquet directory: the same singular values (both checked
against a dense LAPACK SVD computed here), the same served neighbour lists (ties aside), the same id maps and
interactions; progress of the distributed steps and the dashboard address on stderr; bad files refused with the file
named and nothing published; flags the engine cannot honour refused before any work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from support.artifacts import ROOT

from models.artifact.manifest import MANIFEST
from models.artifact.store import ArtifactStore
from models.inputs.simulation import SimulationSpec, simulate

pytestmark = pytest.mark.slow

# k = 6: the simulation's spectrum has a clear gap after s_6 (31 vs 24), so both randomised SVDs converge to one
# subspace and the lists are comparable; at k = 16 the tail is noise (s_8..s_40 within 20 % of each other), and
# two random starts legitimately serve different lists. 12 power iterations: residuals ~1e-8 (6 leave ~7e-5, and
# scores that differ by 5e-4 of their size)
FLAGS = ["--k", "6", "--svd-n-iter", "12", "--no-diagnostics", "--gauge-transforms", "0", "--quiet", "--lambda-denoising", "100"]
S_TOLERANCE = 1e-9  # |s_engine - s_exact| / s_1 (docs/scale-out.md)


def _parquet_dir(root: Path, n_files: int = 3) -> sp.csr_matrix:
    """A simulation's interactions shuffled into n_files Parquet files; returns X in the ids' first-appearance order."""
    ds, _ = simulate(SimulationSpec(n_users=2500, n_items=300, n_clusters=5, seed=3))
    X = ds.X.tocoo()
    order = np.random.default_rng(0).permutation(X.nnz)
    root.mkdir(parents=True)
    users, items = np.array(ds.user_ids), np.array(ds.item_ids)
    for j, part in enumerate(np.array_split(order, n_files)):
        pq.write_table(
            pa.table({"user_id": users[X.row[part]], "item_id": items[X.col[part]], "value": X.data[part].astype(np.float64)}),
            root / f"part-{j}.parquet",
        )
    return ds.X


def _build(out: Path, data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "models.build", "--dataset", "parquet", "--input", str(data), "--out", str(out), *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _version(out: Path) -> Path:
    return out / "versions" / (out / "CURRENT").read_text().strip()


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    _parquet_dir(root / "data")
    local = _build(root / "in-process", root / "data", *FLAGS)
    assert local.returncode == 0, local.stderr
    progress = [f for f in FLAGS if f != "--quiet"]
    dask = _build(root / "dask", root / "data", *progress, "--engine", "dask", "--dask-workers", "2", "--dask-block-nnz", "20000")
    assert dask.returncode == 0, dask.stderr
    return _version(root / "in-process"), _version(root / "dask"), dask.stderr


def test_singular_values_agree_with_each_other_and_a_dense_svd(both):
    local, dask, _ = both
    m_local, m_dask = (json.loads((v / MANIFEST).read_text()) for v in (local, dask))
    assert m_dask["svd"]["method"].startswith("dask randomized") and m_dask["dataset"]["engine"] == "dask"
    assert m_dask["dataset"]["blocks"] >= 4  # really in blocks: 20,000 interactions each
    X = sp.load_npz(local / "interactions.npz").toarray()
    exact = np.linalg.svd(X.astype(np.float64), compute_uv=False)[:6]
    for m in (m_local, m_dask):
        s = np.array(m["svd"]["singular_values"])
        assert np.max(np.abs(s - exact)) / exact[0] < S_TOLERANCE
        assert m["svd"]["relative_residual"] < 1e-6  # ||X V - U S|| / ||s||: converged
    assert m_dask["svd"]["energy_captured"] == pytest.approx(m_local["svd"]["energy_captured"], rel=1e-6)


def test_same_ids_interactions_and_popularity(both):
    local, dask, _ = both
    for name in ("users.json", "items.json"):
        assert json.loads((local / name).read_text()) == json.loads((dask / name).read_text())
    a, b = sp.load_npz(local / "interactions.npz"), sp.load_npz(dask / "interactions.npz")
    assert (a != b).nnz == 0 and a.dtype == b.dtype
    np.testing.assert_array_equal(np.load(local / "item_popularity.npy"), np.load(dask / "item_popularity.npy"))


def _same_lists(ids_a: np.ndarray, scores_a: np.ndarray, ids_b: np.ndarray, scores_b: np.ndarray, what: str) -> int:
    """Asserts that two top-k lists (rows, k) agree up to ties: equal scores (to 1e-5 of the largest), and every id
    in one list but not the other scored within that tolerance of the list's last score. Returns the tie rows."""
    tol = 1e-5 * max(1.0, float(np.abs(scores_a).max()))
    np.testing.assert_allclose(scores_a, scores_b, atol=tol, err_msg=what)
    ties = 0
    for r in range(ids_a.shape[0]):
        only = set(ids_a[r].tolist()) ^ set(ids_b[r].tolist())
        if not only:
            continue
        ties += 1
        last = scores_a[r, -1]
        for ids, scores in ((ids_a, scores_a), (ids_b, scores_b)):
            for j, i in enumerate(ids[r]):
                if i in only:
                    assert abs(scores[r, j] - last) <= tol, f"{what}: row {r} differs beyond a tie"
    return ties


def test_served_neighbour_lists_are_the_same(both):
    local, dask, _ = both
    m_local, m_dask = (json.loads((v / MANIFEST).read_text()) for v in (local, dask))
    assert m_local["indexes"].keys() == m_dask["indexes"].keys()
    checked, ties, rows = 0, 0, 0
    for key, entry in m_local["indexes"].items():
        other = m_dask["indexes"][key]
        if entry.get("neighbours"):  # /similar-items' stored exact lists
            a = [np.load(local / entry["neighbours"][f])[:, :10] for f in ("ids", "scores")]
            b = [np.load(dask / other["neighbours"][f])[:, :10] for f in ("ids", "scores")]
        else:  # exact search of the index (/similar-users), a sample of 200 rows
            ia, ib = faiss.read_index(str(local / entry["file"])), faiss.read_index(str(dask / other["file"]))
            queries = np.arange(0, ia.ntotal, max(1, ia.ntotal // 200))
            sa, la = ia.search(ia.reconstruct_batch(queries), 10)
            sb, lb = ib.search(ib.reconstruct_batch(queries), 10)
            a, b = [la, sa], [lb, sb]
        ties += _same_lists(a[0], a[1], b[0], b[1], key)
        rows += a[0].shape[0]
        checked += 1
    assert checked == len(m_local["indexes"]) and checked >= 40
    assert ties <= 0.01 * rows  # ties are rare (dot and cosine of the weight-decay model's surviving dimension)


def test_recommend_query_vectors_rank_items_the_same(both):
    """The saved user query vectors of /recommend's shared metrics (written by the Dask workers in place) give each
    user the in-process top 10 items from the items index, with the same scores (ties aside)."""
    local, dask, _ = both
    m_local, m_dask = (json.loads((v / MANIFEST).read_text()) for v in (local, dask))
    checked = 0
    for model, by_metric in m_local["recommend"].items():
        for metric, entry in by_metric.items():
            if "query_file" not in entry:
                continue
            other = m_dask["recommend"][model][metric]
            lists = []
            for version, e in ((local, entry), (dask, other)):
                queries = np.load(version / e["query_file"])
                assert queries.dtype == np.float32 and queries.shape[0] == 2500
                scores, ids = faiss.read_index(str(version / e["items"]["file"])).search(queries, 10)
                lists += [ids, scores]
            _same_lists(lists[0], lists[1], lists[2], lists[3], f"{model} {metric}")
            checked += 1
    assert checked >= 10  # projected and projected-centered of every model


def test_progress_of_distributed_steps_and_dashboard(both):
    _, _, stderr = both
    assert "dask: LocalCluster of 2 worker processes, 2 workers" in stderr
    assert "dashboard http://127.0.0.1:" in stderr
    for step in ("checking 3 files on the workers", "id maps", "row blocks", "power iteration 12/12", "tsqr"):
        assert step in stderr, step


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing-column", "part-1.parquet: missing column(s) item_id"),
        ("nan", "part-2.parquet: row 4: value nan is not finite"),
    ],
)
def test_bad_file_refused_and_nothing_published(tmp_path, case, message):
    data = tmp_path / "data"
    _parquet_dir(data)
    out = tmp_path / "art"
    ok = _build(out, data, *FLAGS, "--engine", "dask")
    assert ok.returncode == 0, ok.stderr
    store = ArtifactStore(out)
    version = store.current_version()
    if case == "missing-column":
        table = pq.read_table(data / "part-1.parquet").drop(["item_id"])
        pq.write_table(table, data / "part-1.parquet")
    else:
        table = pq.read_table(data / "part-2.parquet")
        values = table.column("value").to_numpy().copy()
        values[4] = np.nan
        pq.write_table(table.set_column(2, "value", pa.array(values)), data / "part-2.parquet")
    bad = _build(out, data, *FLAGS, "--engine", "dask")
    assert bad.returncode == 2, bad.stderr
    assert f"{data / message.split(':')[0]}:{message.split(':', 1)[1]}" in bad.stderr
    assert "nothing was published" in bad.stderr and "Traceback" not in bad.stderr
    assert store.current_version() == version and store.list_versions() == [version]
    assert not list(out.glob(".staging-*"))


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--evaluate"], "--evaluate is not available with --engine dask"),
        (["--train", "als"], "--train is not available with --engine dask"),
        (["--preprocess", "ips"], "--preprocess is not available with --engine dask"),
        (["--dataset", "simulation"], "--engine dask reads --dataset parquet"),
        (["--dask-block-nnz", "0"], "--dask-block-nnz must be >= 1"),
    ],
)
def test_flags_the_engine_cannot_honour(tmp_path, flags, message):
    from support.artifacts import build_in_process

    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"user_id": ["a"], "item_id": ["x"]}), data / "p.parquet")
    args = ["--dataset", "parquet", "--input", str(data), "--out", str(tmp_path / "art"), "--quiet", "--engine", "dask"]
    proc = build_in_process([*args, *flags])
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "art" / "CURRENT").exists()


def test_dask_flags_without_the_engine(tmp_path):
    from support.artifacts import build_in_process

    proc = build_in_process(["--out", str(tmp_path), "--quiet", "--dask-scheduler", "tcp://127.0.0.1:1"])
    assert proc.returncode == 2 and "--dask-scheduler: only with --engine dask" in proc.stderr


def test_unreachable_scheduler_is_named(tmp_path):
    from support.artifacts import build_in_process

    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"user_id": ["a"], "item_id": ["x"]}), data / "p.parquet")
    args = ["--dataset", "parquet", "--input", str(data), "--out", str(tmp_path / "art"), "--quiet", "--engine", "dask"]
    proc = build_in_process([*args, "--dask-scheduler", "tcp://127.0.0.1:9"])
    assert proc.returncode == 2 and "--dask-scheduler tcp://127.0.0.1:9: cannot connect" in proc.stderr, proc.stderr
