"""Serving throughput: /similar-items of `python -m app` next to a constant-JSON FastAPI app, under wrk.

    .venv/bin/python bench/serve_vs_constant.py           # 50,000 items x 100,000 users, k = 128
    .venv/bin/python bench/serve_vs_constant.py --quick   # 5,000 items x 10,000 users, k = 32: a smoke test

1. Catalogue: a clustered power-law matrix (generator below, seeded) fitted by the offline job's
   pipeline API (models.build.pipeline.build_into + ArtifactStore.publish) with HNSW indexes, cached in
   bench/results/serve-artifacts[-quick].tmp (rebuilt when the parameters change, or --rebuild).
2. Servers, side by side, same uvicorn options and worker count:
   - app: `python -m app --host 127.0.0.1 --port P` with ARTIFACTS_DIR set, exactly as `make demo`
     starts it (every other setting at its production default);
   - reference: bench/constant_app.py, a minimal FastAPI app whose async endpoint returns a constant
     JSON body (the bytes of a real /similar-items response);
   - with --exact also the app with SEARCH_MODE=exact (flat exhaustive search), for comparison.
3. Load: wrk, 32 connections, GET /similar-items?item_id=<random catalogue id> (10,000 ids drawn
   uniformly, defaults for model, metric and k). After a warm-up, rounds alternate the servers'
   order; the table shows the median round of each. Errors = socket errors + non-2xx responses.
Results: bench/results/serve_vs_constant[.quick].json. wrk: `apt-get install -y wrk` (Debian).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.parse
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
from models.artifact.manifest import ITEMS, VERSIONS_DIR, IndexKey  # noqa: E402

FULL = {
    "users": 100_000,
    "items": 50_000,
    "k": 128,
    "clusters": 50,
    "mean_items": 30,
    "seed": 0,
    "lambda_denoising": 10_000.0,
    "lambda_weight_decay": 20.0,
    "hnsw_m": 16,
    "hnsw_ef_construction": 100,
    "hnsw_ef_search": 32,
    "precompute_neighbours": 100,
}
QUICK = {**FULL, "users": 10_000, "items": 5_000, "k": 32, "clusters": 20}
# What `python -m models.build` builds without expert flags: exact flat indexes only, no HNSW, no lists.
CLI_DEFAULTS = {"hnsw": False, "precompute_neighbours": 0}
SERVED = IndexKey("items", "denoising-symmetric", "projected")  # what /similar-items?item_id=... serves by default
TARGET_RATIO, TARGET_P99_MS = 0.70, 20.0


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


def ensure_catalogue(root: Path, cfg: dict[str, Any], rebuild: bool) -> tuple[str, dict[str, Any]]:
    """(version, manifest) of the benchmark catalogue under root, built unless a matching one exists."""
    from models.artifact.store import ArtifactStore, load_manifest
    from models.build.pipeline import BuildParams, build_into
    from models.build.progress import Progress
    from models.indexes.faiss_index import HnswParams
    from models.inputs.dataset import Dataset

    store = ArtifactStore(root)
    current = store.current_version()
    if current and not rebuild:
        manifest = load_manifest(store.version_dir(current))
        if manifest["dataset"].get("bench") == cfg:
            print(f"catalogue: reusing {root / 'versions' / current}", flush=True)
            return current, manifest
    shutil.rmtree(root, ignore_errors=True)
    what = "HNSW" if cfg.get("hnsw", True) else "flat indexes only"
    print(f"catalogue: building {cfg['items']} items x {cfg['users']} users, k={cfg['k']}, {what} (minutes) ...", flush=True)
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
            "bench": cfg,
        },
    )
    params = BuildParams(
        k=cfg["k"],
        lambda_denoising=cfg["lambda_denoising"],
        lambda_weight_decay=cfg["lambda_weight_decay"],
        seed=cfg["seed"],
        hnsw=cfg.get("hnsw", True),
        hnsw_params=HnswParams(M=cfg["hnsw_m"], ef_construction=cfg["hnsw_ef_construction"], ef_search=cfg["hnsw_ef_search"]),
        diagnostics=False,
        precompute_neighbours=cfg["precompute_neighbours"],
    )
    version = store.new_version(ds.fingerprint(), {"bench": cfg})
    with store.staging(version) as staging:
        manifest = build_into(staging, ds, params, Progress())
        store.publish(staging, version, manifest, keep=1)
    print(f"catalogue: built {version} in {time.perf_counter() - t0:.0f}s ({X.nnz} interactions)", flush=True)
    return version, load_manifest(store.version_dir(version))


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small catalogue and short rounds: a smoke test")
    ap.add_argument("--workers", type=int, default=None, help="uvicorn workers for both servers (default: the app's default)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--duration", type=float, default=None, help="seconds per round (default 15, quick 4)")
    ap.add_argument("--rounds", type=int, default=None, help="measured rounds per server (default 3, quick 1)")
    ap.add_argument("--exact", action="store_true", help="also measure the app with SEARCH_MODE=exact (flat search)")
    ap.add_argument(
        "--cli-defaults",
        action="store_true",
        help="build the catalogue as the CLI does without flags (no HNSW, no neighbour lists): what users run",
    )
    ap.add_argument("--artifacts", type=Path, default=None, help="catalogue cache folder")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the catalogue even if a matching one is cached")
    ap.add_argument(
        "--ef-search", type=int, default=None, help="HNSW_EF_SEARCH for the app (default: the build's, as in production)"
    )
    args = ap.parse_args()

    if not require_wrk():
        return 2
    cfg = QUICK if args.quick else FULL
    if args.cli_defaults:
        cfg = {**cfg, **CLI_DEFAULTS}
    result_name = "serve_vs_constant" + ("_cli_defaults" if args.cli_defaults else "")
    seconds = args.duration or (4.0 if args.quick else 15.0)
    rounds = args.rounds or (1 if args.quick else 3)
    root = args.artifacts or RESULTS / f"{result_name.replace('_', '-')}{'-quick' if args.quick else ''}.tmp"
    version, manifest = ensure_catalogue(root, cfg, args.rebuild)

    from app.settings import Settings

    workers = args.workers or Settings().workers
    item_ids = [str(it["id"]) for it in json.loads((root / VERSIONS_DIR / version / ITEMS).read_text())]
    request_paths = ["/similar-items?item_id=" + urllib.parse.quote(i, safe="") for i in item_ids]
    hnsw = manifest["indexes"][str(SERVED)].get("hnsw")
    lists = manifest["indexes"][str(SERVED)].get("neighbours")
    if hnsw and args.ef_search:
        hnsw = {**hnsw, "ef_search": args.ef_search, "recall_at_10": None}
    alone = search_alone(root / VERSIONS_DIR / version, manifest, args.ef_search)
    print(f"search alone (one thread, hot loop, k = 11): {alone:.0f} us/query", flush=True)
    load_before = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    servers: list[Server] = []
    try:
        base_env = server_env()
        app_env = server_env(ARTIFACTS_DIR=str(root))
        if args.ef_search:
            app_env["HNSW_EF_SEARCH"] = str(args.ef_search)
        sides: dict[str, Server] = {}
        for name, extra in (("app", {}), ("app-exact", {"SEARCH_MODE": "exact"})):
            if name == "app-exact" and not args.exact:
                continue
            sides[name] = start_app(name, {**app_env, **extra}, tmp / f"{name}.log", args.workers)
            servers.append(sides[name])
        for s in sides.values():
            s.wait_serving(workers, version, 600)
        status, body = get(sides["app"].base + request_paths[0], timeout=5)
        assert status == 200 and len(json.loads(body)["neighbors"]) == 10, body[:300]
        (tmp / "body.json").write_bytes(body)
        sides = {"reference": start_reference(tmp / "body.json", workers, base_env, tmp / "reference.log"), **sides}
        servers.append(sides["reference"])
        sides["reference"].wait("/similar-items", 120)

        lua = tmp / "ids.lua"
        write_wrk_script(lua, request_paths, cfg["seed"])  # every catalogue id, one uniformly at random per request
        for s in sides.values():  # warm-up: page cache, allocator, first-use paths
            run_wrk(s, lua, min(3.0, seconds), args.connections, args.threads)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
        names = list(sides)
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                res = run_wrk(sides[name], lua, seconds, args.connections, args.threads)
                results[name].append(res)
                print(
                    f"  round {r + 1} {name:10s} {res['rps']:8.0f} req/s  p50 {res['p50_us'] / 1e3:6.2f} ms  "
                    f"p99 {res['p99_us'] / 1e3:6.2f} ms  errors {res['errors']}  "
                    f"server CPU {res['server_cpu_us_per_request']:.0f} us/request",
                    flush=True,
                )
    finally:
        for s in servers:
            s.stop()

    summary = {name: _median_round(rs) for name, rs in results.items()}
    ref = summary["reference"]["rps"]
    for name, s in summary.items():
        s["ratio"] = s["rps"] / ref
        s["errors_total"] = sum(r["errors"] for r in results[name])
    app_s = summary["app"]
    facts = machine()
    met = app_s["ratio"] >= TARGET_RATIO and app_s["p99_us"] / 1e3 < TARGET_P99_MS and app_s["errors_total"] == 0
    out = {
        "config": cfg,
        "version": version,
        "workers": workers,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "cpus": facts["cpus"],
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "python": facts["python"],
        "served_index": {"kind": "hnsw" if hnsw else "flat", **(hnsw or {})},
        "neighbour_lists": lists["n"] if lists else None,
        "search_alone_us": alone,
        "rounds_raw": results,
        "summary": summary,
        "target_met": met,
    }
    path = write_results(results_path(result_name, args.quick), out)
    print()
    print(table(out))
    print(f"\nresults: {path.relative_to(ROOT)}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def search_alone(version_dir: Path, manifest: dict[str, Any], ef_search: int | None, n: int = 3000) -> float:
    """us per query of the index /similar-items searches by default, in a tight single-thread loop (a lower bound)."""
    import faiss

    from models.indexes.faiss_index import flat_vectors, read_index

    faiss.omp_set_num_threads(1)
    entry = manifest["indexes"][str(SERVED)]
    index = read_index(version_dir / (entry["hnsw"]["file"] if "hnsw" in entry else entry["file"]))
    if "hnsw" in entry:
        index.hnsw.efSearch = ef_search or entry["hnsw"]["ef_search"]
    store = faiss.downcast_index(index.storage) if "hnsw" in entry else index
    vectors = flat_vectors(store)
    rows = np.random.default_rng(1).integers(0, store.ntotal, n)
    t0 = time.process_time()
    for r in rows.tolist():
        index.search(vectors[r : r + 1], 11)
    return (time.process_time() - t0) / n * 1e6


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput (upper median), with its own latencies: one real measurement per row."""
    return dict(sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2])


def table(out: dict[str, Any]) -> str:
    cfg, idx = out["config"], out["served_index"]
    label = {
        "reference": "reference: constant JSON, minimal FastAPI",
        "app": f"app /similar-items (k = 10: a lookup in the exact top-{out['neighbour_lists']} lists)"
        if out.get("neighbour_lists")
        else f"app /similar-items ({idx['kind']}"
        + (
            f", recall@10 {idx['recall_at_10'] if idx['recall_at_10'] is None else format(idx['recall_at_10'], '.3f')}, "
            f"efSearch {idx['ef_search']})"
            if idx["kind"] == "hnsw"
            else ")"
        ),
        "app-exact": "app /similar-items (SEARCH_MODE=exact: flat)",
    }
    lines = [
        f"{cfg['items']:,} items x {cfg['users']:,} users, k = {cfg['k']}; model denoising-symmetric, metric projected, k = 10; "
        f"{out['workers']} workers each; wrk {out['wrk_threads']} threads, {out['connections']} connections, "
        f"{out['rounds']} x {out['seconds_per_round']:.0f} s rounds (median); {out['cpus']} CPUs shared with wrk; "
        f"load average {out['load_average_before'][0]:.1f} before, {out['load_average_after'][0]:.1f} after",
        "",
        "| server | requests/s | p50 ms | p99 ms | errors | server CPU us/request | vs reference |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in out["summary"].items():
        lines.append(
            f"| {label[name]} | {s['rps']:,.0f} | {s['p50_us'] / 1e3:.2f} | {s['p99_us'] / 1e3:.2f} | "
            f"{s['errors_total']} | {s['server_cpu_us_per_request']:.0f} | {s['ratio']:.0%} |"
        )
    a = out["summary"]["app"]
    lines.append("")
    lines.append(f"the search alone (same index, one thread, tight loop): {out['search_alone_us']:.0f} us/query")
    lines.append(
        f"target (>= {TARGET_RATIO:.0%} of the reference, p99 < {TARGET_P99_MS:.0f} ms, 0 errors): "
        + ("met" if out["target_met"] else "NOT met")
        + f" (ratio {a['ratio']:.0%}, p99 {a['p99_us'] / 1e3:.2f} ms, errors {a['errors_total']})"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
