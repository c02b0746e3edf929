"""How much dot, cosine and projected cosine disagree: per query, and over the catalogue at build time.

Per query (`compare_query`, for `GET /compare-metrics`): the neighbour lists of several named vector
sets (the three metrics of one model, or one metric across models), pairwise agreement (Jaccard@k,
RBO, weighted tau on the full score vectors), and per list the popularity ratio and category share.

Over the catalogue (`catalogue_summary`, at build time, stored as summary.json): per side (items,
users), per model x metric: category precision@k (items with categories), popularity bias; per model:
mean agreement of each metric pair; per metric: the D-sensitivity, the mean Jaccard@k between the
lists of the four denoising D-variants (cosine moves with D, projected cosine cannot).

Conventions, here and in the API:
- neighbour lists never contain the query; ties are broken by the lower row id (models.agreement.top_k);
- scores are inner products of the float32 vectors stored in the indexes, as FAISS serves them;
- queries: every row when a side has at most `sample` (items) or `user_sample` (users) rows, else a
  seeded uniform sample without replacement (numpy default_rng(seed));
- the weighted tau costs ~3 us per catalogue row and pair, so the summary computes it on the first
  tau_budget // rows sampled queries and leaves it out (None) when that is fewer than 20: on large
  catalogues it is a per-query figure only (bounded build cost);
- means skip undefined values (NaN): queries without categories, constant score vectors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from models.agreement import (
    RBO_P,
    category_matrix,
    category_share_rows,
    jaccard_rows,
    popularity_ratio_rows,
    rbo_rows,
    top_k_rows,
    weighted_tau,
)
from models.dataset import Dataset
from models.factorization import DENOISING_VARIANTS, MODELS
from models.indexes import METRICS, flat_index, read_index
from models.progress import Progress

SUMMARY_FILE = "summary.json"
METRIC_PAIRS: tuple[tuple[str, str], ...] = tuple(combinations(METRICS, 2))  # dot~cosine, dot~projected, cosine~projected
MIN_TAU_QUERIES = 20
SCORE_BLOCK = 1 << 23  # floats per block of query x catalogue scores (32 MB)


@dataclass(frozen=True)
class DiagnosticsParams:
    k: int = 10  # list length for Jaccard, RBO, category precision and popularity bias
    rbo_p: float = RBO_P
    sample: int = 2000  # item queries; every item when there are fewer
    user_sample: int = 500  # user queries (/similar-users); 0: no users side. Users are many and cost more
    tau_budget: int = 60_000  # tau queries per side = tau_budget // rows, at most the sample; < 20: none
    seed: int = 0


def pair_name(a: str, b: str) -> str:
    return f"{a}~{b}"


def sample_rows(m: int, sample: int, seed: int) -> np.ndarray:
    """Query rows (q,): all m rows in order when m <= sample, else `sample` rows drawn uniformly
    without replacement by numpy default_rng(seed), in increasing order."""
    if m <= sample:
        return np.arange(m)
    return np.sort(np.random.default_rng(seed).choice(m, size=sample, replace=False))


def tau_query_count(n_queries: int, m: int, tau_budget: int) -> int:
    """How many of the sampled queries get a weighted tau: tau_budget // m, at most n_queries; 0 (the
    summary's weighted tau is then None) when that is fewer than MIN_TAU_QUERIES (too noisy a mean)."""
    n = min(n_queries, tau_budget // max(m, 1))
    return n if n >= MIN_TAU_QUERIES else 0


def index_vectors(path: str | Path) -> np.ndarray:
    """The vectors (m, d) float32 of a flat FAISS index file, in row order (a copy; the file is mmapped)."""
    index = read_index(Path(path))
    return index.reconstruct_n(0, index.ntotal)


def flat_view(index: faiss.IndexFlat) -> np.ndarray:
    """The stored vectors (m, d) of a flat index as a view (no copy; valid while `index` lives)."""
    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


def neighbour_lists(
    vectors: np.ndarray | faiss.IndexFlat, queries: np.ndarray, k: int, n_full: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(lists (q, kk), full (n_full, m - 1)) for query rows (q,) of the vectors (m, d), by inner product.

    vectors: an array or a flat inner-product index over it (searched as the API searches it).
    lists: the kk = min(k, m - 1) best other rows per query, best first. FAISS finds kk + 2 candidates;
    a row whose k-th score ties the next candidate's is redone exactly with top_k_rows (ties by lower
    id), so lists are deterministic. full: the whole score vector of the first n_full queries with the
    query's own entry removed, for the weighted tau.
    """
    index = vectors if isinstance(vectors, faiss.Index) else flat_index(vectors)
    V = flat_view(index)
    m = V.shape[0]
    queries = np.asarray(queries, dtype=np.int64)
    kk = min(k, m - 1)
    lists = np.empty((queries.size, kk), dtype=np.int64)
    full = np.empty((n_full, m - 1), dtype=np.float32)
    step = max(1, SCORE_BLOCK // max(m, 1))
    for start in range(0, queries.size, step):
        rows = queries[start : start + step]
        Q = np.ascontiguousarray(V[rows])
        if kk + 2 <= m:
            D, ids = index.search(Q, kk + 2)
            redo = []
            for r, (q, d, i) in enumerate(zip(rows.tolist(), D, ids, strict=True)):
                keep = i != q
                d, i = d[keep][: kk + 1], i[keep][: kk + 1]
                if d[kk] == d[kk - 1] or np.any(i < 0):
                    redo.append(r)
                else:
                    lists[start + r] = i[:kk][np.lexsort((i[:kk], -d[:kk]))]
            if redo:
                lists[start + np.array(redo)] = top_k_rows(Q[redo] @ V.T, k, exclude=rows[redo])
        else:
            lists[start : start + rows.size] = top_k_rows(Q @ V.T, k, exclude=rows)
        for j in range(start, min(start + rows.size, n_full)):
            full[j] = np.delete(V @ V[queries[j]], queries[j])
    return lists, full


def compare_query(
    vectors: Mapping[str, np.ndarray],
    query: int,
    k: int = 10,
    popularity: np.ndarray | None = None,
    categories: np.ndarray | None = None,
    rbo_p: float = RBO_P,
    tau: bool = True,
) -> dict[str, Any]:
    """Side-by-side neighbour lists of one query row under several named vector sets, JSON-ready.

    vectors: name -> (m, d) vectors (e.g. {"dot": B, "cosine": Bn, "projected": Pn} of one model, or
    one metric across models), every set over the same m rows; the query is row `query` of each.
    popularity (m,): interactions per row (popularity_ratio); categories (m, c) bool (items only).
    tau=False skips the weighted tau (~3 us per row and pair). Returns
      {"query", "k", "rbo_p",
       "lists": {name: {"ids": [row...], "scores": [...], "popularity_ratio", "category_share"}},
       "pairs": [{"a", "b", "jaccard", "rbo", "weighted_tau"}]}
    with row ids (map them to public ids with items.json / users.json) and None for undefined values.
    """
    names = list(vectors)
    m = next(iter(vectors.values())).shape[0]
    if not 0 <= query < m:
        raise IndexError(f"query row {query} outside 0..{m - 1}")
    q = np.array([query])
    lists: dict[str, np.ndarray] = {}
    scores: dict[str, np.ndarray] = {}
    out_lists: dict[str, Any] = {}
    median = float(np.median(popularity)) if popularity is not None else 0.0
    for name in names:
        V = np.asarray(vectors[name], dtype=np.float32)
        if V.shape[0] != m:
            raise ValueError(f"vector set {name!r} has {V.shape[0]} rows, expected {m}")
        s = V @ V[query]
        ids = top_k_rows(s[None, :], k, exclude=q)
        lists[name], scores[name] = ids, np.delete(s, query)
        entry: dict[str, Any] = {"ids": ids[0].tolist(), "scores": s[ids[0]].astype(float).tolist()}
        entry["popularity_ratio"] = _num(popularity_ratio_rows(ids, popularity, median)[0]) if popularity is not None else None
        entry["category_share"] = _num(category_share_rows(q, ids, categories)[0]) if categories is not None else None
        out_lists[name] = entry
    pairs = []
    for a, b in combinations(names, 2):
        pairs.append(
            {
                "a": a,
                "b": b,
                "jaccard": float(jaccard_rows(lists[a], lists[b])[0]),
                "rbo": float(rbo_rows(lists[a], lists[b], rbo_p)[0]),
                "weighted_tau": _num(weighted_tau(scores[a], scores[b])) if tau else None,
            }
        )
    return {"query": int(query), "k": k, "rbo_p": rbo_p, "lists": out_lists, "pairs": pairs}


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
    model in MODELS and metric in METRICS (models sharing a file are computed once). popularity (m,),
    categories (m, c) bool or None. Figures are means over the queries: per model x metric "category_precision"
    (mean category share of the top-k, over queries that have a category) and "popularity_bias"
    (mean of median neighbour popularity / catalogue median); per model and metric pair "jaccard",
    "rbo" (top-k lists) and "weighted_tau" (full score vectors, tau queries); per metric the
    "d_sensitivity": mean Jaccard@k between the denoising D-variants, for each variant pair and overall.
    """
    queries = sample_rows(m, params.sample if sample is None else sample, params.seed)
    n_tau = tau_query_count(queries.size, m, params.tau_budget)
    median = float(np.median(popularity))
    computed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key in files.values():
        if key not in computed:
            computed[key] = neighbour_lists(load(key), queries, params.k, n_tau)
    has_cats = categories is not None and bool(categories.any())
    models: dict[str, Any] = {}
    for model in MODELS:
        per_metric = {}
        for metric in METRICS:
            lists = computed[files[(model, metric)]][0]
            per_metric[metric] = {
                "category_precision": _mean(category_share_rows(queries, lists, categories)) if has_cats else None,
                "popularity_bias": _mean(popularity_ratio_rows(lists, popularity, median)),
            }
        pairs = {}
        for a, b in METRIC_PAIRS:
            (la, fa), (lb, fb) = computed[files[(model, a)]], computed[files[(model, b)]]
            taus = np.array([weighted_tau(fa[j], fb[j]) for j in range(n_tau)])
            pairs[pair_name(a, b)] = {
                "jaccard": _mean(jaccard_rows(la, lb)),
                "rbo": _mean(rbo_rows(la, lb, params.rbo_p)),
                "weighted_tau": _mean(taus),
            }
        models[model] = {"metrics": per_metric, "pairs": pairs}
    d_sensitivity = {}
    for metric in METRICS:
        by_pair = {
            pair_name(a.removeprefix("denoising-"), b.removeprefix("denoising-")): _mean(
                jaccard_rows(computed[files[(a, metric)]][0], computed[files[(b, metric)]][0])
            )
            for a, b in combinations(DENOISING_VARIANTS, 2)
        }
        values = [v for v in by_pair.values() if v is not None]
        d_sensitivity[metric] = {
            "jaccard": float(np.mean(values)) if values else None,
            "min_pair": min(values) if values else None,
            "pairs": by_pair,
            "shared_index": len({files[(v, metric)] for v in DENOISING_VARIANTS}) == 1,
        }
    n_cat_queries = int(categories[queries].any(axis=1).sum()) if has_cats else 0
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
    X = ds.X.tocsr()
    positive = X > 0  # as item_popularity.npy counts
    item_pop = np.asarray(positive.sum(axis=0), dtype=np.float64).ravel()  # users per item
    user_act = np.asarray(positive.sum(axis=1), dtype=np.float64).ravel()  # items per user
    categories = category_matrix(ds.item_categories)[0] if ds.item_categories is not None else None

    def load(rel: str) -> faiss.Index:
        return read_index(folder / rel)

    sides: dict[str, Any] = {}
    for side, pop, cats, what, n in (
        ("items", item_pop, categories, "users per item", params.sample),
        ("users", user_act, None, "items per user", params.user_sample),
    ):
        if n < 1:
            continue
        files = {(mo, me): indexes[f"{side}/{mo}/{me}"]["file"] for mo in MODELS for me in METRICS}
        with progress.step(f"diagnostics {side} ({min(n, pop.size)} of {pop.size} queries)"):
            sides[side] = {"popularity": what, **side_summary(load, files, pop.size, pop, cats, params, n)}
    return {
        **asdict(params),
        "weighted_tau_method": "scipy.stats.weightedtau: hyperbolic additive weights, mean of ranks by either vector",
        "popularity_bias_definition": "mean over queries of median(neighbour popularity) / catalogue median",
        "category_precision_definition": "mean over queries with a category of the share of neighbours sharing one",
        "sides": sides,
        "seconds": round(time.perf_counter() - t0, 3),
    }


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
    "diagnostics" entry: {"summary": "summary.json", "heatmaps": {...} or None, "heatmaps_skipped": why}."""
    from models.heatmaps import HEATMAP_MAX_ITEMS, write_heatmaps  # matplotlib only when needed
    from models.simulation import simulation_truth, spec_from_source

    summary = catalogue_summary(folder, indexes, ds, params, progress)
    with open(folder / SUMMARY_FILE, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, allow_nan=False)  # None marks undefined figures
    entry: dict[str, Any] = {"summary": SUMMARY_FILE, "heatmaps": None, "heatmaps_skipped": None}
    if ds.source.get("kind") != "simulation":
        entry["heatmaps_skipped"] = "only for the simulation (needs its ground truth)"
    elif ds.n_items > HEATMAP_MAX_ITEMS:
        entry["heatmaps_skipped"] = f"{ds.n_items} items > {HEATMAP_MAX_ITEMS} (p x p panels)"
    else:
        truth = simulation_truth(spec_from_source(ds.source))
        with progress.step(f"heatmaps ({ds.n_items} x {ds.n_items}, 21 panels)"):
            entry["heatmaps"] = write_heatmaps(folder, ds.X, truth, lambda_denoising, lambda_weight_decay)
    return entry


def format_summary(summary: Mapping[str, Any], markdown: bool = False) -> str:
    """The summary as tables: plain text for the build's output, or markdown for docs and pages."""
    blocks: list[str] = []
    k = summary["k"]
    for side, s in summary["sides"].items():
        how = "seeded sample" if s["sampled"] else "all"
        tau = (
            f"weighted tau on the first {s['tau_queries']} queries"
            if s["tau_queries"]
            else f"weighted tau left out ({summary['tau_budget']} // {s['rows']} rows < {MIN_TAU_QUERIES} queries)"
        )
        blocks.append(
            f"{side}: {s['queries']} of {s['rows']} rows queried ({how}); lists of {k}; RBO p={summary['rbo_p']}; {tau}; "
            f"popularity = {s['popularity']}, catalogue median {s['catalogue_median_popularity']:g}"
        )
        cat = any(v["category_precision"] is not None for mo in s["models"].values() for v in mo["metrics"].values())
        head = ["model"] + ([f"cat.prec@{k} {me}" for me in METRICS] if cat else []) + [f"pop.bias {me}" for me in METRICS]
        rows = []
        for model, mo in s["models"].items():
            vals = [mo["metrics"][me]["category_precision"] for me in METRICS] if cat else []
            vals += [mo["metrics"][me]["popularity_bias"] for me in METRICS]
            rows.append([model, *(_fmt(v) for v in vals)])
        blocks.append(_table(head, rows, markdown))
        rows = []
        for model, mo in s["models"].items():
            for n, (a, b) in enumerate(METRIC_PAIRS):
                fig = mo["pairs"][pair_name(a, b)]
                rows.append(
                    [
                        model if n == 0 or markdown else "",
                        pair_name(a, b),
                        *(_fmt(fig[f]) for f in ("jaccard", "rbo", "weighted_tau")),
                    ]
                )
        blocks.append(_table(["model", "metric pair", f"Jaccard@{k}", "RBO", "weighted tau"], rows, markdown, left=2))
        d = s["d_sensitivity"]
        rows = [
            [
                f"mean Jaccard@{k} over the {len(DENOISING_VARIANTS)} denoising D-variants (6 pairs)",
                *(_fmt(d[me]["jaccard"]) + (" (one index)" if d[me]["shared_index"] else "") for me in METRICS),
            ],
            ["least similar pair of D-variants", *(_fmt(d[me]["min_pair"]) for me in METRICS)],
        ]
        blocks.append(_table(["D-sensitivity", *METRICS], rows, markdown))
    return "\n\n".join(blocks)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool, left: int = 1) -> str:
    """A markdown table, or aligned text: the first `left` columns left-aligned, the rest right-aligned."""
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i < left else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join("  " + fmt.format(*r) for r in [head, *rows])


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _mean(values: np.ndarray) -> float | None:
    """Mean of the defined values; None when none is defined (JSON has no NaN)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None
