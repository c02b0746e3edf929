"""The page's Experiments tab in a real headless Chromium (Debian's `chromium`, driven by Playwright), against
`python -m app` with an experiments file and an SQLite events database.

Traffic goes through the real API only: experiment responses of /similar-items (the exposures) and POST
/feedback (clicks and conversions on the items they showed), with click probabilities that differ per arm, so
the report has real intervals. Then, with the report fetched independently over HTTP:

- the tab lists every experiment of GET /experiments; the arms table shows the report's numbers (units,
  exposures, events per type, CTR and its Wilson interval, lift with its interval and p-value), formatted as
  the page documents them, "–" where a value is null and never NaN;
- the CTR forest plot draws one interval per arm and the lift plot one per non-baseline arm, each an affine
  image of the JSON (lo < value < hi in x coordinates, the arms in the order of their values, the 0 line where
  0 is), intervals that cross 0 drawn apart from the significant ones;
- an experiment whose units were picked off its split shows the sample-ratio mismatch flagged;
- the interleave experiment shows wins, ties, credited clicks, the sign test and a bar proportional to them;
- the refresh button and the auto-refresh (off by default) show traffic that arrives after the page opened;
- a server without EXPERIMENTS_FILE says so and how to set it;
- with ADMIN_TOKEN set, a report without the token is a clear 401 message and a token field, a wrong token
  is refused, the right one shows the report; the token never appears in a URL.

No console errors, uncaught exceptions or failed requests, except the browser's own log line of each expected
401. A screenshot of the A/B report goes to the test's tmp folder (SCREENSHOT_DIR overrides it). Skips only when
no Chromium can be found or launched. Marked slow: a browser end to end.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page
from support.artifacts import ApiArtifact
from support.servers import ApiServer, start_api_server, wait_for

from app.experiments.assignment import bucket

pytestmark = pytest.mark.slow
TOKEN = "page-test-token-7f3a"
N_ITEMS = 300  # the session artifact's catalogue (support.artifacts.API_BUILD)

EXPERIMENTS = """
[[experiment]]
name = "item-metric"
endpoint = "similar-items"
salt = "page-1"
mode = "ab"
arms = [
  { name = "control",   model = "denoising-symmetric", metric = "cosine",    weight = 50 },
  { name = "projected", model = "denoising-symmetric", metric = "projected", weight = 25 },
  { name = "dot",       model = "denoising-symmetric", metric = "dot",       weight = 25 },
]

[[experiment]]
name = "skewed"
endpoint = "similar-items"
salt = "page-2"
mode = "ab"
arms = [
  { name = "first",  model = "denoising-symmetric", metric = "cosine",    weight = 1 },
  { name = "second", model = "denoising-symmetric", metric = "projected", weight = 1 },
]

[[experiment]]
name = "item-interleave"
endpoint = "similar-items"
salt = "page-3"
mode = "interleave"
arms = [
  { name = "cosine",    model = "denoising-symmetric", metric = "cosine",    weight = 1 },
  { name = "projected", model = "denoising-symmetric", metric = "projected", weight = 1 },
]

[[experiment]]
name = "quiet"
endpoint = "recommend"
salt = "page-4"
mode = "ab"
arms = [
  { name = "dot",       model = "weight-decay", metric = "dot",       weight = 1 },
  { name = "projected", model = "weight-decay", metric = "projected", weight = 1 },
]

[[experiment]]
name = "live"
endpoint = "similar-items"
salt = "page-5"
mode = "ab"
arms = [
  { name = "cosine",    model = "denoising-symmetric", metric = "cosine",    weight = 1 },
  { name = "projected", model = "denoising-symmetric", metric = "projected", weight = 1 },
]
"""


# --------------------------------------------------------------------------- browser


# --------------------------------------------------------------------------- servers and traffic


class Traffic:
    """Exposures and feedback sent to a server over HTTP, counted per experiment as the report should count them."""

    def __init__(self, client: httpx.Client, seed: int) -> None:
        self.client = client
        self.rng = np.random.default_rng(seed)
        self.exposures: dict[str, int] = {}
        self.events: dict[str, dict[str, int]] = {}

    def expose(self, experiment: str, unit: str) -> dict[str, Any]:
        item = f"i{int(self.rng.integers(N_ITEMS))}"
        params: dict[str, str | int] = {"item_id": item, "experiment": experiment, "unit_id": unit, "k": 6}
        r = self.client.get("/similar-items", params=params)
        assert r.status_code == 200, r.text
        self.exposures[experiment] = self.exposures.get(experiment, 0) + 1
        return r.json()

    def feedback(self, experiment: str, body: dict[str, Any], position: int, event: str = "click") -> None:
        exposure = body["experiment"]["exposure_id"]
        item = body["neighbors"][position]["item_id"]
        r = self.client.post("/feedback", json={"exposure_id": exposure, "item_id": item, "event": event})
        assert r.status_code == 202, r.text
        counts = self.events.setdefault(experiment, {})
        counts[event] = counts.get(event, 0) + 1

    def ab(self, experiment: str, units: list[str], ctr: dict[str, float], visits: tuple[int, int] = (1, 4)) -> None:
        """Each unit `visits` exposures; each of the first 3 positions clicked with a third of its arm's CTR; a conversion
        on 8% of the exposures."""
        for unit in units:
            for _ in range(int(self.rng.integers(visits[0], visits[1] + 1))):
                body = self.expose(experiment, unit)
                p = ctr[body["experiment"]["arm"]]
                for position in range(3):
                    if self.rng.random() < p / 3:
                        self.feedback(experiment, body, position)
                if self.rng.random() < 0.08:
                    self.feedback(experiment, body, 0, "conversion")

    def interleave(self, experiment: str, units: list[str], exposures: int, ctr: dict[str, float]) -> None:
        """Team-draft exposures; each position clicked with the probability of the team that placed it."""
        for x in range(exposures):
            body = self.expose(experiment, units[x % len(units)])
            for position, team in enumerate(body["experiment"]["teams"]):
                if self.rng.random() < ctr[team]:
                    self.feedback(experiment, body, position)

    def wait_reported(self, experiment: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """The report once it counts every exposure and event sent (they reach the database off the request path)."""
        want_events = self.events.get(experiment, {})

        def complete() -> dict[str, Any] | None:
            r = self.client.get(f"/experiments/{experiment}/report", headers=headers or {})
            assert r.status_code == 200, r.text
            report = r.json()
            arms = report["arms"]
            if report["mode"] == "interleave":
                exposures = arms[0]["exposures"]
                clicks = sum(report["interleaving"]["clicks"].values())
                events = {"click": clicks} if clicks else {}
            else:
                exposures = sum(a["exposures"] for a in arms)
                events = {k: sum(a["events"].get(k, 0) for a in arms) for k in arms[0]["events"]}
                events = {k: v for k, v in events.items() if v}
            return report if exposures == self.exposures.get(experiment, 0) and events == want_events else None

        return wait_for(complete, 20.0, f"the report of {experiment} to count what was sent")


def units_of_arm(salt: str, first: bool, n: int) -> list[str]:
    """n unit ids that the assignment puts in the first (or second) of two equal arms: bucket < 5000."""
    out: list[str] = []
    for i in range(100_000):
        unit = f"s{i}"
        if (bucket(salt, unit) < 5000) == first:
            out.append(unit)
            if len(out) == n:
                return out
    raise AssertionError("not enough units")


@pytest.fixture(scope="module")
def experiments_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("experiments-page")
    (root / "experiments.toml").write_text(EXPERIMENTS)
    return root


@pytest.fixture(scope="module")
def served(api_artifact: ApiArtifact, experiments_root: Path) -> Iterator[tuple[ApiServer, Traffic]]:
    """`python -m app` with the experiments file, and the traffic sent to it (every experiment but quiet and live)."""
    env = {"EXPERIMENTS_FILE": str(experiments_root / "experiments.toml"), "EVENTS_DIR": str(experiments_root / "events")}
    with start_api_server(api_artifact.root, experiments_root, **env) as server:
        traffic = Traffic(server.client, seed=11)
        traffic.ab("item-metric", [f"u{i}" for i in range(150)], {"control": 0.12, "projected": 0.3, "dot": 0.1})
        # 40 units of the first arm, 8 of the second: far off the 50/50 split the weights ask for
        skewed = units_of_arm("page-2", True, 40) + units_of_arm("page-2", False, 8)
        traffic.ab("skewed", skewed, {"first": 0.2, "second": 0.2}, visits=(1, 1))
        traffic.interleave("item-interleave", [f"v{i}" for i in range(20)], 50, {"cosine": 0.1, "projected": 0.3})
        for name in ("item-metric", "skewed", "item-interleave"):
            traffic.wait_reported(name)
        yield server, traffic


@pytest.fixture(scope="module")
def token_server(api_artifact: ApiArtifact, experiments_root: Path, served: tuple[ApiServer, Traffic]) -> Iterator[ApiServer]:
    """The same experiments and events database, on a server with ADMIN_TOKEN set (its own EVENTS_DIR)."""
    env = {
        "EXPERIMENTS_FILE": str(experiments_root / "experiments.toml"),
        "EVENTS_DB": f"sqlite://{(experiments_root / 'events' / 'events.db').resolve()}",
        "EVENTS_DIR": str(experiments_root / "events-token"),
        "ADMIN_TOKEN": TOKEN,
    }
    log_dir = experiments_root / "token-logs"
    log_dir.mkdir()
    with start_api_server(api_artifact.root, log_dir, **env) as server:
        yield server


@pytest.fixture(scope="module")
def plain_server(api_artifact: ApiArtifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """`python -m app` without EXPERIMENTS_FILE."""
    with start_api_server(api_artifact.root, tmp_path_factory.mktemp("no-experiments")) as server:
        yield server


# --------------------------------------------------------------------------- what the page shows


def fixed(v: float, digits: int) -> str:
    """JavaScript's v.toFixed(digits): the exact double rounded, ties away from zero."""
    return str(Decimal(v).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def count(v: int | None) -> str:
    return "–" if v is None else f"{v:,}"


def percent(v: float | None) -> str:
    return "–" if v is None else f"{fixed(v * 100, 2)}%"


def signed_percent(v: float | None) -> str:
    return "–" if v is None else f"{'+' if v >= 0 else ''}{fixed(v * 100, 2)}%"


def p_value(p: float | None) -> str:
    return "–" if p is None else "< 0.0001" if p < 0.0001 else fixed(p, 4)


def p_is(p: float | None) -> str:
    """A p-value in a sentence: "p = 0.0123", "p < 0.0001", "p = –"."""
    return "p < 0.0001" if p is not None and p < 0.0001 else f"p = {p_value(p)}"


def interval(ci: list[float | None], f: Any) -> str:
    return "–" if all(x is None for x in ci) else f"[{f(ci[0])}, {f(ci[1])}]"


def expected_row(arm: dict[str, Any], baseline: bool) -> dict[str, str]:
    """The cells (by data-field) of one arm's row, from the report's JSON."""
    row = {
        "name": arm["name"],
        "model": arm["model"],
        "metric": arm["metric"],
        "share": percent(arm["share"]),
        "units": count(arm["units"]),
        "exposures": count(arm["exposures"]),
        **{f"events.{k}": count(v) for k, v in arm["events"].items()},
        "ctr": percent(arm["ctr"]["value"]),
        "ctr.ci95": interval(arm["ctr"]["ci95"], percent),
    }
    lift = arm["lift"]
    if baseline:
        row |= {"lift": "baseline", "lift.ci95": "–", "lift.p_value": "–"}
    else:
        row |= {
            "lift": signed_percent(lift["value"]),
            "lift.ci95": interval(lift["ci95"], signed_percent),
            "lift.p_value": p_value(lift["p_value"]),
        }
    return row


def open_report(pg: Page, server: ApiServer, name: str) -> None:
    pg.goto(f"{server.base_url}/#experiments/{name}")
    wait_report(pg, name)


def wait_report(pg: Page, name: str) -> None:
    pg.wait_for_function(
        "n => { const r = document.getElementById('report'); return r.dataset.experiment === n && "
        "!document.getElementById('report-body').classList.contains('hidden'); }",
        arg=name,
    )


def table_rows(pg: Page) -> list[dict[str, str]]:
    return pg.eval_on_selector_all(
        "#arms-table tr[data-arm]",
        "rows => rows.map(r => Object.fromEntries([...r.querySelectorAll('td[data-field]')]"
        ".map(td => [td.dataset.field, td.textContent])))",
    )


def drawn(pg: Page, plot: str) -> list[dict[str, Any]]:
    """Every interval of a forest plot: its arm, classes, the x of its dot and of its two ends."""
    return pg.eval_on_selector_all(
        f"#{plot} g.interval",
        "gs => gs.map(g => ({arm: g.dataset.arm, cls: g.getAttribute('class'),"
        " x: Number(g.querySelector('circle.est').getAttribute('cx')),"
        " lo: Number(g.querySelector('line.ci').getAttribute('x1')),"
        " hi: Number(g.querySelector('line.ci').getAttribute('x2'))}))",
    )


def assert_affine(pairs: list[tuple[float, float]]) -> None:
    """Positions x = a + b * value with b > 0 for every (value, x): one linear axis, increasing to the right."""
    (v0, x0), (v1, x1) = min(pairs), max(pairs)
    assert v1 > v0 and x1 > x0, pairs
    slope = (x1 - x0) / (v1 - v0)
    for v, x in pairs:
        assert x == pytest.approx(x0 + slope * (v - v0), abs=0.01), (v, x, pairs)


def sign(v: float) -> int:
    return (v > 0) - (v < 0)


def assert_ordered_like(drawn_interval: dict[str, Any], value: float, ci: list[float]) -> None:
    """lo, value, hi in x coordinates ordered exactly as in the JSON (equal where they are equal)."""
    points = zip((drawn_interval["lo"], drawn_interval["x"], drawn_interval["hi"]), (ci[0], value, ci[1]), strict=True)
    for (xa, va), (xb, vb) in itertools.combinations(points, 2):
        assert sign(round(xb - xa, 6)) == sign(vb - va), (drawn_interval, value, ci)


def bad_text(pg: Page, selector: str) -> list[str]:
    """Texts and attribute values in and under `selector` that show NaN, Infinity, undefined or null."""
    return pg.eval_on_selector_all(
        f"{selector}, {selector} *",
        "ns => ns.flatMap(n => [n.childElementCount ? '' : n.textContent, ...[...n.attributes].map(a => a.value)])"
        ".filter(t => /NaN|Infinity|undefined|null/.test(t))",
    )


def report_of(server: ApiServer, name: str, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = server.client.get(f"/experiments/{name}/report", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def assert_table_is(pg: Page, report: dict[str, Any]) -> None:
    rows = table_rows(pg)
    assert rows == [expected_row(a, j == 0) for j, a in enumerate(report["arms"])]


# --------------------------------------------------------------------------- tests


def test_the_ab_report_shows_the_json_and_draws_its_intervals(served, page, shots):
    server, _ = served
    pg, errors = page
    report = report_of(server, "item-metric")
    listing = server.client.get("/experiments").json()
    open_report(pg, server, "item-metric")

    # the list: every experiment of GET /experiments, its endpoint, mode and arms; the selector offers each
    listed = pg.eval_on_selector_all(
        "#experiments-table tr[data-experiment]", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert [r[0] for r in listed] == [e["name"] for e in listing["experiments"]]
    for row, e in zip(listed, listing["experiments"], strict=True):
        assert row[1] == f"/{e['endpoint']}" and row[2].startswith("A/B" if e["mode"] == "ab" else "interleave")
        assert all(a["name"] in row[3] and a["metric"] in row[3] for a in e["arms"])
        assert row[4].startswith("served")
    options = pg.eval_on_selector_all("#experiment-select option", "os => os.map(o => o.value)")
    assert options == [e["name"] for e in listing["experiments"]]
    assert pg.eval_on_selector("#experiment-select", "s => s.value") == "item-metric"

    # the table: the report's numbers, one row per arm; the events columns are the report's event names
    assert list(report["arms"][0]["events"]) == ["click", "conversion"]
    assert_table_is(pg, report)
    headers = pg.eval_on_selector_all("#arms-table th", "ths => ths.map(t => t.textContent)")
    assert {"clicks", "conversions", "CTR", "CTR 95% CI", "lift", "lift 95% CI", "p-value"} <= set(headers)

    # the CTR plot: one interval per arm, an affine image of the JSON
    ctr = drawn(pg, "ctr-plot")
    assert [d["arm"] for d in ctr] == [a["name"] for a in report["arms"]]
    pairs = []
    for d, a in zip(ctr, report["arms"], strict=True):
        value, ci = a["ctr"]["value"], a["ctr"]["ci95"]
        assert ci[0] < value < ci[1]  # the simulation keeps clicks per exposure well inside (0, 1)
        assert_ordered_like(d, value, ci)
        pairs += [(value, d["x"]), (ci[0], d["lo"]), (ci[1], d["hi"])]
    assert_affine(pairs)

    # the lift plot: the non-baseline arms, the 0 line where 0 is, crossing intervals drawn apart
    lift = drawn(pg, "lift-plot")
    assert [d["arm"] for d in lift] == [a["name"] for a in report["arms"][1:]]
    zero = pg.eval_on_selector("#lift-plot line.zero", "l => Number(l.getAttribute('x1'))")
    pairs = [(0.0, zero)]
    for d, a in zip(lift, report["arms"][1:], strict=True):
        value, ci = a["lift"]["value"], a["lift"]["ci95"]
        assert_ordered_like(d, value, ci)
        crosses = ci[0] <= 0 <= ci[1]
        classes = d["cls"].split()
        assert ("crosses" in classes) is crosses and ("significant" in classes) is not crosses, (d, ci)
        assert (d["lo"] <= zero <= d["hi"]) is crosses
        pairs += [(value, d["x"]), (ci[0], d["lo"]), (ci[1], d["hi"])]
    assert_affine(pairs)
    # the simulated CTRs (0.30 vs 0.12 on many exposures) make the projected arm's lift significant, upwards
    projected = next(d for d in lift if d["arm"] == "projected")
    assert report["arms"][1]["lift"]["ci95"][0] > 0 and "up" in projected["cls"].split()
    looks = pg.eval_on_selector_all(
        "#lift-plot g.interval line.ci",
        "ls => ls.map(l => getComputedStyle(l).strokeDasharray)",
    )
    by_arm = dict(zip([d["arm"] for d in lift], looks, strict=True))
    for d in lift:
        dashed = by_arm[d["arm"]] not in ("none", "")
        assert dashed is ("crosses" in d["cls"].split()), by_arm

    # SRM: the real assignment follows the weights, so not flagged; the line shows the report's chi2 and p
    assert report["srm"]["flag"] is False
    srm = pg.inner_text("#srm")
    assert pg.get_attribute("#srm", "data-flag") == "false" and "not flagged" in srm
    assert f"χ² = {fixed(report['srm']['chi2'], 2)}" in srm and p_is(report["srm"]["p_value"]) in srm
    # the methods, and no interleaving block for an A/B test
    assert pg.eval_on_selector_all("#methods dt", "ds => ds.map(d => d.textContent)") == list(report["methods"])
    assert pg.is_hidden("#interleaving")
    # accessible: the plots are labelled images whose label carries the numbers
    label = pg.get_attribute("#ctr-plot svg", "aria-label") or ""
    assert pg.get_attribute("#ctr-plot svg", "role") == "img"
    assert all(f"{a['name']}: {percent(a['ctr']['value'])}" in label for a in report["arms"])
    assert bad_text(pg, "#view-experiments") == []
    pg.screenshot(path=str(shots / "experiments-tab.png"), full_page=True)
    print(f"screenshot: {shots / 'experiments-tab.png'}")
    assert errors == []


def test_a_split_off_the_weights_is_flagged(served, page):
    server, _ = served
    pg, errors = page
    report = report_of(server, "skewed")
    assert report["srm"]["flag"] is True and [a["units"] for a in report["arms"]] == [40, 8]
    open_report(pg, server, "item-metric")
    pg.select_option("#experiment-select", "skewed")  # the selector opens the other report
    wait_report(pg, "skewed")
    assert pg.evaluate("() => location.hash") == "#experiments/skewed"
    assert_table_is(pg, report)
    assert pg.get_attribute("#srm", "data-flag") == "true"
    assert "flagged" in (pg.get_attribute("#srm", "class") or "").split()
    text = pg.inner_text("#srm")
    assert "Sample-ratio mismatch" in text and "40 : 8" in text and p_is(report["srm"]["p_value"]) in text
    colour = pg.eval_on_selector("#srm", "p => getComputedStyle(p).backgroundColor")
    plain = pg.eval_on_selector("#experiments-table", "t => getComputedStyle(t).backgroundColor")
    assert colour != plain
    pg.reload()  # the selection is in the URL
    wait_report(pg, "skewed")
    assert errors == []


def test_the_interleave_experiment_shows_its_block(served, page):
    server, _ = served
    pg, errors = page
    report = report_of(server, "item-interleave")
    inter = report["interleaving"]
    open_report(pg, server, "item-interleave")
    assert pg.is_visible("#interleaving")
    assert_table_is(pg, report)  # the per-arm entries, whatever they carry in this mode
    teams = pg.eval_on_selector_all(
        "#interleave-table tr[data-team]",
        "rows => rows.map(r => [r.dataset.team, ...[...r.querySelectorAll('td[data-field]')].map(td => td.textContent)])",
    )
    names = [a["name"] for a in report["arms"]]
    assert teams == [
        *([n, count(inter["wins"][n]), count(inter["clicks"][n])] for n in names),
        ["ties", count(inter["ties"])],
    ]
    test = inter["sign_test"]
    assert (test["wins"], test["losses"]) == (inter["wins"][names[0]], inter["wins"][names[1]])
    text = pg.inner_text("#sign-test")
    assert f"{count(test['wins'])} wins, {count(test['losses'])} losses, {count(test['ties'])} ties" in text
    assert p_is(test["p_value"]) in text and f"{count(inter['exposures'])} interleaved exposures" in text
    # the bar: wins of the first team, ties, wins of the second, widths proportional to the counts
    segments = pg.eval_on_selector_all(
        "#wins-plot rect.seg",
        "rs => rs.map(r => [r.dataset.part, r.dataset.arm, Number(r.getAttribute('width')), Number(r.getAttribute('x'))])",
    )
    assert [(s[0], s[1]) for s in segments] == [("wins", names[0]), ("ties", ""), ("wins", names[1])]
    counts = [inter["wins"][names[0]], inter["ties"], inter["wins"][names[1]]]
    total_width = sum(s[2] for s in segments)
    for s, n in zip(segments, counts, strict=True):
        assert s[2] == pytest.approx(total_width * n / sum(counts), abs=0.01)
    assert all(a[3] + a[2] == pytest.approx(b[3]) for a, b in itertools.pairwise(segments))
    # the lift of the second team: drawn like the JSON, and the SRM of the draft's coin
    lift = report["arms"][1]["lift"]
    (d,) = drawn(pg, "lift-plot")
    assert_ordered_like(d, lift["value"], lift["ci95"])
    assert pg.get_attribute("#srm", "data-flag") == str(report["srm"]["flag"]).lower()
    assert "first pick" in pg.inner_text("#srm")
    assert bad_text(pg, "#view-experiments") == []
    assert errors == []


def test_no_exposures_yet_shows_dashes_and_no_intervals(served, page):
    server, _ = served
    pg, errors = page
    report = report_of(server, "quiet")
    assert all(a["ctr"]["value"] is None for a in report["arms"])
    open_report(pg, server, "quiet")
    assert_table_is(pg, report)
    rows = table_rows(pg)
    assert all(r["ctr"] == "–" and r["ctr.ci95"] == "–" and r["units"] == "0" for r in rows)
    assert drawn(pg, "ctr-plot") == [] and drawn(pg, "lift-plot") == []
    assert pg.locator("#ctr-plot text.none", has_text="no exposures yet").count() == len(report["arms"])
    assert "no units yet" in pg.inner_text("#srm")
    assert bad_text(pg, "#view-experiments") == []
    assert errors == []


def test_refresh_and_auto_refresh_show_new_traffic(served, page):
    server, traffic = served
    pg, errors = page
    open_report(pg, server, "live")
    assert pg.is_checked("#experiments-auto") is False  # off by default
    assert table_rows(pg) == [expected_row(a, j == 0) for j, a in enumerate(report_of(server, "live")["arms"])]

    traffic.ab("live", [f"w{i}" for i in range(12)], {"cosine": 0.3, "projected": 0.3})
    report = traffic.wait_reported("live")
    pg.click("#experiments-refresh")
    want = [expected_row(a, j == 0) for j, a in enumerate(report["arms"])]
    pg.wait_for_function(
        "w => JSON.stringify([...document.querySelectorAll('#arms-table tr[data-arm]')].map(r => r.cells[4].textContent)) "
        "=== JSON.stringify(w)",
        arg=[r["units"] for r in want],
    )
    assert table_rows(pg) == want

    pg.select_option("#experiments-every", "5")
    pg.check("#experiments-auto")
    traffic.ab("live", [f"x{i}" for i in range(12)], {"cosine": 0.3, "projected": 0.3})
    report = traffic.wait_reported("live")
    want = [expected_row(a, j == 0) for j, a in enumerate(report["arms"])]
    pg.wait_for_function(  # no click: the timer refreshes the report
        "w => JSON.stringify([...document.querySelectorAll('#arms-table tr[data-arm]')].map(r => r.cells[5].textContent)) "
        "=== JSON.stringify(w)",
        arg=[r["exposures"] for r in want],
        timeout=15_000,
    )
    assert table_rows(pg) == want
    assert len(drawn(pg, "ctr-plot")) == 2
    assert errors == []


def test_a_server_without_experiments_says_how_to_set_them(plain_server, page):
    pg, errors = page
    assert plain_server.client.get("/experiments").json()["configured"] is False
    requests: list[str] = []
    pg.on("request", lambda r: requests.append(r.url))
    pg.goto(plain_server.base_url + "/#experiments")
    pg.wait_for_selector("#no-experiments")
    text = pg.inner_text("#experiments-status")
    assert "runs no experiments" in text and "EXPERIMENTS_FILE" in text
    assert pg.is_hidden("#experiments")
    assert not any("/report" in u for u in requests)  # nothing asked that can only be a 404
    assert errors == []


def test_the_report_token_flow(token_server, page):
    pg, errors = page
    assert token_server.client.get("/experiments/item-metric/report").status_code == 401
    report = report_of(token_server, "item-metric", TOKEN)
    sent: list[tuple[str, str | None]] = []
    pg.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))))
    pg.goto(token_server.base_url + "/#experiments/item-metric")
    pg.wait_for_function("() => document.getElementById('report-status').textContent.includes('401')")
    assert "admin token" in pg.inner_text("#report-status") and pg.is_visible("#token-card")
    assert pg.is_hidden("#report-body")

    pg.fill("#token", "not-the-token")
    pg.click("#token-use")
    pg.wait_for_function("() => document.getElementById('report-status').textContent.includes('refused')")
    assert pg.is_hidden("#report-body")

    pg.fill("#token", TOKEN)
    pg.press("#token", "Enter")
    wait_report(pg, "item-metric")
    assert_table_is(pg, report)
    assert pg.input_value("#token") == ""  # not left in the field
    pg.reload()  # kept for this tab (sessionStorage): no second prompt
    wait_report(pg, "item-metric")
    assert pg.evaluate("() => localStorage.length") == 0

    reports = [auth for url, auth in sent if url.endswith("/experiments/item-metric/report")]
    assert reports[0] is None and f"Bearer {TOKEN}" in reports and "Bearer not-the-token" in reports
    assert not any(TOKEN in url for url, _ in sent) and TOKEN not in pg.url
    # the browser logs each 401 response itself; nothing else may be logged
    expected = [e for e in errors if "status of 401" in e and "/experiments/item-metric/report" in e]
    assert len(expected) == 2 and [e for e in errors if e not in expected] == []
