"""The Dask engine at three sizes on this machine: time per step and peak memory of the client and of each worker; the
measurements docs/scale-out.md's cost model is fitted to.

    .venv/bin/python bench/dask_scaling.py           # 2M, 8M and 32M interactions, k = 128
    .venv/bin/python bench/dask_scaling.py --quick   # 0.2M, 0.4M and 0.8M, k = 32: a smoke test

1. Data: bench/serve_vs_constant.py's clustered power law with users = interactions / 100 and items = users / 10
   (the sizing target's shape, growing with the log, as weak scaling asks), written as a directory of Parquet files of 1M rows
   each (user_id, item_id strings), as such logs are stored.
2. The job: `python -m models.build --dataset parquet --engine dask --dask-workers W --k K --exact-only
   --no-diagnostics --gauge-transforms 0` (a LocalCluster of W single-threaded worker processes; exact-only
   and no diagnostics because the approximate twins and the summaries are the in-process code measured in
   bench/build_vs_als.py, not the engine). Step times are the manifest's step_seconds.
3. Memory: the resident set of the job's process (client, scheduler and nannies) and of each worker process,
   sampled every 0.2 s; the table shows the client's peak and the largest worker's peak.
Results: bench/results/dask_scaling[.quick].json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `bench`, `app` and `models` importable
    sys.path.insert(0, str(ROOT))

from bench.harness import MiB, load_average, machine, results_path, write_results  # noqa: E402
from bench.serve_vs_constant import clustered_power_law  # noqa: E402
from models.artifact.manifest import MANIFEST, VERSIONS_DIR  # noqa: E402
from models.artifact.store import ArtifactStore  # noqa: E402

SIZES = {"full": (2_000_000, 8_000_000, 32_000_000), "quick": (200_000, 400_000, 800_000)}
# the shape of the sizing target (100M users x 10M items x 10B interactions): 100 interactions a user, 10 users an item
USERS_PER_INTERACTION, ITEMS_PER_USER = 1 / 100, 1 / 10
FILE_ROWS = 1_000_000


def write_log(n_interactions: int, folder: Path, seed: int) -> dict[str, int]:
    """A Parquet directory of about n_interactions (user_id, item_id) rows; its shape."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    users = max(100, round(n_interactions * USERS_PER_INTERACTION))
    items = max(50, round(users * ITEMS_PER_USER))
    X, _ = clustered_power_law(users, items, min(50, items // 100), 1 / USERS_PER_INTERACTION, seed)
    coo = X.tocoo()
    order = np.random.default_rng(seed).permutation(coo.nnz)  # a log's rows come in no order
    folder.mkdir(parents=True)
    for f, a in enumerate(range(0, coo.nnz, FILE_ROWS)):
        rows = order[a : a + FILE_ROWS]
        table = pa.table(
            {
                "user_id": pa.array(np.char.add("u", coo.row[rows].astype(str))),
                "item_id": pa.array(np.char.add("i", coo.col[rows].astype(str))),
            }
        )
        pq.write_table(table, folder / f"part-{f:05d}.parquet")
    shape = {"users": users, "items": items, "interactions": int(coo.nnz), "files": -(-coo.nnz // FILE_ROWS)}
    (folder / "shape.json").write_text(json.dumps(shape))
    return shape


class TreeMemory:
    """Peak resident memory of a process and of each of its descendants, sampled every `every` seconds."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid, self.every = pid, every
        self.peak: dict[int, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._done.is_set():
            for pid in self._tree():
                try:
                    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
                except (OSError, IndexError, ValueError):
                    continue
                self.peak[pid] = max(self.peak.get(pid, 0), rss)
            time.sleep(self.every)

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo += children.get(p, [])
        return out

    def stop(self) -> tuple[int, int]:
        """(the root's peak, the largest descendant's peak) in bytes."""
        self._done.set()
        self._thread.join()
        others = [v for p, v in self.peak.items() if p != self.pid]
        return self.peak.get(self.pid, 0), max(others, default=0)


def run_job(data: Path, out: Path, k: int, workers: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "models.build", "--dataset", "parquet", "--input", str(data), "--out", str(out)]
    cmd += ["--engine", "dask", "--dask-workers", str(workers), "--k", str(k), "--exact-only", "--no-diagnostics"]
    cmd += ["--gauge-transforms", "0", "--keep", "1"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    memory = TreeMemory(proc.pid)
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    client_peak, worker_peak = memory.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"the job failed ({proc.returncode}):\n{err[-4000:]}")
    version = ArtifactStore(out).current_version()
    manifest = json.loads((out / VERSIONS_DIR / str(version) / MANIFEST).read_text())
    return {
        "wall_seconds": wall,
        "step_seconds": manifest["step_seconds"],
        "client_peak_mib": client_peak / MiB,
        "worker_peak_mib": worker_peak / MiB,
        "svd": manifest.get("svd"),
        "log_tail": err.splitlines()[-60:],
    }


def category(step: str) -> str | None:
    """The cost model's name for a progress step (None: a step that only contains others, or none of ours)."""
    for prefix, name in (
        ("checking", "read and check"),
        ("id maps", "id maps"),
        ("X as", "shuffle into blocks"),
        ("svd", "svd"),
        ("model", "models"),
        ("indexes", "indexes"),
        ("publishing", "publish (client)"),
    ):
        if step.startswith(prefix):
            return name
    return None


def by_category(steps: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for step, seconds in steps.items():
        if (name := category(step)) is not None:
            out[name] = out.get(name, 0.0) + seconds
    return out


def fit(runs: list[dict[str, Any]], workers: int) -> dict[str, dict[str, float]]:
    """Per category, t(N, W) = a + N (s + w / W) seconds for N interactions on W workers: a and the slope at W
    from the two smaller sizes, split into its serial part s and its parallel part w by the one-worker run."""
    two = [r for r in runs if r["workers"] == workers]
    one = next((r for r in runs if r["workers"] == 1), None)
    small, mid = two[0], two[1]
    model = {}
    for name in by_category(mid["step_seconds"]):
        t_small, t_mid = by_category(small["step_seconds"]).get(name, 0.0), by_category(mid["step_seconds"])[name]
        slope = (t_mid - t_small) / (mid["interactions"] - small["interactions"])  # s + w / W
        a = t_mid - slope * mid["interactions"]
        w = 0.0
        if one is not None and workers > 1:
            t_one = by_category(one["step_seconds"]).get(name, t_mid)
            # t_one - t_mid = N w (1 - 1/W): what one worker more costs, only the parallel part
            w = max(0.0, (t_one - t_mid) / (one["interactions"] * (1 - 1 / workers)))
        w = min(w, slope * workers)
        model[name] = {"a": a, "serial": slope - w / workers, "parallel": w}
    return model


def predict(model: dict[str, dict[str, float]], n: float, workers: int) -> dict[str, float]:
    return {name: max(0.0, c["a"]) + n * (c["serial"] + c["parallel"] / workers) for name, c in model.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2: one per core here)")
    ap.add_argument("--k", type=int, default=None, help="embedding dimension (default 128, quick 32)")
    args = ap.parse_args()
    sizes = SIZES["quick" if args.quick else "full"]
    k = args.k or (32 if args.quick else 128)
    tmp = Path(tempfile.mkdtemp(prefix="dask-scaling-"))
    runs = []
    load_before = load_average()
    plan = [(n, args.workers) for n in sizes] + ([(sizes[1], 1)] if args.workers > 1 else [])
    for n, workers in plan:
        if not (tmp / f"log-{n}").exists():
            write_log(n, tmp / f"log-{n}", seed=0)
        shape = json.loads((tmp / f"log-{n}" / "shape.json").read_text())
        print(
            f"{shape['interactions']:,} interactions, {shape['users']:,} users x {shape['items']:,} items, {workers} workers ...",
            flush=True,
        )
        result = run_job(tmp / f"log-{n}", tmp / f"art-{n}-{workers}", k, workers)
        runs.append({**shape, "workers": workers, **result})
        for step, t in result["step_seconds"].items():
            print(f"  {t:8.1f} s  {step}", flush=True)
        print(
            f"  wall {result['wall_seconds']:.0f} s; peak RSS client {result['client_peak_mib']:.0f} MiB, "
            f"largest worker {result['worker_peak_mib']:.0f} MiB",
            flush=True,
        )
    model = fit(runs, args.workers)
    largest = next(r for r in runs if r["interactions"] == max(x["interactions"] for x in runs))
    predicted = predict(model, largest["interactions"], args.workers)
    measured = by_category(largest["step_seconds"])
    out = {
        "machine": machine(),
        "load_average": {"before": load_before, "after": load_average()},
        "k": k,
        "workers": args.workers,
        "runs": runs,
        "model": model,
        "validation": {"interactions": largest["interactions"], "predicted": predicted, "measured": measured},
    }
    path = write_results(results_path("dask_scaling", args.quick), out)

    cats = list(model)
    print(
        f"\n{'interactions':>13} {'users':>9} {'items':>8} {'W':>2} "
        + " ".join(f"{c[:14]:>14}" for c in cats)
        + f" {'wall s':>7} {'client MiB':>10} {'worker MiB':>10}"
    )
    for r in runs:
        steps = by_category(r["step_seconds"])
        print(
            f"{r['interactions']:>13,} {r['users']:>9,} {r['items']:>8,} {r['workers']:>2} "
            + " ".join(f"{steps.get(c, 0.0):>14.1f}" for c in cats)
            + f" {r['wall_seconds']:>7.0f} {r['client_peak_mib']:>10.0f} {r['worker_peak_mib']:>10.0f}"
        )
    print(f"\nvalidation at {largest['interactions']:,} interactions (fitted on the two smaller sizes and the 1-worker run):")
    for c in cats:
        p, m = predicted[c], measured.get(c, 0.0)
        print(f"  {c:<22} predicted {p:8.1f} s  measured {m:8.1f} s  ratio {p / m if m else float('nan'):5.2f}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
