"""Batch endpoints against the same queries one call at a time: POST /similar-items/batch and /recommend/batch
next to GET /similar-items and /recommend, on one server in the same run, under wrk.

    .venv/bin/python bench/batch_queries.py           # 50,000 items x 100,000 users, k = 128 (the serving benchmark's)
    .venv/bin/python bench/batch_queries.py --quick   # 5,000 items x 10,000 users, k = 32, short rounds: a smoke test

1. Catalogue: bench/serve_vs_constant.py's default build (the CLI's defaults: IVF twins), in its cache folder.
2. One server: `python -m app`, the app's default workers (one per CPU), production defaults.
3. Load: wrk, 32 connections; denoising-symmetric, metric projected, k = 10, query ids drawn uniformly at random:
     one at a time   GET /similar-items?item_id=<id>&... (20,000 paths), GET /recommend?user_id=<id>&... (exclude_seen)
     batch of B      POST .../batch with B queries (200 bodies per size), for each B of --sizes
   Batch mixes use fewer connections as B grows (about 4,000 queries in flight, at least 4 calls), and each run
   starts once the previous one's queued calls are done. Rounds alternate the order of the mixes; the table
   shows each mix's median round. Queries/s = calls/s x B.
   Every run must have 0 errors (socket errors or non-2xx).
Results: bench/results/batch_queries[.quick].json. wrk: `apt-get install -y wrk` (Debian).
"""

from __future__ import annotations

import argparse
import json
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

from bench.experiment_overhead import external_ids  # noqa: E402
from bench.harness import (  # noqa: E402
    RESULTS,
    Server,
    get,
    load_average,
    machine,
    require_wrk,
    results_path,
    run_wrk,
    server_env,
    start_app,
    write_results,
    write_wrk_post_script,
    write_wrk_script,
)
from bench.serve_vs_constant import FULL, QUICK, ensure_catalogue  # noqa: E402
from models.artifact.manifest import ITEMS, USERS, VERSIONS_DIR  # noqa: E402

MODEL, METRIC, K = "denoising-symmetric", "projected", 10
ENDPOINTS = {"similar-items": ("item_id", ITEMS), "recommend": ("user_id", USERS)}
PATHS, BODIES = 20_000, 200


def get_paths(endpoint: str, ids: list[str], rng: np.random.Generator) -> list[str]:
    param = ENDPOINTS[endpoint][0]
    tail = f"&model={MODEL}&metric={METRIC}&k={K}" + ("&exclude_seen=true" if endpoint == "recommend" else "")
    return [f"/{endpoint}?{param}={urllib.parse.quote(ids[i], safe='')}{tail}" for i in rng.choice(len(ids), PATHS).tolist()]


def batch_bodies(endpoint: str, ids: list[str], size: int, rng: np.random.Generator) -> list[str]:
    param = ENDPOINTS[endpoint][0]
    extra = {"exclude_seen": True} if endpoint == "recommend" else {}
    return [
        json.dumps({"model": MODEL, "metric": METRIC, **extra, "queries": [{param: ids[i], "k": K} for i in picked]})
        for picked in (rng.choice(len(ids), size).tolist() for _ in range(BODIES))
    ]


def connections_for(size: int, connections: int) -> int:
    """Connections of a mix: `connections` one query at a time, fewer for large batches (about 4,000 queries in
    flight at most, at least 4 calls: both workers busy), so that no call waits past wrk's 5 s timeout in the
    server's queue."""
    return connections if size == 1 else max(4, min(connections, 4000 // size))


def drain(server: Server, timeout: float = 60.0) -> None:
    """Until the server answers /healthz within 50 ms: the calls wrk left queued are done, the next mix starts clean."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        status, _ = get(server.base + "/healthz", timeout=timeout)
        if status == 200 and time.perf_counter() - t0 < 0.05:
            return
        time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small catalogue, short rounds")
    ap.add_argument("--sizes", default="10,100,1000", help="batch sizes (comma-separated)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per mix (default 3; quick 1)")
    ap.add_argument("--seconds", type=float, default=None, help="seconds per run (default 10; quick 3)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not require_wrk():
        return 2
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    sizes = [int(s) for s in args.sizes.split(",")]
    cfg = QUICK if args.quick else FULL
    root = RESULTS / f"serve-artifacts-default{'-quick' if args.quick else ''}.tmp"
    version, _ = ensure_catalogue(root, cfg, "default", False)
    rng = np.random.default_rng(int(cfg["seed"]) + 99)
    tmp = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    mixes: dict[tuple[str, int], Path] = {}
    for endpoint, (_, file) in ENDPOINTS.items():
        ids = external_ids(root / VERSIONS_DIR / version, file)
        mixes[endpoint, 1] = tmp / f"{endpoint}-get.lua"
        write_wrk_script(mixes[endpoint, 1], get_paths(endpoint, ids, rng), 1)
        for size in sizes:
            mixes[endpoint, size] = tmp / f"{endpoint}-batch{size}.lua"
            write_wrk_post_script(mixes[endpoint, size], f"/{endpoint}/batch", batch_bodies(endpoint, ids, size, rng), size)
    load_before = load_average()
    server = start_app("app", server_env(ARTIFACTS_DIR=str(root)), tmp / "app.log")
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {e: {s: [] for s in [1, *sizes]} for e in ENDPOINTS}
    try:
        from app.settings import Settings

        workers = Settings().workers
        server.wait_serving(workers, version, 600)
        for (_, size), lua in mixes.items():  # warm-up
            conns = connections_for(size, args.connections)
            run_wrk(server, lua, 2, conns, min(args.threads, conns))
            drain(server)
        for r in range(rounds):
            order = list(mixes) if r % 2 == 0 else list(mixes)[::-1]
            for endpoint, size in order:
                conns = connections_for(size, args.connections)
                res = run_wrk(server, mixes[endpoint, size], seconds, conns, min(args.threads, conns))
                res["connections"] = conns
                drain(server)
                res["queries_per_s"] = res["rps"] * size
                runs[endpoint][size].append(res)
                what = "one at a time" if size == 1 else f"batch of {size}"
                print(
                    f"  round {r + 1} /{endpoint:13s} {what:14s} {res['queries_per_s']:9.0f} queries/s  "
                    f"{res['rps']:7.0f} calls/s  p99 {res['p99_us'] / 1000:7.2f} ms  errors {res['errors']}",
                    flush=True,
                )
    finally:
        server.stop()
    out: dict[str, Any] = {
        "config": cfg,
        "version": version,
        "model": MODEL,
        "metric": METRIC,
        "k": K,
        "sizes": sizes,
        "rounds": rounds,
        "seconds_per_round": seconds,
        "connections": args.connections,
        "workers": workers,
        **machine(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "runs": runs,
    }
    summary = {}
    for endpoint, by_size in runs.items():
        median = {s: sorted(rs, key=lambda x: x["queries_per_s"])[len(rs) // 2] for s, rs in by_size.items()}
        summary[endpoint] = {
            s: {
                "queries_per_s": m["queries_per_s"],
                "calls_per_s": m["rps"],
                "p50_ms": m["p50_us"] / 1000,
                "p99_ms": m["p99_us"] / 1000,
                "vs_one_at_a_time": m["queries_per_s"] / median[1]["queries_per_s"],
                "errors": sum(x["errors"] for x in by_size[s]),
                "connections": m["connections"],
            }
            for s, m in median.items()
        }
    out["summary"] = summary
    print()
    print(
        f"{cfg['items']:,} items x {cfg['users']:,} users; {MODEL}, {METRIC}, k = {K}; one server, {workers} workers; "
        f"wrk {args.threads} threads, {args.connections} connections; {rounds} x {seconds:g} s per mix (median); "
        f"load average {load_before[0]:.1f} before, {out['load_average_after'][0]:.1f} after"
    )
    print()
    head = " | ".join(["one at a time", *[f"batch of {s}" for s in sizes]])
    print(f"| endpoint | {head} |")
    print("| --- |" + " ---: |" * (len(sizes) + 1))
    for endpoint, medians in summary.items():
        one = medians[1]
        cells = [f"{one['queries_per_s']:,.0f} q/s (p99 {one['p99_ms']:.1f} ms, {one['connections']} conns)"]
        for s in sizes:
            m = medians[s]
            ratio = f"**{m['vs_one_at_a_time']:.1f}x**"
            cells.append(f"{m['queries_per_s']:,.0f} q/s, {ratio} (p99 {m['p99_ms']:.1f} ms, {m['connections']} conns)")
        print(f"| /{endpoint} | " + " | ".join(cells) + " |")
    errors = sum(v["errors"] for medians in summary.values() for v in medians.values())
    print(f"\nerrors over all runs: {errors}")
    print(f"results: {write_results(results_path('batch_queries', args.quick), out)}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
