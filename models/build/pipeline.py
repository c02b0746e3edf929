"""The build: dataset -> SVD -> every model's factors -> every index -> one staged artifact folder.

Writes into a staging folder only; publishing is the artifact store's job. With the Dask engine a model's P is
a dask array (rows on the workers): its indexes and /recommend query files are written in place by the workers
(models.distributed.row_files), without IVF or HNSW twins, and the gauge probe gathers a sample of its rows.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import scipy
import scipy.sparse as sp
import sklearn

from models.artifact import manifest as contract
from models.artifact.manifest import (
    METRICS,
    RECOMMEND_METRICS,
    SHARED_METRICS,
    SIDES,
    HnswEntry,
    IndexEntry,
    IndexKey,
    IvfEntry,
    NeighbourEntry,
    RecommendEntry,
)
from models.artifact.store import save_npy, save_npz
from models.build.evaluate import run_evaluation
from models.build.fitting import ModelChoice, fit_models
from models.build.progress import Progress
from models.diagnostics.gauge import GaugeParams, gauge_probe
from models.diagnostics.summary import DiagnosticsParams, run_diagnostics
from models.errors import InputError
from models.evaluation.scoring import EvalParams
from models.fit.implicit_models import ALGORITHMS
from models.fit.metric_vectors import recommend_vectors, side_vectors
from models.fit.projection import is_lazy, normalize_rows, row_norms
from models.fit.svd import truncated_svd
from models.indexes.faiss_index import HnswParams, flat_index, hnsw_index, recall_at_10, write_index
from models.indexes.ivf import IvfParams, QuerySet, choose, exact_for_size, sample_queries
from models.indexes.neighbour_lists import exact_neighbours
from models.inputs.dataset import Dataset
from models.inputs.factors import read_imported_factors

GAUGE_USERS = 20_000  # users of a dask P the gauge probe gathers (models of the Dask engine)


@dataclass(frozen=True)
class BuildParams:
    k: int = 50
    lambda_denoising: float = 10_000.0
    lambda_weight_decay: float = 100.0
    seed: int = 0
    svd_n_iter: int = 6
    svd_oversamples: int = 20
    hnsw: bool = False
    hnsw_params: HnswParams = field(default_factory=HnswParams)
    # summary.json (+ heatmaps for the simulation), models/diagnostics/; on in the CLI, off for library callers
    diagnostics: bool = False
    diagnostics_sample: int = 2000
    diagnostics_user_sample: int = 500
    diagnostics_score_budget: int = DiagnosticsParams.score_budget  # caps the queries of a large side
    # exact top-N neighbour lists of every item index, for /similar-items with k <= N (0: none)
    precompute_neighbours: int = 0  # costs O(n_items^2 k) per item index (see docs/offline-job.md)
    # ... of the item indexes of at most this many rows only (None: every one); the CLI's default ("auto") is
    # N = 100 up to --exact-max-rows, where the lists are cheap and replace an exact search per request
    neighbours_max_rows: int | None = None
    # IVF twins of the indexes above approximate.exact_max_rows (models.indexes.ivf); the CLI's default, None
    # (exact search only) for library callers
    approximate: IvfParams | None = None
    # models besides the closed forms (implicit ALS/BPR, imported factors)
    models: ModelChoice = field(default_factory=ModelChoice)
    # the gauge probe of every model (gauge.json); on in the CLI (4 transforms), off (0) for library callers
    gauge: GaugeParams = field(default_factory=lambda: GaugeParams(transforms=0))
    # held-out evaluation of every model x metric (evaluation.json): refits every model, so opt-in
    evaluate: bool = False
    evaluation: EvalParams = field(default_factory=EvalParams)

    def validate(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise InputError(f"--k must be an integer >= 1, got {self.k}")
        for name, lam in (("--lambda-denoising", self.lambda_denoising), ("--lambda-weight-decay", self.lambda_weight_decay)):
            if not np.isfinite(lam) or lam < 0:
                raise InputError(f"{name} must be a finite number >= 0, got {lam}")
        if self.svd_n_iter < 0 or self.svd_oversamples < 0:
            raise InputError("--svd-n-iter and --svd-oversamples must be >= 0")
        hp = self.hnsw_params
        if hp.M < 2 or hp.ef_construction < 1 or hp.ef_search < 1 or hp.recall_queries < 1:
            raise InputError("--hnsw-m must be >= 2 and the other --hnsw-* values >= 1")
        if self.diagnostics_score_budget < 0:
            raise InputError(f"--diagnostics-score-budget must be >= 0, got {self.diagnostics_score_budget}")
        if self.diagnostics_sample < 1 or self.diagnostics_user_sample < 0:
            raise InputError("--diagnostics-sample must be >= 1 and --diagnostics-user-sample >= 0")
        if not isinstance(self.precompute_neighbours, int) or self.precompute_neighbours < 0:
            raise InputError(f"--precompute-neighbours must be an integer >= 0, got {self.precompute_neighbours}")
        if self.neighbours_max_rows is not None and self.neighbours_max_rows < 0:
            raise InputError(f"neighbours_max_rows must be >= 0, got {self.neighbours_max_rows}")
        if self.approximate is not None:
            self.approximate.validate()
        self.models.validate()
        g = self.gauge
        if g.transforms < 0 or g.item_queries < 1 or g.user_queries < 0 or not 0 < g.low <= g.high:
            raise InputError("--gauge-transforms must be >= 0, --gauge-queries >= 1, and 0 < low <= high")
        e = self.evaluation
        if not 0.0 < e.fraction < 1.0:
            raise InputError(f"--eval-fraction must be strictly between 0 and 1, got {e.fraction}")
        if e.min_interactions < 2:
            raise InputError(f"--eval-min-interactions must be >= 2 (one to train on, one to hold out), got {e.min_interactions}")
        for flag, cap in (("--eval-users", e.max_users), ("--eval-items", e.max_items)):
            if cap is not None and cap < 0:
                raise InputError(f"{flag} must be >= 0 (0: all), got {cap}")


def build_into(folder: Path, ds: Dataset, params: BuildParams, progress: Progress) -> dict[str, Any]:
    """Fit every model and write every index into `folder`; return the manifest (without files)."""
    params.validate()
    t0 = time.perf_counter()
    X = ds.X
    if X.nnz == 0:
        raise InputError("dataset has no non-zero interactions")
    (folder / contract.INDEXES_DIR).mkdir()
    with progress.step(f"svd k={min(params.k, *X.shape)} of {X.shape[0]}x{X.shape[1]}, nnz={X.nnz}"):
        if sp.issparse(X):
            svd = truncated_svd(X, params.k, seed=params.seed, n_iter=params.svd_n_iter, n_oversamples=params.svd_oversamples)
        else:  # X held elsewhere (row blocks on Dask workers) computes its own
            svd = X.svd(
                params.k, seed=params.seed, n_iter=params.svd_n_iter, n_oversamples=params.svd_oversamples, progress=progress
            )
    progress.say(f"svd: {svd.method}, relative residual {svd.relative_residual:.2e}, energy captured {svd.energy_captured:.3f}")
    save_npz(folder / contract.SVD, s=svd.s, V=svd.V)
    imported = {name: read_imported_factors(Path(path), ds.item_ids, ds.user_ids) for name, path in params.models.imports}
    indexes: dict[IndexKey, IndexEntry] = {}
    models: dict[str, dict[str, Any]] = {}
    recommend: dict[str, dict[str, RecommendEntry]] = {}
    shared: dict[str, _Shared] = {}
    groups: dict[str, list[str]] = {}
    gauge: dict[str, dict[str, Any]] = {}
    writer = _IndexWriter(folder, params, progress)
    svd_options = {"n_iter": params.svd_n_iter, "n_oversamples": params.svd_oversamples}
    fitted = fit_models(
        X, svd, params.lambda_denoising, params.lambda_weight_decay, params.models, imported, params.seed, progress, svd_options
    )
    for fm in fitted:
        model, P, Q = fm.name, fm.P, fm.Q
        with progress.step(f"indexes {model}"):
            models[model] = {
                **fm.info,
                "k": int(Q.shape[1]),
                "zero_items": int(np.count_nonzero(row_norms(Q) == 0)),
                "zero_users": int((row_norms(P) == 0).sum()),
            }
            # /recommend's dot and cosine search the items index with the users' vectors: a sample of them
            # measures the items index's IVF recall for those queries too
            users = _user_sample(P, params)
            for side, M in (("items", Q), ("users", P)):
                lists = side == "items"  # /similar-items lookups; users and recommend keep searching
                # the normalised copy is made only after the dot index is written, and freed with its own:
                # one (rows, k) float64 copy at a time at peak
                stem = contract.index_stem
                dot_users, cosine_users = (
                    (users, normalize_rows(users)) if side == "items" and users is not None else (None, None)
                )
                indexes[IndexKey(side, model, "dot")] = writer.write(stem(side, model, "dot"), M, lists, dot_users)
                indexes[IndexKey(side, model, "cosine")] = writer.write(
                    stem(side, model, "cosine"), normalize_rows(M), lists, cosine_users
                )
            group = fm.projected_group
            groups.setdefault(group, []).append(model)
            if group not in shared:
                shared[group] = _write_shared(writer, folder, group, P, Q)
            for side in SIDES:
                for metric in SHARED_METRICS:
                    indexes[IndexKey(side, model, metric)] = shared[group].sides[side, metric]
            recommend[model] = {
                metric: RecommendEntry(
                    items=indexes[IndexKey("items", model, metric)], query_index=IndexKey("users", model, metric)
                )
                for metric in RECOMMEND_METRICS
                if metric not in SHARED_METRICS
            } | shared[group].recommend
        if params.gauge.transforms > 0:
            with progress.step(f"gauge probe {model} ({params.gauge.transforms} random D)"):
                gauge[model] = _probe(model, P, Q, params.gauge, gauge.get(groups[group][0]))
        del fm, P, Q
    if writer.neighbour_seconds:
        progress.timings["neighbour lists"] = round(writer.neighbour_seconds, 3)
    _write_dataset_files(folder, ds)
    if gauge:
        with open(folder / contract.GAUGE, "w", encoding="utf-8") as f:
            json.dump(gauge, f, indent=1, allow_nan=False)
    index_json = {str(key): entry.to_json() for key, entry in indexes.items()}
    diagnostics = (
        run_diagnostics(
            folder,
            ds,
            index_json,
            DiagnosticsParams(
                sample=params.diagnostics_sample,
                user_sample=params.diagnostics_user_sample,
                score_budget=params.diagnostics_score_budget,
                seed=params.seed,
            ),
            params.lambda_denoising,
            params.lambda_weight_decay,
            progress,
        )
        if params.diagnostics
        else None
    )
    evaluation = None
    if params.evaluate:
        run_evaluation(
            folder,
            ds,
            params.k,
            params.lambda_denoising,
            params.lambda_weight_decay,
            params.models,
            imported,
            svd_options,
            params.evaluation,
            progress,
        )
        evaluation = contract.EVALUATION
    return {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.perf_counter() - t0, 3),
        "dataset": {**ds.source, "fingerprint": ds.fingerprint()},
        "counts": {"users": ds.n_users, "items": ds.n_items, "interactions": int(X.nnz), "k": svd.k},
        "params": {**asdict(params), "k_requested": params.k, "k_effective": svd.k},
        "svd": {
            "method": svd.method,
            "singular_values": svd.s.tolist(),
            "relative_residual": svd.relative_residual,
            "energy_captured": svd.energy_captured,
        },
        "models": models,
        "metrics": list(METRICS),
        "indexes": index_json,
        "recommend": {model: {metric: e.to_json() for metric, e in by.items()} for model, by in recommend.items()},
        "projected_groups": groups,
        "gauge": contract.GAUGE if gauge else None,
        "evaluation": evaluation,
        "has_metadata": ds.item_titles is not None,
        "libraries": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "faiss": faiss.__version__,
            **({"implicit": _version_of("implicit")} if set(params.models.train) & set(ALGORITHMS) else {}),
        },
        "diagnostics": diagnostics,
        "step_seconds": dict(progress.timings),
    }


def _probe(model: str, P: np.ndarray, Q: np.ndarray, params: GaugeParams, first: dict[str, Any] | None) -> dict[str, Any]:
    """gauge.json's entry of a model: its probe, whose shared-metric figures are those of `first`, the probe of
    the first model of its projected group, when there is one.

    The group serves one index per side and shared metric, built from the first model's factors
    (_write_shared), so the other models' shared figures are those of the same served lists: probing them
    again would check vectors nobody serves, at about half of the probe's cost.

    A dask P (users on Dask workers) is probed on a seeded sample of GAUGE_USERS of its rows, gathered here
    (the probe ranks users among them); the entry's "users_sampled" says how many of how many.
    """
    sampled: dict[str, int] = {}
    if is_lazy(P):
        n = int(P.shape[0])
        rows = np.sort(np.random.default_rng(params.seed).choice(n, size=min(n, GAUGE_USERS), replace=False))
        P = np.asarray(P[rows].compute())
        sampled = {"users_sampled": len(rows), "users_total": n}
    if first is None:
        return {"model": model, **gauge_probe(P, Q, params), **sampled, "shared_from": model}
    doc = gauge_probe(P, Q, params, shared_metrics=False)
    for side, by_metric in doc["sides"].items():
        for metric in SHARED_METRICS:
            by_metric[metric] = dict(first["sides"][side][metric])
    return {"model": model, **doc, **sampled, "shared_from": first["model"]}


@dataclass(frozen=True)
class _Shared:
    """The indexes of a group's shared metrics: per (side, metric), and the /recommend pair per metric."""

    sides: dict[tuple[str, str], IndexEntry]
    recommend: dict[str, RecommendEntry]


def _write_shared(writer: _IndexWriter, folder: Path, group: str, P: np.ndarray, Q: np.ndarray) -> _Shared:
    """The SHARED_METRICS indexes of a group (models.fit.metric_vectors), written once for all its models.

    /recommend for a shared metric in RECOMMEND_METRICS queries the saved user vectors
    (recommend_query_file) against an items index of its own: for projected P_u / ||Xhat_u|| against
    Q_i / ||Xhat_:,i||, the model's own prediction normalised in the original space, D-invariant.
    One (rows, k) float64 array is built at a time and freed once written.
    """
    sides: dict[tuple[str, str], IndexEntry] = {}
    recommend: dict[str, RecommendEntry] = {}
    for metric in SHARED_METRICS:
        for side in SIDES:
            vectors = side_vectors(P, Q, side, metric)
            sides[side, metric] = writer.write(contract.index_stem(side, group, metric), vectors, side == "items")
            del vectors
        if metric in RECOMMEND_METRICS:
            queries, items = recommend_vectors(P, Q, metric)
            query_file = contract.recommend_query_file(group, metric)
            _save_rows(folder / query_file, queries)
            entry = writer.write(contract.index_stem("recommend", group, f"{metric}-items"), items, users=queries)
            recommend[metric] = RecommendEntry(items=entry, query_file=query_file)
            del queries, items
    return _Shared(sides=sides, recommend=recommend)


class _IndexWriter:
    """Writes one exact index (optionally its HNSW twin with measured recall, and its neighbour lists) per call."""

    def __init__(self, folder: Path, params: BuildParams, progress: Progress) -> None:
        self.folder, self.params, self.progress = folder, params, progress
        self.neighbour_seconds = 0.0

    def write(self, stem: str, vectors: np.ndarray, neighbours: bool = False, users: np.ndarray | None = None) -> IndexEntry:
        """The manifest entry of `stem`; with `neighbours` (and precompute_neighbours > 0, and at most
        neighbours_max_rows rows when that is set) also its exact lists;
        with params.approximate its IVF twin when it is large and accurate enough, its recall measured on the
        index's own rows and, for an items index that /recommend also searches, on `users` (n_users, dim), the
        users' query vectors.

        Lists: indexes/<stem>.neighbours-ids.npy (rows, w) int32 and .neighbours-scores.npy (rows, w)
        float32, w = min(N, rows - 1) (models.indexes.neighbour_lists.exact_neighbours), so the API can answer a
        row's top k <= w with a memory-mapped lookup instead of a search.
        """
        if is_lazy(vectors):
            return self._write_on_workers(stem, vectors)
        rel = contract.index_file(stem)
        exact = flat_index(vectors)
        write_index(exact, self.folder / rel)
        lists: NeighbourEntry | None = None
        hnsw: HnswEntry | None = None
        cap = self.params.neighbours_max_rows
        if neighbours and self.params.precompute_neighbours > 0 and (cap is None or vectors.shape[0] <= cap):
            t0 = time.perf_counter()
            ids, scores = exact_neighbours(exact, vectors, self.params.precompute_neighbours)
            ids_file, scores_file = contract.neighbour_files(stem)
            save_npy(self.folder / ids_file, ids)
            save_npy(self.folder / scores_file, scores)
            took = time.perf_counter() - t0
            self.neighbour_seconds += took
            self.progress.say(f"  neighbours {stem}: exact top {ids.shape[1]} of {ids.shape[0]} rows in {took:.1f}s")
            width = int(ids.shape[1])
            lists = NeighbourEntry(ids=ids_file, scores=scores_file, n=width, complete=width == vectors.shape[0] - 1)
        if self.params.hnsw:
            hp = self.params.hnsw_params
            approx = hnsw_index(vectors, hp)
            hrel = contract.hnsw_file(stem)
            write_index(approx, self.folder / hrel)
            recall = recall_at_10(exact, approx, vectors, hp.recall_queries, seed=self.params.seed)
            hnsw = HnswEntry(
                file=hrel, M=hp.M, ef_construction=hp.ef_construction, ef_search=hp.ef_search, recall_at_10=round(recall, 4)
            )
            self.progress.say(f"  index {stem}: {vectors.shape[0]} x {vectors.shape[1]}, hnsw recall@10 {recall:.3f}")
        else:
            self.progress.say(f"  index {stem}: {vectors.shape[0]} x {vectors.shape[1]}")
        ivf, serving = self._approximate(stem, vectors, exact, users) if self.params.approximate else (None, None)
        return IndexEntry(
            file=rel,
            rows=int(vectors.shape[0]),
            dim=int(vectors.shape[1]),
            zero_rows=int(np.count_nonzero(~np.any(vectors != 0, axis=1))),
            neighbours=lists,
            hnsw=hnsw,
            ivf=ivf,
            serving=serving,
        )

    def _write_on_workers(self, stem: str, vectors: Any) -> IndexEntry:
        """The exact index of a dask array's rows (n, dim), written in place by the workers that hold them
        (models.distributed.row_files); no twins or lists, which need every row in this process."""
        from models.distributed.row_files import flat_index_header, write_rows

        rel = contract.index_file(stem)
        n, dim = (int(s) for s in vectors.shape)
        written = write_rows(vectors, self.folder / rel, flat_index_header(n, dim))
        self.progress.say(f"  index {stem}: {n} x {dim}, written by the Dask workers")
        serving = None
        if self.params.approximate is not None:
            serving = exact_for_size(n, self.params.approximate) or (
                f"exact: {n} rows written by the Dask workers (an IVF twin needs them in one process; "
                "VECTOR_BACKEND=milvus serves them from an approximate Milvus index)"
            )
        return IndexEntry(file=rel, rows=written.rows, dim=written.dim, zero_rows=written.zero_rows, serving=serving)

    def _approximate(
        self, stem: str, vectors: np.ndarray, exact: faiss.Index, users: np.ndarray | None
    ) -> tuple[IvfEntry | None, str]:
        """(the IVF twin's entry or None, why) of one index (models.indexes.ivf.choose); writes the twin."""
        params = self.params.approximate
        assert params is not None
        seed = self.params.seed
        sets: list[QuerySet] = []
        if vectors.shape[0] > params.exact_max_rows:
            sets.append(sample_queries(vectors, "rows", params.queries, seed, own=True))
            if users is not None:
                sets.append(sample_queries(users, "users", params.queries, seed + 1, own=False))
        choice = choose(vectors, sets, params, seed, exact)
        if choice.index is None:
            return None, choice.reason
        rel = contract.ivf_file(stem)
        write_index(choice.index, self.folder / rel)
        recalls = ", ".join(f"{name} {r:.3f}" for name, r in choice.recall_at_10.items())
        self.progress.say(f"  ivf {stem}: nprobe {choice.nprobe} of {choice.nlist}, recall@10 {recalls} in {choice.seconds:.1f}s")
        entry = IvfEntry(
            file=rel,
            nlist=choice.nlist,
            nprobe=choice.nprobe,
            augmented=choice.augmented,
            recall_at_10=min(choice.recall_at_10.values()),
            recall_by_queries=choice.recall_at_10,
            scanned=choice.scanned,
        )
        return entry, choice.reason


def _save_rows(path: Path, M: Any) -> None:
    """M (rows, k) as a float32 .npy: written by the Dask workers in place for a dask array."""
    if is_lazy(M):
        from models.distributed.row_files import npy_header, write_rows

        write_rows(M, path, npy_header(*(int(s) for s in M.shape)))
    else:
        save_npy(path, np.asarray(M, dtype=np.float32))


def _user_sample(P: np.ndarray, params: BuildParams) -> np.ndarray | None:
    """A seeded sample (q, k) of the rows of P (n_users, k) for IVF recall (None without approximate twins)."""
    if params.approximate is None:
        return None
    return sample_queries(P, "users", params.approximate.queries, params.seed + 1, own=False).queries


def _version_of(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _write_dataset_files(folder: Path, ds: Dataset) -> None:
    """Id maps, item metadata, popularity and the interactions (for exclude_seen)."""
    with open(folder / contract.USERS, "w", encoding="utf-8") as f:
        json.dump(ds.user_ids, f, ensure_ascii=False)
    items = []
    for row, item in enumerate(ds.item_ids):
        entry: dict[str, Any] = {"id": item}
        if ds.item_titles is not None:
            entry["title"] = ds.item_titles[row]
        if ds.item_categories is not None:
            entry["categories"] = ds.item_categories[row]
        items.append(entry)
    with open(folder / contract.ITEMS, "w", encoding="utf-8") as f:
        json.dump(items, f, ensure_ascii=False)
    save_npy(folder / contract.ITEM_POPULARITY, ds.item_popularity())
    ds.save_interactions(folder / contract.INTERACTIONS)
