"""Online-experiment overhead: /similar-items and /recommend under an A/B experiment next to the same
endpoints without one, on one server in the same run, under wrk.

    .venv/bin/python bench/experiment_overhead.py           # 50,000 items x 100,000 users, k = 128 (the serving benchmark's)
    .venv/bin/python bench/experiment_overhead.py --quick   # 5,000 items x 10,000 users, k = 32, short rounds: a smoke test

1. Catalogue: bench/serve_vs_constant.py's `--build demo` (its generator and build, HNSW and exact top-100
   neighbour lists), in its cache folder, so one build serves both benchmarks.
2. One server: `python -m app` (the app's default workers, one per CPU; production defaults) with an
   experiments file of two A/B experiments, 50/50, on denoising-symmetric:
     item-metric   /similar-items   cosine | projected
     rec-metric    /recommend       dot    | projected
   and its events in a SQLite file (EVENTS_DB, EVENTS_DIR) in a temporary folder.
3. Load: wrk, 32 connections, k = 10 everywhere; four request mixes, each a wrk script of 20,000 paths
   picked uniformly at random:
     plain       /similar-items?item_id=<random>&model=denoising-symmetric&metric=<cosine | projected, 50/50>
     experiment  /similar-items?item_id=<random>&experiment=item-metric&unit_id=<20,000 distinct units>
   and the same for /recommend (user_id; dot | projected). The plain metric is drawn with the arms'
   weights, so both mixes ask for the same work. After a warm-up of each mix, every round runs plain and
   experiment back to back per endpoint, their order alternating between rounds; the table shows the
   median round of each mix (by requests/s, with that round's latencies).
4. Exposures: after the rounds, the events database must hold exactly one exposure per experiment
   response the server answered (its /metrics request counter, read before and after each experiment
   run); wrk's 2xx count is at most that, short by the responses in flight when each run ended (at most
   one per connection per run). simserve_experiment_events_total: dropped must be 0.
5. Where the time goes (logging_cost): the experiment path's own work measured in this process with the app's
   ExperimentsService and SQLite store at one worker's rate in the run: the request's part (assignment, exposure
   row, queue) and the writer thread's, each on its own CPU clock, next to the server CPU per request of
   experiment minus plain. The server log's warning and error lines of the event log are kept in the results.
Targets: experiment requests/s >= 90% of plain, experiment p99 <= 1.2 x plain p99.
Results: bench/results/experiment_overhead[.quick].json. wrk: `apt-get install -y wrk` (Debian).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `bench`, `app` and `models` importable
    sys.path.insert(0, str(ROOT))

from app.experiments.event_log import COUNTS  # noqa: E402
from bench.harness import (  # noqa: E402
    RESULTS,
    Server,
    get,
    load_average,
    machine,
    metric_samples,
    metric_sum,
    require_wrk,
    results_path,
    run_wrk,
    server_env,
    start_app,
    write_results,
    write_wrk_script,
)
from bench.serve_vs_constant import FULL, QUICK, _median_round, ensure_catalogue  # noqa: E402
from models.artifact.manifest import ITEMS, USERS, VERSIONS_DIR  # noqa: E402

MODEL = "denoising-symmetric"
K = 10
PATHS_PER_MIX = 20_000
ENDPOINTS = ("similar-items", "recommend")
QUERY_PARAM = {"similar-items": "item_id", "recommend": "user_id"}
EXPERIMENT = {"similar-items": "item-metric", "recommend": "rec-metric"}
ARMS = {"similar-items": ("cosine", "projected"), "recommend": ("dot", "projected")}  # 50/50 each
VARIANTS = ("plain", "experiment")
TARGET_RPS_RATIO, TARGET_P99_RATIO = 0.90, 1.20
SETTLE_S = 0.5  # after a wrk run: the responses in flight when it stopped are answered (and counted) by then


# --------------------------------------------------------------------------- the experiments and the requests


def experiments_toml() -> str:
    """The experiments file: one A/B experiment per endpoint of ENDPOINTS, two arms of equal weight (ARMS)."""
    blocks = []
    for endpoint in ENDPOINTS:
        arms = ",\n".join(
            f'  {{ name = "{metric}", model = "{MODEL}", metric = "{metric}", weight = 50 }}' for metric in ARMS[endpoint]
        )
        blocks.append(
            f'[[experiment]]\nname = "{EXPERIMENT[endpoint]}"\nendpoint = "{endpoint}"\nsalt = "bench"\nmode = "ab"\n'
            f"arms = [\n{arms},\n]\n"
        )
    return "\n".join(blocks)


def request_paths(endpoint: str, variant: str, ids: list[str], n: int, seed: int) -> list[str]:
    """n URL paths of one mix: a uniformly random query id each; plain paths name a metric drawn 50/50 from
    the arms' metrics, experiment paths a distinct unit id each (units unit0, unit1, ... of this endpoint)."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(ids), size=n)
    head = f"/{endpoint}?{QUERY_PARAM[endpoint]}="
    if variant == "plain":
        metrics = rng.choice(len(ARMS[endpoint]), size=n)
        return [
            f"{head}{urllib.parse.quote(ids[i], safe='')}&model={MODEL}&metric={ARMS[endpoint][m]}&k={K}"
            for i, m in zip(picked.tolist(), metrics.tolist(), strict=True)
        ]
    name = EXPERIMENT[endpoint]
    return [
        f"{head}{urllib.parse.quote(ids[i], safe='')}&experiment={name}&unit_id=unit{j}&k={K}"
        for j, i in enumerate(picked.tolist())
    ]


def external_ids(version_dir: Path, file: str) -> list[str]:
    """The external ids of users.json or items.json, in row order (entries are ids or {"id": ...} objects)."""
    return [str(e["id"]) if isinstance(e, dict) else str(e) for e in json.loads((version_dir / file).read_text())]


def check_answers(server: Server, paths: dict[tuple[str, str], list[str]]) -> int:
    """One request of each mix must be a 200 with k neighbours (and, under an experiment, an arm); the number of
    experiment requests made (each is an exposure)."""
    exposures = 0
    for (endpoint, variant), mix in paths.items():
        status, body = get(server.base + mix[0], timeout=10)
        assert status == 200, (mix[0], status, body[:300])
        answer = json.loads(body)
        assert len(answer["neighbors"]) == K, (mix[0], body[:300])
        if variant == "experiment":
            assert answer["experiment"]["arm"] in ARMS[endpoint], (mix[0], body[:300])
            exposures += 1
    return exposures


# --------------------------------------------------------------------------- load


def served_2xx(server: Server, endpoint: str) -> float:
    """Requests of the endpoint the server answered with 200, all workers, from /metrics."""
    return metric_sum(server, "simserve_requests_total", endpoint=f"/{endpoint}", status="200")


def measure(server: Server, lua: Path, seconds: float, args: argparse.Namespace, variant: str, endpoint: str) -> dict[str, Any]:
    """One wrk run, then a pause for the requests in flight; an experiment run also gets `served_2xx`, the
    server's own count of its 200 answers (from /metrics, before and after)."""
    before = served_2xx(server, endpoint) if variant == "experiment" else 0.0
    res = run_wrk(server, lua, seconds, args.connections, args.threads)
    time.sleep(SETTLE_S)
    if variant == "experiment":
        res["served_2xx"] = served_2xx(server, endpoint) - before
    res["wrk_2xx"] = res["requests"] - res["status"]
    return res


def run_rounds(
    server: Server, scripts: dict[tuple[str, str], Path], seconds: float, rounds: int, args: argparse.Namespace
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[str, list[dict[str, Any]]]]:
    """(rounds[endpoint][variant], warm-up runs[endpoint]): a warm-up of each mix, then `rounds` rounds; in each
    round each endpoint's plain and experiment runs are back to back, their order alternating between rounds."""
    warm: dict[str, list[dict[str, Any]]] = {e: [] for e in ENDPOINTS}
    for endpoint, variant in scripts:
        res = measure(server, scripts[endpoint, variant], min(5.0, seconds), args, variant, endpoint)
        if variant == "experiment":
            warm[endpoint].append(res)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {e: {v: [] for v in VARIANTS} for e in ENDPOINTS}
    for r in range(rounds):
        for endpoint in ENDPOINTS:
            for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
                res = measure(server, scripts[endpoint, variant], seconds, args, variant, endpoint)
                results[endpoint][variant].append(res)
                print(
                    f"  round {r + 1} /{endpoint:14s} {variant:10s} {res['rps']:8.0f} req/s  p50 {res['p50_us'] / 1e3:6.2f} ms  "
                    f"p99 {res['p99_us'] / 1e3:6.2f} ms  errors {res['errors']}  "
                    f"server CPU {res['server_cpu_us_per_request']:.0f} us/request",
                    flush=True,
                )
    return results, warm


# --------------------------------------------------------------------------- exposures


def events_counters(server: Server) -> dict[str, float]:
    """simserve_experiment_events_total by outcome (queued, written, spilled, replayed, dropped; 0 when an outcome
    never happened, as the app only exports outcomes it has counted), all workers."""
    counts = dict.fromkeys(COUNTS, 0.0)
    for labels, v in metric_samples(server, "simserve_experiment_events_total"):
        counts[labels["outcome"]] = counts.get(labels["outcome"], 0.0) + v
    return counts


def exposures_by_arm(db: Path) -> dict[str, dict[str, int]]:
    """{experiment: {arm: exposures}} read from the SQLite events database (read-only)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT experiment, arm, COUNT(*) FROM exposures GROUP BY experiment, arm").fetchall()
    out: dict[str, dict[str, int]] = {}
    for experiment, arm, n in rows:
        out.setdefault(experiment, {})[arm] = n
    return out


def wait_written(server: Server, db_url: str, expected: dict[str, int], timeout: float = 60.0) -> dict[str, int]:
    """Exposures per experiment in the events database once every queued record is written and the counts hold
    still (or timeout): the writer threads flush every 0.1 s."""
    from app.experiments.events import open_store

    store = open_store(db_url)
    try:
        deadline = time.monotonic() + timeout
        last: dict[str, int] = {}
        while time.monotonic() < deadline:
            counts = {name: store.exposure_count(name) for name in expected}
            events = events_counters(server)
            done = events.get("written", 0) >= events.get("queued", 0) and events.get("spilled", 0) <= events.get("replayed", 0)
            if done and counts == last and all(counts[n] >= expected[n] for n in expected):
                return counts
            last = counts
            time.sleep(1.0)
        return last
    finally:
        store.close()


def exposure_check(
    results: dict[str, dict[str, list[dict[str, Any]]]],
    warm: dict[str, list[dict[str, Any]]],
    stored: dict[str, int],
    probes: dict[str, int],
    connections: int,
) -> dict[str, dict[str, Any]]:
    """Per experiment: exposures stored, the server's 200 answers and wrk's 2xx count over every experiment run
    (warm-up included) plus the probe requests; `exact` when stored == server answers and wrk's count is short by
    no more than one response per connection per run."""
    out = {}
    for endpoint in ENDPOINTS:
        name = EXPERIMENT[endpoint]
        runs = warm[endpoint] + results[endpoint]["experiment"]
        server = round(sum(r["served_2xx"] for r in runs)) + probes[endpoint]
        wrk = sum(r["wrk_2xx"] for r in runs) + probes[endpoint]
        out[name] = {
            "endpoint": endpoint,
            "runs": len(runs),
            "stored": stored[name],
            "server_2xx": server,
            "wrk_2xx": wrk,
            "stored_minus_wrk": stored[name] - wrk,
            "exact": stored[name] == server and 0 <= stored[name] - wrk <= connections * len(runs),
        }
    return out


def logging_cost(folder: Path, rate: float, seconds: float, n: int = 20_000) -> dict[str, float]:
    """Where an experiment request's extra CPU goes, outside the server: the app's ExperimentsService on a SQLite
    file in `folder`, in this process, with the experiments of experiments_toml(). CPU us per exposure, each thread
    on its own clock (time.thread_time for this one, the writer thread's CPU clock for the writer):
      assign_us          the assignment alone (n units);
      request_path_us    assignment + expose (the exposure id and row, the queue append): what a
                         request does;
      writer_us          the writer thread's work for those exposures: the store rows and SQLite's inserts;
    all at `rate` exposures/s (one worker's rate in the run) for `seconds`, in bursts every 10 ms, the writer left
    to its own schedule; rows_per_write is its mean batch (rows per store transaction)."""
    from app.experiments.definitions import load_experiments
    from app.experiments.service import ExperimentsService
    from models.artifact.manifest import RECOMMEND_METRICS

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "experiments.toml"
    path.write_text(experiments_toml())
    metrics = sorted({m for e in ENDPOINTS for m in ARMS[e]})
    service = ExperimentsService(path, f"sqlite://{(folder / 'events.db').resolve()}", folder)
    writes = [0]
    store_write = service.log.store.write_exposures

    def counted(rows: Any) -> int:  # the real store's write, counted: how many transactions the writer makes
        writes[0] += 1
        return store_write(rows)

    setattr(service.log.store, "write_exposures", counted)  # noqa: B010 (an instance attribute, the method stays)
    writer_clock = time.pthread_getcpuclockid(service.log._thread.ident or 0)
    try:
        service.current = load_experiments(path, [MODEL], metrics, RECOMMEND_METRICS)
        name = EXPERIMENT["similar-items"]
        paced = max(1, round(rate * seconds))
        shown = [[f"i{(j * K + x) % 5000}" for x in range(K)] for j in range(n + paced)]
        t0 = time.thread_time()
        for j in range(n):
            service.assign(name, f"unit{j}")
        assign_us = (time.thread_time() - t0) / n * 1e6
        burst = max(1, round(rate * 0.01))
        request_s = 0.0
        w0 = time.clock_gettime(writer_clock)
        due = time.perf_counter()
        for start in range(n, n + paced, burst):
            t0 = time.thread_time()
            for j in range(start, min(n + paced, start + burst)):
                resolved = service.assign(name, f"unit{j}")
                assert resolved is not None
                experiment, arm = resolved
                service.expose(experiment, arm.name, f"unit{j}", f"i{j}", K, "bench", shown[j])
            request_s += time.thread_time() - t0
            due += burst / rate
            time.sleep(max(0.0, due - time.perf_counter()))
        assert service.log.flush(60)
        writer_s = time.clock_gettime(writer_clock) - w0
        counts = service.log.counts()
        assert counts["written"] == paced and counts["spilled"] == 0, counts
    finally:
        service.close()
    return {
        "assign_us": assign_us,
        "paced_rate": rate,
        "paced_exposures": paced,
        "request_path_us": request_s / paced * 1e6,
        "writer_us": writer_s / paced * 1e6,
        "rows_per_write": paced / max(1, writes[0]),
    }


# --------------------------------------------------------------------------- summary


def summarise(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Per endpoint: the median round of each variant, the ratios experiment / plain of requests/s and p99, the
    per-round paired requests/s ratios and the errors over all rounds; whether the targets are met."""
    out = {}
    for endpoint, by_variant in results.items():
        plain, exp = (_median_round(by_variant[v]) for v in VARIANTS)
        paired = [e["rps"] / p["rps"] for p, e in zip(by_variant["plain"], by_variant["experiment"], strict=True)]
        rps_ratio, p99_ratio = exp["rps"] / plain["rps"], exp["p99_us"] / plain["p99_us"]
        errors = {v: sum(r["errors"] for r in by_variant[v]) for v in VARIANTS}
        out[endpoint] = {
            "plain": plain,
            "experiment": exp,
            "rps_ratio": rps_ratio,
            "p99_ratio": p99_ratio,
            "paired_rps_ratios": paired,
            "median_paired_rps_ratio": statistics.median(paired),
            "errors": errors,
            "target_met": rps_ratio >= TARGET_RPS_RATIO and p99_ratio <= TARGET_P99_RATIO and not any(errors.values()),
        }
    return out


def table(out: dict[str, Any]) -> str:
    cfg = out["config"]
    lines = [
        f"{cfg['items']:,} items x {cfg['users']:,} users, k = {cfg['k']}; {MODEL}, k = {K}; one server, {out['workers']} "
        f"workers; wrk {out['wrk_threads']} threads, {out['connections']} connections, {out['rounds']} x "
        f"{out['seconds_per_round']:.0f} s rounds per mix (median); {out['cpus']} CPUs shared with wrk; load average "
        f"{out['load_average_before'][0]:.1f} before, {out['load_average_after'][0]:.1f} after",
        "",
        "| endpoint | plain req/s | experiment req/s | ratio | p50 ms plain / exp | p99 ms plain / exp | p99 ratio "
        "| server CPU us/req plain / exp | errors plain / exp |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for endpoint, s in out["summary"].items():
        p, e = s["plain"], s["experiment"]
        lines.append(
            f"| /{endpoint} ({' / '.join(ARMS[endpoint])}) | {p['rps']:,.0f} | {e['rps']:,.0f} | {s['rps_ratio']:.0%} | "
            f"{p['p50_us'] / 1e3:.2f} / {e['p50_us'] / 1e3:.2f} | {p['p99_us'] / 1e3:.2f} / {e['p99_us'] / 1e3:.2f} | "
            f"{s['p99_ratio']:.2f} | {p['server_cpu_us_per_request']:.0f} / {e['server_cpu_us_per_request']:.0f} | "
            f"{s['errors']['plain']} / {s['errors']['experiment']} |"
        )
    lines.append("")
    for endpoint, s in out["summary"].items():
        rounds = ", ".join(f"{x:.0%}" for x in s["paired_rps_ratios"])
        lines.append(
            f"/{endpoint}: target (>= {TARGET_RPS_RATIO:.0%} of plain req/s, p99 <= {TARGET_P99_RATIO:.2f} x plain, 0 errors) "
            + ("met" if s["target_met"] else "NOT met")
            + f" (ratio {s['rps_ratio']:.0%}, p99 ratio {s['p99_ratio']:.2f}; paired ratios per round: {rounds})"
        )
    lines.append("")
    lines.append("| experiment | exposures stored | server 200s | wrk 2xx | stored - wrk | runs | exact |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, x in out["exposures"].items():
        lines.append(
            f"| {name} (/{x['endpoint']}) | {x['stored']:,} | {x['server_2xx']:,} | {x['wrk_2xx']:,} | "
            f"{x['stored_minus_wrk']} | {x['runs']} | {'yes' if x['exact'] else 'NO'} |"
        )
    ev = out["events_counters"]
    lines.append("")
    lines.append(
        "simserve_experiment_events_total: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in ev.items())
        + "; arms: "
        + json.dumps(out["arms"])
    )
    lines.append(
        "every experiment response logged once (stored = server 200s, wrk 2xx short by in-flight responses only), "
        f"spilled {ev['spilled']:,.0f}, dropped {ev['dropped']:,.0f}: " + ("yes" if out["exposures_exact"] else "NO")
    )
    extra = ", ".join(
        f"/{endpoint} {s['experiment']['server_cpu_us_per_request'] - s['plain']['server_cpu_us_per_request']:+.0f} us"
        for endpoint, s in out["summary"].items()
    )
    lines.append(
        f"server log: {out['server_log_event_problem_lines']} warning/error lines about the event log"
        + "".join(f"\n    {line}" for line in out["server_log_event_problems"][:5])
    )
    c = out["logging_cost"]
    lines.append(
        f"where the time goes: server CPU per request, experiment - plain: {extra}. The experiment path's own work in "
        f"one process (the app's ExperimentsService and SQLite store) at {c['paced_rate']:,.0f} exposures/s (one "
        f"worker's rate here), CPU per exposure: assignment {c['assign_us']:.1f} us; the request's part (assignment + "
        f"exposure row + queue) {c['request_path_us']:.1f} us; the writer thread's {c['writer_us']:.1f} us, "
        f"{c['rows_per_write']:.0f} rows per transaction"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small catalogue and short rounds: a smoke test")
    ap.add_argument("--workers", type=int, default=None, help="uvicorn workers (default: the app's default)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--duration", type=float, default=None, help="seconds per run (default 15, quick 3)")
    ap.add_argument("--rounds", type=int, default=None, help="measured rounds (default 5, quick 1)")
    ap.add_argument("--artifacts", type=Path, default=None, help="catalogue cache folder (default: the serving benchmark's)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the catalogue even if a matching one is cached")
    args = ap.parse_args()

    if not require_wrk():
        return 2
    cfg = QUICK if args.quick else FULL
    seconds = args.duration or (3.0 if args.quick else 15.0)
    rounds = args.rounds or (1 if args.quick else 5)
    root = args.artifacts or RESULTS / f"serve-artifacts-demo{'-quick' if args.quick else ''}.tmp"
    version, manifest = ensure_catalogue(root, cfg, "demo", args.rebuild)

    from app.settings import Settings

    workers = args.workers or Settings().workers
    version_dir = root / VERSIONS_DIR / version
    ids = {"similar-items": external_ids(version_dir, ITEMS), "recommend": external_ids(version_dir, USERS)}
    paths = {
        (e, v): request_paths(e, v, ids[e], PATHS_PER_MIX, int(cfg["seed"]) + 10 * i + j)
        for i, e in enumerate(ENDPOINTS)
        for j, v in enumerate(VARIANTS)
    }
    tmp = Path(tempfile.mkdtemp(prefix="experiment-bench-"))
    db = tmp / "events" / "events.db"
    db_url = f"sqlite://{db}"
    (tmp / "experiments.toml").write_text(experiments_toml())
    env = server_env(
        ARTIFACTS_DIR=str(root),
        EXPERIMENTS_FILE=str(tmp / "experiments.toml"),
        EVENTS_DB=db_url,
        EVENTS_DIR=str(tmp / "events"),
    )
    load_before = load_average()
    server = start_app("app", env, tmp / "app.log", args.workers)
    try:
        server.wait_serving(workers, version, 600)
        probes = {e: 0 for e in ENDPOINTS}
        for endpoint in ENDPOINTS:
            probes[endpoint] = check_answers(server, {k: v for k, v in paths.items() if k[0] == endpoint})
        scripts = {}
        for (endpoint, variant), mix in paths.items():
            scripts[endpoint, variant] = tmp / f"{endpoint}-{variant}.lua"
            write_wrk_script(scripts[endpoint, variant], mix, int(cfg["seed"]))
        results, warm = run_rounds(server, scripts, seconds, rounds, args)
        load_after = load_average()
        expected = {
            EXPERIMENT[e]: round(sum(r["served_2xx"] for r in warm[e] + results[e]["experiment"])) + probes[e] for e in ENDPOINTS
        }
        stored = wait_written(server, db_url, expected)
        counters = events_counters(server)
        arms = exposures_by_arm(db)
    finally:
        server.stop()
    # the server's own word on its event log (a spill, a refused record, the store unavailable), kept with the results
    log_lines = (tmp / "app.log").read_text(errors="replace").splitlines()
    log_problems = [line for line in log_lines if "app.experiments" in line and line.startswith(("WARNING", "ERROR"))]
    per_worker = statistics.median(r["rps"] for e in ENDPOINTS for r in results[e]["experiment"]) / workers
    cost = logging_cost(tmp / "logging-cost", per_worker, 2.0 if args.quick else 10.0)

    out = {
        "config": cfg,
        "version": version,
        "workers": workers,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "k": K,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "paths_per_mix": PATHS_PER_MIX,
        "experiments_file": experiments_toml(),
        "cpus": machine()["cpus"],
        "python": machine()["python"],
        "load_average_before": load_before,
        "load_average_after": load_after,
        "indexes": {
            key: {"hnsw": entry.get("hnsw"), "neighbours": entry.get("neighbours")}
            for key, entry in manifest["indexes"].items()
            if key.startswith(f"items/{MODEL}/") and key.rsplit("/", 1)[1] in {m for e in ENDPOINTS for m in ARMS[e]}
        },
        "rounds_raw": results,
        "warm_up_experiment_runs": warm,
        "summary": summarise(results),
        "exposures": exposure_check(results, warm, stored, probes, args.connections),
        "events_counters": counters,
        "arms": arms,
        "logging_cost": cost,
        "server_log_event_problems": log_problems[:50],
        "server_log_event_problem_lines": len(log_problems),
    }
    out["targets_met"] = all(s["target_met"] for s in out["summary"].values())
    out["exposures_exact"] = all(x["exact"] for x in out["exposures"].values()) and counters.get("dropped", 0) == 0
    path = write_results(results_path("experiment_overhead", args.quick), out)
    print()
    print(table(out))
    print(f"\nresults: {path.relative_to(ROOT)}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if out["exposures_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
