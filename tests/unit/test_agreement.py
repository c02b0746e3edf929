"""Agreement measures against hand-computed cases and an independent O(n^2) weighted tau."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.diagnostics.agreement import (
    category_matrix,
    category_share,
    category_share_rows,
    jaccard,
    jaccard_rows,
    overlap_at_k,
    popularity_ratio,
    popularity_ratio_rows,
    rbo,
    rbo_rows,
    weighted_tau,
)
from models.indexes.neighbour_lists import top_k, top_k_rows


def test_jaccard_hand_cases():
    assert jaccard([1, 2, 3], [1, 2, 3]) == 1.0
    assert jaccard([1, 2, 3], [3, 2, 1]) == 1.0  # a set measure: order does not matter
    assert jaccard([1, 2, 3], [4, 5, 6]) == 0.0
    assert jaccard([1, 2, 3], [2, 3, 4]) == 2 / 4
    assert jaccard([1, 2], [2, 3, 4]) == 1 / 4  # uneven lengths
    assert jaccard([], []) == 1.0
    assert overlap_at_k([1, 2, 3, 9], [1, 2, 4, 9], k=3) == 2 / 4  # 9 is past the cut in both


def test_rbo_identical_and_disjoint():
    for p in (0.5, 0.9, 0.98):
        assert rbo([1, 2, 3, 4], [1, 2, 3, 4], p) == pytest.approx(1.0, abs=1e-12)
        assert rbo([1, 2, 3, 4], [5, 6, 7, 8], p) == 0.0


def test_rbo_reversed_hand_computed():
    # X_d = |A_:d & B_:d|: d=1: 0, d=2: |{1,2} & {3,2}| = 1, d=3: 3.
    # RBO_ext = (1-p)/p * (0 + 1/2 p^2 + 3/3 p^3) + 3/3 p^3 = 0.1 * 0.5 * 0.9 + 0.1 * 0.81 + 0.729 = 0.855
    assert rbo([1, 2, 3], [3, 2, 1], 0.9) == pytest.approx(0.855, abs=1e-12)


def test_rbo_swap_hand_computed():
    # A_d = X_d / d = 0, 1/2, 2/3, 1, 1 for d = 1..5
    # (1-p)/p * sum A_d p^d + A_5 p^5 = (1/9)(0.405 + 0.486 + 0.6561 + 0.59049) + 0.59049 = 0.828
    assert rbo([1, 2, 3, 4, 5], [2, 3, 4, 1, 5], 0.9) == pytest.approx(0.828, abs=1e-12)


def test_rbo_uneven_hand_computed():
    # S = [1, 2] (s = 2), L = [3, 1, 4] (l = 3), p = 1/2. X_1 = 0, X_2 = 1, X_3 = |{1,2} & {3,1,4}| = 1.
    # sum1 = 0 + 1/2 p^2 + 1/3 p^3 = 1/8 + 1/24; sum2 = X_s (3-2)/(2*3) p^3 = 1/48; (1-p)/p = 1
    # tail = ((X_l - X_s)/l + X_s/s) p^l = (0 + 1/2)/8 = 1/16; total = 1/8 + 1/24 + 1/48 + 1/16 = 1/4
    assert rbo([1, 2], [3, 1, 4], 0.5) == pytest.approx(0.25, abs=1e-12)
    assert rbo([3, 1, 4], [1, 2], 0.5) == pytest.approx(0.25, abs=1e-12)  # symmetric


def test_rbo_prefix_extrapolates_to_one():
    # the seen part agrees fully, so the extrapolation assumes the unseen part does too
    assert rbo([1, 2], [1, 2, 3, 4], 0.9) == pytest.approx(1.0, abs=1e-12)
    assert rbo([], [1]) == 0.0 and rbo([], []) == 1.0


def test_rbo_rejects_bad_input():
    with pytest.raises(ValueError):
        rbo([1, 1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        rbo([1, 2], [1, 2], p=1.0)


def test_rows_forms_match_scalar_forms():
    rng = np.random.default_rng(0)
    A = np.array([rng.choice(30, size=10, replace=False) for _ in range(200)])
    B = np.array([rng.choice(30, size=10, replace=False) for _ in range(200)])
    B[:5] = A[:5]
    B[5:10] = A[5:10, ::-1]
    np.testing.assert_allclose(rbo_rows(A, B, 0.9), [rbo(a, b, 0.9) for a, b in zip(A, B, strict=True)], atol=1e-12)
    np.testing.assert_allclose(jaccard_rows(A, B), [jaccard(a, b) for a, b in zip(A, B, strict=True)], atol=1e-12)


def test_top_k_breaks_ties_by_lower_id_and_excludes_the_query():
    s = np.array([0.5, 0.9, 0.5, 0.5, 0.1])
    assert top_k(s, 2).tolist() == [1, 0]
    assert top_k(s, 3, exclude=0).tolist() == [1, 2, 3]
    assert top_k(np.zeros(6), 3, exclude=1).tolist() == [0, 2, 3]  # a zero vector: all tied
    assert top_k(s, 10, exclude=1).tolist() == [0, 2, 3, 4]  # k capped at m - 1
    S = np.array([[3.0, 1, 2, 2], [1.0, 1, 1, 1]])
    assert top_k_rows(S, 2, exclude=np.array([0, 0])).tolist() == [[2, 3], [1, 2]]


def _tau_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Vigna's weighted tau from its definition, O(n^2): hyperbolic additive weights, ranks by
    decreasing (x, y) and by decreasing (y, x), averaged. Needs no joint ties (their order is free)."""
    n = len(x)

    def one(a: np.ndarray, b: np.ndarray) -> float:
        order = sorted(range(n), key=lambda i: (-a[i], -b[i]))
        w = np.empty(n)
        w[order] = 1.0 / (np.arange(n) + 1.0)
        num = dx = dy = 0.0
        for i in range(n):
            for j in range(i + 1, n):
                wij = w[i] + w[j]
                sx, sy = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
                num += wij * sx * sy
                dx += wij * (sx != 0)
                dy += wij * (sy != 0)
        return num / math.sqrt(dx * dy)

    return (one(x, y) + one(y, x)) / 2


def test_weighted_tau_hand_cases():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert weighted_tau(x, x) == pytest.approx(1.0)
    assert weighted_tau(x, -x) == pytest.approx(-1.0)  # reversed: every pair discordant
    # ranks by x: item 2 (w 1), item 1 (w 1/2), item 0 (w 1/3); pairs (0,1) +5/6, (0,2) +4/3, (1,2) -3/2
    # tau = (5/6 + 4/3 - 3/2) / (5/6 + 4/3 + 3/2) = 2/11, and the same with ranks by y
    assert weighted_tau(np.array([1.0, 2, 3]), np.array([1.0, 3, 2])) == pytest.approx(2 / 11, abs=1e-12)
    # a tie in x: pair (0,1) weighs 5/6 in y's denominator only; tau = (17/6) / sqrt(17/6 * 22/6)
    assert weighted_tau(np.array([1.0, 1, 2]), np.array([1.0, 2, 3])) == pytest.approx(math.sqrt(17 / 22), abs=1e-12)
    assert math.isnan(weighted_tau(np.zeros(5), x[:4].repeat(2)[:5]))  # constant: undefined
    with pytest.raises(ValueError):
        weighted_tau(x, x[:3])


def test_weighted_tau_matches_definition_with_ties():
    rng = np.random.default_rng(4)
    for _ in range(5):
        x = np.round(rng.standard_normal(40), 1)  # many ties in x
        y = x + rng.standard_normal(40)  # continuous: no joint ties
        assert weighted_tau(x, y) == pytest.approx(_tau_reference(x, y), abs=1e-12)


def test_popularity_ratio_hand_case():
    pop = np.array([1.0, 2, 3, 4, 100])
    assert popularity_ratio(np.array([3, 4]), pop) == pytest.approx(52 / 3)  # median(4, 100) / median(all)
    assert popularity_ratio(np.array([0, 1, 2]), pop) == pytest.approx(2 / 3)
    assert math.isnan(popularity_ratio(np.array([1]), np.zeros(5)))
    np.testing.assert_allclose(popularity_ratio_rows(np.array([[3, 4], [0, 1]]), pop, 3.0), [52 / 3, 1.5 / 3])


def test_category_share_hand_case():
    C, names = category_matrix([["a"], ["a", "b"], ["c"], [], ["b", "a"]])
    assert names == ["a", "b", "c"]
    assert category_share(0, np.array([1, 2, 3]), C) == pytest.approx(1 / 3)  # only item 1 shares "a"
    assert category_share(1, np.array([4, 0]), C) == 1.0
    assert math.isnan(category_share(3, np.array([0, 1]), C))  # the query has no category
    out = category_share_rows(np.array([0, 3]), np.array([[1, 2], [0, 1]]), C)
    assert out[0] == 0.5 and math.isnan(out[1])
