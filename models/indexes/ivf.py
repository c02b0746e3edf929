"""The approximate twin of a large exact index: FAISS IVF-Flat, its probe count chosen by measured recall.

A flat search costs rows x dim per query (about 1.1 ms for 50,000 x 128 on one core here); an inverted
file scans only the `nprobe` clusters nearest the query. Three choices make it serve every metric:

- Raw inner product is not a metric an inverted file can cluster for (the MIPS pitfall of PAPER.md: the
  best inner products go to long vectors wherever they point). When the rows' norms differ, each row
  x_i gets one more coordinate sqrt(R^2 - |x_i|^2), R = max |x_i|, and a query gets 0 there:
  <[q, 0], [x_i, sqrt(R^2 - |x_i|^2)]> = <q, x_i>, and every stored row has norm R, so the nearest
  clusters by inner product are the nearest by angle (Bachrach et al. 2014).
- nlist = round(sqrt(rows)) clusters, k-means with 10 iterations on at most 64 points per cluster:
  about 0.1 s for 50,000 x 128 and 0.25 s for 100,000 x 128 on two cores.
- nprobe is the smallest of 1, 2, 3, 4, 6, 9, 13, ... (x1.5) whose recall@10 against the exact
  search, less two standard errors of its sample, reaches the target on every query set given (the
  catalogue's own rows, and the users for a /recommend items index), scanning at most `max_scan` of
  the rows on average; when none does, there is no twin and the index is served exactly (`choose`
  says why).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import faiss
import numpy as np

from models.errors import InputError
from models.indexes.faiss_index import flat_index


@dataclass(frozen=True)
class IvfParams:
    """When and how the job builds an IVF twin (CLI: --exact-max-rows, --approximate-recall)."""

    exact_max_rows: int = 10_000  # at most this many rows: exact search (<= ~0.2 ms per query at dim 128)
    target_recall: float = 0.95
    max_scan: float = 0.25  # an IVF that must scan more than this share of the rows is not worth serving
    queries: int = 300  # per query set, seeded sample
    points_per_list: int = 64  # k-means training sample per cluster
    iterations: int = 10

    def validate(self) -> None:
        if self.exact_max_rows < 0:
            raise InputError(f"--exact-max-rows must be >= 0, got {self.exact_max_rows}")
        if not 0.0 < self.target_recall <= 1.0:
            raise InputError(f"--approximate-recall must be in (0, 1], got {self.target_recall}")
        if not 0.0 < self.max_scan <= 1.0 or self.queries < 1 or self.points_per_list < 1 or self.iterations < 1:
            raise InputError("IVF parameters: max_scan in (0, 1], queries, points_per_list and iterations >= 1")


@dataclass(frozen=True)
class QuerySet:
    """Queries (q, dim) float32 to measure recall with; rows (q,): the index row each one is (excluded from
    its own answer, as /similar-* exclude the query), or None for outside queries (/recommend's users)."""

    name: str
    queries: np.ndarray
    rows: np.ndarray | None = None


@dataclass(frozen=True)
class IvfChoice:
    """The outcome for one index: `index` (None: serve exactly), and why."""

    index: faiss.IndexIVFFlat | None
    reason: str
    nlist: int = 0
    nprobe: int = 0
    augmented: bool = False
    recall_at_10: dict[str, float] = field(default_factory=dict)
    scanned: float = 0.0  # mean share of rows scanned per query at nprobe
    seconds: float = 0.0


def augment(vectors: np.ndarray) -> tuple[np.ndarray, bool]:
    """(rows, dim + 1) float32 [x_i, sqrt(R^2 - |x_i|^2)] when the norms of vectors (rows, dim) differ, else
    (vectors as float32, False): inner products with [q, 0] are unchanged, every stored norm is R."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    top = float(norms.max()) if norms.size else 0.0
    if top == 0.0 or float(norms.min()) >= top * (1 - 1e-4):
        return x, False
    extra = np.sqrt(np.maximum(top * top - norms * norms, 0.0)).astype(np.float32)
    return np.hstack([x, extra[:, None]]), True


def sample_queries(vectors: np.ndarray, name: str, n: int, seed: int, own: bool) -> QuerySet:
    """A seeded sample of min(n, rows) rows of vectors (rows, dim) as a QuerySet; own: they are the index's rows."""
    rows = np.sort(np.random.default_rng(seed).choice(vectors.shape[0], size=min(n, vectors.shape[0]), replace=False))
    return QuerySet(name, np.ascontiguousarray(vectors[rows], dtype=np.float32), rows if own else None)


def pad_queries(queries: np.ndarray, augmented: bool) -> np.ndarray:
    """Queries (q, dim) as the twin takes them: (q, dim + 1) with a 0 column when it is augmented."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if not augmented:
        return q
    return np.hstack([q, np.zeros((q.shape[0], 1), dtype=np.float32)])


class IvfSearcher:
    """An IVF twin as a searcher over the exact index's vectors: search(queries (q, dim), n) pads the queries
    of an augmented twin (pad_queries) and returns FAISS's (scores (q, n), ids (q, n)), -1 where too few were found
    in the probed lists."""

    def __init__(self, index: faiss.IndexIVFFlat, augmented: bool, nprobe: int) -> None:
        self.index, self.augmented = index, augmented
        index.nprobe = nprobe

    def search(self, queries: np.ndarray, n: int, /) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(pad_queries(queries, self.augmented), n)


def ivf_index(vectors: np.ndarray, params: IvfParams, seed: int = 0) -> tuple[faiss.IndexIVFFlat, bool]:
    """(IVF-Flat inner-product index over augment(vectors) (rows, dim), augmented?) with round(sqrt(rows)) lists."""
    x, augmented = augment(vectors)
    rows, dim = x.shape
    nlist = max(1, round(float(np.sqrt(rows))))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = params.iterations
    index.cp.max_points_per_centroid = params.points_per_list
    index.cp.min_points_per_centroid = 1  # small catalogues: no warning, the recall check decides
    index.cp.seed = seed
    index.train(x)
    index.add(x)
    return index, augmented


def recall_per_query(
    found: np.ndarray, found_scores: np.ndarray, truth: np.ndarray, truth_scores: np.ndarray, rows: np.ndarray | None
) -> np.ndarray:
    """Recall@10 per query (q,) of a search's (found (q, n) ids, found_scores (q, n)) against the exact one's (truth,
    truth_scores), each query's own row (rows (q,)) and -1 dropped: the share of the first 10 found rows that score
    at least the exact 10th score (within float32 rounding), so that a tie with the 10th row counts as the hit it is
    (duplicate rows tie; either of them is a right answer)."""
    out = np.ones(truth.shape[0])
    for i in range(truth.shape[0]):
        own = -1 if rows is None else int(rows[i])
        t = [s for r, s in zip(truth[i].tolist(), truth_scores[i].tolist(), strict=True) if r != own and r >= 0][:10]
        if not t:
            continue
        kth = t[-1] - 1e-5 * abs(t[-1]) - 1e-6
        f = [s for r, s in zip(found[i].tolist(), found_scores[i].tolist(), strict=True) if r != own and r >= 0][:10]
        out[i] = min(sum(1 for s in f if s >= kth), len(t)) / len(t)
    return out


def lower_bound(recalls: np.ndarray) -> float:
    """mean - 2 standard errors of per-query recalls (q,): the sample's recall is the catalogue's, within it."""
    if recalls.size < 2:
        return float(recalls.mean()) if recalls.size else 1.0
    return float(recalls.mean() - 2.0 * recalls.std(ddof=1) / np.sqrt(recalls.size))


def exact_for_size(rows: int, params: IvfParams) -> str | None:
    """The serving reason of an index of `rows` rows small enough to be searched exactly; None above exact_max_rows."""
    return f"exact: {rows} rows <= exact_max_rows {params.exact_max_rows}" if rows <= params.exact_max_rows else None


def choose(
    vectors: np.ndarray, query_sets: list[QuerySet], params: IvfParams, seed: int = 0, exact: faiss.Index | None = None
) -> IvfChoice:
    """Whether vectors (rows, dim) get an IVF twin, and with which nprobe (module docstring); exact: a flat
    inner-product index over the same vectors (built here when None)."""
    rows = int(vectors.shape[0])
    if (small := exact_for_size(rows, params)) is not None:
        return IvfChoice(None, small)
    t0 = time.perf_counter()
    index, augmented = ivf_index(vectors, params, seed)
    if exact is None:
        exact = flat_index(vectors)
    lists = index.invlists
    assert lists is not None
    sizes = np.array([lists.list_size(i) for i in range(index.nlist)], dtype=np.float64)
    truths = [exact.search(np.ascontiguousarray(qs.queries, dtype=np.float32), 11) for qs in query_sets]
    nprobe = 1
    recalls: dict[str, float] = {}
    while True:
        index.nprobe = nprobe
        recalls, bounds = {}, {}
        scanned = 0.0
        for qs, (truth_scores, truth) in zip(query_sets, truths, strict=True):
            padded = pad_queries(qs.queries, augmented)
            found_scores, found = index.search(padded, 11)
            per_query = recall_per_query(found, found_scores, truth, truth_scores, qs.rows)
            recalls[qs.name], bounds[qs.name] = round(float(per_query.mean()), 4), lower_bound(per_query)
            _, probed = index.quantizer.search(padded, nprobe)
            scanned = max(scanned, float(sizes[probed].sum(axis=1).mean()) / rows)
        if min(bounds.values()) >= params.target_recall:
            took = time.perf_counter() - t0
            reason = (
                f"ivf: {rows} rows > exact_max_rows {params.exact_max_rows}; at nprobe {nprobe} of {index.nlist} lists "
                f"recall@10 is {min(recalls.values()):.3f} (minus two standard errors {min(bounds.values()):.3f} >= "
                f"{params.target_recall}), scanning {scanned:.1%} of the rows"
            )
            return IvfChoice(index, reason, index.nlist, nprobe, augmented, recalls, round(scanned, 4), round(took, 3))
        if scanned > params.max_scan or nprobe >= index.nlist:
            best = ", ".join(f"{k} {v:.3f}" for k, v in recalls.items())
            return IvfChoice(
                None,
                f"exact: {rows} rows > exact_max_rows {params.exact_max_rows}, but no nprobe reaches recall@10 "
                f"{params.target_recall} scanning at most {params.max_scan:.0%} of the rows (at nprobe {nprobe} of "
                f"{index.nlist}: {best}, scanning {scanned:.1%})",
                seconds=round(time.perf_counter() - t0, 3),
            )
        nprobe = min(max(nprobe + 1, nprobe * 3 // 2), index.nlist)
