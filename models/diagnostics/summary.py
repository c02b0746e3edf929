"""The build-time summary over the catalogue (summary.json): how much dot, cosine and projected cosine
disagree, for every model, on sampled queries.

Per side (items, users), per model x metric: category precision@k (items with categories) and
popularity bias; per model: the mean agreement of each metric pair; per metric: the D-sensitivity,
the mean Jaccard@k between the lists of the four denoising D-variants (cosine moves with D,
projected cosine cannot). Every figure is the mean over the queries of the per-query figure of
models.diagnostics.comparison, the same code GET /compare-metrics answers with, on lists made
under the one tie rule of models.indexes.neighbour_lists.

Conventions:
- scores are inner products of the float32 vectors stored in the indexes, as FAISS serves them;
- queries: models.diagnostics.sampling.sample_rows with `sample` (items) or `user_sample` (users), at most
  score_budget // rows of them (every list scores the whole side, so a large side gets fewer) and never
  fewer than MIN_QUERIES because of the budget;
- the weighted tau costs ~3 us per catalogue row and pair, so the summary computes it on the first
  tau_query_count(...) sampled queries and leaves it out (None) when that is fewer than 20: on large
  catalogues it is a per-query figure only (bounded build cost);
- means skip undefined values (NaN): queries without categories, constant score vectors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from models.artifact.manifest import METRICS, SUMMARY, IndexKey
from models.build.progress import Progress
from models.diagnostics.agreement import RBO_P, category_matrix
from models.diagnostics.comparison import compare_lists
from models.diagnostics.embedding_health import HealthParams, health_of_model
from models.diagnostics.report import pair_name
from models.diagnostics.sampling import budgeted_count, sample_rows, tau_query_count
from models.fit.closed_forms import DENOISING_VARIANTS
from models.indexes.faiss_index import blas_searches, flat_vectors, read_index
from models.indexes.neighbour_lists import top_neighbours
from models.inputs.dataset import Dataset

MIN_QUERIES = 100  # the score budget never leaves a side fewer query rows than this


@dataclass(frozen=True)
class DiagnosticsParams:
    k: int = 10  # list length for Jaccard, RBO, category precision and popularity bias
    rbo_p: float = RBO_P
    sample: int = 2000  # item queries; every item when there are fewer
    user_sample: int = 500  # user queries (/similar-users); 0: no users side. Users are many and cost more
    tau_budget: int = 60_000  # tau queries per side = tau_budget // rows, at most the sample; < 20: none
    score_budget: int = 25_000_000  # queries x rows per list, per side: a large side gets fewer queries (>= 100)
    seed: int = 0


def index_vectors(path: str | Path) -> np.ndarray:
    """The vectors (m, d) float32 of a flat FAISS index file, in row order (a copy; the file is mmapped)."""
    index = read_index(Path(path))
    return index.reconstruct_n(0, index.ntotal)


def score_vectors(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(q, m - 1) float32: <v_query, v_j> over every catalogue row j but the query's own, per query row."""
    out = np.empty((queries.size, vectors.shape[0] - 1), dtype=np.float32)
    for j, q in enumerate(queries.tolist()):
        out[j] = np.delete(vectors @ vectors[q], q)
    return out


def side_summary(
    load: Callable[[str], np.ndarray | faiss.IndexFlat],
    files: Mapping[tuple[str, str], str],
    m: int,
    popularity: np.ndarray,
    categories: np.ndarray | None,
    params: DiagnosticsParams,
    sample: int | None = None,
) -> dict[str, Any]:
    """Summary of one side (items or users) over sampled query rows (`sample`, default params.sample).

    load(file) -> a flat index (or its (m, d) vectors); files: (model, metric) -> file, for every
    model and metric in METRICS (models sharing a file are computed once). popularity (m,),
    categories (m, c) bool or None. Figures are means over the queries: per model x metric "category_precision"
    (mean category share of the top-k, over queries that have a category) and "popularity_bias"
    (mean of median neighbour popularity / catalogue median); per model and metric pair "jaccard",
    "rbo" (top-k lists) and "weighted_tau" (full score vectors, tau queries); per metric the
    "d_sensitivity": mean Jaccard@k between the denoising D-variants, for each variant pair and overall.
    """
    queries = sample_rows(m, params.sample if sample is None else sample, params.seed)
    n_tau = tau_query_count(queries.size, m, params.tau_budget)
    median = float(np.median(popularity))
    computed: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # file -> (lists (q, k), tau score vectors (n_tau, m - 1))
    for key in files.values():
        if key not in computed:
            loaded = load(key)
            if isinstance(loaded, faiss.IndexFlat):  # a view of the mmapped vectors, valid while `loaded` lives
                index, vectors = loaded, flat_vectors(loaded)
            else:
                index, vectors = None, np.asarray(loaded, dtype=np.float32)
            with blas_searches():
                lists, _ = top_neighbours(vectors, queries, params.k, index)
            computed[key] = (lists, score_vectors(vectors, queries[:n_tau]))
    has_cats = categories is not None and bool(categories.any())
    cats = categories if has_cats else None
    models: dict[str, Any] = {}
    for model in dict.fromkeys(mo for mo, _ in files):
        by_metric = {metric: computed[files[(model, metric)]] for metric in METRICS}
        cmp = compare_lists(
            queries,
            {metric: lists for metric, (lists, _) in by_metric.items()},
            popularity,
            cats,
            params.rbo_p,
            {metric: full for metric, (_, full) in by_metric.items()},
            popularity_median=median,
        )
        per_metric = {
            metric: {
                "category_precision": _mean(fig.category_share) if fig.category_share is not None else None,
                "popularity_bias": _mean(fig.popularity_ratio),
            }
            for metric, fig in cmp.lists.items()
        }
        pairs = {
            pair_name(p.a, p.b): {"jaccard": _mean(p.jaccard), "rbo": _mean(p.rbo), "weighted_tau": _mean(p.weighted_tau)}
            for p in cmp.pairs
        }
        models[model] = {"metrics": per_metric, "pairs": pairs}
    d_sensitivity = {}
    for metric in METRICS:
        cmp = compare_lists(queries, {v.removeprefix("denoising-"): computed[files[(v, metric)]][0] for v in DENOISING_VARIANTS})
        by_pair = {pair_name(p.a, p.b): _mean(p.jaccard) for p in cmp.pairs}
        values = [v for v in by_pair.values() if v is not None]
        d_sensitivity[metric] = {
            "jaccard": float(np.mean(values)) if values else None,
            "min_pair": min(values) if values else None,
            "pairs": by_pair,
            "shared_index": len({files[(v, metric)] for v in DENOISING_VARIANTS}) == 1,
        }
    n_cat_queries = int(cats[queries].any(axis=1).sum()) if cats is not None else 0  # cats is not None iff has_cats
    return {
        "rows": m,
        "queries": int(queries.size),
        "sampled": bool(queries.size < m),
        "tau_queries": n_tau,
        "category_queries": n_cat_queries,
        "catalogue_median_popularity": median,
        "models": models,
        "d_sensitivity": d_sensitivity,
    }


def catalogue_summary(
    folder: Path,
    indexes: Mapping[str, Mapping[str, Any]],
    ds: Dataset,
    params: DiagnosticsParams,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The build-time summary over both sides, read back from the flat indexes written in `folder`.

    indexes: the manifest's "indexes" ({"items/<model>/<metric>": {"file": ...}}). Reading the
    indexes back (one at a time, mmapped) keeps the vectors of one index in memory, not every model's.
    """
    progress = progress or Progress(quiet=True)
    t0 = time.perf_counter()
    item_pop = ds.item_popularity().astype(np.float64)
    user_act = ds.user_activity().astype(np.float64)
    categories = category_matrix(ds.item_categories)[0] if ds.item_categories is not None else None

    def load(rel: str) -> faiss.IndexFlat:
        index = read_index(folder / rel)
        if not isinstance(index, faiss.IndexFlat):  # the build writes exact indexes only; HNSW twins are not read here
            raise TypeError(f"{rel} is a {type(index).__name__}, not a flat index")
        return index

    sides: dict[str, Any] = {}
    for side, pop, cats, what, n in (
        ("items", item_pop, categories, "users per item", params.sample),
        ("users", user_act, None, "items per user", params.user_sample),
    ):
        if n < 1:
            continue
        n = budgeted_count(n, pop.size, params.score_budget, MIN_QUERIES)
        models = dict.fromkeys(IndexKey.parse(key).model for key in indexes)
        files = {(mo, me): indexes[str(IndexKey(side, mo, me))]["file"] for mo in models for me in METRICS}
        with progress.step(f"diagnostics {side} ({min(n, pop.size)} of {pop.size} queries)"):
            sides[side] = {"popularity": what, **side_summary(load, files, pop.size, pop, cats, params, n)}
    with progress.step("diagnostics embedding health (anisotropy, effective rank, norm ~ popularity)"):
        embeddings = embedding_summary(load, indexes, item_pop, user_act, HealthParams(seed=params.seed))
    return {
        **asdict(params),
        "embeddings": embeddings,
        "embeddings_definitions": HEALTH_DEFINITIONS,
        "weighted_tau_method": "scipy.stats.weightedtau: hyperbolic additive weights, mean of ranks by either vector",
        "popularity_bias_definition": "mean over queries of median(neighbour popularity) / catalogue median",
        "category_precision_definition": "mean over queries with a category of the share of neighbours sharing one",
        "sides": sides,
        "seconds": round(time.perf_counter() - t0, 3),
    }


HEALTH_DEFINITIONS = {
    "anisotropy": "mean cosine of random pairs of distinct nonzero rows (seeded): near 1, every vector points the "
    "same way and cosine hardly discriminates",
    "effective_rank": "exp of the entropy of the normalised singular spectrum of the raw embeddings (1..k): "
    "how many directions the vectors really use",
    "norm_popularity_spearman": "Spearman correlation of each row's norm with its popularity (items: users per item; "
    "users: items per user): positive, the norms carry popularity, so dot favours popular items",
    "gauge": "all three describe the stored vectors (what cosine uses), not the predictions: they move with D",
}


def embedding_summary(
    load: Callable[[str], faiss.IndexFlat],
    indexes: Mapping[str, Mapping[str, Any]],
    item_popularity: np.ndarray,
    user_activity: np.ndarray,
    params: HealthParams,
) -> dict[str, dict[str, Any]]:
    """{model: {"items": health, "users": health}} (models.diagnostics.embedding_health) of every model's raw
    embeddings, read back from its dot indexes (Q for items, P for users)."""
    out: dict[str, dict[str, Any]] = {}
    for model in dict.fromkeys(IndexKey.parse(key).model for key in indexes):
        # the indexes stay referenced while their vectors (views of the mmapped files) are read
        loaded = {side: load(indexes[str(IndexKey(side, model, "dot"))]["file"]) for side in ("items", "users")}
        users, items = flat_vectors(loaded["users"]), flat_vectors(loaded["items"])
        out[model] = health_of_model(users, items, item_popularity, user_activity, params)
        del users, items, loaded
    return out


def run_diagnostics(
    folder: Path,
    ds: Dataset,
    indexes: Mapping[str, Mapping[str, Any]],
    params: DiagnosticsParams,
    lambda_denoising: float,
    lambda_weight_decay: float,
    progress: Progress,
) -> dict[str, Any]:
    """Write summary.json (and, for the simulation, figures/*.png) into `folder`; return the manifest's
    "diagnostics" entry: {"summary": SUMMARY, "heatmaps": {...} or None, "heatmaps_skipped": why}."""
    from models.diagnostics.heatmaps import HEATMAP_MAX_ITEMS, write_heatmaps, write_served_heatmaps  # matplotlib when needed
    from models.inputs.simulation import simulation_truth, spec_from_source

    summary = catalogue_summary(folder, indexes, ds, params, progress)
    with open(folder / SUMMARY, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, allow_nan=False)  # None marks undefined figures
    entry: dict[str, Any] = {"summary": SUMMARY, "heatmaps": None, "heatmaps_skipped": None}
    if ds.source.get("kind") != "simulation":
        entry["heatmaps_skipped"] = "only for the simulation (needs its ground truth)"
    elif ds.n_items > HEATMAP_MAX_ITEMS:
        entry["heatmaps_skipped"] = f"{ds.n_items} items > {HEATMAP_MAX_ITEMS} (p x p panels)"
    else:
        truth = simulation_truth(spec_from_source(ds.source))
        with progress.step(f"heatmaps ({ds.n_items} x {ds.n_items}, 21 panels)"):
            entry["heatmaps"] = write_heatmaps(folder, ds.X, truth, lambda_denoising, lambda_weight_decay)
        models = list(dict.fromkeys(IndexKey.parse(key).model for key in indexes))

        def vectors(model: str, metric: str) -> np.ndarray:
            return index_vectors(folder / indexes[str(IndexKey("items", model, metric))]["file"])

        k = int(indexes[str(IndexKey("items", models[0], "dot"))]["dim"])
        with progress.step(f"heatmaps of the served item indexes ({ds.n_items} x {ds.n_items})"):
            entry["heatmaps"] |= write_served_heatmaps(folder, vectors, models, truth, k)
    return entry


def _mean(values: np.ndarray) -> float | None:
    """Mean of the defined values; None when none is defined (JSON has no NaN)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None
