"""The paper's figure: item-item similarity heatmaps on the simulation, written as PNG.

Panels (each an (n_items, n_items) matrix, items ordered by true cluster, then by true baseline
popularity, most popular first):
- ground truth: cosine between the columns of the true p(u, i) (n_users x n_items), i.e. between
  the items' true profiles over users. Popularity scales a column and so cancels: within a cluster
  the true similarity is 1, across clusters it is the cosine of the clusters' user-preference columns;
- for each model (the four denoising D-variants and weight decay), item-item cosine
  Omega_B B B^T Omega_B and projected cosine Omega Xhat^T Xhat Omega with Xhat = X A B^T,
  at full rank (k = n_items) and at k = 50.
The embeddings come from an exact eigendecomposition of X^T X (V, s^2), not from the build's
randomised SVD: at full rank the randomised method does not apply, and exact panels are comparable.
Lambdas are the build's. Colours share one scale, [-1, 1], in every panel.

A second figure (figures/served.png) draws what the service serves: for one model of each family (the
denoising D-variants other than the symmetric one left out: the gauge probe measures them) and every
similarity but dot, the Gram matrix of the item index's stored vectors at the build's k, beside the ground
truth. It shows the remedies (pre-learning transforms, cosine-mf, projected-centered, whitened) next to
today's cosine and projected cosine.

Uses matplotlib's object API (Figure + Agg canvas): no pyplot state, no display needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from models.artifact.manifest import FIGURES_DIR, HEATMAP_GRID
from models.fit.closed_forms import DENOISING_VARIANTS, MODELS, WEIGHT_DECAY, denoising_factors, weight_decay_factors
from models.fit.projection import normalize_rows
from models.inputs.simulation import SimulationTruth

HEATMAP_MAX_ITEMS = 2000  # 21 p x p float32 panels are held for the grid: 2000 items -> 336 MB; above: none
LOW_RANK = 50  # the paper's k
CMAP = "RdBu_r"
TRUTH = "ground-truth"
METRIC_TITLES = {
    "cosine": "cosine",
    "projected": "projected cosine",
    "projected-centered": "projected-centered",
    "whitened": "whitened cosine",
    "truth": "true p(u,i) columns",
}
SERVED_METRICS = ("cosine", "projected", "projected-centered", "whitened")
SERVED_GRID = f"{FIGURES_DIR}/served.png"


@dataclass
class Panel:
    """One heatmap: matrix (p, p) float32 (ample for a picture), already in display order."""

    model: str  # a model name, or "ground-truth"
    metric: str  # "cosine", "projected" or "truth"
    k: int | None  # embedding rank; None for the ground truth
    matrix: np.ndarray
    note: str = ""
    full_rank: bool = False
    served: bool = False  # from the build's item index (served_panels), not the exact eigendecomposition

    @property
    def stem(self) -> str:
        if self.model == TRUTH:
            return "heatmap-truth"
        return f"heatmap-served-{self.metric}-{self.model}" if self.served else f"heatmap-{self.metric}-k{self.k}-{self.model}"

    @property
    def title(self) -> str:
        if self.model == TRUTH:
            return "ground truth: cosine of true p(u,i) columns"
        if self.served:  # the grid's title gives k: the panel's stays short enough for eight columns
            return f"{METRIC_TITLES[self.metric]}\n{self.model}"
        rank = f"k={self.k}" + (" (full rank)" if self.full_rank else "")
        return f"{METRIC_TITLES[self.metric]}, {rank}\n{self.model}{self.note}"


def item_order(truth: SimulationTruth) -> np.ndarray:
    """Permutation (p,) sorting items by true cluster, then by true popularity descending, then by id."""
    p = truth.cluster.size
    return np.lexsort((np.arange(p), -truth.popularity, truth.cluster))


def gram_eigen(X: sp.spmatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(XtX (p, p), s (p,) descending, V (p, p)): X^T X = V diag(s^2) V^T, exact (LAPACK eigh)."""
    # scipy-stubs: spmatrix is a bare mixin (not a _spbase), so no csr_matrix overload accepts it
    Xc = sp.csr_matrix(X, dtype=np.float64)  # type: ignore[call-overload]
    XtX = np.ascontiguousarray((Xc.T @ Xc).toarray())
    w, V = scipy.linalg.eigh(XtX, driver="evd")  # divide and conquer: several times faster than numpy's here
    order = np.argsort(w)[::-1]
    return XtX, np.sqrt(np.clip(w[order], 0.0, None)), V[:, order]


def item_similarities(
    XtX: np.ndarray, s: np.ndarray, V: np.ndarray, model: str, lam_denoising: float, lam_weight_decay: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """(cosine (p, p), projected cosine (p, p), surviving dims) of one model at rank s.size.

    cosine: rows of B normalised, Bn Bn^T. projected: columns of Xhat = X A B^T, whose Gram is
    M^T (X^T X) M with M = A B^T, normalised. Zero rows / columns give 0, not NaN.
    """
    if model == WEIGHT_DECAY:
        A, B, surviving = weight_decay_factors(V, s, lam_weight_decay)
    else:
        A, B = denoising_factors(V, s, lam_denoising, model)
        surviving = int(np.count_nonzero(np.linalg.norm(A, axis=0) * np.linalg.norm(B, axis=0) > 0))
    Bn = normalize_rows(B)
    M = A @ B.T
    G = M.T @ XtX @ M
    d = np.sqrt(np.clip(np.diag(G), 0.0, None))
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
    return Bn @ Bn.T, G * inv[:, None] * inv[None, :], surviving


def heatmap_panels(
    X: sp.spmatrix,
    truth: SimulationTruth,
    lam_denoising: float,
    lam_weight_decay: float,
    ranks: tuple[int | None, ...] = (None, LOW_RANK),
) -> list[Panel]:
    """Ground truth, then for each rank (None = full, k = n_items) x metric (cosine, projected) x model."""
    p = X.shape[1]
    order = item_order(truth)
    reorder = np.ix_(order, order)
    panels = [Panel(TRUTH, "truth", None, truth.item_similarity()[reorder].astype(np.float32))]
    XtX, s_all, V_all = gram_eigen(X)
    for rank in ranks:
        k = p if rank is None else min(rank, p)
        sims: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # model -> (cosine, projected)
        notes: dict[str, str] = {}
        for model in MODELS:
            cos, proj, surviving = item_similarities(XtX, s_all[:k], V_all[:, :k], model, lam_denoising, lam_weight_decay)
            notes[model] = f" ({surviving} dims alive)" if surviving < k else ""
            sims[model] = (cos[reorder].astype(np.float32), proj[reorder].astype(np.float32))
        for i, metric in enumerate(("cosine", "projected")):
            panels += [Panel(m, metric, k, sims[m][i], notes[m], full_rank=k == p) for m in MODELS]
    return panels


def served_models(models: Sequence[str]) -> list[str]:
    """The models of the served figure, in build order: all but the non-symmetric denoising D-variants of each family."""
    others = tuple(DENOISING_VARIANTS[1:])
    return [m for m in models if not m.endswith(others)]


def served_panels(
    vectors: Callable[[str, str], np.ndarray], models: Sequence[str], truth: SimulationTruth, k: int
) -> list[Panel]:
    """Ground truth, then for each metric of SERVED_METRICS x model: the Gram matrix (p, p) of vectors(model, metric)
    (n_items, d), the item index's stored vectors, in display order."""
    order = item_order(truth)
    reorder = np.ix_(order, order)
    panels = [Panel(TRUTH, "truth", None, truth.item_similarity()[reorder].astype(np.float32))]
    for metric in SERVED_METRICS:
        for model in models:
            V = np.asarray(vectors(model, metric), dtype=np.float32)
            panels.append(Panel(model, metric, k, (V @ V.T)[reorder], served=True))
    return panels


def write_served_heatmaps(
    folder: Path, vectors: Callable[[str, str], np.ndarray], models: Sequence[str], truth: SimulationTruth, k: int
) -> dict[str, Any]:
    """Write figures/heatmap-served-*.png and figures/served.png (SERVED_GRID); return {"served_grid", "served_panels"}."""
    chosen = served_models(models)
    panels = served_panels(vectors, chosen, truth, k)
    boundaries = _cluster_ticks(truth)
    entries = []
    for panel in panels[1:]:
        rel = f"{FIGURES_DIR}/{panel.stem}.png"
        _save_panel(panel, folder / rel, boundaries)
        entries.append(
            {"file": rel, "model": panel.model, "metric": panel.metric, "k": k, "title": panel.title.replace("\n", ", ")}
        )
    _save_grid(
        panels,
        folder / SERVED_GRID,
        boundaries,
        len(chosen),
        f"Item-item similarity of the served item indexes, k={k} (items by true cluster, then popularity); one colour scale",
    )
    return {"served_grid": SERVED_GRID, "served_panels": entries, "served_models": chosen}


def write_heatmaps(
    folder: Path,
    X: sp.spmatrix,
    truth: SimulationTruth,
    lam_denoising: float,
    lam_weight_decay: float,
    ranks: tuple[int | None, ...] = (None, LOW_RANK),
) -> dict[str, Any]:
    """Write figures/heatmap-*.png (one per panel) and figures/heatmaps.png (the grid) into folder.

    Returns the manifest entry: grid file, panel files with model / metric / k, and how they were made.
    """
    panels = heatmap_panels(X, truth, lam_denoising, lam_weight_decay, ranks)
    out = folder / FIGURES_DIR
    out.mkdir(exist_ok=True)
    boundaries = _cluster_ticks(truth)
    entries = []
    for panel in panels:
        rel = f"{FIGURES_DIR}/{panel.stem}.png"
        _save_panel(panel, out.parent / rel, boundaries)
        entries.append(
            {"file": rel, "model": panel.model, "metric": panel.metric, "k": panel.k, "title": panel.title.replace("\n", ", ")}
        )
    _save_grid(
        panels,
        folder / HEATMAP_GRID,
        boundaries,
        len(MODELS),
        "Item-item similarity on the simulation (items by true cluster, then popularity); one colour scale",
    )
    return {
        "grid": HEATMAP_GRID,
        "panels": entries,
        "order": "items sorted by true cluster, then true baseline popularity (descending)",
        "ground_truth": "cosine between the columns of the true p(u, i) (n_users x n_items)",
        "embeddings": "exact eigendecomposition of X^T X; the build's lambdas",
        "lambda_denoising": lam_denoising,
        "lambda_weight_decay": lam_weight_decay,
        "ranks": [X.shape[1] if r is None else min(r, X.shape[1]) for r in ranks],
        "colour_scale": [-1.0, 1.0],
        "denoising_variants": list(DENOISING_VARIANTS),
    }


def _cluster_ticks(truth: SimulationTruth) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(boundaries, centres, labels) of the cluster blocks in display order."""
    sorted_clusters = truth.cluster[item_order(truth)]
    starts = np.flatnonzero(np.r_[True, sorted_clusters[1:] != sorted_clusters[:-1]])
    ends = np.r_[starts[1:], sorted_clusters.size]
    return starts[1:] - 0.5, (starts + ends - 1) / 2.0, [f"c{c}" for c in sorted_clusters[starts]]


def _draw(ax: Any, panel: Panel, ticks: tuple[np.ndarray, np.ndarray, list[str]], fontsize: float) -> Any:
    # "antialiased" averages many items per pixel instead of sampling one: honest at 1000 items / 250 px
    im = ax.imshow(panel.matrix, cmap=CMAP, vmin=-1.0, vmax=1.0, interpolation="antialiased")
    bounds, centres, labels = ticks
    for b in bounds:
        ax.axhline(b, color="0.3", lw=0.4)
        ax.axvline(b, color="0.3", lw=0.4)
    ax.set_xticks(centres, labels, fontsize=fontsize)
    ax.set_yticks(centres, labels, fontsize=fontsize)
    ax.tick_params(length=0)
    ax.set_title(panel.title, fontsize=fontsize + 1)
    return im


def _save_panel(panel: Panel, path: Path, ticks: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    # fixed axes positions: constrained layout costs more than drawing here
    fig = Figure(figsize=(5.4, 4.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.08, 0.07, 0.72, 0.80))
    im = _draw(ax, panel, ticks, fontsize=9)
    fig.colorbar(im, cax=fig.add_axes((0.84, 0.17, 0.03, 0.6)), label="similarity")
    fig.savefig(path)


def _save_grid(
    panels: list[Panel], path: Path, ticks: tuple[np.ndarray, np.ndarray, list[str]], per_row: int, title: str
) -> None:
    """The ground truth (panels[0]) at the head of every row, then per_row panels per row."""
    truth, rest = panels[0], panels[1:]
    n_cols = per_row + 1
    n_rows = len(rest) // per_row
    fig = Figure(figsize=(2.75 * n_cols + 0.8, 2.9 * n_rows + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        n_rows,
        n_cols,
        squeeze=False,
        gridspec_kw={
            "left": 0.025,
            "right": 0.93,
            "bottom": 0.03,
            "top": 1 - 0.75 / (2.9 * n_rows + 0.5),
            "wspace": 0.22,
            "hspace": 0.42,
        },
    )
    im = None
    for r in range(n_rows):
        im = _draw(axes[r, 0], truth, ticks, fontsize=7)
        for c, panel in enumerate(rest[r * per_row : (r + 1) * per_row]):
            _draw(axes[r, c + 1], panel, ticks, fontsize=7)
    fig.suptitle(title, fontsize=11)
    assert im is not None  # n_rows >= 1: fig.subplots refuses 0 rows
    fig.colorbar(im, cax=fig.add_axes((0.945, 0.3, 0.01, 0.4)), label="similarity")
    fig.savefig(path)
