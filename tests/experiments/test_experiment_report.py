"""The experiment report on a real SQLite event store, against quantities the tests count over the rows they wrote.

Units are simulated with known click probabilities per arm (a Beta spread of probabilities across units, so
the exposures of one unit are correlated); the CTR interval is recomputed with scipy's binomtest, the lift
with the residual form of the delta method and checked against a unit-level bootstrap and the true lift,
the SRM with a hand-written Pearson chi-square, the sign test with binomtest.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from app.experiments.assignment import assign
from app.experiments.definitions import Arm, Experiment
from app.experiments.events import EventStore, Exposure, Feedback, open_store
from app.experiments.report import experiment_report, format_report
from app.schemas.experiments import ArmStats, Interleaving, ReportResponse

ITEMS = tuple(f"item-{i}" for i in range(40))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    s = open_store(f"sqlite://{tmp_path / 'events.db'}")
    try:
        yield s
    finally:
        s.close()


def experiment(name: str, weights: tuple[float, ...], mode: str = "ab", names: tuple[str, ...] | None = None) -> Experiment:
    names = names or tuple(f"arm-{j}" for j in range(len(weights)))
    arms = tuple(
        Arm(n, "denoising-symmetric", "cosine" if j == 0 else "projected", w)
        for j, (n, w) in enumerate(zip(names, weights, strict=True))
    )
    return Experiment(name, "similar-items", f"salt-{name}", mode, arms)  # type: ignore[arg-type]


def make_exposure(
    eid: str, exp: str, arm: str, unit: str, rng: np.random.Generator, teams: tuple[int, ...] | None = None
) -> Exposure:
    shown = tuple(str(i) for i in rng.choice(ITEMS, size=6, replace=False))
    return Exposure(eid, 1.7e9, exp, arm, unit, "similar-items", f"q-{eid}", len(shown), "v1", shown, teams)


def assert_documented(report: dict) -> None:
    """The report validates against the OpenAPI model, and every key it has is a declared field (none rides on extra)."""
    ReportResponse.model_validate(json.loads(json.dumps(report, allow_nan=False)))
    assert set(report) <= set(ReportResponse.model_fields)
    for arm in report["arms"]:
        assert set(arm) <= set(ArmStats.model_fields)
    if report.get("interleaving") is not None:
        assert set(report["interleaving"]) <= set(Interleaving.model_fields)


@dataclass
class Written:
    """What a test wrote, counted in Python: per (arm, unit) exposures and events."""

    exposures: list[Exposure] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    unit_exposures: Counter[tuple[str, str]] = field(default_factory=Counter)
    unit_events: dict[tuple[str, str], Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def expose(self, e: Exposure) -> None:
        self.exposures.append(e)
        self.unit_exposures[(e.arm, e.unit_id)] += 1

    def event(self, e: Exposure, item: str, event: str) -> None:
        self.feedback.append(Feedback(e.exposure_id, item, event, None, f"{e.exposure_id}/{len(self.feedback)}", 1.7e9 + 1))
        self.unit_events[(e.arm, e.unit_id)][event] += 1

    def arm_units(self, arm: str) -> tuple[np.ndarray, np.ndarray]:
        """(clicks per unit, exposures per unit) of the arm, shapes (n_units,)."""
        keys = sorted(k for k in self.unit_exposures if k[0] == arm)
        return (
            np.array([self.unit_events[k]["click"] for k in keys], dtype=float),
            np.array([self.unit_exposures[k] for k in keys], dtype=float),
        )

    def write(self, store: EventStore) -> None:
        assert store.write_exposures(self.exposures) == len(self.exposures)
        assert store.write_feedback(self.feedback) == len(self.feedback)


def simulate(exp: Experiment, n_units: int, ctr_by_arm: dict[str, float], seed: int) -> Written:
    """Units assigned by the real assignment; 1–20 exposures each; per exposure Binomial(3, p_u / 3) clicks on
    distinct shown items, p_u ~ Beta with mean ctr_by_arm[arm] (concentration 50); a purchase with probability 0.03."""
    rng = np.random.default_rng(seed)
    w = Written()
    for u in range(n_units):
        unit = f"user-{u}"
        arm = assign(exp, unit).name
        p = ctr_by_arm[arm]
        p_u = rng.beta(50 * p, 50 * (1 - p))
        for x in range(int(rng.integers(1, 21))):
            e = make_exposure(f"{exp.name}/{unit}/{x}", exp.name, arm, unit, rng)
            w.expose(e)
            for item in e.shown[: rng.binomial(3, p_u / 3)]:
                w.event(e, item, "click")
            if rng.random() < 0.03:
                w.event(e, e.shown[0], "purchase")
    return w


def chi_square(observed: list[int], shares: list[float]) -> tuple[float, float]:
    n = sum(observed)
    expected = [n * s for s in shares]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    return chi2, float(stats.chi2.sf(chi2, len(observed) - 1))


def delta_lift(c0: np.ndarray, e0: np.ndarray, cj: np.ndarray, ej: np.ndarray) -> tuple[float, float, float, float]:
    """(lift, lo, hi, p) with Var(R) = var(c_u − R e_u, ddof=1) / (n ē²): the linearised ratio, written independently."""

    def ratio_var(c: np.ndarray, e: np.ndarray) -> tuple[float, float]:
        r = c.sum() / e.sum()
        d = c - r * e
        return r, float(np.sum((d - d.mean()) ** 2) / (d.size - 1) / (d.size * e.mean() ** 2))

    r0, v0 = ratio_var(c0, e0)
    rj, vj = ratio_var(cj, ej)
    log_ratio = math.log(rj / r0)
    se = math.sqrt(vj / rj**2 + v0 / r0**2)
    z = stats.norm.ppf(0.975)
    return rj / r0 - 1, math.exp(log_ratio - z * se) - 1, math.exp(log_ratio + z * se) - 1, 2 * stats.norm.sf(abs(log_ratio) / se)


def bootstrap_log_lift_se(c0: np.ndarray, e0: np.ndarray, cj: np.ndarray, ej: np.ndarray, seed: int, b: int = 2000) -> float:
    rng = np.random.default_rng(seed)
    i0 = rng.integers(0, c0.size, size=(b, c0.size))
    ij = rng.integers(0, cj.size, size=(b, cj.size))
    r0 = c0[i0].sum(axis=1) / e0[i0].sum(axis=1)
    rj = cj[ij].sum(axis=1) / ej[ij].sum(axis=1)
    return float(np.std(np.log(rj / r0), ddof=1))


def test_ab_report_equals_counts_of_the_written_rows(store: EventStore) -> None:
    exp = experiment("three-arms", (2, 1, 1), names=("control", "better", "same"))
    true_ctr = {"control": 0.10, "better": 0.13, "same": 0.10}
    w = simulate(exp, 600, true_ctr, seed=3)
    other = simulate(experiment("another", (1, 1), names=("control", "better")), 50, {"control": 0.5, "better": 0.5}, seed=4)
    w.write(store)
    other.write(store)  # another experiment's rows, with the same arm names: never counted here
    store.write_feedback([Feedback("three-arms/nobody/0", "item-1", "click", None, None, 1.0)])  # no such exposure

    report = experiment_report(exp, store)
    assert (report["name"], report["mode"], report["endpoint"]) == ("three-arms", "ab", "similar-items")
    assert "interleaving" not in report and report["unlisted_arms"] == {}
    assert [a["name"] for a in report["arms"]] == ["control", "better", "same"]
    assert_documented(report)
    c0, e0 = w.arm_units("control")
    for j, a in enumerate(report["arms"]):
        arm = exp.arms[j]
        assert (a["model"], a["metric"], a["weight"]) == (arm.model, arm.metric, arm.weight)
        units = [k for k in w.unit_exposures if k[0] == arm.name]
        clicks = sum(w.unit_events[k]["click"] for k in units)
        exposures = sum(w.unit_exposures[k] for k in units)
        assert a["units"] == len(units) and a["exposures"] == exposures
        assert a["events"] == {"click": clicks, "purchase": sum(w.unit_events[k]["purchase"] for k in units)}
        assert a["ctr"]["value"] == pytest.approx(clicks / exposures, rel=1e-15)
        ci = stats.binomtest(clicks, exposures).proportion_ci(method="wilson")
        assert a["ctr"]["ci95"] == pytest.approx([ci.low, ci.high], rel=1e-12)
        if j == 0:
            assert a["lift"] is None
            continue
        cj, ej = w.arm_units(arm.name)
        value, lo, hi, p = delta_lift(c0, e0, cj, ej)
        assert a["lift"]["value"] == pytest.approx((clicks / exposures) / (c0.sum() / e0.sum()) - 1, rel=1e-12)
        assert [a["lift"]["value"], *a["lift"]["ci95"], a["lift"]["p_value"]] == pytest.approx([value, lo, hi, p], rel=1e-9)
        true_lift = true_ctr[arm.name] / true_ctr["control"] - 1
        assert a["lift"]["ci95"][0] < true_lift < a["lift"]["ci95"][1]
        # The delta-method standard error of the log ratio agrees with a unit-level bootstrap.
        se_delta = (math.log1p(hi) - math.log1p(lo)) / (2 * stats.norm.ppf(0.975))
        assert se_delta == pytest.approx(bootstrap_log_lift_se(c0, e0, cj, ej, seed=j), rel=0.15)
    # A unit's exposures are correlated (p_u spread): the unit-level interval is wider than the binomial one would be.
    better = report["arms"][1]
    naive = math.sqrt(1 / better["events"]["click"] + 1 / report["arms"][0]["events"]["click"])
    assert (math.log1p(better["lift"]["ci95"][1]) - math.log1p(better["lift"]["ci95"][0])) / 3.92 > naive

    observed = [a["units"] for a in report["arms"]]
    chi2, p = chi_square(observed, [0.5, 0.25, 0.25])
    assert report["srm"]["chi2"] == pytest.approx(chi2, rel=1e-12)
    assert report["srm"]["p_value"] == pytest.approx(p, rel=1e-9)
    assert report["srm"]["flag"] is False  # the real assignment follows the bucket shares

    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report
    md = format_report(report)
    assert format_report(json.loads(text)) == md
    assert all(f"Arm {name}" in md for name in ("control", "better", "same"))
    assert f"p = {report['srm']['p_value']:.4g}" in md
    assert md.count("| CTR |") == 3 and md.count("| lift p-value |") == 2


@pytest.mark.parametrize(("n_first", "n_second", "flag"), [(1200, 800, True), (1030, 970, False)])
def test_srm_flags_a_split_off_the_weights(store: EventStore, n_first: int, n_second: int, flag: bool) -> None:
    exp = experiment("split", (50, 50))
    rng = np.random.default_rng(0)
    w = Written()
    for u in range(n_first + n_second):  # units written to the arms by the test, not by the assignment
        arm = "arm-0" if u < n_first else "arm-1"
        w.expose(make_exposure(f"x{u}", "split", arm, f"u{u}", rng))
    w.write(store)
    report = experiment_report(exp, store)
    chi2, p = chi_square([n_first, n_second], [0.5, 0.5])
    assert [a["units"] for a in report["arms"]] == [n_first, n_second]
    assert report["srm"]["chi2"] == pytest.approx(chi2, rel=1e-12)
    assert report["srm"]["p_value"] == pytest.approx(p, rel=1e-9)
    assert report["srm"]["flag"] is flag
    assert (p < 0.001) is flag
    json.dumps(report, allow_nan=False)


def test_srm_expects_the_bucket_widths(store: EventStore) -> None:
    """Weights (1, 2): the buckets are 3333 and 6667 wide, so 400 / 800 units is a (tiny) mismatch, not a perfect fit."""
    exp = experiment("thirds", (1, 2))
    rng = np.random.default_rng(1)
    w = Written()
    for u in range(1200):
        w.expose(make_exposure(f"t{u}", "thirds", "arm-0" if u < 400 else "arm-1", f"u{u}", rng))
    w.write(store)
    report = experiment_report(exp, store)
    chi2, p = chi_square([400, 800], [0.3333, 0.6667])
    assert chi2 > 1e-6  # against the weights themselves it would be 0
    assert report["srm"]["chi2"] == pytest.approx(chi2, rel=1e-9)
    assert report["srm"]["p_value"] == pytest.approx(p, rel=1e-12)
    assert [a["share"] for a in report["arms"]] == [0.3333, 0.6667]


@pytest.mark.parametrize("label", ["assigned arm", "one label"])
def test_interleaving_wins_and_sign_test(store: EventStore, label: str) -> None:
    """Exposures stored under the unit's assigned arm, or all under one label ("interleave"): the block is the same."""
    exp = experiment("draft", (1, 1), mode="interleave", names=("cosine", "projected"))
    rng = np.random.default_rng(7)
    w = Written()
    wins = Counter[str]()
    credited = [0, 0]
    purchases = [0, 0]
    for x in range(150):
        unit = f"user-{x % 50}"
        teams = tuple(int(t) for t in rng.integers(0, 2, size=6))
        arm = assign(exp, unit).name if label == "assigned arm" else "interleave"
        e = make_exposure(f"d{x}", "draft", arm, unit, rng, teams)
        w.expose(e)
        clicks = [0, 0]
        for pos, team in enumerate(teams):
            # team 0's items are clicked more; a position is clicked twice sometimes, and both clicks count
            for _ in range(int(rng.random() < (0.3 if team == 0 else 0.15)) * (1 + int(rng.random() < 0.2))):
                w.event(e, e.shown[pos], "click")
                clicks[team] += 1
        if rng.random() < 0.3:
            pos = int(rng.integers(6))
            w.event(e, e.shown[pos], "purchase")  # not a click: in its team's events, not in the clicks
            purchases[teams[pos]] += 1
        if rng.random() < 0.1:
            w.event(e, "item-not-shown", "click")  # a click on no position: credits nobody
        credited = [credited[0] + clicks[0], credited[1] + clicks[1]]
        wins["cosine" if clicks[0] > clicks[1] else "projected" if clicks[1] > clicks[0] else "tie"] += 1
    w.write(store)
    report = experiment_report(exp, store)
    inter = report["interleaving"]
    assert inter["exposures"] == 150 and inter["units"] == 50
    assert inter["wins"] == {"cosine": wins["cosine"], "projected": wins["projected"]}
    assert inter["ties"] == wins["tie"]
    assert inter["clicks"] == {"cosine": credited[0], "projected": credited[1]}
    st = inter["sign_test"]
    assert (st["wins"], st["losses"], st["ties"]) == (wins["cosine"], wins["projected"], wins["tie"])
    n = wins["cosine"] + wins["projected"]
    assert st["p_value"] == pytest.approx(stats.binomtest(wins["cosine"], n, 0.5).pvalue, rel=1e-12)
    assert st["p_value"] < 0.05  # the simulated preference for team 0 is found
    # Each arm's table: every interleaved exposure (both teams are in each), the events its team placed.
    assert report["unlisted_arms"] == {}
    for team, arm in enumerate(report["arms"]):
        assert (arm["units"], arm["exposures"]) == (50, 150)
        assert arm["events"] == {"click": credited[team], "purchase": purchases[team]}
        assert arm["ctr"]["value"] == pytest.approx(credited[team] / 150, rel=1e-12)
        assert arm["share"] is None
    per_unit = np.zeros((2, 50))
    for e in w.exposures:
        assert e.teams is not None
        for f in w.feedback:
            if f.exposure_id == e.exposure_id and f.event == "click" and f.item_id in e.shown:
                per_unit[e.teams[e.shown.index(f.item_id)], int(e.unit_id.split("-")[1])] += 1
    d = per_unit[1] / per_unit[1].mean() - per_unit[0] / per_unit[0].mean()  # the influence form of Var(log R)
    se = math.sqrt(np.var(d, ddof=1) / 50)
    log_r = math.log(credited[1] / credited[0])
    got = report["arms"][1]["lift"]
    assert got["value"] == pytest.approx(credited[1] / credited[0] - 1, rel=1e-12)
    assert got["ci95"][0] == pytest.approx(math.expm1(log_r - 1.959964 * se), rel=1e-5)
    assert got["ci95"][1] == pytest.approx(math.expm1(log_r + 1.959964 * se), rel=1e-5)
    assert report["arms"][0]["lift"] is None
    firsts = Counter(e.teams[0] for e in w.exposures if e.teams)
    chi2, p = chi_square([firsts[0], firsts[1]], [0.5, 0.5])
    assert report["srm"]["chi2"] == pytest.approx(chi2, rel=1e-9, abs=1e-12)
    assert report["srm"]["p_value"] == pytest.approx(p, rel=1e-9)
    assert_documented(report)
    md = format_report(json.loads(json.dumps(report, allow_nan=False)))
    assert "Interleaving" in md and f"p = {st['p_value']:.4g}" in md
    assert "| cosine |" in md and "| projected |" in md


def test_other_event_types_unlisted_and_empty_arms(store: EventStore) -> None:
    exp = experiment("events", (1, 1, 1), names=("a", "b", "never"))
    rng = np.random.default_rng(11)
    w = Written()
    plan = {"a": ["click", "click", "purchase", "rating"], "b": ["add_to_cart", "rating", "rating"], "ghost": ["click"]}
    for arm, events in plan.items():  # "ghost": an arm the file no longer lists
        for u in range(3):
            e = make_exposure(f"{arm}{u}", "events", arm, f"{arm}-unit-{u}", rng)
            w.expose(e)
            for i, event in enumerate(events):
                w.event(e, e.shown[i], event)
    w.write(store)
    report = experiment_report(exp, store)
    a, b, never = report["arms"]
    assert a["events"] == {"click": 6, "add_to_cart": 0, "purchase": 3, "rating": 3}
    assert b["events"] == {"click": 0, "add_to_cart": 3, "purchase": 0, "rating": 6}
    assert next(iter(a["events"])) == "click"
    assert (b["ctr"]["value"], b["ctr"]["ci95"][0]) == (0.0, 0.0)
    assert b["lift"]["value"] == -1.0 and b["lift"]["ci95"] == [None, None]  # no log of a zero ratio
    assert never["units"] == never["exposures"] == 0
    assert never["events"] == {"click": 0, "add_to_cart": 0, "purchase": 0, "rating": 0}
    assert never["ctr"] == {"value": None, "ci95": [None, None]}
    assert never["lift"] == {"value": None, "ci95": [None, None], "p_value": None}
    assert report["unlisted_arms"] == {"ghost": {"units": 3, "exposures": 3}}
    chi2, p = chi_square([3, 3, 0], [0.3333, 0.3333, 0.3334])
    assert report["srm"]["chi2"] == pytest.approx(chi2, rel=1e-9)
    assert report["srm"]["p_value"] == pytest.approx(p, rel=1e-9)
    md = format_report(json.loads(json.dumps(report, allow_nan=False)))
    assert "ghost" in md and "| add_to_cart events | 3 |" in md


@pytest.mark.parametrize("mode", ["ab", "interleave"])
def test_experiment_without_exposures_gives_a_valid_report(store: EventStore, mode: str) -> None:
    other = simulate(experiment("busy", (1, 1)), 20, {"arm-0": 0.2, "arm-1": 0.2}, seed=5)
    other.write(store)
    report = experiment_report(experiment("quiet", (1, 1), mode=mode, names=("first", "second")), store)
    for a in report["arms"]:
        assert (a["units"], a["exposures"], a["events"]) == (0, 0, {"click": 0})
        assert a["ctr"] == {"value": None, "ci95": [None, None]}
    assert report["arms"][0]["lift"] is None
    assert report["arms"][1]["lift"] == {"value": None, "ci95": [None, None], "p_value": None}
    assert report["srm"] == {"chi2": None, "p_value": None, "flag": False}
    if mode == "interleave":
        assert report["interleaving"] == {
            "exposures": 0,
            "units": 0,
            "wins": {"first": 0, "second": 0},
            "ties": 0,
            "clicks": {"first": 0, "second": 0},
            "sign_test": {"wins": 0, "losses": 0, "ties": 0, "p_value": None},
        }
    else:
        assert "interleaving" not in report
    assert set(report["methods"]) == {"ctr", "ci", "lift", "srm", "interleaving"}
    assert_documented(report)
    md = format_report(json.loads(json.dumps(report, allow_nan=False)))
    assert "Arm first" in md and "Arm second" in md and "p = –" in md
