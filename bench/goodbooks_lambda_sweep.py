"""Held-out recall@20 of both objectives on goodbooks over a lambda grid (bench/README.md, docs/offline-job.md).

    .venv/bin/python bench/goodbooks_lambda_sweep.py [k]     # k defaults to 64

Split: for each user with >= 5 books, 20% of them (at least 1) are held out (seeded); 10,000 test
users. Scores: the model's own prediction X_train A B^T (dot product), books seen in training excluded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `models` importable
    sys.path.insert(0, str(ROOT))

from models.build.cli import DEFAULT_GOODBOOKS  # noqa: E402
from models.fit.closed_forms import denoising_factors, weight_decay_factors  # noqa: E402
from models.fit.svd import truncated_svd  # noqa: E402
from models.inputs.goodbooks import read_goodbooks  # noqa: E402

DENOISING = (50, 200, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 10000)
WEIGHT_DECAY = (5, 10, 20, 25, 28, 30, 32, 34, 36, 40, 50, 100)


def split(X: sp.csr_matrix, rng: np.random.Generator) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    rows, cols = X.nonzero()
    hold = np.zeros(rows.size, dtype=bool)
    for u in range(X.shape[0]):
        a, b = X.indptr[u], X.indptr[u + 1]
        if b - a >= 5:
            hold[a + rng.choice(b - a, size=max(1, (b - a) // 5), replace=False)] = True
    make = lambda keep: sp.csr_matrix((np.ones(keep.sum(), np.float32), (rows[keep], cols[keep])), shape=X.shape)  # noqa: E731
    return make(~hold), make(hold)


def recall_at(train: sp.csr_matrix, test: sp.csr_matrix, users: np.ndarray, A: np.ndarray, B: np.ndarray, at: int = 20) -> float:
    hits = total = 0
    for start in range(0, users.size, 2000):
        u = users[start : start + 2000]
        S = (train[u] @ A) @ B.T
        S[train[u].nonzero()] = -np.inf
        top = np.argpartition(-S, at, axis=1)[:, :at]
        T = test[u]
        for r in range(u.size):
            truth = T.indices[T.indptr[r] : T.indptr[r + 1]]
            hits += int(np.isin(truth, top[r]).sum())
            total += min(at, truth.size)
    return hits / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("k", type=int, nargs="?", default=64, help="SVD rank (default 64)")
    k = ap.parse_args().k
    rng = np.random.default_rng(0)
    X = read_goodbooks(DEFAULT_GOODBOOKS).X.tocsr()
    train, test = split(X, rng)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    users = np.sort(rng.choice(users, size=min(10_000, users.size), replace=False))
    svd = truncated_svd(train, k, seed=0)
    print(f"k={k}: s_1={svd.s[0]:.1f} s_k={svd.s[-1]:.1f}")
    for lam in DENOISING:
        A, B = denoising_factors(svd.V, svd.s, lam, "denoising-symmetric")
        print(f"denoising    lambda={lam:<6} recall@20={recall_at(train, test, users, A, B):.4f}")
    for lam in WEIGHT_DECAY:
        A, B, alive = weight_decay_factors(svd.V, svd.s, lam)
        print(f"weight-decay lambda={lam:<6} dims={alive:<3} recall@20={recall_at(train, test, users, A, B):.4f}")


if __name__ == "__main__":
    main()
