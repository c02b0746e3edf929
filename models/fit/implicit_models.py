"""ALS and BPR trained with implicit (the most used open-source matrix-factorisation library).

ALS (Hu, Koren, Volinsky 2008): confidence 1 + alpha * x_ui, weighted least squares with L2 factor
regularisation, solved per row (conjugate gradient). BPR (Rendle et al. 2009): pairwise ranking loss
by SGD; implicit appends a bias column to the items and a column of ones to the users, so the
prediction is still <P_u, Q_i>. Both are factor-regularised: the objective pins the diagonal gauge D
down, unlike the paper's denoising objective (docs/offline-job.md, "The gauge probe").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

ALGORITHMS: tuple[str, ...] = ("als", "bpr")


@dataclass(frozen=True)
class ImplicitParams:
    """Hyper-parameters of the models trained with implicit; factors None: the job's --k."""

    factors: int | None = None
    als_regularization: float = 0.01
    als_alpha: float = 1.0
    als_iterations: int = 15
    bpr_learning_rate: float = 0.01
    bpr_regularization: float = 0.01
    bpr_iterations: int = 100


def train_implicit(
    X: sp.csr_matrix, algorithm: str, factors: int, params: ImplicitParams, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(P (n_users, k), Q (n_items, k), info) of ALS or BPR fitted on X (n_users, n_items).

    ALS: k = factors. BPR: k = factors + 1 (implicit's bias column). BPR runs on one thread: its
    lock-free parallel SGD (Hogwild) is not reproducible across runs, and a seed should mean one result.
    """
    # implicit parallelises over rows itself; a multi-threaded BLAS underneath only contends with it (and
    # implicit warns about it when a model is made)
    with threadpool_limits(1, "blas"):
        return _train(sp.csr_matrix(X, dtype=np.float32), algorithm, factors, params, seed)


def _train(
    user_items: sp.csr_matrix, algorithm: str, factors: int, params: ImplicitParams, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    info: dict[str, Any] = {"source": "implicit", "algorithm": algorithm, "library": "implicit", "factors": factors, "seed": seed}
    model: AlternatingLeastSquares | BayesianPersonalizedRanking
    if algorithm == "als":
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=params.als_regularization,
            alpha=params.als_alpha,
            iterations=params.als_iterations,
            random_state=seed,
        )
        info |= {"regularization": params.als_regularization, "alpha": params.als_alpha, "iterations": params.als_iterations}
    elif algorithm == "bpr":
        model = BayesianPersonalizedRanking(
            factors=factors,
            learning_rate=params.bpr_learning_rate,
            regularization=params.bpr_regularization,
            iterations=params.bpr_iterations,
            random_state=seed,
            num_threads=1,
        )
        info |= {
            "learning_rate": params.bpr_learning_rate,
            "regularization": params.bpr_regularization,
            "iterations": params.bpr_iterations,
        }
    else:
        raise ValueError(f"unknown implicit algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
    model.fit(user_items, show_progress=False)
    P = np.asarray(model.user_factors, dtype=np.float64)
    Q = np.asarray(model.item_factors, dtype=np.float64)
    return P, Q, info
