"""Statistics of an experiment report: Wilson interval, CTR per arm, the lift by the delta method, SRM, sign test.

Every function takes counts or per-unit arrays and returns plain Python floats / ints (JSON-able);
a quantity that is undefined on the data (no trials, fewer than two units, a zero baseline) is None,
never NaN or infinity. Distributions come from scipy.stats; numpy only sums.

CTR counts click events: CTR = Σ clicks / Σ exposures, where an exposure whose user clicked two of
its items counts 2, so the CTR exceeds 1 only if users click several items of one exposure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from models.errors import InputError

LIFT_CONFIDENCE = 0.95
SRM_ALPHA = 0.001


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise InputError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of a binomial proportion (no continuity correction), from scipy.stats.binomtest.

    (p̂ + z²/2n ± z √(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n), z = Φ⁻¹((1 + confidence)/2).
    trials = 0 → (None, None). successes > trials is refused: the interval is for a proportion.
    """
    s, n = _count("successes", successes), _count("trials", trials)
    if s > n:
        raise InputError(f"successes ({s}) must not exceed trials ({n}) for a Wilson interval")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must lie in (0, 1), got {confidence!r}")
    if n == 0:
        return None, None
    ci = stats.binomtest(s, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def ctr(clicks: int, exposures: int) -> float | None:
    """Σ clicks / Σ exposures; None when there are no exposures."""
    c, e = _count("clicks", clicks), _count("exposures", exposures)
    return c / e if e > 0 else None


def _unit_arrays(name: str, clicks: npt.ArrayLike, exposures: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(clicks, dtype=np.float64)
    e = np.asarray(exposures, dtype=np.float64)
    if c.ndim != 1 or e.ndim != 1 or c.shape != e.shape:
        raise InputError(f"{name}: unit clicks and exposures must be 1-D arrays of one length, got {c.shape} and {e.shape}")
    if not (np.isfinite(c).all() and np.isfinite(e).all()) or (c < 0).any() or (e < 0).any():
        raise InputError(f"{name}: unit clicks and exposures must be finite and non-negative")
    return c, e


def ratio_and_variance(unit_clicks: npt.ArrayLike, unit_exposures: npt.ArrayLike) -> tuple[float | None, float | None]:
    """R = c̄ / ē over n units, shapes (n,), and its delta-method variance.

    Var(R) ≈ (s²_c − 2 R s_ce + R² s²_e) / (n ē²), with sample (co)variances (ddof = 1) over units, so
    clicks of one unit's exposures are treated as correlated. (None, None) when ē = 0; the variance is
    None when n < 2.
    """
    c, e = _unit_arrays("unit arrays", unit_clicks, unit_exposures)
    n = c.size
    if n == 0 or e.sum() == 0:
        return None, None
    e_bar = float(e.mean())
    r = float(c.sum() / e.sum())
    if n < 2:
        return r, None
    cov = np.cov(np.vstack([c, e]), ddof=1)
    var = (cov[0, 0] - 2.0 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * e_bar * e_bar)
    return r, max(float(var), 0.0)


def lift(
    unit_clicks_0: npt.ArrayLike,
    unit_exposures_0: npt.ArrayLike,
    unit_clicks_j: npt.ArrayLike,
    unit_exposures_j: npt.ArrayLike,
) -> dict[str, Any]:
    """Relative lift of arm j's CTR over the baseline arm 0, L = R_j / R_0 − 1, per-unit arrays of shapes (n_0,), (n_j,).

    Delta method on the log ratio, arms independent: Var(log R_j − log R_0) ≈ Var(R_j)/R_j² + Var(R_0)/R_0²
    (each Var(R) from `ratio_and_variance`). The 95% interval is exp(log(R_j/R_0) ± z·se) − 1, asymmetric
    and above −1; the p-value is the two-sided z-test of log(R_j/R_0) = 0, so p < 0.05 exactly when the
    interval excludes 0. Returns {"value", "ci95": [lo, hi], "p_value"}: value None when R_0 is 0 or
    undefined; ci95 [None, None] and p_value None when a variance is undefined (an arm with < 2 units)
    or R_j = 0 (no log); a zero standard error gives the degenerate interval [value, value] and p 0 or 1.
    """
    r0, v0 = ratio_and_variance(unit_clicks_0, unit_exposures_0)
    rj, vj = ratio_and_variance(unit_clicks_j, unit_exposures_j)
    if r0 is None or rj is None or r0 == 0.0:
        return _lift_result(None, None)
    if v0 is None or vj is None or rj == 0.0:
        return _lift_result(rj / r0, None)
    return _lift_result(rj / r0, math.sqrt(vj / (rj * rj) + v0 / (r0 * r0)))


def paired_lift(unit_clicks_0: npt.ArrayLike, unit_clicks_1: npt.ArrayLike) -> dict[str, Any]:
    """Lift of team 1 over team 0 when both are measured on the same units (interleaving), shapes (n,), (n,).

    L = Σ_u c1_u / Σ_u c0_u − 1 (both teams share every exposure, so the exposures cancel from the CTR
    ratio). Delta method on the log ratio of the unit means, the units' pairing kept:
    Var(log c̄1 − log c̄0) ≈ (s²_1 / c̄1² + s²_0 / c̄0² − 2 s_01 / (c̄0 c̄1)) / n, sample (co)variances (ddof = 1).
    Interval, p-value and the undefined cases as in `lift` (fewer than 2 units: no variance).
    """
    c0, c1 = _unit_arrays("paired lift", unit_clicks_0, unit_clicks_1)
    n = c0.size
    m0, m1 = (float(c0.mean()), float(c1.mean())) if n else (0.0, 0.0)
    if n == 0 or m0 == 0.0:
        return _lift_result(None, None)
    if n < 2 or m1 == 0.0:
        return _lift_result(m1 / m0, None)
    cov = np.cov(np.vstack([c0, c1]), ddof=1)
    var = (cov[1, 1] / (m1 * m1) + cov[0, 0] / (m0 * m0) - 2.0 * cov[0, 1] / (m0 * m1)) / n
    return _lift_result(m1 / m0, math.sqrt(max(float(var), 0.0)))


def _lift_result(ratio: float | None, se: float | None) -> dict[str, Any]:
    """{"value": ratio − 1, "ci95": exp(log ratio ± z·se) − 1, "p_value"} of a ratio and the standard error of its log."""
    undefined: dict[str, Any] = {"value": None, "ci95": [None, None], "p_value": None}
    if ratio is None:
        return undefined
    value = ratio - 1.0
    if se is None:
        return {**undefined, "value": value}
    log_ratio = math.log(ratio)
    if se == 0.0:
        return {"value": value, "ci95": [value, value], "p_value": 1.0 if log_ratio == 0.0 else 0.0}
    z = float(stats.norm.ppf(0.5 + LIFT_CONFIDENCE / 2.0))
    lo, hi = math.expm1(log_ratio - z * se), math.expm1(log_ratio + z * se)
    p = 2.0 * float(stats.norm.sf(abs(log_ratio) / se))
    return {"value": value, "ci95": [_finite_or_none(lo), _finite_or_none(hi)], "p_value": p}


def srm(units_per_arm: Sequence[int] | npt.ArrayLike, weights: Sequence[float] | npt.ArrayLike) -> dict[str, Any]:
    """Sample-ratio mismatch: Pearson chi-square of units per arm, shape (n_arms,), against expected counts N·w/Σw.

    scipy.stats.chisquare with n_arms − 1 degrees of freedom; flag = p_value < 0.001. With one arm
    there is nothing to test (chi2 0, p 1); with no units chi2 and p are None and the flag is off.
    """
    obs = np.asarray(units_per_arm, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if obs.ndim != 1 or w.ndim != 1 or obs.shape != w.shape or obs.size == 0:
        raise InputError(f"units_per_arm and weights must be 1-D of one non-zero length, got {obs.shape} and {w.shape}")
    if not np.isfinite(obs).all() or (obs < 0).any() or (obs != np.round(obs)).any():
        raise InputError("units_per_arm must be non-negative integers")
    if not np.isfinite(w).all() or (w <= 0).any():
        raise InputError("weights must be finite and positive")
    total = float(obs.sum())
    if total == 0:
        return {"chi2": None, "p_value": None, "flag": False}
    if obs.size == 1:
        return {"chi2": 0.0, "p_value": 1.0, "flag": False}
    expected = total * w / w.sum()
    res = stats.chisquare(obs, f_exp=expected)
    p = float(res.pvalue)
    return {"chi2": float(res.statistic), "p_value": p, "flag": p < SRM_ALPHA}


def sign_test(wins: int, losses: int, ties: int) -> dict[str, Any]:
    """Two-sided exact sign test of wins against losses over exposures, ties dropped: binomtest(wins, wins + losses, 0.5).

    p_value is None when there are no wins nor losses.
    """
    w, lo, t = _count("wins", wins), _count("losses", losses), _count("ties", ties)
    p = float(stats.binomtest(w, w + lo, 0.5, alternative="two-sided").pvalue) if w + lo > 0 else None
    return {"wins": w, "losses": lo, "ties": t, "p_value": p}


def arm_summary(unit_clicks: npt.ArrayLike, unit_exposures: npt.ArrayLike) -> dict[str, Any]:
    """One arm's counts from per-unit arrays, shapes (n_units,): units, exposures, clicks, ctr and its Wilson ci95.

    The Wilson interval treats exposures as independent trials and needs clicks ≤ exposures; it is
    [None, None] otherwise (several clicks per exposure make the CTR no proportion). The lift, not this
    interval, is the quantity that accounts for several exposures per unit.
    """
    c, e = _unit_arrays("arm", unit_clicks, unit_exposures)
    if (c != np.round(c)).any() or (e != np.round(e)).any():
        raise InputError("arm: unit clicks and exposures must be integer counts")
    clicks, exposures = int(c.sum()), int(e.sum())
    lo, hi = wilson_interval(clicks, exposures) if clicks <= exposures else (None, None)
    return {"units": int(c.size), "exposures": exposures, "clicks": clicks, "ctr": ctr(clicks, exposures), "ci95": [lo, hi]}
