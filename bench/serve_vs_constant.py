"""Serving throughput of every endpoint: `python -m app` next to a constant-JSON FastAPI app, under wrk.

    .venv/bin/python bench/serve_vs_constant.py                # 50,000 items x 100,000 users, k = 128, CLI defaults
    .venv/bin/python bench/serve_vs_constant.py --quick        # 5,000 items x 10,000 users, k = 32: a smoke test
    .venv/bin/python bench/serve_vs_constant.py --build demo   # make demo's build (--hnsw --precompute-neighbours 100)
    .venv/bin/python bench/serve_vs_constant.py --only items-projected-k10,recommend-k10
    .venv/bin/python bench/serve_vs_constant.py --scale million  # 1,000,000 items x 200,000 users, k = 64 (not CI)

1. Catalogue: a clustered power-law matrix (generator below, seeded) built by the offline job's pipeline with
   exactly the BuildParams the CLI makes of its default flags (models.build.cli.build_params), plus --k and the
   lambdas; the diagnostics are skipped (they change nothing served). `--build demo` adds make demo's flags.
   Cached in bench/results/serve-artifacts-<build>[-quick].tmp (rebuilt when the parameters change, or --rebuild).
2. Servers, same uvicorn options and worker count: the app (`python -m app`, ARTIFACTS_DIR set, every other
   setting at its production default, as `make demo` starts it); the reference, bench/constant_app.py, a minimal
   FastAPI app with one async endpoint per scenario returning the bytes of a real response of that scenario
   (same size); and, for recall only, the app with SEARCH_MODE=exact (one worker, idle during the load).
3. Scenarios: /similar-items at k = 10 and k = 100 under each metric, /similar-users and /recommend
   (exclude_seen, the default), default model, random catalogue ids (10,000 drawn uniformly, the same for
   both servers). Per scenario, after a warm-up, rounds alternate app and reference; the median round of each
   is reported. Errors = socket errors + non-2xx responses. Recall@10: 200 seeded ids per scenario, the app's
   first 10 rows against the exact server's (a row scoring at least the exact 10th counts: ties).
Targets (per scenario): requests/s >= 0.7x the reference's, p99 <= 2x the reference's, zero errors,
recall@10 >= 0.95. Results: bench/results/serve_vs_constant[_demo][.quick].json. wrk: `apt-get install -y wrk`.

`--scale million`: 1,000,000 items x 200,000 users, k = 64, built with the CLI's defaults in full (diagnostics
included), its wall time and the process's peak RSS recorded (targets: 30 minutes, 16 GB); scenarios
/similar-items k = 10 under each metric and /recommend; throughput target 0.5x the reference, recall@10 >= 0.95.
Results: bench/results/serve_vs_constant_million.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `bench` and `models` importable
    sys.path.insert(0, str(ROOT))

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
    start_reference,
    write_results,
    write_wrk_script,
)
from models.artifact.manifest import ITEMS, METRICS, USERS, VERSIONS_DIR  # noqa: E402

FULL: dict[str, Any] = {
    "users": 100_000,
    "items": 50_000,
    "k": 128,
    "clusters": 50,
    "mean_items": 30,
    "seed": 0,
    "lambda_denoising": 10_000.0,
    "lambda_weight_decay": 20.0,
}
QUICK: dict[str, Any] = {**FULL, "users": 10_000, "items": 5_000, "k": 32, "clusters": 20}
MILLION: dict[str, Any] = {**FULL, "users": 200_000, "items": 1_000_000, "k": 64, "clusters": 200}
MILLION_SCENARIOS = [f"items-{metric}-k10" for metric in METRICS] + ["recommend-k10"]
MILLION_TARGET_RATIO, MILLION_BUILD_SECONDS, MILLION_BUILD_GB = 0.5, 30 * 60, 16.0
# the CLI flags of each build on top of the defaults (models.build.cli.parser)
BUILDS = {
    "default": [],
    "demo": [
        "--hnsw",
        "--hnsw-m",
        "16",
        "--hnsw-ef-construction",
        "100",
        "--hnsw-ef-search",
        "32",
        "--precompute-neighbours",
        "100",
    ],
}
TARGET_RATIO, TARGET_P99_RATIO, TARGET_RECALL = 0.70, 2.0, 0.95
RECALL_QUERIES = 200


@dataclass(frozen=True)
class Scenario:
    name: str  # also the reference's route
    path: str  # /similar-items, /similar-users, /recommend
    id_param: str  # item_id or user_id
    params: dict[str, str]


def scenarios() -> list[Scenario]:
    out = []
    for metric in METRICS:
        for k in (10, 100):
            out.append(Scenario(f"items-{metric}-k{k}", "/similar-items", "item_id", {"metric": metric, "k": str(k)}))
    out.append(Scenario("users-k10", "/similar-users", "user_id", {}))
    out.append(Scenario("recommend-k10", "/recommend", "user_id", {}))
    return out


# --------------------------------------------------------------------------- the catalogue


def clustered_power_law(
    n_users: int, n_items: int, n_clusters: int, mean_items: float, seed: int
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Binary X (n_users, n_items) and each item's cluster (n_items,): the paper's simulation, vectorised.

    Items: a random cluster each; popularity Zipf, pop(i) = rank_i ** -0.9 over a random order.
    Users: a home cluster each; activity Pareto(1.5) scaled to mean about `mean_items`, clipped to
    [1, 2000]. Each interaction comes from the home cluster with probability 0.7 (by popularity within
    it), otherwise from the whole catalogue by popularity. Repeats collapse to one (X is binary).
    """
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, n_clusters, n_items)
    pop = (rng.permutation(n_items) + 1.0) ** -0.9
    counts = np.clip(np.floor((rng.pareto(1.5, n_users) + 1.0) * mean_items / 3.0), 1, 2000).astype(np.int64)
    rows = np.repeat(np.arange(n_users), counts)
    home = rng.integers(0, n_clusters, n_users)[rows]
    cols = np.empty(rows.size, dtype=np.int64)
    at_home = rng.random(rows.size) < 0.7
    cdf = np.cumsum(pop) / pop.sum()
    away = ~at_home
    cols[away] = np.minimum(np.searchsorted(cdf, rng.random(int(away.sum()))), n_items - 1)
    for c in range(n_clusters):
        members = np.flatnonzero(cluster == c)
        pick = at_home & (home == c)
        c_cdf = np.cumsum(pop[members]) / pop[members].sum()
        cols[pick] = members[np.minimum(np.searchsorted(c_cdf, rng.random(int(pick.sum()))), members.size - 1)]
    X = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(n_users, n_items))
    X.sum_duplicates()
    X.data[:] = 1.0
    return X, cluster


def ensure_catalogue(
    root: Path, cfg: dict[str, Any], build: str, rebuild: bool, diagnostics: bool = False
) -> tuple[str, dict[str, Any]]:
    """(version, manifest) of the benchmark catalogue under root, built unless a matching one exists; diagnostics:
    build with the CLI's diagnostics too (else skipped). The build's wall time and the process's peak RSS after it
    are kept in root/bench-build.json."""
    from models.artifact.store import ArtifactStore, load_manifest
    from models.build.cli import build_params, parser
    from models.build.pipeline import build_into
    from models.build.progress import Progress
    from models.inputs.dataset import Dataset

    bench = {**cfg, "build": build, "diagnostics": diagnostics}
    store = ArtifactStore(root)
    current = store.current_version()
    if current and not rebuild:
        manifest = load_manifest(store.version_dir(current))
        if manifest["dataset"].get("bench") == bench:
            print(f"catalogue: reusing {root / 'versions' / current}", flush=True)
            return current, manifest
    shutil.rmtree(root, ignore_errors=True)
    flags = [
        "--out",
        str(root),
        "--k",
        str(cfg["k"]),
        "--seed",
        str(cfg["seed"]),
        "--lambda-denoising",
        str(cfg["lambda_denoising"]),
        "--lambda-weight-decay",
        str(cfg["lambda_weight_decay"]),
        *BUILDS[build],
    ]
    cli = build_params(parser().parse_args(flags))
    # nothing the diagnostics write is served: skipped unless the build itself is measured
    params = cli if diagnostics else replace(cli, diagnostics=False, gauge=replace(cli.gauge, transforms=0))
    what = f"{cfg['items']} items x {cfg['users']} users, k={cfg['k']}, the CLI's defaults + {BUILDS[build]}"
    print(f"catalogue: building {what} (minutes) ...", flush=True)
    t0 = time.perf_counter()
    X, cluster = clustered_power_law(cfg["users"], cfg["items"], cfg["clusters"], cfg["mean_items"], cfg["seed"])
    ds = Dataset(
        X=X,
        user_ids=[f"u{u}" for u in range(X.shape[0])],
        item_ids=[f"i{i}" for i in range(X.shape[1])],
        item_titles=[f"item {i} (cluster {c})" for i, c in enumerate(cluster.tolist())],
        item_categories=[[f"cluster-{c}"] for c in cluster.tolist()],
        source={
            "kind": "synthetic-clustered-power-law",
            "generator": "bench/serve_vs_constant.py:clustered_power_law",
            "bench": bench,
        },
    )
    version = store.new_version(ds.fingerprint(), {"bench": bench})
    with store.staging(version) as staging:
        manifest = build_into(staging, ds, params, Progress())
        store.publish(staging, version, manifest, keep=1)
    seconds = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    (root / "bench-build.json").write_text(json.dumps({"seconds": seconds, "peak_rss_gb": peak_gb, "bench": bench}))
    print(f"catalogue: built {version} in {seconds:.0f}s ({X.nnz} interactions), peak RSS {peak_gb:.2f} GB", flush=True)
    return version, load_manifest(store.version_dir(version))


# --------------------------------------------------------------------------- measuring


def request_paths(sc: Scenario, ids: list[str], route: str | None = None) -> list[str]:
    """URL-quoted request targets of a scenario, one per id; route replaces the path (the reference's)."""
    query = "&".join(f"{k}={v}" for k, v in sc.params.items())
    return [f"{route or sc.path}?{sc.id_param}={urllib.parse.quote(i, safe='')}" + (f"&{query}" if query else "") for i in ids]


def recall_at_10(app: Server, exact: Server, paths: list[str]) -> float:
    """Mean over requests of the share of the app's first 10 neighbours scoring at least the exact server's 10th."""
    hits = []
    for p in paths:
        served, truth = (json.loads(get(s.base + p, timeout=30)[1])["neighbors"][:10] for s in (app, exact))
        if not truth:
            continue
        kth = truth[-1]["score"]
        key = "item_id" if "item_id" in truth[0] else "user_id"
        truth_ids = {n[key] for n in truth}
        hits.append(sum(n[key] in truth_ids or n["score"] >= kth - 1e-5 * abs(kth) - 1e-6 for n in served) / len(truth))
    return float(np.mean(hits)) if hits else 1.0


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput (upper median), with its own latencies: one real measurement per row."""
    return dict(sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small catalogue and short rounds: a smoke test")
    ap.add_argument("--scale", choices=("standard", "million"), default="standard", help="million: 1M items (not CI)")
    ap.add_argument("--build", choices=sorted(BUILDS), default="default", help="default: the CLI's defaults")
    ap.add_argument("--only", default=None, help="comma-separated scenario names (default: all)")
    ap.add_argument("--workers", type=int, default=None, help="uvicorn workers for both servers (default: the app's default)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--duration", type=float, default=None, help="seconds per round (default 8, quick 3)")
    ap.add_argument("--rounds", type=int, default=None, help="measured rounds per server and scenario (default 3, quick 1)")
    ap.add_argument("--artifacts", type=Path, default=None, help="catalogue cache folder")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the catalogue even if a matching one is cached")
    args = ap.parse_args()

    if not require_wrk():
        return 2
    million = args.scale == "million"
    if million and args.quick:
        ap.error("--scale million has no --quick variant")
    cfg = MILLION if million else QUICK if args.quick else FULL
    target_ratio = MILLION_TARGET_RATIO if million else TARGET_RATIO
    chosen = scenarios()
    if args.only or million:
        wanted = set(args.only.split(",")) if args.only else set(MILLION_SCENARIOS)
        chosen = [sc for sc in chosen if sc.name in wanted]
        if unknown := wanted - {sc.name for sc in chosen}:
            ap.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(sc.name for sc in scenarios())}")
    result_name = "serve_vs_constant" + ("" if args.build == "default" else f"_{args.build}") + ("_million" if million else "")
    seconds = args.duration or (3.0 if args.quick else 8.0)
    rounds = args.rounds or (1 if args.quick else 3)
    size = "-quick" if args.quick else "-million" if million else ""
    root = args.artifacts or RESULTS / f"serve-artifacts-{args.build}{size}.tmp"
    version, manifest = ensure_catalogue(root, cfg, args.build, args.rebuild, diagnostics=million)
    built = json.loads((root / "bench-build.json").read_text()) if (root / "bench-build.json").exists() else None

    from app.settings import Settings

    workers = args.workers or Settings().workers
    vdir = root / VERSIONS_DIR / version
    item_ids = [str(it["id"]) for it in json.loads((vdir / ITEMS).read_text())]
    user_ids = [str(u) for u in json.loads((vdir / USERS).read_text())]
    rng = np.random.default_rng(cfg["seed"])
    ids = {"item_id": rng.choice(item_ids, 10_000).tolist(), "user_id": rng.choice(user_ids, 10_000).tolist()}
    load_before = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    servers: list[Server] = []
    results: dict[str, dict[str, Any]] = {}
    try:
        app_env = server_env(ARTIFACTS_DIR=str(root))
        app = start_app("app", app_env, tmp / "app.log", args.workers)
        exact = start_app("exact", {**app_env, "SEARCH_MODE": "exact"}, tmp / "exact.log", 1)
        servers += [app, exact]
        app.wait_serving(workers, version, 600)
        exact.wait_serving(1, version, 600)
        bodies = tmp / "bodies"
        bodies.mkdir()
        for sc in chosen:
            status, body = get(app.base + request_paths(sc, ids[sc.id_param][:1])[0], timeout=30)
            assert status == 200, body[:300]
            (bodies / f"{sc.name}.json").write_bytes(body)
        served_by = json.loads(get(app.base + "/models", timeout=30)[1])
        recalls = {sc.name: recall_at_10(app, exact, request_paths(sc, ids[sc.id_param][:RECALL_QUERIES])) for sc in chosen}
        exact.stop()
        servers.remove(exact)
        reference = start_reference(bodies, workers, server_env(), tmp / "reference.log")
        servers.append(reference)
        reference.wait(f"/{chosen[0].name}", 120)
        for sc in chosen:
            luas = {}
            for name, route in (("app", None), ("reference", f"/{sc.name}")):
                luas[name] = tmp / f"{sc.name}-{name}.lua"
                write_wrk_script(luas[name], request_paths(sc, ids[sc.id_param], route), cfg["seed"])
            sides = {"app": app, "reference": reference}
            for name, server in sides.items():  # warm-up: page cache, allocator, first-use paths
                run_wrk(server, luas[name], min(2.0, seconds), args.connections, args.threads)
            runs: dict[str, list[dict[str, Any]]] = {"app": [], "reference": []}
            for r in range(rounds):
                for name in ("app", "reference") if r % 2 == 0 else ("reference", "app"):
                    runs[name].append(run_wrk(sides[name], luas[name], seconds, args.connections, args.threads))
            summary = {name: _median_round(rs) for name, rs in runs.items()}
            a, ref = summary["app"], summary["reference"]
            results[sc.name] = {
                "app": a,
                "reference": ref,
                "ratio": a["rps"] / ref["rps"],
                "p99_ratio": a["p99_us"] / max(1, ref["p99_us"]),
                "errors": sum(x["errors"] for x in runs["app"]),
                "recall_at_10": recalls[sc.name],
                "served_by": _served_by(served_by, sc, manifest),
                "body_bytes": (bodies / f"{sc.name}.json").stat().st_size,
                "rounds_raw": runs,
            }
            res = results[sc.name]
            print(
                f"  {sc.name:28s} app {a['rps']:7.0f} req/s  reference {ref['rps']:7.0f}  ratio {res['ratio']:.2f}  "
                f"p99 {a['p99_us'] / 1e3:6.2f} / {ref['p99_us'] / 1e3:6.2f} ms  errors {res['errors']}  "
                f"recall@10 {res['recall_at_10']:.3f}  ({res['served_by']})",
                flush=True,
            )
    finally:
        for s in servers:
            s.stop()

    for res in results.values():
        res["target_met"] = (
            res["ratio"] >= target_ratio
            and (million or res["p99_ratio"] <= TARGET_P99_RATIO)  # the million-item targets name no p99
            and res["errors"] == 0
            and res["recall_at_10"] >= TARGET_RECALL
        )
    facts = machine()
    out = {
        "config": cfg,
        "build": args.build,
        "build_flags": BUILDS[args.build],
        "version": version,
        "workers": workers,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "cpus": facts["cpus"],
        "python": facts["python"],
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "target_ratio": target_ratio,
        "catalogue_build": built,
        "scenarios": results,
    }
    if million and built:
        out["build_target_met"] = built["seconds"] <= MILLION_BUILD_SECONDS and built["peak_rss_gb"] <= MILLION_BUILD_GB
    path = write_results(results_path(result_name, args.quick), out)
    print()
    print(table(out))
    print(f"\nresults: {path.relative_to(ROOT)}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _served_by(models: dict[str, Any], sc: Scenario, manifest: dict[str, Any]) -> str:
    """What serves a scenario's searches, from GET /models: flat, ivf nprobe N, hnsw; + lists when they answer it."""
    from app.schemas.common import DEFAULT_METRIC, DEFAULT_MODEL

    metric = sc.params.get("metric", DEFAULT_METRIC)
    side = "users" if sc.path == "/similar-users" else "items"
    key = f"{side}/{metric}"
    if sc.path == "/recommend":
        rec = manifest["recommend"][DEFAULT_MODEL][metric]
        entry = rec["items"]
        return "ivf nprobe " + str(entry["ivf"]["nprobe"]) if "ivf" in entry else ("hnsw" if "hnsw" in entry else "flat")
    info = models["models"][DEFAULT_MODEL]["indexes"][key]
    lists = manifest["indexes"][f"{side}/{DEFAULT_MODEL}/{metric}"].get("neighbours")
    if lists and int(sc.params.get("k", 10)) <= lists["n"]:
        return f"exact top-{lists['n']} lists"
    return f"ivf nprobe {info['nprobe']}" if info["served_by"] == "ivf" else info["served_by"]


def table(out: dict[str, Any]) -> str:
    cfg = out["config"]
    lines = [
        f"{cfg['items']:,} items x {cfg['users']:,} users, k = {cfg['k']}; build: the CLI's defaults"
        + (f" + {' '.join(out['build_flags'])}" if out["build_flags"] else "")
        + f"; {out['workers']} workers each; wrk {out['wrk_threads']} threads, {out['connections']} connections, "
        f"{out['rounds']} x {out['seconds_per_round']:.0f} s rounds per side (median); {out['cpus']} CPUs shared with wrk; "
        f"load average {out['load_average_before'][0]:.1f} before, {out['load_average_after'][0]:.1f} after",
        "",
        "| scenario | served by | app req/s | reference req/s | ratio | app p99 ms | ref p99 ms | errors | recall@10 | target |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in out["scenarios"].items():
        lines.append(
            f"| {name} | {r['served_by']} | {r['app']['rps']:,.0f} | {r['reference']['rps']:,.0f} | {r['ratio']:.2f} | "
            f"{r['app']['p99_us'] / 1e3:.2f} | {r['reference']['p99_us'] / 1e3:.2f} | {r['errors']} | "
            f"{r['recall_at_10']:.3f} | {'met' if r['target_met'] else 'NOT met'} |"
        )
    ratios = [r["ratio"] for r in out["scenarios"].values()]
    lines.append("")
    lines.append(
        f"targets: ratio >= {out['target_ratio']}, "
        + ("" if out["config"]["items"] >= MILLION["items"] else f"p99 <= {TARGET_P99_RATIO}x the reference's, ")
        + f"0 errors, recall@10 >= "
        f"{TARGET_RECALL}; met in {sum(r['target_met'] for r in out['scenarios'].values())} of {len(ratios)} scenarios; "
        f"median ratio {float(np.median(ratios)):.2f}"
    )
    if built := out.get("catalogue_build"):
        lines.append(
            f"catalogue build ({'diagnostics included' if built['bench'].get('diagnostics') else 'no diagnostics'}): "
            f"{built['seconds']:.0f} s, peak RSS {built['peak_rss_gb']:.2f} GB"
            + (
                f"; build target (30 min, 16 GB) {'met' if out['build_target_met'] else 'NOT met'}"
                if "build_target_met" in out
                else ""
            )
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
