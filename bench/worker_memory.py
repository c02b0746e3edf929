"""Worker memory: total memory of `python -m app` with N uvicorn workers, indexes memory-mapped, next to
a reference whose workers each read their own copy of the indexes.

    .venv/bin/python bench/worker_memory.py            # 25,000 users x 300 items, k = 300: ~425 MB of indexes
    .venv/bin/python bench/worker_memory.py --quick    # 4,000 users x 300 items, k = 128: a smoke test
    .venv/bin/python bench/worker_memory.py --workers 1 2 4 --artifacts DIR   # an existing artifacts root

1. Catalogue: `python -m models.build --dataset simulation` (flat indexes), cached in
   bench/results/worker-memory-artifacts[-quick].tmp (rebuilt with --rebuild or when the parameters change).
2. Servers, one at a time, for each N and each mode:
   - mmap: `python -m app --workers N`, exactly as `make demo` serves (FAISS IO_FLAG_MMAP_IFC for the
     indexes, numpy mmap for the recommend query vectors);
   - copy (the reference): the same, with MMAP_INDEXES=false: every worker reads its indexes and query
     vectors into its own memory (read_index without mmap, np.load without mmap_mode).
3. Warm-up: every (endpoint, model, metric) queried over fresh connections, until every worker has every
   index file fully resident (checked in /proc/PID/smaps; FAISS's mmap reader already maps every page of
   a file it opens, so one round suffices) and for at least 4 x N rounds.
4. Memory: PSS (psutil memory_full_info) summed over the server's whole process tree (supervisor,
   workers, multiprocessing's resource tracker). PSS divides each shared page among the processes that map
   it, so a memory-mapped index counts once however many workers map it; RSS would count it N times.
Results: a table on stdout and bench/results/worker_memory[.quick].json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `bench`, `models` and `app` importable
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.harness import RESULTS, MiB, Server, get_json, machine, results_path, server_env, start_app, write_results  # noqa: E402
from models.artifact.manifest import INDEXES_DIR, MANIFEST  # noqa: E402
from models.artifact.store import ArtifactStore  # noqa: E402

FULL = {"sim_users": 25_000, "sim_items": 300, "k": 300}
QUICK = {"sim_users": 4_000, "sim_items": 300, "k": 128}
ENDPOINTS = (("/similar-items", "item_id", "i1"), ("/similar-users", "user_id", "u1"), ("/recommend", "user_id", "u1"))


# --------------------------------------------------------------------------- the catalogue and the servers


def catalogue(params: dict[str, int], root: Path | None, rebuild: bool, quick: bool) -> Path:
    """An artifacts root holding one simulation version built with `params` (cached between runs)."""
    if root is not None:
        return root
    root = RESULTS / f"worker-memory-artifacts{'-quick' if quick else ''}.tmp"
    stamp = root / "bench-params.json"
    if not rebuild and stamp.exists() and json.loads(stamp.read_text()) == params and ArtifactStore(root).current_version():
        return root
    shutil.rmtree(root, ignore_errors=True)
    args = [arg for key, value in params.items() for arg in (f"--{key.replace('_', '-')}", str(value))]
    cmd = [sys.executable, "-m", "models.build", "--dataset", "simulation", "--out", str(root), "--no-diagnostics", *args]
    print("building:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    stamp.write_text(json.dumps(params))
    return root


def start(mode: str, workers: int, artifacts: Path, log: Path) -> Server:
    """`python -m app --workers N` on artifacts: mmap mode at the default, copy mode with MMAP_INDEXES=false."""
    env = server_env(ARTIFACTS_DIR=str(artifacts), RELOAD_INTERVAL="0", LOG_LEVEL="warning")
    if mode == "copy":
        env["MMAP_INDEXES"] = "false"
    return start_app(mode, env, log, workers)


def processes(server: Server) -> list[psutil.Process]:
    root = psutil.Process(server.proc.pid)
    return [root, *root.children(recursive=True)]


def worker_processes(server: Server) -> list[psutil.Process]:
    kids = [p for p in processes(server)[1:] if "multiprocessing.spawn" in " ".join(p.cmdline())]
    return kids or [psutil.Process(server.proc.pid)]


def index_files(version_dir: Path) -> dict[str, int]:
    """{absolute path: bytes} of the version's index files (.faiss) and query arrays (.npy under indexes/)."""
    return {str(p.resolve()): p.stat().st_size for p in sorted((version_dir / INDEXES_DIR).iterdir())}


def resident_fraction(proc: psutil.Process, files: dict[str, int]) -> float:
    """The smallest resident fraction, over the .faiss files, of a worker's mappings of them (0 if unmapped)."""
    rss: dict[str, int] = {}
    for m in proc.memory_maps(grouped=True):
        if m.path in files:
            rss[m.path] = m.rss
    return min(rss.get(path, 0) / size for path, size in files.items() if path.endswith(".faiss"))


def warm_up(
    server: Server, workers: int, models: list[str], metrics: list[str], files: dict[str, int], max_rounds: int = 60
) -> dict:
    """Query every index over fresh connections for 4 x N rounds, and (mmap mode) until every worker has every
    .faiss file resident."""
    queries = [
        f"{path}?{urllib.parse.urlencode({param: value, 'model': model, 'metric': metric, 'k': 10})}"
        for path, param, value in ENDPOINTS
        for model in models
        for metric in metrics
    ]
    rounds, fraction = 0, 0.0
    for rounds in range(1, max_rounds + 1):
        for q in queries:
            get_json(server.base + q)  # a RuntimeError unless 200
        if server.name == "mmap":
            fraction = min(resident_fraction(p, files) for p in worker_processes(server))
        if rounds >= 4 * workers and (server.name != "mmap" or fraction >= 0.99):
            break
    return {
        "rounds": rounds,
        "requests": rounds * len(queries),
        "min_resident_fraction": round(fraction, 4) if server.name == "mmap" else None,
    }


def measure(server: Server) -> dict[str, Any]:
    time.sleep(1.0)  # let allocations from the warm-up settle
    procs = processes(server)
    infos = {p.pid: p.memory_full_info() for p in procs}
    workers = [p.pid for p in worker_processes(server)]
    return {
        "pss": sum(i.pss for i in infos.values()),
        "rss": sum(i.rss for i in infos.values()),
        "uss": sum(i.uss for i in infos.values()),
        "worker_pss": [infos[pid].pss for pid in workers],
        "worker_uss": [infos[pid].uss for pid in workers],
        "processes": len(procs),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    params = QUICK if args.quick else FULL
    artifacts = catalogue(params, Path(args.artifacts).resolve() if args.artifacts else None, args.rebuild, args.quick)
    store = ArtifactStore(artifacts)
    version = store.current_version() or ""
    version_dir = store.version_dir(version)
    manifest = json.loads((version_dir / MANIFEST).read_text())
    files = index_files(version_dir)
    index_bytes = sum(files.values())
    models, metrics = list(manifest["models"]), list(manifest["metrics"])
    rows = []
    logs = Path(tempfile.mkdtemp(prefix="worker-memory-"))
    try:
        for n in args.workers:
            for mode in ("mmap", "copy"):  # side by side for each N
                server = start(mode, n, artifacts, logs / f"{mode}-{n}.log")
                try:
                    t0 = time.monotonic()
                    server.wait_serving(n, version)
                    started = time.monotonic() - t0
                    warm = warm_up(server, n, models, metrics, files)
                    mem = measure(server)
                finally:
                    server.stop()
                row = {"workers": n, "mode": mode, "startup_seconds": round(started, 2), **warm, **mem}
                rows.append(row)
                print(
                    f"  {mode:4s} N={n}: total PSS {mem['pss'] / MiB:8.1f} MiB, RSS {mem['rss'] / MiB:8.1f} MiB "
                    f"(warm-up {warm['requests']} requests)",
                    flush=True,
                )
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    base = {
        mode: next(r["pss"] for r in rows if r["mode"] == mode and r["workers"] == min(args.workers)) for mode in ("mmap", "copy")
    }
    for r in rows:
        extra = r["workers"] - min(args.workers)
        r["pss_growth"] = r["pss"] - base[r["mode"]]
        r["growth_per_extra_worker"] = r["pss_growth"] / extra if extra else None
    return {
        "params": params,
        "artifacts": str(artifacts),
        "version": version,
        "index_bytes": index_bytes,
        "index_files": len(files),
        "counts": manifest["counts"],
        "machine": machine(),
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    ib = result["index_bytes"]
    c = result["counts"]
    lines = [
        f"catalogue: {c['users']} users x {c['items']} items, k = {c['k']}; "
        f"{result['index_files']} index files, {ib / MiB:.0f} MiB (one copy of the indexes)",
        "",
        "| workers | indexes | total PSS (MiB) | total RSS (MiB) | PSS growth vs 1 worker (MiB) | per extra worker (MiB) "
        "| N copies of the indexes (MiB) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        per = f"{r['growth_per_extra_worker'] / MiB:.0f}" if r["growth_per_extra_worker"] is not None else "-"
        lines.append(
            f"| {r['workers']} | {'memory-mapped' if r['mode'] == 'mmap' else 'copy per worker'} | {r['pss'] / MiB:.0f} "
            f"| {r['rss'] / MiB:.0f} | {r['pss_growth'] / MiB:.0f} | {per} | {r['workers'] * ib / MiB:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--quick", action="store_true", help="a small catalogue: a smoke test of the benchmark")
    ap.add_argument("--artifacts", help="an existing artifacts root (default: build a simulation catalogue)")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args(argv)
    result = run(args)
    print()
    print(table(result))
    out = write_results(results_path("worker_memory", args.quick), result)
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
