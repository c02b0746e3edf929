"""The whole offline job against implicit's ALS fitting one model, on the same synthetic matrix.

    .venv/bin/python bench/build_vs_als.py            # 200,000 x 50,000, ~10M interactions, k = 128
    .venv/bin/python bench/build_vs_als.py --quick    # 20,000 x 5,000, ~300k interactions: a smoke test

Each side runs in its own subprocess (so peak RSS is measured per side, with os.wait4) and times its
work. Every job side is `python -m models.build` with its defaults (models/build/cli.py: the summary
and the gauge probe included), plus the benchmark's k, lambdas and seed:
- job: the CLI's run() once the input is read: the seeded matrix is generated (not timed), then the
  SVD, every model, the indexes, the diagnostics, and publishing (sha256, fsync, rename, CURRENT);
- job-csv, job-parquet: the CLI's run() itself on the same matrix written (not timed) as a CSV log
  and as a directory of 8 Parquet files (bench/ingestion.py's writer: string ids, values 1-5 in
  random row order), so reading the file is timed too;
- job-bare (opt-in): `--no-diagnostics --gauge-transforms 0`, what diagnostics cost by difference;
- job-lists (opt-in): the CLI defaults plus `--precompute-neighbours N` (--neighbours, default 100);
- als: implicit.cpu.als.AlternatingLeastSquares(factors=128, iterations=15).fit(X), X the
  users x items CSR (float32).
Both sides get the same number of cores (--threads, default 2): the job's BLAS and OpenMP pools are
set to that many threads; ALS gets num_threads=--threads with OpenBLAS at 1 thread, as implicit
recommends (its own threads do the work; a threaded BLAS inside them slows it down).
Sides alternate order between repeats; the table shows medians. Results go to
bench/results/build_vs_als.json (or --quick: build_vs_als.quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `bench` and `models` importable
    sys.path.insert(0, str(ROOT))

from bench.harness import results_path, write_results  # noqa: E402

GB = 1024**3
FULL = {"users": 200_000, "items": 50_000, "nnz": 10_000_000}
QUICK = {"users": 20_000, "items": 5_000, "nnz": 300_000}


# --------------------------------------------------------------------------- the matrix


def power_law_matrix(
    n_users: int,
    n_items: int,
    nnz: int,
    seed: int = 0,
    item_exponent: float = 0.9,
    activity_shape: float = 1.2,
    max_share: float = 0.1,
) -> sp.csr_matrix:
    """Binary X (n_users, n_items), float32 CSR with sorted indices, about `nnz` non-zeros.

    Item popularity: Zipf, pop(i) = rank_i ** -item_exponent, ranks in a seeded random order.
    User activity: Pareto(shape activity_shape) draws scaled so the total is nnz, clipped to
    [1, max_share * n_items]. Each user's items are drawn from pop with replacement; repeats are
    dropped and redrawn (a few rounds), so rows are close to sampling without replacement.
    """
    rng = np.random.default_rng(seed)
    pop = (rng.permutation(n_items) + 1.0) ** -item_exponent
    cdf = np.cumsum(pop / pop.sum())
    cdf[-1] = 1.0
    raw = rng.pareto(activity_shape, size=n_users) + 1.0
    cap = max(1, int(max_share * n_items))
    scale = nnz / raw.sum()
    for _ in range(30):  # clipping removes mass: rescale until the clipped total hits the target
        counts = np.clip(np.rint(raw * scale), 1, cap).astype(np.int64)
        total = int(counts.sum())
        if abs(total - nnz) <= 0.001 * nnz:
            break
        scale *= nnz / total
    keys = np.empty(0, dtype=np.int64)
    want = counts
    for _ in range(6):
        users = np.repeat(np.arange(n_users, dtype=np.int64), want)
        items = np.searchsorted(cdf, rng.random(users.size), side="right")
        keys = _sorted_unique(np.concatenate([keys, users * n_items + items]))
        have = np.bincount(keys // n_items, minlength=n_users)
        want = counts - have
        if want.sum() <= 0.002 * nnz:
            break
        want = np.maximum(want, 0)
    rows, cols = keys // n_items, keys % n_items
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    idx = np.int32 if max(n_items, keys.size) < 2**31 else np.int64
    X = sp.csr_matrix((np.ones(keys.size, dtype=np.float32), cols.astype(idx), indptr.astype(idx)), shape=(n_users, n_items))
    X.has_sorted_indices = True
    return X


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """np.unique(a) by sorting: numpy 2.x's hash-based unique is ~10x slower on 10M int64."""
    a = np.sort(a, kind="stable")  # timsort: the previous round's keys are one sorted run already
    keep = np.empty(a.size, dtype=bool)
    keep[:1] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def dataset(cfg: dict[str, Any]):
    from models.inputs.dataset import Dataset

    X = power_law_matrix(cfg["users"], cfg["items"], cfg["nnz"], seed=cfg["seed"])
    return Dataset(
        X=X,
        user_ids=[f"u{u}" for u in range(X.shape[0])],
        item_ids=[f"i{i}" for i in range(X.shape[1])],
        source={
            "kind": "synthetic-power-law",
            "users": cfg["users"],
            "items": cfg["items"],
            "nnz_target": cfg["nnz"],
            "seed": cfg["seed"],
            "generator": "bench/build_vs_als.py:power_law_matrix",
        },
    )


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB


# --------------------------------------------------------------------------- the sides (children)

SIDES = {
    "job": "offline job, CLI defaults",
    "job-csv": "offline job, CLI defaults, from CSV",
    "job-parquet": "offline job, CLI defaults, from Parquet",
    "job-bare": "offline job, no diagnostics",
    "job-lists": "offline job + neighbour lists",
    "als": "implicit ALS, one model",
}
DEFAULT_SIDES = ("job", "job-csv", "job-parquet", "als")
FILE_SIDES = {"job-csv": "csv", "job-parquet": "parquet"}


def cli_args(cfg: dict[str, Any], side: str) -> list[str]:
    """The command line of `python -m models.build` for a side: its defaults plus the benchmark's k, lambdas, seed."""
    dataset = FILE_SIDES.get(side, "simulation")
    args = ["--dataset", dataset, "--out", cfg["out"], "--keep", "1", "--k", str(cfg["k"]), "--seed", str(cfg["seed"])]
    args += ["--lambda-denoising", str(cfg["lambda_denoising"]), "--lambda-weight-decay", str(cfg["lambda_weight_decay"])]
    if side in FILE_SIDES:
        args += ["--input", cfg["inputs"][FILE_SIDES[side]]]
    if side == "job-bare":
        args += ["--no-diagnostics", "--gauge-transforms", "0"]
    if side == "job-lists":
        args += ["--precompute-neighbours", str(cfg["neighbours"])]
    if not cfg["progress"]:
        args.append("--quiet")
    return args


def side_job(cfg: dict[str, Any], side: str) -> dict[str, Any]:
    """One job side, timed from the parsed command line to the switched CURRENT.

    job, job-bare, job-lists: the CLI's run() once the input is read (the matrix is generated, not read);
    job-csv, job-parquet: the CLI's run() itself, reading the file.
    """
    from models.artifact.store import ArtifactStore, load_manifest
    from models.build.allocator import keep_freed_memory
    from models.build.cli import build_params, parser, run
    from models.build.pipeline import build_into
    from models.build.progress import Progress

    args = parser().parse_args(cli_args(cfg, side))
    progress = Progress(quiet=args.quiet)
    store = ArtifactStore(cfg["out"])
    if side in FILE_SIDES:
        after_data = rss_gb()
        t0 = time.perf_counter()
        version, _ = run(args, progress)
        t1 = time.perf_counter()
        t_pub = t1 - progress.timings["publishing"]
    else:
        ds = dataset(cfg)
        after_data = rss_gb()
        params = build_params(args)
        params.validate()
        keep_freed_memory()  # as run() does
        t0 = time.perf_counter()
        # What run() does once the input is read: version name, stage, build, publish.
        version = store.new_version(ds.fingerprint(), {"bench": cfg, "side": side})
        with store.staging(version) as staging:
            manifest = build_into(staging, ds, params, progress)
            t_pub = time.perf_counter()
            store.publish(staging, version, manifest, keep=1)
        t1 = time.perf_counter()
    assert store.current_version() == version
    final = store.root / "versions" / version
    published = load_manifest(final)
    return {
        "wall_seconds": t1 - t0,
        "publish_seconds": t1 - t_pub,
        "rss_after_data_gb": after_data,
        "nnz": int(published["counts"]["interactions"]),
        "step_seconds": published["step_seconds"],
        "build_seconds": published["build_seconds"],
        "svd": {k: published["svd"][k] for k in ("method", "relative_residual", "energy_captured")},
        "surviving_dims": {m: v["surviving_dims"] for m, v in published["models"].items()},
        "neighbour_lists": args.precompute_neighbours,
        "diagnostics": {"summary": args.diagnostics, "gauge_transforms": args.gauge_transforms},
        "command": ["python", "-m", "models.build", *cli_args(cfg, side)],
        "indexes": len(published["indexes"]),
        "files": len(published["files"]),
        "artifact_bytes": sum(f["bytes"] for f in published["files"].values()),
    }


def side_als(cfg: dict[str, Any]) -> dict[str, Any]:
    from implicit.cpu.als import AlternatingLeastSquares

    X = dataset(cfg).X  # users x items CSR, as implicit >= 0.5 expects
    after_data = rss_gb()
    model = AlternatingLeastSquares(
        factors=cfg["k"], iterations=cfg["als_iterations"], num_threads=cfg["threads"], random_state=cfg["seed"]
    )
    t0 = time.perf_counter()
    model.fit(X, show_progress=cfg["progress"])
    t1 = time.perf_counter()
    assert model.user_factors.shape[0] == X.shape[0] and model.item_factors.shape[0] == X.shape[1]
    return {
        "wall_seconds": t1 - t0,
        "rss_after_data_gb": after_data,
        "nnz": int(X.nnz),
        "factors": int(model.item_factors.shape[1]),
    }


def thread_env(side: str, threads: int) -> dict[str, str]:
    blas = "1" if side == "als" else str(threads)
    env = dict(os.environ)
    env.update(
        {
            "OMP_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": blas,
            "MKL_NUM_THREADS": blas,
            "NUMEXPR_NUM_THREADS": str(threads),
        }
    )
    return env


def run_side(side: str, cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    """One side in a fresh interpreter; its result plus its peak RSS (whole process) from wait4."""
    cfg_file, out_file = work / f"{side}.cfg.json", work / f"{side}.result.json"
    out_file.unlink(missing_ok=True)
    cfg_file.write_text(json.dumps(cfg))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", side, str(cfg_file), str(out_file)], env=thread_env(side, cfg["threads"]), cwd=ROOT
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{side} side failed with exit code {proc.returncode}")
    result = json.loads(out_file.read_text())
    result["peak_rss_gb"] = usage.ru_maxrss * 1024 / GB  # Linux: KiB
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return result


# --------------------------------------------------------------------------- the parent


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def job_steps(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds of each manifest step (over the runs that have it), publishing, and the time outside any step."""
    names = list(dict.fromkeys(name for r in runs for name in r["step_seconds"]))
    steps = {name: statistics.median(r["step_seconds"][name] for r in runs if name in r["step_seconds"]) for name in names}
    steps["publishing (hash, manifest, fsync, rename, CURRENT)"] = median(runs, "publish_seconds")
    # "neighbour lists" is a sum over the model steps (it runs inside them), not a step of its own
    steps["outside any step (fingerprint, shared X V, dataset files)"] = statistics.median(
        r["wall_seconds"] - r["publish_seconds"] - sum(v for k, v in r["step_seconds"].items() if k != "neighbour lists")
        for r in runs
    )
    return steps


DIAGNOSTIC_STEPS = ("gauge probe", "diagnostics", "heatmaps")


def diagnostics_seconds(run: dict[str, Any]) -> float:
    """Seconds of a job run's diagnostic steps (the gauge probe, summary.json, heatmaps) from its step_seconds."""
    return sum(sec for name, sec in run["step_seconds"].items() if name.startswith(DIAGNOSTIC_STEPS))


def report(cfg: dict[str, Any], runs: dict[str, list[dict[str, Any]]], loads: list[list[float]]) -> dict[str, Any]:
    als = runs["als"]
    a_wall = median(als, "wall_seconds")
    jobs = [s for s in SIDES if s != "als" and runs.get(s)]
    med: dict[str, Any] = {
        side: {
            "wall_seconds": median(r, "wall_seconds"),
            "peak_rss_gb": median(r, "peak_rss_gb"),
            "max_peak_rss_gb": max(x["peak_rss_gb"] for x in r),
            "cpu_seconds": median(r, "cpu_seconds"),
        }
        for side, r in runs.items()
        if r
    }
    targets = {}
    for side in jobs:
        r = runs[side]
        med[side].update(
            {
                "job_over_als": med[side]["wall_seconds"] / a_wall,
                "step_seconds": job_steps(r),
                "diagnostics_seconds": statistics.median(diagnostics_seconds(x) for x in r),
                "diagnostics_share": statistics.median(diagnostics_seconds(x) / x["wall_seconds"] for x in r),
                "svd_relative_residual": median([x["svd"] for x in r], "relative_residual"),
            }
        )
        targets[side] = {
            "at_most_0.7x_als": med[side]["job_over_als"] <= 0.7,
            "peak_rss_under_6gb": med[side]["max_peak_rss_gb"] < 6.0,
            "diagnostics_at_most_15pct": med[side]["diagnostics_share"] <= 0.15,
        }
    out = {
        "config": cfg,
        "machine": machine(),
        "load_average_before_each_side": loads,
        "runs": runs,
        "median": med,
        "targets": targets,
    }

    first = runs[jobs[0]][0]
    n = len(als)
    print()
    print(
        f"matrix {cfg['users']:,} users x {cfg['items']:,} items, {first['nnz']:,} interactions (binary, power law, "
        f"seed {cfg['seed']}); k = {cfg['k']}; {cfg['threads']} threads per side; medians of {n} run{'s' * (n > 1)}"
    )
    print(f"{'':52s}{'wall s':>9s}{'job/ALS':>9s}{'diag %':>8s}{'peak RSS GB':>13s}{'CPU s':>8s}   per run wall s")
    for side in [*jobs, "als"]:
        m = med[side]
        label = SIDES[side]
        if side == "job-lists":
            label += f" N={runs[side][0]['neighbour_lists']}"
        if side == "als":
            label += f" ({cfg['als_iterations']} iterations)"
        ratio = f"{m['job_over_als']:.2f}x" if "job_over_als" in m else ""
        share = f"{100 * m['diagnostics_share']:.0f}%" if "diagnostics_share" in m else ""
        per = ", ".join(f"{x['wall_seconds']:.1f}" for x in runs[side])
        print(f"{label:52s}{m['wall_seconds']:9.1f}{ratio:>9s}{share:>8s}{m['peak_rss_gb']:13.2f}{m['cpu_seconds']:8.1f}   {per}")
    print(
        f"RSS after generating the matrix (included in the peaks): {median(als, 'rss_after_data_gb'):.2f} GB (ALS), "
        f"{median(runs[jobs[0]], 'rss_after_data_gb'):.2f} GB (job)"
    )
    print(
        f"svd: {first['svd']['method']}, relative residual {med[jobs[0]]['svd_relative_residual']:.2e}, "
        f"energy captured {first['svd']['energy_captured']:.3f}"
    )
    for side in jobs:
        run = runs[side][0]
        print(
            f"{SIDES[side]}: {run['indexes']} indexes, {run['files']} files, {run['artifact_bytes'] / GB:.2f} GB; "
            "steps (manifest step_seconds, medians):"
        )
        for name, sec in med[side]["step_seconds"].items():
            print(f"  {sec:8.2f}s  {'(of which, inside the model steps) ' if name == 'neighbour lists' else ''}{name}")
    for side in jobs:
        t = targets[side]
        print(
            f"targets, {SIDES[side]}: at most 0.7x ALS {'MET' if t['at_most_0.7x_als'] else 'MISSED'}; "
            f"peak RSS < 6 GB {'MET' if t['peak_rss_under_6gb'] else 'MISSED'}; "
            f"diagnostics <= 15% {'MET' if t['diagnostics_at_most_15pct'] else 'MISSED'}"
        )
    return out


def machine() -> dict[str, Any]:
    import faiss
    import implicit
    import scipy
    import sklearn

    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")),
        platform.processor(),
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "faiss": faiss.__version__,
        "implicit": implicit.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20,000 x 5,000, ~300k interactions, one repeat")
    ap.add_argument("--users", type=int)
    ap.add_argument("--items", type=int)
    ap.add_argument("--nnz", type=int, help="target number of interactions")
    ap.add_argument("--k", type=int, default=128)
    ap.add_argument("--als-iterations", type=int, default=15)
    ap.add_argument("--lambda-denoising", type=float, default=10_000.0)
    ap.add_argument("--lambda-weight-decay", type=float, default=100.0)
    ap.add_argument("--repeats", type=int, help="runs per side (default 3, --quick 1); medians are reported")
    ap.add_argument("--threads", type=int, default=2, help="cores given to each side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--sides",
        default=",".join(DEFAULT_SIDES),
        help=f"comma-separated, from {', '.join(SIDES)} (default {','.join(DEFAULT_SIDES)})",
    )
    ap.add_argument("--neighbours", type=int, default=100, help="job-lists: top-N neighbour lists per item index")
    ap.add_argument("--workdir", help="where artifacts are staged and published (default: a fresh temp folder, removed)")
    ap.add_argument("--json", help="results file (default bench/results/build_vs_als[.quick].json)")
    ap.add_argument("--progress", action="store_true", help="show the job's progress lines and ALS's progress bar")
    args = ap.parse_args(argv)
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not sides or set(sides) - set(SIDES):
        ap.error(f"--sides: choose from {', '.join(SIDES)}")
    size = QUICK if args.quick else FULL
    cfg = {
        "users": args.users or size["users"],
        "items": args.items or size["items"],
        "nnz": args.nnz or size["nnz"],
        "k": args.k,
        "als_iterations": args.als_iterations,
        "lambda_denoising": args.lambda_denoising,
        "lambda_weight_decay": args.lambda_weight_decay,
        "seed": args.seed,
        "threads": args.threads,
        "neighbours": args.neighbours,
        "parquet_files": 8,
        "progress": args.progress,
        "thread_env": {
            s: {k: thread_env(s, args.threads)[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")} for s in ("job", "als")
        },
        "als_num_threads": args.threads,
    }
    repeats = args.repeats or (1 if args.quick else 3)
    work = Path(tempfile.mkdtemp(prefix="build_vs_als-", dir=args.workdir))
    cfg["out"] = str(work / "artifacts")
    if set(sides) & set(FILE_SIDES):
        cfg["inputs"] = {"csv": str(work / "log.csv"), "parquet": str(work / "log.parquet")}
        t = time.perf_counter()
        run_side("write-inputs", cfg, work)
        print(f"[bench] wrote the matrix as CSV and Parquet in {time.perf_counter() - t:.1f}s (not timed)", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    loads: list[list[float]] = []
    try:
        for r in range(repeats):
            order = sides if r % 2 == 0 else sides[::-1]  # alternate: no side always runs first
            for side in order:
                loads.append([round(x, 2) for x in os.getloadavg()])
                res = run_side(side, cfg, work)
                runs[side].append({**res, "repeat": r, "load_average_before": loads[-1]})
                print(
                    f"[bench] repeat {r + 1}/{repeats} {side}: {res['wall_seconds']:.1f}s, peak RSS {res['peak_rss_gb']:.2f} GB",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = Path(args.json) if args.json else results_path("build_vs_als", args.quick)
    write_results(path, {"config": cfg, "runs": runs})  # kept if the report fails
    if "als" not in sides or len(sides) < 2:
        print(json.dumps(runs, indent=1, default=str))
        return 0
    out = report(cfg, runs, loads)
    write_results(path, out)
    print(f"results: {path}")
    return 0


def child(side: str, cfg_file: str, out_file: str) -> int:
    cfg = json.loads(Path(cfg_file).read_text())
    if side == "write-inputs":  # in a child of its own: its peak RSS must not pass to the sides' processes
        from bench.ingestion import write_inputs

        write_inputs(cfg, Path(cfg["inputs"]["csv"]).parent)
        result: dict[str, Any] = {}
    else:
        result = side_als(cfg) if side == "als" else side_job(cfg, side)
    Path(out_file).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        sys.exit(child(*sys.argv[2:]))
    sys.exit(main())
