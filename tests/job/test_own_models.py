"""Models besides the closed forms, end to end through the job's CLI: implicit ALS/BPR and imported factors.

Each is checked against an independent computation: implicit run again by the test, the dense
Xhat = P Q^T, the dense X Q.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from support.artifacts import build_in_process
from threadpoolctl import threadpool_limits

from models.artifact.manifest import index_entries, recommend_entries
from models.diagnostics.gauge import GaugeParams, gauge_probe
from models.indexes.faiss_index import flat_vectors, read_index
from models.inputs.simulation import SimulationSpec, simulate

SIM = ["--dataset", "simulation", "--sim-users", "400", "--sim-items", "60", "--k", "8", "--seed", "3", "--quiet"]
FAST = ["--no-diagnostics", "--gauge-queries", "40", "--gauge-user-queries", "40"]


def _version_dir(out: Path) -> Path:
    return out / "versions" / (out / "CURRENT").read_text().strip()


def _vectors(vdir: Path, rel: str) -> np.ndarray:
    index = read_index(vdir / rel)  # flat_vectors is a view into the index: copy while it lives
    return np.array(flat_vectors(index))


def _manifest(vdir: Path) -> dict:
    return json.loads((vdir / "manifest.json").read_text())


def _dataset():
    ds, _ = simulate(SimulationSpec(n_users=400, n_items=60, seed=3))
    return ds


def _dense_cosine_rows(M: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(M, axis=1, keepdims=True)
    N = np.divide(M, n, out=np.zeros_like(M), where=n > 0)
    return N @ N.T


def test_als_served_factors_are_implicits_own(tmp_path):
    """The job's ALS serves exactly what implicit produces with the same data, parameters and seed."""
    from implicit.cpu.als import AlternatingLeastSquares

    out = tmp_path / "art"
    proc = build_in_process([*SIM, *FAST, "--out", str(out), "--train", "als", "--train-factors", "6", "--als-iterations", "4"])
    assert proc.returncode == 0, proc.stderr
    vdir = _version_dir(out)
    ds = _dataset()
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=6, iterations=4, regularization=0.01, alpha=1.0, random_state=3)
        model.fit(sp.csr_matrix(ds.X, dtype=np.float32), show_progress=False)
    entries = {str(k): e for k, e in index_entries(_manifest(vdir)).items()}
    np.testing.assert_allclose(_vectors(vdir, entries["items/als/dot"].file), model.item_factors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_vectors(vdir, entries["users/als/dot"].file), model.user_factors, rtol=1e-5, atol=1e-6)
    info = _manifest(vdir)["models"]["als"]
    assert info["source"] == "implicit" and info["algorithm"] == "als" and info["k"] == 6 and info["seed"] == 3


def _write_import(folder: Path, ds, rng: np.random.Generator, k: int, users: bool) -> tuple[np.ndarray, np.ndarray]:
    """Factors with very different column scales, for a shuffled id order; returns (P, Q) in the data's order."""
    folder.mkdir()
    scales = np.logspace(-2, 2, k)
    Q = rng.standard_normal((ds.n_items, k)) * scales
    P = rng.standard_normal((ds.n_users, k)) / scales
    order = rng.permutation(ds.n_items)
    np.save(folder / "item_factors.npy", Q[order])
    (folder / "item_ids.txt").write_text("\n".join(ds.item_ids[i] for i in order) + "\n")
    if users:
        uorder = rng.permutation(ds.n_users)
        np.save(folder / "user_factors.npy", P[uorder])
        (folder / "user_ids.txt").write_text("\n".join(ds.user_ids[u] for u in uorder) + "\n")
    return P, Q


def test_imported_projected_is_cosine_of_dense_xhat(tmp_path):
    """Projected scores of an imported model equal cosine over the dense P Q^T (rows for users, columns for items)."""
    ds = _dataset()
    P, Q = _write_import(tmp_path / "two-tower", ds, np.random.default_rng(0), 5, users=True)
    out = tmp_path / "art"
    proc = build_in_process([*SIM, *FAST, "--out", str(out), "--import-factors", f"tt={tmp_path / 'two-tower'}"])
    assert proc.returncode == 0, proc.stderr
    vdir = _version_dir(out)
    manifest = _manifest(vdir)
    entries = {str(k): e for k, e in index_entries(manifest).items()}
    Xhat = P @ Q.T
    items = _vectors(vdir, entries["items/tt/projected"].file).astype(np.float64)
    users = _vectors(vdir, entries["users/tt/projected"].file).astype(np.float64)
    np.testing.assert_allclose(items @ items.T, _dense_cosine_rows(Xhat.T), atol=2e-5)
    np.testing.assert_allclose(users @ users.T, _dense_cosine_rows(Xhat), atol=2e-5)
    # the dot indexes are the factors as given, in the data's row order
    np.testing.assert_allclose(_vectors(vdir, entries["items/tt/dot"].file), Q, rtol=1e-6)
    # /recommend projected: Xhat_ui / (||Xhat_u|| ||Xhat_:,i||)
    rec = recommend_entries(manifest)[("tt", "projected")]
    queries = np.load(vdir / str(rec.query_file)).astype(np.float64)
    rec_items = _vectors(vdir, rec.items.file).astype(np.float64)
    want = Xhat / np.linalg.norm(Xhat, axis=1, keepdims=True) / np.linalg.norm(Xhat, axis=0, keepdims=True)
    np.testing.assert_allclose(queries @ rec_items.T, want, atol=2e-5)
    assert manifest["models"]["tt"]["source"] == "imported"
    assert manifest["models"]["tt"]["users"] == "user factors"


def test_imported_without_users_serves_x_q(tmp_path):
    ds = _dataset()
    _, Q = _write_import(tmp_path / "items-only", ds, np.random.default_rng(1), 4, users=False)
    out = tmp_path / "art"
    proc = build_in_process([*SIM, *FAST, "--out", str(out), "--import-factors", f"lfm={tmp_path / 'items-only'}"])
    assert proc.returncode == 0, proc.stderr
    vdir = _version_dir(out)
    manifest = _manifest(vdir)
    entries = {str(k): e for k, e in index_entries(manifest).items()}
    want = ds.X.toarray().astype(np.float64) @ Q  # a user is the sum of the item vectors it consumed
    np.testing.assert_allclose(_vectors(vdir, entries["users/lfm/dot"].file), want, rtol=1e-5, atol=1e-5)
    assert manifest["models"]["lfm"]["users"].startswith("P = X Q")


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("nan", r"item_factors\.npy.*(NaN|non-finite)"),
        ("shape", r"item_factors\.npy.*item_ids\.txt|item_ids\.txt.*item_factors\.npy"),
        ("unknown", r"item_ids\.txt: 2 item ids are not in the interaction data \(first: 'zz0', 'zz1'\)"),
        ("reserved", r"'als' is the name of a built-in model"),
    ],
)
def test_bad_imports_publish_nothing(tmp_path, layout, message):
    """A bad factor file: exit 2, a message naming the file and the problem, the previous version untouched."""
    out = tmp_path / "art"
    assert build_in_process([*SIM, *FAST, "--gauge-transforms", "0", "--out", str(out)]).returncode == 0
    before = (out / "CURRENT").read_text()
    ds = _dataset()
    folder = tmp_path / "bad"
    folder.mkdir()
    Q = np.random.default_rng(0).standard_normal((ds.n_items, 3))
    ids = list(ds.item_ids)
    name = "imp"
    if layout == "nan":
        Q[5, 1] = np.nan
    elif layout == "shape":
        ids = ids[:-1]
    elif layout == "unknown":
        ids[:2] = ["zz0", "zz1"]
    elif layout == "reserved":
        name = "als"
    np.save(folder / "item_factors.npy", Q)
    (folder / "item_ids.txt").write_text("\n".join(ids) + "\n")
    proc = build_in_process([*SIM, *FAST, "--out", str(out), "--import-factors", f"{name}={folder}"])
    assert proc.returncode == 2
    assert "nothing was published" in proc.stderr
    import re

    assert re.search(message, proc.stderr), proc.stderr
    assert (out / "CURRENT").read_text() == before
    assert len(list((out / "versions").iterdir())) == 1


def test_gauge_probe_in_the_artifact(tmp_path):
    """Projected comes out exactly 1.0 for every model; cosine of a denoising variant moves under D."""
    out = tmp_path / "art"
    proc = build_in_process([*SIM, "--no-diagnostics", "--out", str(out), "--train", "bpr", "--bpr-iterations", "5"])
    assert proc.returncode == 0, proc.stderr
    vdir = _version_dir(out)
    manifest = _manifest(vdir)
    probes = json.loads((vdir / manifest["gauge"]).read_text())
    assert set(probes) == set(manifest["models"])
    for model, probe in probes.items():
        assert probe["transforms"] == 4 and probe["model"] == model
        for side in ("items", "users"):
            assert probe["sides"][side]["projected"] == {"jaccard_mean": 1.0, "jaccard_p05": 1.0, "rbo_mean": 1.0}
    assert probes["denoising-symmetric"]["sides"]["items"]["cosine"]["jaccard_mean"] < 0.95
    assert probes["bpr"]["sides"]["items"]["cosine"]["jaccard_mean"] < 0.95
    # The four denoising variants serve the shared indexes built from the first one's factors: their shared
    # figures are that probe's; every other model is the first (and only) one of its group.
    groups = manifest["projected_groups"]
    for members in groups.values():
        for model in members:
            assert probes[model]["shared_from"] == members[0]
            for side in ("items", "users"):
                for metric in ("projected", "projected-centered", "whitened"):
                    assert probes[model]["sides"][side][metric] == probes[members[0]]["sides"][side][metric]
    assert len(groups["denoising"]) == 4 and groups["bpr"] == ["bpr"]
    # The dot and cosine figures are each model's own: a probe of the variant's served factors (float32, so
    # within a little of the build's float64 probe), and not the first variant's figures.
    member = "denoising-item-orthonormal"
    P = _vectors(vdir, manifest["indexes"][f"users/{member}/dot"]["file"]).astype(np.float64)
    Q = _vectors(vdir, manifest["indexes"][f"items/{member}/dot"]["file"]).astype(np.float64)
    again = gauge_probe(P, Q, GaugeParams(seed=3))
    for side in ("items", "users"):
        for metric in ("dot", "cosine"):
            mine = probes[member]["sides"][side][metric]
            assert mine["jaccard_mean"] == pytest.approx(again["sides"][side][metric]["jaccard_mean"], abs=0.02)
        assert again["sides"][side]["projected"]["jaccard_mean"] == 1.0  # its own shared vectors are invariant too
    assert any(
        probes[member]["sides"][side][metric] != probes["denoising-symmetric"]["sides"][side][metric]
        for side in ("items", "users")
        for metric in ("dot", "cosine")
    )
