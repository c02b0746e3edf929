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
   - copy (the reference): the same app and uvicorn options, except that every worker reads its indexes and
     query vectors into its own memory (read_index without mmap, np.load without mmap_mode).
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
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `models` and `app` importable
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FULL = {"sim_users": 25_000, "sim_items": 300, "k": 300}
QUICK = {"sim_users": 4_000, "sim_items": 300, "k": 128}
ENDPOINTS = (("/similar-items", "item_id", "i1"), ("/similar-users", "user_id", "u1"), ("/recommend", "user_id", "u1"))
MiB = 1 << 20


# --------------------------------------------------------------------------- the reference server (copy mode)


def copy_app() -> Any:
    """app.main.create_app, with every index and query array read into the worker's own memory."""
    import numpy as np

    import app.serving.loader as store
    from app.main import create_app
    from models.indexes.faiss_index import read_index

    store.read_index = lambda path, mmap=True: read_index(path, mmap=False)
    load = np.load

    def load_copy(file: Any, mmap_mode: Any = None, **kwargs: Any) -> Any:
        return load(file, **kwargs)

    store.np.load = load_copy  # only this worker process: it was spawned for the benchmark
    return create_app()


def serve_copy(port: int, workers: int) -> int:
    """`python -m app` with copy_app instead of app.main:create_app (same environment and uvicorn options)."""
    from app.__main__ import prepare_environment, uvicorn_options

    cleanup = prepare_environment({"PORT": str(port), "WORKERS": str(workers), "HOST": "127.0.0.1"})
    try:
        import uvicorn

        from app.settings import Settings

        uvicorn.run("worker_memory:copy_app", factory=True, app_dir=str(Path(__file__).parent), **uvicorn_options(Settings()))
    finally:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
    return 0


# --------------------------------------------------------------------------- harness


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def catalogue(params: dict[str, int], root: Path | None, rebuild: bool, quick: bool) -> Path:
    """An artifacts root holding one simulation version built with `params` (cached between runs)."""
    if root is not None:
        return root
    root = RESULTS / f"worker-memory-artifacts{'-quick' if quick else ''}.tmp"
    stamp = root / "bench-params.json"
    if not rebuild and stamp.exists() and json.loads(stamp.read_text()) == params and (root / "CURRENT").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    args = [arg for key, value in params.items() for arg in (f"--{key.replace('_', '-')}", str(value))]
    cmd = [sys.executable, "-m", "models.build", "--dataset", "simulation", "--out", str(root), "--no-diagnostics", *args]
    print("building:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    stamp.write_text(json.dumps(params))
    return root


class Server:
    def __init__(self, mode: str, workers: int, artifacts: Path, log: Path) -> None:
        self.mode, self.workers, self.artifacts = mode, workers, artifacts
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        env.update({"ARTIFACTS_DIR": str(artifacts), "RELOAD_INTERVAL": "0", "LOG_LEVEL": "warning"})
        if mode == "mmap":
            cmd = [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        else:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "serve-copy",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
        )
        self.log = log

    def wait_serving(self, version: str, timeout: float = 300.0) -> None:
        """Until every worker reports the version in /metrics (each loads it before it accepts connections)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.mode} server exited with {self.proc.returncode}; see {self.log}")
            status, body = get(self.base + "/metrics", timeout=5)
            if status == 200:
                serving = [
                    ln
                    for ln in body.decode().splitlines()
                    if ln.startswith("simserve_artifact_version_info{") and f'version="{version}"' in ln and ln.endswith(" 1.0")
                ]
                if len(serving) >= self.workers:
                    return
            time.sleep(0.25)
        raise RuntimeError(f"{self.mode} server: {self.workers} workers not serving after {timeout}s; see {self.log}")

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def worker_processes(self) -> list[psutil.Process]:
        kids = [p for p in self.processes()[1:] if "multiprocessing.spawn" in " ".join(p.cmdline())]
        return kids or [psutil.Process(self.proc.pid)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)  # our own process group: uvicorn's supervisor and its workers
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def index_files(version_dir: Path) -> dict[str, int]:
    """{absolute path: bytes} of the version's index files (.faiss) and query arrays (.npy under indexes/)."""
    return {str(p.resolve()): p.stat().st_size for p in sorted((version_dir / "indexes").iterdir())}


def resident_fraction(proc: psutil.Process, files: dict[str, int]) -> float:
    """The smallest resident fraction, over the .faiss files, of a worker's mappings of them (0 if unmapped)."""
    rss: dict[str, int] = {}
    for m in proc.memory_maps(grouped=True):
        if m.path in files:
            rss[m.path] = m.rss
    return min(rss.get(path, 0) / size for path, size in files.items() if path.endswith(".faiss"))


def warm_up(server: Server, models: list[str], metrics: list[str], files: dict[str, int], max_rounds: int = 60) -> dict:
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
            status, body = get(server.base + q)
            if status != 200:
                raise RuntimeError(f"{q}: {status} {body[:300]!r}")
        if server.mode == "mmap":
            fraction = min(resident_fraction(p, files) for p in server.worker_processes())
        if rounds >= 4 * server.workers and (server.mode != "mmap" or fraction >= 0.99):
            break
    return {
        "rounds": rounds,
        "requests": rounds * len(queries),
        "min_resident_fraction": round(fraction, 4) if server.mode == "mmap" else None,
    }


def measure(server: Server) -> dict[str, Any]:
    time.sleep(1.0)  # let allocations from the warm-up settle
    procs = server.processes()
    infos = {p.pid: p.memory_full_info() for p in procs}
    workers = [p.pid for p in server.worker_processes()]
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
    version = (artifacts / "CURRENT").read_text().strip()
    version_dir = artifacts / "versions" / version
    manifest = json.loads((version_dir / "manifest.json").read_text())
    files = index_files(version_dir)
    index_bytes = sum(files.values())
    models, metrics = list(manifest["models"]), list(manifest["metrics"])
    rows = []
    logs = Path(tempfile.mkdtemp(prefix="worker-memory-"))
    try:
        for n in args.workers:
            for mode in ("mmap", "copy"):  # side by side for each N
                server = Server(mode, n, artifacts, logs / f"{mode}-{n}.log")
                try:
                    t0 = time.monotonic()
                    server.wait_serving(version)
                    started = time.monotonic() - t0
                    warm = warm_up(server, models, metrics, files)
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
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
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
    sub = ap.add_subparsers(dest="command")
    copy = sub.add_parser("serve-copy", help="(internal) serve with every index copied into each worker")
    copy.add_argument("--port", type=int, required=True)
    copy.add_argument("--workers", type=int, required=True)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--quick", action="store_true", help="a small catalogue: a smoke test of the benchmark")
    ap.add_argument("--artifacts", help="an existing artifacts root (default: build a simulation catalogue)")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args(argv)
    if args.command == "serve-copy":
        return serve_copy(args.port, args.workers)
    result = run(args)
    print()
    print(table(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"worker_memory{'.quick' if args.quick else ''}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
