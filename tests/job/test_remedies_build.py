"""The paper's remedies through the job's CLI: models fitted on transformed matrices (--preprocess) and the
model trained against cosine (--train cosine-mf), each checked against a dense computation made here.

At full rank (k = n_items) objective 1's closed form is the ridge solution A B^T = (X_t^T X_t + lam I)^-1 X_t^T X_t
(PAPER.md), so the served vectors of a transformed model can be recomputed from the dense transformed matrix alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.artifacts import build_in_process

from models.indexes.faiss_index import flat_vectors, read_index
from models.inputs.simulation import SimulationSpec, simulate

N_USERS, N_ITEMS, LAM = 300, 12, 50.0
SIM = ["--dataset", "simulation", "--sim-users", str(N_USERS), "--sim-items", str(N_ITEMS), "--k", str(N_ITEMS)]
FLAGS = [*SIM, "--seed", "4", "--quiet", "--no-diagnostics", "--gauge-transforms", "2", "--lambda-denoising", str(LAM)]
FLAGS += ["--lambda-weight-decay", "2"]  # below the small matrix's singular values: weight decay keeps dimensions
VARIANTS = ("denoising-symmetric", "denoising-item-orthonormal", "denoising-user-orthonormal", "denoising-sigma-matched")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("remedies")
    args = [*FLAGS, "--out", str(out), "--preprocess", "ips,standardized", "--ips-beta", "0.5", "--train", "cosine-mf"]
    proc = build_in_process([*args, "--evaluate", "--eval-min-interactions", "3"])
    assert proc.returncode == 0, proc.stderr
    vdir = out / "versions" / (out / "CURRENT").read_text().strip()
    return vdir, json.loads((vdir / "manifest.json").read_text())


def dense_x() -> np.ndarray:
    ds, _ = simulate(SimulationSpec(n_users=N_USERS, n_items=N_ITEMS, seed=4))
    return ds.X.toarray().astype(np.float64)


def dense_ips(X: np.ndarray, beta: float) -> np.ndarray:
    pop = (X != 0).sum(axis=0).astype(np.float64)
    w = np.where(pop > 0, pop ** (-beta) if beta else 1.0, 0.0)
    Xw = X * w
    return Xw * np.linalg.norm(X) / np.linalg.norm(Xw)


def dense_standardized(X: np.ndarray) -> np.ndarray:
    sd = X.std(axis=0)
    Z = np.where(sd > 0, (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0), 0.0)
    return Z * np.linalg.norm(X) / np.linalg.norm(Z)


def vectors(vdir: Path, manifest: dict, key: str) -> np.ndarray:
    index = read_index(vdir / manifest["indexes"][key]["file"])
    return np.array(flat_vectors(index), dtype=np.float64)


def cosine(M: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(M, axis=1, keepdims=True)
    N = np.divide(M, n, out=np.zeros_like(M), where=n > 0)
    return N @ N.T


@pytest.mark.parametrize("transform", ["ips", "standardized"])
def test_transformed_models_equal_the_dense_ridge_on_the_transformed_matrix(built, transform):
    vdir, manifest = built
    Xt = dense_ips(dense_x(), 0.5) if transform == "ips" else dense_standardized(dense_x())
    G = Xt.T @ Xt
    M = np.linalg.solve(G + LAM * np.eye(N_ITEMS), G)  # A B^T of objective 1 at full rank
    Xhat = Xt @ M
    model = f"{transform}-denoising-symmetric"
    info = manifest["models"][model]
    assert info["preprocess"]["transform"] == transform
    assert info["users"].startswith("P = X_" + {"ips": "w", "standardized": "s"}[transform])
    # users: P = X_t A with A = V f^1/2, so P P^T = X_t M X_t^T; items: B B^T = M (symmetric split)
    users = vectors(vdir, manifest, f"users/{model}/dot")
    np.testing.assert_allclose(users @ users.T, Xt @ M @ Xt.T, atol=2e-4 * np.abs(Xt @ M @ Xt.T).max())
    items = vectors(vdir, manifest, f"items/{model}/dot")
    np.testing.assert_allclose(items @ items.T, M, atol=1e-5)
    projected = vectors(vdir, manifest, f"items/{model}/projected")
    np.testing.assert_allclose(projected @ projected.T, cosine(Xhat.T), atol=1e-5)
    centred = vectors(vdir, manifest, f"items/{model}/projected-centered")
    Xc = Xhat - Xhat.mean(axis=0)
    np.testing.assert_allclose(centred @ centred.T, cosine(Xc.T), atol=1e-5)


@pytest.mark.parametrize("transform", ["ips", "standardized"])
def test_the_d_variants_of_a_transformed_model_keep_the_papers_point(built, transform):
    vdir, manifest = built
    variants = [f"{transform}-{v}" for v in VARIANTS]
    assert all(manifest["models"][v]["preprocess"]["transform"] == transform for v in variants)
    cos = [cosine(vectors(vdir, manifest, f"items/{v}/dot")) for v in variants]
    assert max(np.abs(c - cos[0]).max() for c in cos[1:]) > 0.1  # cosine moves with D
    files = {manifest["indexes"][f"items/{v}/{metric}"]["file"] for v in variants for metric in ("projected",)}
    assert len(files) == 1  # projected is one index for the group
    gauge = json.loads((vdir / manifest["gauge"]).read_text())
    for v in variants:
        assert gauge[v]["sides"]["items"]["projected-centered"]["jaccard_mean"] == 1.0
        assert gauge[v]["sides"]["items"]["whitened"]["jaccard_mean"] == 1.0


def test_cosine_mf_is_served_with_its_loss(built):
    vdir, manifest = built
    info = manifest["models"]["cosine-mf"]
    assert info["source"] == "trained" and info["iterations"] >= 1 and isinstance(info["converged"], bool)
    P = vectors(vdir, manifest, "users/cosine-mf/dot")
    Q = vectors(vdir, manifest, "items/cosine-mf/dot")
    np.testing.assert_allclose(np.linalg.norm(Q, axis=1), 1.0, atol=1e-6)  # Omega(B): unit item rows
    X = dense_x()
    loss = np.sum((X - P @ Q.T) ** 2)  # P = gamma Omega(X A): the served factors reproduce the reported fit
    assert loss == pytest.approx(info["loss"], rel=1e-4)
    assert info["relative_loss"] == pytest.approx(loss / np.sum(X**2), rel=1e-4)
    s = np.linalg.svd(X, compute_uv=False)
    assert info["relative_loss"] < 1.0 and info["relative_loss"] >= (s[Q.shape[1] :] ** 2).sum() / (s**2).sum() - 1e-9


def test_evaluation_covers_every_model_and_metric(built):
    vdir, manifest = built
    doc = json.loads((vdir / manifest["evaluation"]).read_text())
    rows = {(r["model"], r["metric"]): r for r in doc["results"] if r["source"] != "baseline"}
    assert set(rows) == {(m, metric) for m in manifest["models"] for metric in manifest["metrics"]}
    for (model, metric), row in rows.items():
        ranked = row["recall_at_20"]
        assert (ranked is None) == (metric == "whitened"), (model, metric)
        assert row["spearman_truth"] is not None, (model, metric)
