"""Diagnostics: the paper's full-rank claims on the simulation, the build-time summary against a dense
recomputation, the heatmap panels against their definitions, and the job end to end (a subprocess,
slow; its fast twin calls the CLI in this process with the heatmaps' rendering stubbed out)."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from matplotlib.image import imread
from scipy.stats import spearmanr, weightedtau
from support.artifacts import ROOT, build_in_process

import models.diagnostics.heatmaps
from models.artifact.manifest import METRICS
from models.artifact.store import ArtifactStore, verify_version
from models.build.pipeline import BuildParams, build_into
from models.build.progress import Progress
from models.diagnostics.agreement import rbo
from models.diagnostics.comparison import compare_lists
from models.diagnostics.heatmaps import heatmap_panels
from models.diagnostics.sampling import tau_query_count
from models.diagnostics.summary import DiagnosticsParams
from models.fit.closed_forms import DENOISING_VARIANTS, MODELS, denoising_factors, model_factors
from models.fit.projection import normalize_rows, projected_vectors
from models.fit.svd import truncated_svd
from models.indexes.neighbour_lists import top_neighbours
from models.inputs.dataset import Dataset
from models.inputs.simulation import SimulationSpec, simulate, simulation_truth, spec_from_source

# --- the paper's claims at full rank ---------------------------------------------------------------


@pytest.fixture(scope="module")
def full_rank():
    """3000 users x 200 items, every item consumed at least once; exact SVD at k = 200 = n_items."""
    ds, _ = simulate(SimulationSpec(n_users=3000, n_items=200, seed=1))
    assert np.diff(ds.X.tocsc().indptr).min() > 0
    svd = truncated_svd(ds.X, k=200)
    assert svd.k == 200 and svd.method.startswith("exact")
    return ds, svd


def test_item_orthonormal_cosine_is_similar_only_to_itself(full_rank):
    _, svd = full_rank
    _, B = denoising_factors(svd.V, svd.s, 500.0, "denoising-item-orthonormal")
    _, B_sym = denoising_factors(svd.V, svd.s, 500.0, "denoising-symmetric")
    cosine = normalize_rows(B)
    off = cosine @ cosine.T - np.eye(200)
    assert np.abs(off).max() < 1e-6
    for q in (0, 57, 199):
        ortho_ids, ortho_scores = top_neighbours(cosine, np.array([q]), 10)
        sym_ids, sym_scores = top_neighbours(normalize_rows(B_sym), np.array([q]), 10)
        figures = compare_lists(np.array([q]), {"item-orthonormal": ortho_ids, "symmetric": sym_ids})
        assert 0.0 <= figures.pairs[0].jaccard[0] <= 1.0 and np.isfinite(figures.pairs[0].rbo[0])
        # every neighbour the list shows has cosine ~0 with the query: the list is noise
        assert np.abs(ortho_scores).max() < 1e-6
        # the same objective's symmetric split is not degenerate (the assertion above can fail)
        assert sym_scores[0, 0] > 0.1


def test_projected_lists_identical_across_d_variants_cosine_lists_not(full_rank):
    ds, svd = full_rank
    X = ds.X.astype(np.float64)
    queries = np.arange(200)
    scores, lists, cos_lists = {}, {}, {}
    for variant in DENOISING_VARIANTS:
        A, B = denoising_factors(svd.V, svd.s, 500.0, variant)
        _, items = projected_vectors(X @ A, B)
        proj = normalize_rows(items)
        S = proj @ proj.T
        np.fill_diagonal(S, -np.inf)
        scores[variant] = -np.sort(-S, axis=1)[:, :10]
        lists[variant], _ = top_neighbours(proj, queries, 10)
        cos_lists[variant], _ = top_neighbours(normalize_rows(B), queries, 10)
    ref = DENOISING_VARIANTS[0]
    for variant in DENOISING_VARIANTS[1:]:
        np.testing.assert_allclose(scores[variant], scores[ref], atol=1e-9)
        same = np.mean([set(a) == set(b) for a, b in zip(lists[variant], lists[ref], strict=True)])
        assert same >= 0.99, variant  # ties broken by rounding may swap a rare pair
    moved = [
        np.mean([_jac(a, b) for a, b in zip(cos_lists[u], cos_lists[v], strict=True)])
        for u, v in combinations(DENOISING_VARIANTS, 2)
    ]
    assert min(moved) < 0.5  # cosine lists do move with D


# --- the summary against a dense, independent recomputation --------------------------------------


def _fixture_dataset() -> Dataset:
    rng = np.random.default_rng(7)
    n, p = 300, 50
    Xd = (rng.random((n, p)) < 0.15 * rng.uniform(0.3, 2.0, p)).astype(np.float32)
    Xd[np.arange(n), rng.integers(0, p, n)] = 1.0
    Xd[rng.integers(0, n, p), np.arange(p)] = 1.0
    names = ["a", "b", "c", "d"]
    cats = [sorted({names[j] for j in rng.integers(0, 4, rng.integers(0, 3))}) for _ in range(p)]
    return Dataset(
        X=sp.csr_matrix(Xd),
        user_ids=[f"u{u}" for u in range(n)],
        item_ids=[f"i{i}" for i in range(p)],
        item_categories=cats,
        source={"kind": "test-fixture"},
    )


def _jac(a, b) -> float:
    return len(set(a) & set(b)) / len(set(a) | set(b))


def _dense_lists(V: np.ndarray, queries: np.ndarray, k: int) -> tuple[list[list[int]], list[np.ndarray]]:
    """Top-k other rows per query by float64 inner product, ties by lower id; full score vectors."""
    lists, full = [], []
    for q in queries:
        s = V @ V[q]
        others = [i for i in range(V.shape[0]) if i != q]
        lists.append(sorted(others, key=lambda i: (-s[i], i))[:k])
        full.append(np.delete(s, q))
    return lists, full


def _mahalanobis_rows(M: np.ndarray) -> np.ndarray:
    """Rows whose Gram is Mc C^+ Mc^T (Mc centred, C its covariance, pseudo-inverse): the whitened rows up to rotation."""
    Mc = M - M.mean(axis=0)
    G = Mc @ np.linalg.pinv(Mc.T @ Mc / (M.shape[0] - 1), rcond=1e-10, hermitian=True) @ Mc.T
    w, E = np.linalg.eigh((G + G.T) / 2)
    return E * np.sqrt(np.clip(w, 0, None))


def _recompute(ds: Dataset, vdir: Path, side: str, queries: np.ndarray, lam_d: float, lam_wd: float) -> dict:
    svd = np.load(vdir / "svd.npz")
    X = ds.X.toarray().astype(np.float64)
    vectors = {}
    for model in MODELS:
        A, B = model_factors(svd["V"], svd["s"], model, lam_d, lam_wd)
        P = X @ A
        users_proj, items_proj = projected_vectors(P, B)
        raw, proj = (B, items_proj) if side == "items" else (P, users_proj)
        Xhat = P @ B.T
        # Pearson of Xhat's columns (items) / rows (users): the dense n- or p-dim vectors, centred and normalised
        centred = (Xhat - Xhat.mean(axis=0)).T if side == "items" else Xhat - Xhat.mean(axis=1, keepdims=True)
        vectors[model] = {
            "dot": raw,
            "cosine": normalize_rows(raw),
            "projected": normalize_rows(proj),
            "projected-centered": normalize_rows(centred),
            "whitened": normalize_rows(_mahalanobis_rows(raw)),
        }
    pop = (X > 0).sum(axis=0) if side == "items" else (X > 0).sum(axis=1)
    med = np.median(pop)
    n_tau = tau_query_count(queries.size, pop.size, DiagnosticsParams().tau_budget)
    out: dict = {"models": {}, "d": {}}
    lists = {}
    for model in MODELS:
        out["models"][model] = {"metrics": {}, "pairs": {}}
        full = {}
        for metric in METRICS:
            lists[model, metric], full[metric] = _dense_lists(vectors[model][metric], queries, 10)
            shares = []
            if side == "items":
                for q, li in zip(queries, lists[model, metric], strict=True):
                    mine = set(ds.item_categories[q])
                    if mine:
                        shares.append(np.mean([bool(mine & set(ds.item_categories[i])) for i in li]))
            out["models"][model]["metrics"][metric] = {
                "category_precision": float(np.mean(shares)) if shares else None,
                "popularity_bias": float(np.mean([np.median(pop[li]) / med for li in lists[model, metric]])),
            }
        for a, b in combinations(METRICS, 2):
            la, lb = lists[model, a], lists[model, b]
            out["models"][model]["pairs"][f"{a}~{b}"] = {
                "jaccard": np.mean([_jac(x, y) for x, y in zip(la, lb, strict=True)]),
                "rbo": np.mean([rbo(x, y, 0.9) for x, y in zip(la, lb, strict=True)]),
                "weighted_tau": np.mean([weightedtau(full[a][j], full[b][j]).statistic for j in range(n_tau)]),
            }
    for metric in METRICS:
        out["d"][metric] = np.mean(
            [
                np.mean([_jac(x, y) for x, y in zip(lists[u, metric], lists[v, metric], strict=True)])
                for u, v in combinations(DENOISING_VARIANTS, 2)
            ]
        )
    return out


@pytest.fixture(scope="module")
def built_fixture(tmp_path_factory):
    ds = _fixture_dataset()
    folder = tmp_path_factory.mktemp("staged")
    params = BuildParams(
        k=8,
        lambda_denoising=5.0,
        lambda_weight_decay=1.0,
        diagnostics=True,
        diagnostics_sample=120,
        diagnostics_user_sample=120,
        diagnostics_score_budget=33_000,  # users: 33,000 // 300 rows = 110 of the 120; items: all 50
        seed=3,
    )
    manifest = build_into(folder, ds, params, Progress(quiet=True))
    return ds, folder, manifest, params


def test_summary_equals_dense_recomputation(built_fixture):
    ds, folder, manifest, params = built_fixture
    assert manifest["diagnostics"]["summary"] == "summary.json"
    assert manifest["diagnostics"]["heatmaps"] is None and "simulation" in manifest["diagnostics"]["heatmaps_skipped"]
    summary = json.loads((folder / "summary.json").read_text())
    user_sample = np.sort(np.random.default_rng(3).choice(300, size=110, replace=False))  # the documented rule
    for side, queries in (("items", np.arange(50)), ("users", user_sample)):
        got = summary["sides"][side]
        assert got["queries"] == queries.size and got["sampled"] == (side == "users")
        assert got["tau_queries"] == queries.size  # 60,000 // rows covers every query here
        want = _recompute(ds, folder, side, queries, params.lambda_denoising, params.lambda_weight_decay)
        for model in MODELS:
            for metric, fig in want["models"][model]["metrics"].items():
                g = got["models"][model]["metrics"][metric]
                assert g["popularity_bias"] == pytest.approx(fig["popularity_bias"], abs=1e-9), (side, model, metric)
                if side == "items":
                    assert g["category_precision"] == pytest.approx(fig["category_precision"], abs=1e-9)
                else:
                    assert g["category_precision"] is None
            for pair, fig in want["models"][model]["pairs"].items():
                g = got["models"][model]["pairs"][pair]
                assert g["jaccard"] == pytest.approx(fig["jaccard"], abs=1e-9), (side, model, pair)
                assert g["rbo"] == pytest.approx(fig["rbo"], abs=1e-9), (side, model, pair)
                # float32 index scores vs float64 here: near-equal scores in the long tail may swap
                assert g["weighted_tau"] == pytest.approx(fig["weighted_tau"], abs=1e-4), (side, model, pair)
        for metric, value in want["d"].items():
            assert got["d_sensitivity"][metric]["jaccard"] == pytest.approx(value, abs=1e-9), (side, metric)
        for metric in ("projected", "projected-centered", "whitened"):
            assert got["d_sensitivity"][metric]["jaccard"] == 1.0
        assert got["d_sensitivity"]["cosine"]["jaccard"] < 1.0


def test_embedding_health_equals_dense_recomputation(built_fixture):
    ds, folder, _, params = built_fixture
    summary = json.loads((folder / "summary.json").read_text())
    svd = np.load(folder / "svd.npz")
    X = ds.X.toarray().astype(np.float64)
    for model in MODELS:
        A, B = model_factors(svd["V"], svd["s"], model, params.lambda_denoising, params.lambda_weight_decay)
        for side, M, pop in (("items", B, (X > 0).sum(axis=0)), ("users", X @ A, (X > 0).sum(axis=1))):
            got = summary["embeddings"][model][side]
            s = np.linalg.svd(M, compute_uv=False)
            s = s[s > 1e-6 * s[0]]
            p = s / s.sum()
            assert got["effective_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-5), (model, side)
            norms = np.linalg.norm(M, axis=1)
            assert got["norm_popularity_spearman"] == pytest.approx(spearmanr(norms, pop).statistic, abs=1e-6)
            live = M[norms > 0] / norms[norms > 0, None]
            C = live @ live.T
            exact = (C.sum() - np.trace(C)) / (len(live) * (len(live) - 1))
            if side == "items":  # 50 items: every pair is within the sample budget, so the figure is exact
                assert got["anisotropy"] == pytest.approx(exact, abs=1e-5), model
            else:  # 300 users: 10,000 sampled pairs, a standard error below 0.01
                assert abs(got["anisotropy"] - exact) < 0.05, model


def test_the_api_lists_are_the_summary_lists(built_fixture, tmp_path):
    """The API's per-query lists (app.query.neighbours) and the build-time summary share one notion of a list."""
    _, folder, manifest, _ = built_fixture
    import shutil

    from app.query.neighbours import neighbours_of_row
    from app.serving.loader import load_version
    from models.diagnostics.summary import index_vectors

    store = ArtifactStore(tmp_path / "root")
    staged = tmp_path / "staged"
    shutil.copytree(folder, staged)
    version = load_version(store.publish(staged, store.new_version("test", {}), manifest, keep=1))
    vectors = {
        m: index_vectors(folder / manifest["indexes"][f"items/denoising-symmetric/{m}"]["file"])
        for m in ("dot", "cosine", "projected")
    }
    queries = np.arange(vectors["cosine"].shape[0])
    for metric, V in vectors.items():
        lists, _ = top_neighbours(V, queries, 10)
        index = version.index("items", "denoising-symmetric", metric)
        for q in queries.tolist():
            rows, _ = neighbours_of_row(index, q, 10)
            assert rows.tolist() == lists[q].tolist(), (metric, q)
    figures = compare_lists(queries, {m: top_neighbours(V, queries, 10)[0] for m, V in vectors.items()})
    assert [(p.a, p.b) for p in figures.pairs] == [("dot", "cosine"), ("dot", "projected"), ("cosine", "projected")]


def test_heatmap_panels_follow_their_definitions():
    spec = SimulationSpec(n_users=800, n_items=40, n_clusters=4, seed=2)
    ds, truth = simulate(spec)
    again = simulation_truth(spec_from_source(ds.source))  # what the build uses: no second X draw
    assert np.array_equal(again.cluster, truth.cluster) and np.array_equal(again.preferences, truth.preferences)
    panels = heatmap_panels(ds.X, truth, 50.0, 5.0, ranks=(None, 10))
    assert len(panels) == 1 + 2 * 2 * len(MODELS)
    order = np.lexsort((-truth.popularity, truth.cluster))
    assert np.all(np.diff(truth.cluster[order]) >= 0)
    P = truth.probabilities()[:, order]
    Pn = P / np.linalg.norm(P, axis=0)
    np.testing.assert_allclose(panels[0].matrix, Pn.T @ Pn, atol=1e-6)  # cosine of the true columns
    by = {(p.model, p.metric, p.k): p.matrix for p in panels[1:]}
    np.testing.assert_allclose(by["denoising-item-orthonormal", "cosine", 40], np.eye(40), atol=1e-6)
    for v in DENOISING_VARIANTS[1:]:
        for k in (40, 10):
            np.testing.assert_allclose(by[v, "projected", k], by[DENOISING_VARIANTS[0], "projected", k], atol=1e-6)
    assert np.abs(by["denoising-user-orthonormal", "cosine", 10] - by["denoising-symmetric", "cosine", 10]).max() > 0.1
    # projected at full rank is cosine between the columns of the dense ridge prediction X (X^T X + lam I)^-1 X^T X
    X = ds.X.toarray().astype(np.float64)
    G = X.T @ X
    Xhat = (X @ np.linalg.solve(G + 50.0 * np.eye(40), G))[:, order]
    Xn = Xhat / np.linalg.norm(Xhat, axis=0)
    np.testing.assert_allclose(by["denoising-symmetric", "projected", 40], Xn.T @ Xn, atol=1e-6)


# --- the job end to end ---------------------------------------------------------------------------


def check_summary_and_figures(proc, store: ArtifactStore, user_queries: int) -> Path:
    """A build of the 60-item simulation with diagnostics: summary.json and the 22 figure files written,
    listed and checksummed with the rest (verify_version), the report on stdout; the version folder."""
    assert proc.returncode == 0, proc.stderr
    vdir = store.version_dir(store.current_version())
    manifest = verify_version(vdir)  # summary and figures are checksummed with the rest
    diag = manifest["diagnostics"]
    assert diag["summary"] in manifest["files"]
    summary = json.loads((vdir / diag["summary"]).read_text())
    assert summary["sides"]["users"]["queries"] == user_queries and summary["sides"]["items"]["queries"] == 60
    figures = diag["heatmaps"]
    assert figures["grid"] in manifest["files"] and len(figures["panels"]) == 21
    assert {(p["metric"], p["k"]) for p in figures["panels"][1:]} == {(m, k) for m in ("cosine", "projected") for k in (60, 50)}
    for entry in [{"file": figures["grid"]}, *figures["panels"]]:
        assert entry["file"] in manifest["files"]
    # the served figure: every metric but dot of one model per family (the symmetric D-variant and weight decay)
    assert figures["served_models"] == ["denoising-symmetric", "weight-decay"]
    assert {(p["model"], p["metric"]) for p in figures["served_panels"]} == {
        (m, me) for m in figures["served_models"] for me in ("cosine", "projected", "projected-centered", "whitened")
    }
    for entry in [{"file": figures["served_grid"]}, *figures["served_panels"]]:
        assert entry["file"] in manifest["files"] and (vdir / entry["file"]).read_bytes().startswith(b"\x89PNG")
    assert "D-sensitivity" in proc.stdout and "cat.prec@10" in proc.stdout and "heatmaps.png" in proc.stdout
    return vdir


def check_no_diagnostics(proc, store: ArtifactStore) -> None:
    """A build with --no-diagnostics publishes no summary and no figures."""
    assert proc.returncode == 0, proc.stderr
    manifest = verify_version(store.version_dir(store.current_version()))
    assert manifest["diagnostics"] is None and "summary.json" not in manifest["files"]


@pytest.mark.slow
def test_build_writes_summary_and_figures(tmp_path):
    args = [
        "--sim-users",
        "600",
        "--sim-items",
        "60",
        "--k",
        "10",
        "--lambda-denoising",
        "100",
        "--lambda-weight-decay",
        "5",
        "--diagnostics-user-sample",
        "200",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "models.build", "--out", str(tmp_path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    store = ArtifactStore(tmp_path)
    vdir = check_summary_and_figures(proc, store, user_queries=200)
    heatmaps = verify_version(vdir)["diagnostics"]["heatmaps"]
    for entry in [{"file": heatmaps["grid"]}, *heatmaps["panels"]]:
        image = imread(vdir / entry["file"])
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300

    proc = subprocess.run(
        [sys.executable, "-m", "models.build", "--out", str(tmp_path), *args, "--no-diagnostics"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    check_no_diagnostics(proc, store)


def test_build_writes_summary_and_figures_in_process(tmp_path, monkeypatch):
    """The job end to end in this process: summary.json and every figure file written, listed and checksummed,
    the report on stdout; --no-diagnostics writes none. Rendering the 22 PNGs with matplotlib (most of the
    slow test's time) is replaced by writing a PNG signature: the images themselves are the slow test's."""
    png = b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr(models.diagnostics.heatmaps, "_save_panel", lambda panel, path, boundaries: path.write_bytes(png))
    monkeypatch.setattr(models.diagnostics.heatmaps, "_save_grid", lambda panels, path, boundaries, *_: path.write_bytes(png))
    args = ["--out", str(tmp_path), "--sim-users", "300", "--sim-items", "60", "--k", "8"]
    args += ["--lambda-denoising", "100", "--lambda-weight-decay", "5", "--diagnostics-user-sample", "50"]
    proc = build_in_process(args)
    store = ArtifactStore(tmp_path)
    vdir = check_summary_and_figures(proc, store, user_queries=50)
    heatmaps = verify_version(vdir)["diagnostics"]["heatmaps"]
    for entry in [{"file": heatmaps["grid"]}, *heatmaps["panels"]]:
        assert (vdir / entry["file"]).read_bytes() == png

    proc = build_in_process([*args, "--no-diagnostics"])
    check_no_diagnostics(proc, store)
