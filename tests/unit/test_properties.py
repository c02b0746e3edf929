"""Property-based checks of the maths over random shapes, empty rows/columns, k above the rank
and lambda above every singular value (hypothesis)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.fit.closed_forms import DENOISING_VARIANTS, denoising_factors, weight_decay_factors
from models.fit.projection import normalize_rows, projected_vectors
from models.fit.svd import truncated_svd


@st.composite
def problems(draw):
    n = draw(st.integers(1, 25))
    p = draw(st.integers(1, 10))
    mask = draw(arrays(np.bool_, (n, p)))
    values = draw(arrays(np.float64, (n, p), elements=st.sampled_from([1.0, 2.0, 0.5])))
    k = draw(st.integers(1, 14))
    lam = draw(st.sampled_from([0.0, 0.1, 1.0, 10.0, 1e6]))
    return np.where(mask, values, 0.0), k, lam


def dense_cos(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine matrix among the non-zero rows of M, and the mask of those rows."""
    norms = np.linalg.norm(M, axis=1)
    ok = norms > 1e-9 * max(1.0, norms.max(initial=0.0))
    Mo = M[ok]
    return (Mo @ Mo.T) / np.outer(norms[ok], norms[ok]), ok


@settings(max_examples=150, deadline=None)
@given(problems())
def test_everything_finite_and_projected_equals_dense(problem):
    Xd, k, lam = problem
    X = sp.csr_matrix(Xd)
    if X.nnz == 0:
        return
    svd = truncated_svd(X, k=k)
    assert svd.k == min(k, *Xd.shape)
    assert np.all(np.isfinite(svd.s)) and np.all(np.isfinite(svd.V))
    products = []
    for variant in DENOISING_VARIANTS:
        A, B = denoising_factors(svd.V, svd.s, lam, variant)
        assert np.all(np.isfinite(A)) and np.all(np.isfinite(B))
        products.append(A @ B.T)
        P = Xd @ A
        users, items = projected_vectors(P, B)
        Xhat = P @ B.T
        for vecs, M in ((users, Xhat), (items, Xhat.T)):
            unit = normalize_rows(vecs)
            assert np.all(np.isfinite(unit))
            want, ok = dense_cos(M)
            got = unit[ok] @ unit[ok].T
            np.testing.assert_allclose(got, want, atol=1e-6)
            # rows that are zero in Xhat are zero vectors (cosine 0), never NaN
            assert np.all(np.linalg.norm(vecs[~ok], axis=1) <= 1e-6 * max(1.0, np.abs(M).max(initial=0.0)))
    for prod in products[1:]:
        np.testing.assert_allclose(prod, products[0], atol=1e-9)
    A, B, surviving = weight_decay_factors(svd.V, svd.s, lam)
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(B))
    assert surviving == int(np.sum(svd.s > lam))


@settings(max_examples=100, deadline=None)
@given(problems())
def test_weight_decay_soft_thresholds_exact_spectrum(problem):
    Xd, _, lam = problem
    X = sp.csr_matrix(Xd)
    if X.nnz == 0:
        return
    r = min(Xd.shape)
    svd = truncated_svd(X, k=r)  # exact path
    A, B, _ = weight_decay_factors(svd.V, svd.s, lam)
    got = np.linalg.svd(Xd @ A @ B.T, compute_uv=False)
    want = np.clip(np.linalg.svd(Xd, compute_uv=False) - lam, 0.0, None)
    np.testing.assert_allclose(got[: want.size], want, atol=1e-8 * max(1.0, want.max(initial=0.0)))


@settings(max_examples=200, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 20), st.integers(1, 8)),
        elements=st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
    )
)
def test_normalize_rows_unit_or_zero(M):
    U = normalize_rows(M)
    norms = np.linalg.norm(U, axis=1)
    nonzero = np.any(M != 0, axis=1)
    np.testing.assert_allclose(norms[nonzero], 1.0, rtol=1e-9)
    assert np.all(norms[~nonzero] == 0)
