"""Experiment statistics against independent computations: the Wilson formula written out, a unit-level
numpy bootstrap and simulated coverage for the delta-method lift, the chi-square statistic recomputed,
and binomial tail sums for the sign test.
"""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats
from scipy.stats import binomtest, chi2

from app.experiments.statistics import arm_summary, ctr, lift, paired_lift, ratio_and_variance, sign_test, srm, wilson_interval
from models.errors import InputError


def wilson_closed_form(s: int, n: int, confidence: float) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = s / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


@pytest.mark.parametrize(("s", "n"), [(0, 1), (1, 1), (0, 50), (3, 10), (50, 100), (99, 100), (1234, 98765), (7, 7)])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_matches_the_closed_formula(s, n, confidence):
    lo, hi = wilson_interval(s, n, confidence)
    assert lo is not None and hi is not None
    want_lo, want_hi = wilson_closed_form(s, n, confidence)
    assert lo == pytest.approx(want_lo, abs=1e-12) and hi == pytest.approx(want_hi, abs=1e-12)
    assert 0.0 <= lo <= s / n <= hi <= 1.0


def test_wilson_edge_cases_and_refusals():
    assert wilson_interval(0, 0) == (None, None)
    with pytest.raises(InputError, match="trials"):
        wilson_interval(3, 2)
    with pytest.raises(InputError, match="successes"):
        wilson_interval(-1, 2)
    with pytest.raises(InputError, match="confidence"):
        wilson_interval(1, 2, 1.5)


def test_ctr_counts_click_events_and_the_arm_summary():
    assert ctr(3, 12) == 0.25 and ctr(0, 0) is None and ctr(5, 4) == 1.25
    summary = arm_summary([1, 0, 2], [4, 1, 5])
    assert {key: summary[key] for key in ("units", "exposures", "clicks", "ctr")} == {
        "units": 3,
        "exposures": 10,
        "clicks": 3,
        "ctr": 0.3,
    }
    assert summary["ci95"] == pytest.approx(list(wilson_closed_form(3, 10, 0.95)), abs=1e-12)
    assert arm_summary([3], [2])["ci95"] == [None, None]  # several clicks per exposure: no proportion


def simulate_arm(rng: np.random.Generator, n: int, p: float, concentration: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Units with 1 + Geometric exposures (mean 15, sd ≈ 14) and a per-unit CTR ~ Beta(mean p): clicks of a unit correlate.

    The unit CTR is drawn independently of the exposure count, so Σ clicks / Σ exposures tends to p. The
    exposure counts vary enough that the −2R·Cov(c, e) + R²·Var(e) part of the delta method matters
    (without the covariance term the interval is ~35% too wide here), and clustered enough that an
    interval treating exposures as independent trials comes out about half as wide as it should.
    """
    exposures = 1 + rng.negative_binomial(1, 1 / 15, n)
    unit_p = rng.beta(p * concentration, (1 - p) * concentration, n)
    return rng.binomial(exposures, unit_p), exposures


def bootstrap_lifts(rng: np.random.Generator, c0, e0, cj, ej, draws: int) -> np.ndarray:
    out = []
    for _ in range(draws // 500):
        i0 = rng.integers(0, c0.size, (500, c0.size))
        ij = rng.integers(0, cj.size, (500, cj.size))
        r0 = c0[i0].sum(axis=1) / e0[i0].sum(axis=1)
        rj = cj[ij].sum(axis=1) / ej[ij].sum(axis=1)
        out.append(rj / r0 - 1)
    return np.concatenate(out)


def test_lift_interval_matches_a_unit_bootstrap():
    rng = np.random.default_rng(11)
    c0, e0 = simulate_arm(rng, 3000, 0.10)
    cj, ej = simulate_arm(rng, 3000, 0.12)
    got = lift(c0, e0, cj, ej)
    assert got["value"] == pytest.approx((cj.sum() / ej.sum()) / (c0.sum() / e0.sum()) - 1, rel=1e-12)
    boot = bootstrap_lifts(rng, c0, e0, cj, ej, 4000)
    b_lo, b_hi = np.quantile(boot, [0.025, 0.975])
    lo, hi = got["ci95"]
    assert hi - lo == pytest.approx(b_hi - b_lo, rel=0.15)
    assert lo == pytest.approx(b_lo, abs=0.1 * (b_hi - b_lo)) and hi == pytest.approx(b_hi, abs=0.1 * (b_hi - b_lo))
    # The data are clustered enough to tell: an interval treating exposures as independent is far too narrow.
    r0, rj = c0.sum() / e0.sum(), cj.sum() / ej.sum()
    naive_se = math.sqrt((1 - rj) / cj.sum() + (1 - r0) / c0.sum())  # binomial Var(log R) = (1 - R) / clicks
    naive_width = math.expm1(math.log(rj / r0) + 1.96 * naive_se) - math.expm1(math.log(rj / r0) - 1.96 * naive_se)
    assert naive_width < 0.8 * (b_hi - b_lo)


def test_lift_interval_covers_the_true_lift_and_p_is_calibrated():
    rng = np.random.default_rng(12)
    covered = rejected_null = 0
    for _ in range(200):
        c0, e0 = simulate_arm(rng, 400, 0.10)
        cj, ej = simulate_arm(rng, 400, 0.13)
        got = lift(c0, e0, cj, ej)
        lo, hi = got["ci95"]
        covered += lo <= 0.3 <= hi
        assert (got["p_value"] < 0.05) == (not lo <= 0.0 <= hi)  # the z-test and the interval agree
        null = lift(c0, e0, *simulate_arm(rng, 400, 0.10))
        rejected_null += null["p_value"] < 0.05
    assert covered >= 180
    assert rejected_null <= 20


def paired_units(rng: np.random.Generator, n: int, p0: float, p1: float) -> tuple[np.ndarray, np.ndarray]:
    """Both teams' clicks on the same units' exposures: a unit's appetite scales both, so they correlate."""
    exposures = 1 + rng.negative_binomial(1, 1 / 10, n)
    appetite = rng.gamma(2.0, 0.5, n)
    return rng.binomial(exposures, np.minimum(1, p0 * appetite)), rng.binomial(exposures, np.minimum(1, p1 * appetite))


def test_paired_lift_matches_a_paired_unit_bootstrap_and_beats_the_unpaired_interval():
    rng = np.random.default_rng(21)
    c0, c1 = paired_units(rng, 3000, 0.10, 0.12)
    got = paired_lift(c0, c1)
    assert got["value"] == pytest.approx(c1.sum() / c0.sum() - 1, rel=1e-12)
    idx = rng.integers(0, c0.size, (4000, c0.size))  # resample units, both teams together
    boot = c1[idx].sum(axis=1) / c0[idx].sum(axis=1) - 1
    b_lo, b_hi = np.quantile(boot, [0.025, 0.975])
    lo, hi = got["ci95"]
    assert hi - lo == pytest.approx(b_hi - b_lo, rel=0.15)
    assert lo == pytest.approx(b_lo, abs=0.1 * (b_hi - b_lo)) and hi == pytest.approx(b_hi, abs=0.1 * (b_hi - b_lo))
    # Influence form, written independently: Var(log R) = var(c1/c̄1 − c0/c̄0, ddof=1) / n.
    d = c1 / c1.mean() - c0 / c0.mean()
    se = math.sqrt(np.var(d, ddof=1) / d.size)
    z = float(stats.norm.ppf(0.975))
    log_r = math.log(c1.sum() / c0.sum())
    assert lo == pytest.approx(math.expm1(log_r - z * se), rel=1e-9) and hi == pytest.approx(math.expm1(log_r + z * se), rel=1e-9)
    assert got["p_value"] == pytest.approx(2 * stats.norm.sf(abs(log_r) / se), rel=1e-9)
    # The pairing matters: treating the teams as independent arms gives a much wider interval.
    unpaired = lift(c0, np.ones_like(c0), c1, np.ones_like(c1))
    assert (hi - lo) < 0.8 * (unpaired["ci95"][1] - unpaired["ci95"][0])


def test_paired_lift_covers_the_true_lift_and_undefined_cases():
    rng = np.random.default_rng(22)
    covered = rejected_null = 0
    for _ in range(200):
        got = paired_lift(*paired_units(rng, 300, 0.10, 0.12))
        covered += got["ci95"][0] <= 0.2 <= got["ci95"][1]
        rejected_null += paired_lift(*paired_units(rng, 300, 0.10, 0.10))["p_value"] < 0.05
    assert covered >= 180 and rejected_null <= 20
    assert paired_lift([0, 0], [1, 2]) == {"value": None, "ci95": [None, None], "p_value": None}
    assert paired_lift([], []) == {"value": None, "ci95": [None, None], "p_value": None}
    assert paired_lift([3], [6]) == {"value": 1.0, "ci95": [None, None], "p_value": None}  # one unit: no variance
    assert paired_lift([1, 2], [0, 0])["value"] == -1.0
    with pytest.raises(InputError, match="one length"):
        paired_lift([1, 2], [1])


def test_ratio_variance_with_equal_exposures_is_the_variance_of_a_mean():
    rng = np.random.default_rng(3)
    m, n = 6, 250
    clicks = rng.binomial(m, rng.beta(0.5, 3.0, n))
    r, var = ratio_and_variance(clicks, np.full(n, m))
    assert r == pytest.approx(clicks.mean() / m, rel=1e-12)
    assert var == pytest.approx(np.var(clicks, ddof=1) / (n * m * m), rel=1e-10)


def test_lift_undefined_cases_are_none_and_json_clean():
    assert lift([0, 0], [3, 4], [1, 2], [3, 4]) == {"value": None, "ci95": [None, None], "p_value": None}
    assert lift([], [], [1, 2], [3, 4]) == {"value": None, "ci95": [None, None], "p_value": None}
    one_unit = lift([1], [3], [1, 2], [3, 4])
    assert one_unit["value"] == pytest.approx((3 / 7) / (1 / 3) - 1) and one_unit["ci95"] == [None, None]
    assert lift([1, 2], [3, 4], [0, 0], [3, 4])["value"] == -1.0
    same = lift([1, 1], [2, 2], [1, 1], [2, 2])
    assert same == {"value": 0.0, "ci95": [0.0, 0.0], "p_value": 1.0}
    rng = np.random.default_rng(5)
    json.dumps(lift(*simulate_arm(rng, 50, 0.1), *simulate_arm(rng, 50, 0.1)), allow_nan=False)
    with pytest.raises(InputError, match="one length"):
        lift([1, 2], [3], [1], [2])
    with pytest.raises(InputError, match="non-negative"):
        lift([1, -2], [3, 3], [1], [2])


def pearson(observed: list[int], weights: list[float]) -> float:
    total, wsum = sum(observed), sum(weights)
    return sum((o - total * w / wsum) ** 2 / (total * w / wsum) for o, w in zip(observed, weights, strict=True))


@pytest.mark.parametrize(
    ("observed", "weights", "flag"),
    [
        ([5000, 5000], [50, 50], False),
        ([50_100, 49_900], [50, 50], False),
        ([52_000, 48_000], [50, 50], True),
        ([2510, 4985, 2505], [1, 2, 1], False),
        ([2700, 4800, 2500], [0.25, 0.5, 0.25], True),
    ],
)
def test_srm_is_pearsons_chi_square(observed, weights, flag):
    got = srm(observed, weights)
    stat = pearson(observed, weights)
    assert got["chi2"] == pytest.approx(stat, rel=1e-12)
    assert got["p_value"] == pytest.approx(chi2.sf(stat, len(observed) - 1), rel=1e-9, abs=1e-300)
    assert got["flag"] is flag
    json.dumps(got, allow_nan=False)


def test_srm_edge_cases_and_refusals():
    assert srm([0, 0], [1, 1]) == {"chi2": None, "p_value": None, "flag": False}
    assert srm([10], [1]) == {"chi2": 0.0, "p_value": 1.0, "flag": False}
    with pytest.raises(InputError, match="weights"):
        srm([1, 2], [1, 0])
    with pytest.raises(InputError, match="one non-zero length"):
        srm([1, 2, 3], [1, 1])
    with pytest.raises(InputError, match="integers"):
        srm([1.5, 2], [1, 1])


def test_sign_test_is_the_binomial_test_with_ties_dropped():
    assert sign_test(9, 1, 0)["p_value"] == pytest.approx(2 * (1 + 10) / 2**10, rel=1e-12)
    assert sign_test(9, 1, 5000)["p_value"] == sign_test(9, 1, 0)["p_value"]
    assert sign_test(9, 1, 7) == {"wins": 9, "losses": 1, "ties": 7, "p_value": sign_test(1, 9, 7)["p_value"]}
    assert sign_test(40, 40, 3)["p_value"] == pytest.approx(1.0)
    assert sign_test(0, 0, 12)["p_value"] is None
    for wins, losses in [(530, 470), (5123, 4877), (3, 0), (120, 80)]:
        assert sign_test(wins, losses, 99)["p_value"] == pytest.approx(binomtest(wins, wins + losses, 0.5).pvalue, rel=1e-12)
    with pytest.raises(InputError, match="losses"):
        sign_test(1, -1, 0)
