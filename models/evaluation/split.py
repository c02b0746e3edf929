"""Per-user random holdout: a seeded share of each eligible user's interactions moves to a test matrix.

A user u with n_u >= min_interactions non-zeros gives max(1, round(fraction * n_u)) of them, drawn
uniformly without replacement, to `test`; every other non-zero stays in `train`. round is
round-half-to-even (Python's and numpy's). train + test == X entry for entry, and the two are disjoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from models.errors import InputError


@dataclass(frozen=True)
class Split:
    """train, test (n_users, n_items) csr with train + test == X; info: JSON-able description of the split."""

    train: sp.csr_matrix
    test: sp.csr_matrix
    info: dict[str, Any]


def holdout_split(X: sp.csr_matrix | sp.csr_array, fraction: float = 0.2, min_interactions: int = 5, seed: int = 0) -> Split:
    """Split X (n_users, n_items) per user: test gets max(1, round(fraction * n_u)) random non-zeros of each user
    with n_u >= min_interactions, train the rest. Seeded: the same (X, fraction, min_interactions, seed) gives
    the same split."""
    if not sp.issparse(X) or len(X.shape) != 2:
        raise InputError(f"holdout_split: X must be a 2-D sparse matrix, got {type(X).__name__}")
    if not 0.0 < float(fraction) < 1.0:
        raise InputError(f"holdout_split: parameter fraction must be in (0, 1), got {fraction}")
    if int(min_interactions) < 1:
        raise InputError(f"holdout_split: parameter min_interactions must be >= 1, got {min_interactions}")
    A = sp.csr_matrix(X, copy=True)
    A.sum_duplicates()
    A.eliminate_zeros()  # an explicit zero is not an interaction
    n_users = A.shape[0]
    counts = np.diff(A.indptr)
    eligible = counts >= int(min_interactions)
    n_test = np.where(eligible, np.maximum(1, np.round(float(fraction) * counts)), 0).astype(np.int64)
    row_of = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    # One sort orders every row's entries by a random key; an entry is held out when its rank within
    # its row is below that row's n_test. Row in the high 32 bits keeps rows apart; stable sort makes
    # equal random keys (rare) resolve by column position, deterministically.
    rng = np.random.default_rng(int(seed))
    key = (row_of << np.int64(32)) | rng.integers(0, 2**32, size=A.nnz, dtype=np.int64)
    order = np.argsort(key, kind="stable")
    rank = np.empty(A.nnz, dtype=np.int64)
    rank[order] = np.arange(A.nnz, dtype=np.int64) - A.indptr[row_of[order]]
    held = rank < n_test[row_of]
    train = _subset(A, ~held, row_of)
    test = _subset(A, held, row_of)
    info: dict[str, Any] = {
        "method": "per-user random holdout",
        "fraction": float(fraction),
        "min_interactions": int(min_interactions),
        "seed": int(seed),
        "eval_users": int(np.count_nonzero(n_test)),
        "train_interactions": int(train.nnz),
        "test_interactions": int(test.nnz),
    }
    return Split(train=train, test=test, info=info)


def _subset(A: sp.csr_matrix, keep: np.ndarray, row_of: np.ndarray) -> sp.csr_matrix:
    """The entries of A (csr, canonical) where keep (nnz,) is set, as a csr of A's shape."""
    indptr = np.zeros(A.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of[keep], minlength=A.shape[0]), out=indptr[1:])
    return sp.csr_matrix((A.data[keep], A.indices[keep], indptr), shape=A.shape)
