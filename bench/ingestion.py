"""Reading interactions: the row-by-row CSV reader against the columnar CSV reader and Parquet, same data.

    .venv/bin/python bench/ingestion.py            # 10M rows: the build benchmark's 200,000 x 50,000 matrix
    .venv/bin/python bench/ingestion.py --quick    # 300k rows: a smoke test

The data is bench/build_vs_als.py's seeded power-law matrix, written (not timed) as an interaction log:
one row per non-zero, `u<row>,i<column>,<value 1..5>`, rows in a seeded random order (a log is not sorted
by user), once as a CSV and once as a directory of Parquet files (--parquet-files parts, zstd). Each side
reads it in a fresh interpreter, so peak RSS (os.wait4) is that side's alone:
- rows: models.inputs.csv_file.read_interactions_csv_rows, the Python row-by-row reader (what every CSV
  went through before the columnar reader; today the second pass that names a bad line);
- csv: models.inputs.csv_file.read_interactions_csv, what `--dataset csv` runs;
- parquet: models.inputs.parquet_files.read_interactions_parquet, what `--dataset parquet` runs.
Every side must produce the same Dataset fingerprint. Sides alternate order between repeats; the table
shows medians and each side's speed-up over the row reader. Results: bench/results/ingestion[.quick].json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `bench` and `models` importable
    sys.path.insert(0, str(ROOT))

from bench.build_vs_als import FULL, QUICK, power_law_matrix  # noqa: E402
from bench.harness import machine, results_path, write_results  # noqa: E402

GB = 1024**3
SIDES = {
    "rows": "CSV, row-by-row Python reader",
    "csv": "CSV, columnar (--dataset csv)",
    "parquet": "Parquet directory (--dataset parquet)",
}


def write_inputs(cfg: dict[str, Any], work: Path) -> None:
    """The interaction log as work/log.csv and work/log.parquet/part-<j>.parquet."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    X = power_law_matrix(cfg["users"], cfg["items"], cfg["nnz"], seed=cfg["seed"]).tocoo()
    rng = np.random.default_rng(cfg["seed"] + 1)
    order = rng.permutation(X.nnz)
    users = pa.array([f"u{u}" for u in range(X.shape[0])]).take(pa.array(X.row[order]))
    items = pa.array([f"i{i}" for i in range(X.shape[1])]).take(pa.array(X.col[order]))
    values = pa.array(rng.integers(1, 6, size=X.nnz).astype(np.int64))
    table = pa.table({"user_id": users, "item_id": items, "value": values})
    csv_path = work / "log.csv"
    pacsv.write_csv(table, csv_path, write_options=pacsv.WriteOptions(quoting_style="needed"))
    parquet_dir = work / "log.parquet"
    parquet_dir.mkdir()
    bounds = np.linspace(0, X.nnz, cfg["parquet_files"] + 1).astype(int)
    for j, (a, b) in enumerate(itertools.pairwise(bounds)):
        pq.write_table(table.slice(a, b - a), parquet_dir / f"part-{j:03d}.parquet", compression="zstd")


def side(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """One side's read, timed, in this (child) process."""
    import resource

    from models.inputs.csv_file import read_interactions_csv, read_interactions_csv_rows
    from models.inputs.parquet_files import read_interactions_parquet

    read = {"rows": read_interactions_csv_rows, "csv": read_interactions_csv, "parquet": read_interactions_parquet}[name]
    path = cfg["parquet"] if name == "parquet" else cfg["csv"]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB
    t0 = time.perf_counter()
    ds = read(path)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rss_before_read_gb": before,
        "nnz": int(ds.X.nnz),
        "rows": ds.source["rows"],
        "users": ds.n_users,
        "items": ds.n_items,
        "fingerprint": ds.fingerprint(),
    }


def run_side(name: str, cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    cfg_file, out_file = work / "cfg.json", work / f"{name}.json"
    cfg_file.write_text(json.dumps(cfg))
    out_file.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg["threads"]), "OPENBLAS_NUM_THREADS": str(cfg["threads"])}
    proc = subprocess.Popen([sys.executable, __file__, "--child", name, str(cfg_file), str(out_file)], cwd=ROOT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} side failed with exit code {os.waitstatus_to_exitcode(status)}")
    result = json.loads(out_file.read_text())
    result["peak_rss_gb"] = usage.ru_maxrss * 1024 / GB  # Linux: KiB
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return result


def report(cfg: dict[str, Any], runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    med = {
        s: {k: statistics.median(r[k] for r in rs) for k in ("seconds", "peak_rss_gb", "rss_before_read_gb", "cpu_seconds")}
        for s, rs in runs.items()
    }
    base = med["rows"]["seconds"] if "rows" in med else None
    for m in med.values():
        m["speedup_over_rows"] = base / m["seconds"] if base else None
    prints = {r["fingerprint"] for rs in runs.values() for r in rs}
    first = next(iter(runs.values()))[0]
    n = len(next(iter(runs.values())))
    print()
    print(
        f"{first['rows']:,} rows ({first['users']:,} users x {first['items']:,} items, {cfg['csv_bytes'] / 2**20:.0f} MiB CSV, "
        f"{cfg['parquet_bytes'] / 2**20:.0f} MiB Parquet in {cfg['parquet_files']} files); medians of {n} run{'s' * (n > 1)}"
    )
    print(f"{'':40s}{'read s':>9s}{'vs rows':>9s}{'peak RSS GB':>13s}{'of which before':>17s}   per run s")
    for s, m in med.items():
        ratio = f"{m['speedup_over_rows']:.1f}x" if m["speedup_over_rows"] else ""
        per = ", ".join(f"{r['seconds']:.2f}" for r in runs[s])
        print(f"{SIDES[s]:40s}{m['seconds']:9.2f}{ratio:>9s}{m['peak_rss_gb']:13.2f}{m['rss_before_read_gb']:17.2f}   {per}")
    print(f"same Dataset from every side: {'yes' if len(prints) == 1 else 'NO'} ({len(prints)} distinct fingerprints)")
    targets = {}
    if base:
        for s in ("csv", "parquet"):
            if s in med:
                targets[f"{s}_at_least_5x_rows"] = med[s]["speedup_over_rows"] >= 5.0
        print("targets: " + ", ".join(f"{k} {'MET' if v else 'MISSED'}" for k, v in targets.items()))
    return {
        "config": cfg,
        "machine": machine(),
        "runs": runs,
        "median": med,
        "same_dataset": len(prints) == 1,
        "targets": targets,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300k rows, one repeat")
    ap.add_argument("--nnz", type=int, help="target number of rows")
    ap.add_argument("--repeats", type=int, help="runs per side (default 3, --quick 1)")
    ap.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, from {', '.join(SIDES)}")
    ap.add_argument("--parquet-files", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2, help="OMP/BLAS threads of each side (pyarrow uses its own pool)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="where the inputs are written (default: a fresh temp folder, removed)")
    ap.add_argument("--json", help="results file (default bench/results/ingestion[.quick].json)")
    args = ap.parse_args(argv)
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not sides or set(sides) - set(SIDES):
        ap.error(f"--sides: choose from {', '.join(SIDES)}")
    size = QUICK if args.quick else FULL
    cfg: dict[str, Any] = {
        "users": size["users"],
        "items": size["items"],
        "nnz": args.nnz or size["nnz"],
        "seed": args.seed,
        "parquet_files": args.parquet_files,
        "threads": args.threads,
    }
    repeats = args.repeats or (1 if args.quick else 3)
    work = Path(tempfile.mkdtemp(prefix="ingestion-", dir=args.workdir))
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    try:
        print("[bench] writing the interaction log (not timed)", flush=True)
        # in a child: a parent that had held the log would pass its peak RSS on to every side it starts
        (work / "cfg.json").write_text(json.dumps(cfg))
        subprocess.run([sys.executable, __file__, "--write", str(work / "cfg.json"), str(work)], cwd=ROOT, check=True)
        csv_path, parquet_dir = work / "log.csv", work / "log.parquet"
        cfg.update(
            csv=str(csv_path),
            parquet=str(parquet_dir),
            csv_bytes=csv_path.stat().st_size,
            parquet_bytes=sum(f.stat().st_size for f in parquet_dir.iterdir()),
        )
        for r in range(repeats):
            for name in sides if r % 2 == 0 else sides[::-1]:
                res = run_side(name, cfg, work)
                runs[name].append({**res, "repeat": r, "load_average_before": list(os.getloadavg())})
                print(
                    f"[bench] repeat {r + 1}/{repeats} {name}: {res['seconds']:.2f}s, peak RSS {res['peak_rss_gb']:.2f} GB",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = report(cfg, runs)
    path = write_results(Path(args.json) if args.json else results_path("ingestion", args.quick), out)
    print(f"results: {path}")
    return 0 if out["same_dataset"] else 1


def child(name: str, cfg_file: str, out_file: str) -> int:
    Path(out_file).write_text(json.dumps(side(name, json.loads(Path(cfg_file).read_text()))))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        sys.exit(child(*sys.argv[2:]))
    if len(sys.argv) == 4 and sys.argv[1] == "--write":
        write_inputs(json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
