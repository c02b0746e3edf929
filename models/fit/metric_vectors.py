"""The vectors each metric serves, for any factorisation Xhat = P Q^T (METHODS.md).

P (n_users, k), Q (n_items, k). For every metric, item-item (user-user) similarity is the inner product of
rows of item_vectors (user_vectors), and where a user -> item score is defined it is <queries_u, items_i>
of recommend_vectors. Omega scales rows to unit length (zero rows stay zero: their scores are 0).

  metric              items                    users                    user -> item score
  dot                 Q                        P                        Xhat_ui
  cosine              Omega(Q)                 Omega(P)                 cosine of P_u and Q_i
  projected           Omega(Q W_P)             Omega(P W_Q)             Xhat_ui / (||Xhat_u,:|| ||Xhat_:,i||)
  projected-centered  Omega(Q W_Pc)            Omega(P W_Qc)            Xc_ui / (||Xc_u,:|| ||Xc_:,i||)
  whitened            Omega(Q_c C_Q^-1/2)      Omega(P_c C_P^-1/2)      none

with W_P W_P^T = P^T P and W_Q W_Q^T = Q^T Q (PAPER.md: cosine of the columns / rows of Xhat, exactly in k
dimensions); W_Pc W_Pc^T = P^T P - n mu mu^T (mu the mean row of P: the columns of Xhat centred over users,
so item-item similarity is their Pearson correlation) and W_Qc W_Qc^T = Q^T Q - p nu nu^T (nu the mean row
of Q: the rows of Xhat centred over items); Xc = (P - 1 mu^T) Q^T, Xhat with each column's mean removed.
Whitened: M_c = M - mean row, C = M_c^T M_c / (m - 1), C^-1/2 over the eigen-directions with eigenvalue
>= WHITEN_CUTOFF x the largest (an absolute ridge C + eps I would break the invariance, METHODS.md).

Gauge: projected, projected-centered and whitened are unchanged by P M, Q M^-T for every invertible M, so
they depend on a model only through Xhat (manifest.SHARED_METRICS). P may be a dask array (the Dask engine's users, rows
on the workers): the user vectors and queries are then dask arrays made block by block, and P reaches this
process only as its (k, k) Gram and (k,) mean (models.fit.projection). Whitened has no user -> item score:
each side is whitened by its own covariance, so <whitened P_u, whitened Q_i> moves with M (the two sides
turn by different rotations) and is not the model's prediction in any gauge.
"""

from __future__ import annotations

import numpy as np

from models.artifact.manifest import METRICS, RECOMMEND_METRICS
from models.errors import InputError
from models.fit.projection import as_float64, gram, gram_and_mean, gram_root, is_lazy, normalize_rows, row_norms

WHITEN_CUTOFF = 1e-10  # relative eigenvalue cutoff of the whitening (METHODS.md, "Whitened cosine")


def item_vectors(P: np.ndarray, Q: np.ndarray, metric: str) -> np.ndarray:
    """(n_items, k) float64 whose inner products are the metric's item-item similarities."""
    P64, Q64 = _factors(P, Q)
    if metric == "dot":
        return Q64
    if metric == "cosine":
        return normalize_rows(Q64)
    if metric == "projected":
        return normalize_rows(Q64 @ gram_root(gram(P64)))
    if metric == "projected-centered":
        return normalize_rows(Q64 @ gram_root(centred_gram(P64)))
    if metric == "whitened":
        return whitened(Q64)
    raise _unknown(metric, METRICS)


def user_vectors(P: np.ndarray, Q: np.ndarray, metric: str) -> np.ndarray:
    """(n_users, k) float64 whose inner products are the metric's user-user similarities."""
    P64, Q64 = _factors(P, Q)
    if metric == "dot":
        return P64
    if metric == "cosine":
        return normalize_rows(P64)
    if metric == "projected":
        return normalize_rows(P64 @ gram_root(gram(Q64)))
    if metric == "projected-centered":
        return normalize_rows(P64 @ gram_root(centred_gram(Q64)))
    if metric == "whitened":
        return whitened(P64)
    raise _unknown(metric, METRICS)


def side_vectors(P: np.ndarray, Q: np.ndarray, side: str, metric: str) -> np.ndarray:
    """item_vectors (side "items") or user_vectors (side "users")."""
    return item_vectors(P, Q, metric) if side == "items" else user_vectors(P, Q, metric)


def recommend_vectors(P: np.ndarray, Q: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(queries (n_users, k), items (n_items, k)) float64 with the metric's user -> item score <queries_u, items_i>.

    projected: P_u / ||P_u W_Q||, Q_i / ||Q_i W_P|| (the norms of Xhat's row u and column i);
    projected-centered: (P_u - mu) / ||(P_u - mu) W_Q||, Q_i / ||Q_i W_Pc||: per user, items ranked by how much
    more than the average user u is predicted to like them, in units of the item's spread over users.
    InputError for whitened (no user -> item score, module docstring).
    """
    P64, Q64 = _factors(P, Q)
    if metric == "dot":
        return P64, Q64
    if metric == "cosine":
        return normalize_rows(P64), normalize_rows(Q64)
    if metric == "projected":
        return _over_norms(P64, gram(Q64)), _over_norms(Q64, gram(P64))
    if metric == "projected-centered":
        G, mu = gram_and_mean(P64)
        return _over_norms(P64 - mu, gram(Q64)), _over_norms(Q64, _centred(G, mu, int(P64.shape[0])))
    raise _unknown(metric, RECOMMEND_METRICS, "for a user -> item score")


def centred_gram(M: np.ndarray) -> np.ndarray:
    """(k, k): M_c^T M_c = M^T M - m mu mu^T for M (m, k) with mean row mu, without the centred copy of M."""
    return _centred(*gram_and_mean(M), int(M.shape[0]))


def _centred(G: np.ndarray, mu: np.ndarray, m: int) -> np.ndarray:
    C = G - m * np.outer(mu, mu)
    return (C + C.T) / 2.0


def whitened(M: np.ndarray) -> np.ndarray:
    """(m, k): Omega((M - mean row) C^-1/2), C the covariance (k, k), eigen-directions below the cutoff dropped.

    C^-1/2 = E diag(w^-1/2) E^T over the kept eigenpairs (w, E): the kept directions get unit variance and
    the rest weight 0, so a rank-deficient M (dimensions a model killed) whitens without dividing by noise.
    """
    M64 = as_float64(M)
    m = int(M64.shape[0])
    if m < 2:
        return np.zeros(M64.shape)
    G, mu = gram_and_mean(M64)
    w, E = np.linalg.eigh(_centred(G, mu, m) / (m - 1))
    keep = w >= WHITEN_CUTOFF * max(float(w[-1]), 0.0) if w.size else np.zeros(0, dtype=bool)
    keep &= w > 0
    root = (E[:, keep] / np.sqrt(w[keep])) @ E[:, keep].T
    return normalize_rows((M64 - mu) @ root)


def _over_norms(M: np.ndarray, G: np.ndarray) -> np.ndarray:
    """Rows of M (m, k) divided by sqrt(M_r G M_r^T) = ||M_r W||, W W^T = G; rows of norm 0 become 0 (block by
    block for a dask array)."""
    if is_lazy(M):
        return M.rechunk({1: -1}).map_blocks(_over_norms, G, dtype=np.float64)
    norms = row_norms(M @ gram_root(G))[:, None]
    return np.divide(M, norms, out=np.zeros_like(M), where=norms > 0)


def _factors(P: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P and Q as float64; a dask P (the Dask engine's users) stays one, its rows where they are."""
    P64, Q64 = as_float64(P), np.asarray(Q, dtype=np.float64)
    if P64.ndim != 2 or Q64.ndim != 2 or P64.shape[1] != Q64.shape[1]:
        raise InputError(f"metric vectors: P (n_users, k) and Q (n_items, k) disagree: {P64.shape} and {Q64.shape}")
    return P64, Q64


def _unknown(metric: str, allowed: tuple[str, ...], what: str = "") -> InputError:
    return InputError(f"metric vectors: metric {metric!r} is not one of {', '.join(allowed)}{' ' + what if what else ''}")
