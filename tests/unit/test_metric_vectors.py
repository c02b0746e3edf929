"""The metrics' vectors against dense computations on Xhat and on the embeddings (METHODS.md)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.errors import InputError
from models.fit.closed_forms import DENOISING_VARIANTS, denoising_factors
from models.fit.metric_vectors import item_vectors, recommend_vectors, user_vectors, whitened


def factors(seed: int = 0, n: int = 40, p: int = 25, k: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # very different column scales and a non-zero mean: centring and whitening have work to do
    P = rng.normal(size=(n, k)) * rng.uniform(0.1, 10, size=k) + rng.normal(size=k)
    Q = rng.normal(size=(p, k)) * rng.uniform(0.1, 10, size=k) + rng.normal(size=k)
    return P, Q


def cosine_matrix(V: np.ndarray) -> np.ndarray:
    """Cosine of the rows of V, zero rows giving 0."""
    norms = np.linalg.norm(V, axis=1)
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return (V @ V.T) * inv[:, None] * inv[None, :]


def test_projected_centered_is_pearson_of_xhat_columns_and_rows() -> None:
    P, Q = factors()
    Xhat = P @ Q.T
    items = item_vectors(P, Q, "projected-centered")
    users = user_vectors(P, Q, "projected-centered")
    np.testing.assert_allclose(items @ items.T, np.corrcoef(Xhat.T), atol=1e-10)
    np.testing.assert_allclose(users @ users.T, np.corrcoef(Xhat), atol=1e-10)


def test_projected_is_cosine_of_xhat_columns_and_rows() -> None:
    P, Q = factors(1)
    Xhat = P @ Q.T
    np.testing.assert_allclose(
        item_vectors(P, Q, "projected") @ item_vectors(P, Q, "projected").T, cosine_matrix(Xhat.T), atol=1e-10
    )
    np.testing.assert_allclose(
        user_vectors(P, Q, "projected") @ user_vectors(P, Q, "projected").T, cosine_matrix(Xhat), atol=1e-10
    )


def test_recommend_scores_against_dense_xhat() -> None:
    P, Q = factors(2)
    Xhat = P @ Q.T
    Xc = Xhat - Xhat.mean(axis=0)  # every column's mean over users removed
    expected = {
        "dot": Xhat,
        "cosine": cosine_matrix(np.vstack([P, Q]))[: P.shape[0], P.shape[0] :],
        "projected": Xhat / np.linalg.norm(Xhat, axis=1)[:, None] / np.linalg.norm(Xhat, axis=0)[None, :],
        "projected-centered": Xc / np.linalg.norm(Xc, axis=1)[:, None] / np.linalg.norm(Xc, axis=0)[None, :],
    }
    for metric, want in expected.items():
        U, V = recommend_vectors(P, Q, metric)
        np.testing.assert_allclose(U @ V.T, want, atol=1e-10, err_msg=metric)


def test_whitened_equals_the_dense_mahalanobis_cosine() -> None:
    P, Q = factors(3)
    for M, got in ((Q, item_vectors(P, Q, "whitened")), (P, user_vectors(P, Q, "whitened"))):
        Mc = M - M.mean(axis=0)
        C = Mc.T @ Mc / (M.shape[0] - 1)
        gram = Mc @ np.linalg.pinv(C) @ Mc.T  # Mahalanobis inner products, computed with a pseudo-inverse
        np.testing.assert_allclose(got @ got.T, cosine_matrix(_psd_root(gram)), atol=1e-9)


def _psd_root(G: np.ndarray) -> np.ndarray:
    """Rows whose Gram is G (eigen-root), for cosine_matrix."""
    w, E = np.linalg.eigh((G + G.T) / 2)
    return E * np.sqrt(np.clip(w, 0, None))


@pytest.mark.parametrize("metric", ["projected", "projected-centered", "whitened"])
def test_shared_metrics_are_unchanged_by_any_invertible_map(metric: str) -> None:
    P, Q = factors(4)
    M = np.random.default_rng(5).normal(size=(P.shape[1], P.shape[1])) + 3 * np.eye(P.shape[1])
    P2, Q2 = P @ M, Q @ np.linalg.inv(M).T
    np.testing.assert_allclose(P2 @ Q2.T, P @ Q.T, atol=1e-9)  # the same model
    for vectors in (item_vectors, user_vectors):
        a, b = vectors(P, Q, metric), vectors(P2, Q2, metric)
        np.testing.assert_allclose(a @ a.T, b @ b.T, atol=1e-8)


def test_cosine_is_not_invariant() -> None:
    P, Q = factors(6)
    d = np.exp(np.random.default_rng(7).uniform(np.log(0.1), np.log(10), size=P.shape[1]))
    a, b = item_vectors(P, Q, "cosine"), item_vectors(P * d, Q / d, "cosine")
    assert np.abs(a @ a.T - b @ b.T).max() > 0.1


def test_whitened_and_centered_identical_across_the_denoising_variants() -> None:
    rng = np.random.default_rng(8)
    X = sp.random(60, 30, density=0.2, random_state=9, format="csr", data_rvs=lambda n: np.ones(n))
    X = sp.csr_matrix(X.multiply(rng.uniform(0.5, 3, size=30)))
    _, s, Vt = np.linalg.svd(X.toarray(), full_matrices=False)
    V, s = Vt[:8].T, s[:8]
    for metric in ("whitened", "projected-centered"):
        grams = {}
        for variant in DENOISING_VARIANTS:
            A, B = denoising_factors(V, s, 5.0, variant)
            P = X @ A
            grams[variant] = [v @ v.T for v in (item_vectors(P, B, metric), user_vectors(P, B, metric))]
        first = grams[DENOISING_VARIANTS[0]]
        for variant in DENOISING_VARIANTS[1:]:
            for a, b in zip(first, grams[variant], strict=True):
                np.testing.assert_allclose(a, b, atol=1e-8, err_msg=f"{metric} {variant}")


def test_rank_deficient_and_zero_rows_give_no_nan() -> None:
    P, Q = factors(10)
    Q[:, 2] = 0.0  # a dimension the model killed (weight decay)
    Q[3] = 0.0
    P[0] = 0.0
    for metric in ("dot", "cosine", "projected", "projected-centered", "whitened"):
        for V in (item_vectors(P, Q, metric), user_vectors(P, Q, metric)):
            assert np.isfinite(V).all(), metric
    W = whitened(Q)
    Qc = Q - Q.mean(axis=0)
    keep = [0, 1, 3, 4, 5]  # the whitening ignores the dead direction
    gram = Qc[:, keep] @ np.linalg.inv(Qc[:, keep].T @ Qc[:, keep] / (Q.shape[0] - 1)) @ Qc[:, keep].T
    np.testing.assert_allclose(W @ W.T, cosine_matrix(_psd_root(gram)), atol=1e-9)


def test_whitened_has_no_recommend_score() -> None:
    P, Q = factors(11)
    with pytest.raises(InputError, match="whitened"):
        recommend_vectors(P, Q, "whitened")
    with pytest.raises(InputError, match="bogus"):
        item_vectors(P, Q, "bogus")


@pytest.mark.parametrize("metric", ["dot", "cosine", "projected", "projected-centered", "whitened"])
def test_users_held_as_a_dask_array_stay_one_and_agree(metric: str) -> None:
    """P as a dask array in uneven row blocks (the Dask engine's users): the user vectors and /recommend's queries
    stay dask arrays (block by block, Grams and means reduced), equal to the in-memory ones; the item vectors,
    which need only P's (k, k) Gram and mean, equal too; the recommend scores equal the dense Xhat's."""
    import dask.array as da

    P, Q = factors(3, n=57)
    lazy = da.from_array(P, chunks=((20, 30, 7), (6,)))
    users = user_vectors(lazy, Q, metric)
    assert isinstance(users, da.Array) and users.numblocks[0] == 3
    np.testing.assert_allclose(users.compute(), user_vectors(P, Q, metric), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(item_vectors(lazy, Q, metric), item_vectors(P, Q, metric), rtol=1e-12, atol=1e-12)
    if metric != "whitened":
        U, V = recommend_vectors(lazy, Q, metric)
        assert isinstance(U, da.Array)
        want_U, want_V = recommend_vectors(P, Q, metric)
        np.testing.assert_allclose(U.compute() @ V.T, want_U @ want_V.T, rtol=1e-12, atol=1e-12)
