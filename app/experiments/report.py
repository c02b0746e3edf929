"""The report of one online experiment from its event store: per-arm counts, CTR, lift, SRM and interleaving.

`experiment_report(experiment, store)` returns a JSON-able dict (plain ints / floats, None where a quantity
is undefined, never NaN), `format_report(report)` renders it as markdown. Shape (clients rely on the names):

    {"name", "mode", "endpoint",
     "arms": [{"name", "model", "metric", "weight", "share", "units", "exposures",
               "events": {"click": n, <every other event name seen in the experiment>: n},
               "ctr": {"value", "ci95": [lo, hi]},
               "lift": {"value", "ci95": [lo, hi], "p_value"} | None}],      # None for arms[0], the baseline
     "srm": {"chi2", "p_value", "flag"},
     "interleaving": {"exposures", "units", "wins": {arm name: n}, "ties", "clicks": {arm name: n},
                      "sign_test": {"wins", "losses", "ties", "p_value"}},    # interleave mode only
     "unlisted_arms": {arm label: {"units", "exposures"}},                   # stored labels the file does not list
     "methods": {...}}

In A/B mode the quantities come from `EventStore.unit_rows` (one row per arm and unit):

- units: the unit rows of the arm; exposures: Σ_u e_u; events[name]: Σ_u (events `name` of u).
- CTR = Σ_u c_u / Σ_u e_u with c_u the unit's click events, its Wilson 95% interval (statistics.arm_summary).
- lift of arm j over arms[0]: R_j / R_0 − 1 by the delta method on the unit sums (c_u, e_u) (statistics.lift).
- SRM: chi-square of units per arm against the arms' bucket widths |ranges[i]| / 10000
  (assignment.arm_ranges), the shares the assignment really realises, flagged below p = 0.001.

In interleave mode every exposure shows both arms, so they come from `EventStore.interleaved_exposures`
(each event credited to the team of the position that showed its item; team 0 is arms[0], team 1 arms[1]):

- units, exposures: those of the interleaved exposures, the same for both arms; events[name]: the events
  credited to the arm's team; CTR: its credited clicks / exposures; share: None (there are no buckets).
- lift of arms[1] over arms[0]: Σ c1_u / Σ c0_u − 1 by the paired delta method (statistics.paired_lift).
- SRM: the exposures whose first pick each team won (the draft's coin) against 1/2.
- interleaving: per exposure the team with more credited clicks wins (interleaving.outcome) and the sign
  test compares the wins of arms[0] with those of arms[1], ties dropped.

Rows stored under an arm label the experiment does not list (an arm renamed or removed from the file while
its exposures stay stored) are left out of arms and of the SRM and counted under unlisted_arms; team-draft
exposures are stored under the label interleaving.INTERLEAVED_LABEL, which is not one of those. The interleaved
quantities do not depend on arm labels: they take every exposure of the experiment that has teams; the
interleaving block's units are the distinct unit ids of all the experiment's exposures.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.experiments.assignment import BUCKETS
from app.experiments.definitions import Experiment
from app.experiments.events import CLICK, CreditedExposure, EventStore, UnitRow
from app.experiments.interleaving import INTERLEAVED_LABEL, outcome, tally
from app.experiments.statistics import SRM_ALPHA, arm_summary, lift, paired_lift, sign_test, srm
from models.errors import InputError

METHODS: dict[str, str] = {
    "ctr": "click events / exposures per arm (an exposure with two clicked items counts 2)",
    "ci": "Wilson 95%",
    "lift": "delta method on unit-level sums of clicks and exposures (log ratio), two-sided z-test",
    "srm": "chi-square of units per arm against the bucket shares, flagged below p = 0.001",
    "interleaving": "team-draft; per exposure the team with more credited clicks wins; two-sided sign test, ties dropped",
}
INTERLEAVE_METHODS: dict[str, str] = {
    "ctr": "events credited to the arm's team (the team that placed the item) / interleaved exposures",
    "lift": "paired delta method on unit-level sums of each team's credited clicks (log ratio), two-sided z-test",
    "srm": "chi-square of the exposures whose first pick each team won against 1/2 (the draft's coin)",
}


def experiment_report(experiment: Experiment, store: EventStore) -> dict[str, Any]:
    """The report of `experiment` over everything `store` holds for it (see the module docstring for the shape)."""
    if not isinstance(experiment, Experiment):
        raise InputError(f"experiment must be an app.experiments.definitions.Experiment, got {type(experiment).__name__}")
    widths = [len(r) for r in experiment.ranges]
    for i, (arm, width) in enumerate(zip(experiment.arms, widths, strict=True)):
        if width == 0:  # the loader refuses such a file; the SRM's expected count would be 0
            raise InputError(f"experiment {experiment.name!r}: arms[{i}].weight: arm {arm.name!r} gets no bucket")
    rows = store.unit_rows(experiment.name)
    interleaved = store.interleaved_exposures(experiment.name) if experiment.mode == "interleave" else []
    listed = {arm.name for arm in experiment.arms} | ({INTERLEAVED_LABEL} if experiment.mode == "interleave" else set())
    unlisted: dict[str, dict[str, int]] = {}
    for row in rows:
        if row.arm not in listed:
            other = unlisted.setdefault(row.arm, {"units": 0, "exposures": 0})
            other["units"] += 1
            other["exposures"] += row.exposures
    by_arm = _ab_unit_rows(experiment, rows) if experiment.mode == "ab" else _team_unit_rows(experiment, interleaved)
    # One key set for every arm, so the arms' tables line up: click first, then the names seen, sorted.
    seen = {name for arm_rows in by_arm.values() for row in arm_rows for name in row.events}
    event_names = [CLICK, *sorted(seen - {CLICK})]

    unit_arrays = [_unit_arrays(by_arm[arm.name]) for arm in experiment.arms]
    arms: list[dict[str, Any]] = []
    for j, (arm, width) in enumerate(zip(experiment.arms, widths, strict=True)):
        clicks_u, exposures_u = unit_arrays[j]
        summary = arm_summary(clicks_u, exposures_u)
        events = {name: sum(row.events.get(name, 0) for row in by_arm[arm.name]) for name in event_names}
        if j == 0:
            arm_lift = None
        elif experiment.mode == "ab":
            arm_lift = lift(*unit_arrays[0], clicks_u, exposures_u)
        else:  # the same units and exposures on both teams: a paired comparison
            arm_lift = paired_lift(unit_arrays[0][0], clicks_u)
        arms.append(
            {
                "name": arm.name,
                "model": arm.model,
                "metric": arm.metric,
                "weight": arm.weight,
                "share": width / BUCKETS if experiment.mode == "ab" else None,
                "units": summary["units"],
                "exposures": summary["exposures"],
                "events": events,
                "ctr": {"value": summary["ctr"], "ci95": list(summary["ci95"])},
                "lift": arm_lift,
            }
        )
    if experiment.mode == "ab":
        ratio_check = srm([a["units"] for a in arms], widths)
    else:  # every exposure shows both arms; what is randomised per exposure is the draft's first coin
        firsts = [sum(1 for e in interleaved if e.first_team == team) for team in (0, 1)]
        ratio_check = srm(firsts, [1, 1])
    report: dict[str, Any] = {
        "name": experiment.name,
        "mode": experiment.mode,
        "endpoint": experiment.endpoint,
        "arms": arms,
        "srm": ratio_check,
    }
    if experiment.mode == "interleave":
        report["interleaving"] = _interleaving(experiment, interleaved, len({row.unit_id for row in rows}))
    report["unlisted_arms"] = unlisted
    report["methods"] = dict(METHODS if experiment.mode == "ab" else {**METHODS, **INTERLEAVE_METHODS})
    return report


def _ab_unit_rows(experiment: Experiment, rows: Sequence[UnitRow]) -> dict[str, list[UnitRow]]:
    """The unit rows of each listed arm, by arm name."""
    by_arm: dict[str, list[UnitRow]] = {arm.name: [] for arm in experiment.arms}
    for row in rows:
        if row.arm in by_arm:
            by_arm[row.arm].append(row)
    return by_arm


def _team_unit_rows(experiment: Experiment, interleaved: Sequence[CreditedExposure]) -> dict[str, list[UnitRow]]:
    """Per arm (team 0 = arms[0], team 1 = arms[1]) one row per unit: the unit's interleaved exposures (both
    teams share them) and the events credited to that team, in the same units order for both arms."""
    per_unit: dict[str, tuple[int, list[collections.Counter[str]]]] = {}
    for e in interleaved:
        n, teams = per_unit.get(e.unit_id, (0, [collections.Counter(), collections.Counter()]))
        for (team, event), count in e.events.items():
            teams[team][event] += count
        per_unit[e.unit_id] = (n + 1, teams)
    return {
        arm.name: [UnitRow(arm.name, unit, n, dict(teams[team])) for unit, (n, teams) in sorted(per_unit.items())]
        for team, arm in enumerate(experiment.arms)
    }


def _unit_arrays(rows: Sequence[UnitRow]) -> tuple[np.ndarray, np.ndarray]:
    """(clicks per unit, exposures per unit), both of shape (n_units,)."""
    clicks = np.array([row.events.get(CLICK, 0) for row in rows], dtype=np.int64)
    exposures = np.array([row.exposures for row in rows], dtype=np.int64)
    return clicks, exposures


def _interleaving(experiment: Experiment, interleaved: Sequence[CreditedExposure], units: int) -> dict[str, Any]:
    credits = [(e.credited(0, CLICK), e.credited(1, CLICK)) for e in interleaved]
    wins_a, wins_b, ties = tally(outcome(a, b) for a, b in credits)
    first, second = (arm.name for arm in experiment.arms)
    return {
        "exposures": len(credits),
        "units": units,
        "wins": {first: wins_a, second: wins_b},
        "ties": ties,
        "clicks": {first: sum(a for a, _ in credits), second: sum(b for _, b in credits)},
        "sign_test": sign_test(wins_a, wins_b, ties),
    }


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _interval(ci: Any) -> str:
    if not ci or all(x is None for x in ci):
        return "–"
    lo, hi = ci
    return f"[{_num(lo)}, {_num(hi)}]"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100.0 * value:+.2f}%"


def _pct_interval(ci: Any) -> str:
    if not ci or all(x is None for x in ci):
        return "–"
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def format_report(report: Mapping[str, Any]) -> str:
    """The report as markdown: a heading, one table per arm, the SRM line, the interleaving block, the methods.

    Takes the dict of `experiment_report` or the same document read back from JSON. Numbers are shown with 4
    significant digits (`f"{x:.4g}"`), lifts as percentages, undefined values as "–".
    """
    lines = [
        f"# Experiment {report.get('name')}",
        "",
        f"Endpoint {report.get('endpoint')}, mode {report.get('mode')}, {len(report.get('arms', []))} arms.",
    ]
    for j, arm in enumerate(report.get("arms", [])):
        baseline = " (baseline)" if j == 0 else ""
        lines += [
            "",
            f"## Arm {arm.get('name')}{baseline}",
            "",
            f"Model {arm.get('model')}, metric {arm.get('metric')}, weight {_num(arm.get('weight'))}"
            + (f" ({_num(100.0 * arm['share'])}% of the buckets)" if arm.get("share") is not None else "")
            + ".",
            "",
            "| quantity | value |",
            "|---|---:|",
            f"| units | {_num(arm.get('units'))} |",
            f"| exposures | {_num(arm.get('exposures'))} |",
        ]
        lines += [f"| {name} events | {_num(n)} |" for name, n in arm.get("events", {}).items()]
        ctr = arm.get("ctr") or {}
        lines += [f"| CTR | {_num(ctr.get('value'))} |", f"| CTR 95% CI (Wilson) | {_interval(ctr.get('ci95'))} |"]
        arm_lift = arm.get("lift")
        if arm_lift is not None:
            lines += [
                f"| lift vs baseline | {_pct(arm_lift.get('value'))} |",
                f"| lift 95% CI | {_pct_interval(arm_lift.get('ci95'))} |",
                f"| lift p-value | {_num(arm_lift.get('p_value'))} |",
            ]
    s = report.get("srm") or {}
    verdict = "FLAGGED: the units do not follow the bucket shares" if s.get("flag") else "not flagged"
    lines += [
        "",
        f"**Sample-ratio mismatch:** chi2 = {_num(s.get('chi2'))}, p = {_num(s.get('p_value'))}, {verdict}"
        f" (threshold p < {SRM_ALPHA:g}).",
    ]
    inter = report.get("interleaving")
    if inter is not None:
        test = inter.get("sign_test") or {}
        lines += ["", "## Interleaving (team draft)", "", "| team | wins | credited clicks |", "|---|---:|---:|"]
        clicks = inter.get("clicks", {})
        lines += [f"| {name} | {_num(n)} | {_num(clicks.get(name))} |" for name, n in inter.get("wins", {}).items()]
        lines += [
            f"| ties | {_num(inter.get('ties'))} | |",
            "",
            f"{_num(inter.get('exposures'))} interleaved exposures of {_num(inter.get('units'))} units;"
            f" sign test: {_num(test.get('wins'))} wins, {_num(test.get('losses'))} losses,"
            f" {_num(test.get('ties'))} ties dropped, p = {_num(test.get('p_value'))}.",
        ]
    unlisted = report.get("unlisted_arms") or {}
    if unlisted:
        lines += ["", "Exposures stored under arm labels the experiment does not list (not in the arm tables):"]
        lines += [f"- {name}: {_num(v.get('units'))} units, {_num(v.get('exposures'))} exposures" for name, v in unlisted.items()]
    methods = report.get("methods") or {}
    if methods:
        lines += ["", "Methods:"]
        lines += [f"- {key}: {text}" for key, text in methods.items()]
    return "\n".join(lines) + "\n"
