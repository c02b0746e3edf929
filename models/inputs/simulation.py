"""The paper's Section 4 simulation: clustered items, power-law popularity and activity.

Readings of what the paper leaves open (fixed here and stated in README):
- item baseline popularity within cluster c: pop(i) = r_i ** (-beta_c), r_i = the item's rank
  1..p_c in a random order of its cluster (a Zipf power law with exponent beta_c);
- user preferences over clusters: Dirichlet(1, ..., 1);
- items per user: Pareto draw with shape 0.5 and scale 1 (P(N > x) = x^-0.5), floored, clipped
  to [1, max_items_per_user];
- sampling without replacement proportional to pref(u, cluster(i)) * pop(i), by the Gumbel-top-k
  trick (exactly successive sampling without replacement).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import scipy.sparse as sp

from models.errors import InputError
from models.inputs.dataset import Dataset


@dataclass(frozen=True)
class SimulationSpec:
    n_users: int = 20_000
    n_items: int = 1_000
    n_clusters: int = 5
    activity_exponent: float = 0.5
    max_items_per_user: int = 1_000
    seed: int = 0


@dataclass
class SimulationTruth:
    """Ground truth: cluster (n_items,), popularity (n_items,), preferences (n_users, n_clusters)."""

    cluster: np.ndarray
    popularity: np.ndarray
    preferences: np.ndarray

    def probabilities(self) -> np.ndarray:
        """p(u, i) (n_users, n_items), each row summing to one."""
        P = self.preferences[:, self.cluster] * self.popularity[None, :]
        return P / P.sum(axis=1, keepdims=True)

    def item_similarity(self) -> np.ndarray:
        """Cosine (n_items, n_items) between the columns of the true p(u, i) (n_users, n_items): the ground truth.

        Column i of p is pop_i * Q[:, c_i] with Q = pref / Z (Z_u = sum_i pref[u, c_i] pop_i), so
        cos(p_:i, p_:j) = cos(Q_:c_i, Q_:c_j): computed on the (n_clusters, n_clusters) Gram of Q.
        """
        z = self.preferences[:, self.cluster] @ self.popularity
        Q = self.preferences / z[:, None]
        norms = np.linalg.norm(Q, axis=0)
        Cn = np.divide(Q, norms, out=np.zeros_like(Q), where=norms > 0).T
        cos_c = Cn @ Cn.T
        return cos_c[np.ix_(self.cluster, self.cluster)]


def simulation_truth(spec: SimulationSpec) -> SimulationTruth:
    """The ground truth simulate(spec) draws, without drawing X (same seed, same random stream)."""
    return _draw_truth(np.random.default_rng(spec.seed), spec)[0]


def spec_from_source(source: dict[str, object]) -> SimulationSpec:
    """The SimulationSpec recorded in a simulated Dataset's `source` (and so in a manifest)."""
    if source.get("kind") != "simulation":
        raise ValueError(f"not a simulated dataset: kind {source.get('kind')!r}")
    return SimulationSpec(**{f.name: source[f.name] for f in fields(SimulationSpec)})  # type: ignore[arg-type]


def _draw_truth(rng: np.random.Generator, spec: SimulationSpec) -> tuple[SimulationTruth, np.ndarray]:
    """(truth, beta (n_clusters,)): the first draws of the simulation's random stream."""
    n, p, c = spec.n_users, spec.n_items, spec.n_clusters
    cluster = rng.integers(0, c, size=p)
    beta = rng.uniform(0.25, 1.5, size=c)
    popularity = np.empty(p)
    for cl in range(c):
        members = np.flatnonzero(cluster == cl)
        rank = rng.permutation(members.size) + 1
        popularity[members] = rank ** (-beta[cl])
    preferences = rng.dirichlet(np.ones(c), size=n)
    return SimulationTruth(cluster=cluster, popularity=popularity, preferences=preferences), beta


def simulate(spec: SimulationSpec = SimulationSpec()) -> tuple[Dataset, SimulationTruth]:
    """Binary X (n_users, n_items) drawn as the paper describes, with its ground truth."""
    if spec.n_users < 1 or spec.n_items < 1 or spec.n_clusters < 1:
        raise InputError("simulation: n_users, n_items and n_clusters must be >= 1")
    rng = np.random.default_rng(spec.seed)
    n, p = spec.n_users, spec.n_items
    truth, beta = _draw_truth(rng, spec)
    cluster, popularity, preferences = truth.cluster, truth.popularity, truth.preferences
    cap = min(spec.max_items_per_user, p)
    counts = np.clip(np.floor(rng.pareto(spec.activity_exponent, size=n) + 1), 1, cap).astype(np.int64)
    log_pop = np.log(popularity)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for start in range(0, n, 2048):
        stop = min(n, start + 2048)
        logits = np.log(preferences[start:stop])[:, cluster] + log_pop[None, :]
        keys = logits + rng.gumbel(size=logits.shape)
        order = np.argsort(-keys, axis=1)
        for r in range(stop - start):
            chosen = order[r, : counts[start + r]]
            rows.append(np.full(chosen.size, start + r))
            cols.append(chosen)
    row = np.concatenate(rows)
    col = np.concatenate(cols)
    X = sp.csr_matrix((np.ones(row.size, dtype=np.float32), (row, col)), shape=(n, p))
    X.sort_indices()
    ds = Dataset(
        X=X,
        user_ids=[f"u{u}" for u in range(n)],
        item_ids=[f"i{i}" for i in range(p)],
        item_titles=[f"item {i} (cluster {cluster[i]})" for i in range(p)],
        item_categories=[[f"cluster-{cluster[i]}"] for i in range(p)],
        source={"kind": "simulation", **spec.__dict__, "beta": beta.round(6).tolist()},
    )
    return ds, truth
