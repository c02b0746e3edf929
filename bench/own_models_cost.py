"""What `--train als` and `--evaluate` add to a build, step by step, measured side by side in one run.

    .venv/bin/python bench/own_models_cost.py             # goodbooks (3 rounds) and the build benchmark's matrix (1 round)
    .venv/bin/python bench/own_models_cost.py --quick     # the simulation and the build benchmark's --quick matrix

Three builds of the same data, each in its own subprocess (so peak RSS is per build), in alternating
order between rounds, with the CLI's defaults otherwise (closed forms, gauge probe of every model;
diagnostics off, their cost is in docs/offline-job.md):
- base:            the paper's five closed forms
- +als:            --train als (implicit's ALS, its default hyper-parameters, factors = k)
- +als +evaluate:  --train als --evaluate (per-user split, every model refitted, every metric measured)
Per build the manifest's step timings are grouped (svd, closed forms and indexes, ALS, gauge probe,
evaluation: split + svd, refit + measures, baselines; publish) and the table shows medians over rounds.
Results go to bench/results/own_models_cost.json (or .quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `bench` and `models` importable
    sys.path.insert(0, str(ROOT))

from bench.build_vs_als import FULL, QUICK  # noqa: E402
from bench.harness import load_average, machine, results_path, write_results  # noqa: E402

GOODBOOKS = ROOT.parent / "shared" / "data" / "goodbooks"
CONFIGS = {"base": (), "+als": ("als",), "+als +evaluate": ("als", "evaluate")}
GROUPS = (
    "svd",
    "closed forms + indexes",
    "ALS (implicit)",
    "gauge probe",
    "evaluation: split + svd",
    "evaluation: refit + measures",
    "evaluation: baselines",
    "publish",
)


def group_of(step: str) -> str | None:
    """Which row of the table a step of the manifest's step_seconds belongs to (None: not counted)."""
    if step.startswith("svd"):
        return "svd"
    if step.startswith("model ") and "(implicit" in step:
        return "ALS (implicit)"
    if step.startswith(("model ", "indexes ")):
        return "closed forms + indexes"
    if step.startswith("gauge probe"):
        return "gauge probe"
    if step.startswith(("evaluation split", "evaluation svd")):
        return "evaluation: split + svd"
    if step.startswith("evaluation baselines"):
        return "evaluation: baselines"
    if step.startswith("evaluation "):
        return "evaluation: refit + measures"
    return "publish" if step == "publishing" else None


def datasets(quick: bool) -> list[dict[str, Any]]:
    """(name, how to make the Dataset, build parameters, rounds)."""
    matrix = QUICK if quick else FULL
    out = []
    if quick:
        out.append(
            {"name": "simulation 20,000 x 1,000", "kind": "simulation", "k": 50, "lambdas": (10_000.0, 100.0), "rounds": 3}
        )
    elif GOODBOOKS.is_dir():
        out.append({"name": "goodbooks", "kind": "goodbooks", "k": 64, "lambdas": (5000.0, 30.0), "rounds": 3})
    else:
        print(f"goodbooks skipped: {GOODBOOKS} is absent", file=sys.stderr)
    name = f"build benchmark matrix {matrix['users']:,} x {matrix['items']:,}, ~{matrix['nnz']:,} nnz"
    out.append(
        {
            "name": name,
            "kind": "matrix",
            "matrix": matrix,
            "k": 128,
            "lambdas": (10_000.0, 100.0),
            "rounds": 1 if not quick else 3,
        }
    )
    return out


# --------------------------------------------------------------------------- the child: one build


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    from models.artifact.store import ArtifactStore, load_manifest
    from models.build.fitting import ModelChoice
    from models.build.pipeline import BuildParams, build_into
    from models.build.progress import Progress
    from models.diagnostics.gauge import GaugeParams

    if cfg["kind"] == "goodbooks":
        from models.inputs.goodbooks import read_goodbooks

        ds = read_goodbooks(GOODBOOKS, min_value=None, binarize=True, duplicates="sum")
    elif cfg["kind"] == "simulation":
        from models.inputs.simulation import SimulationSpec, simulate

        ds, _ = simulate(SimulationSpec())
    else:
        from bench.build_vs_als import dataset

        ds = dataset({**cfg["matrix"], "seed": 0})
    extra = CONFIGS[cfg["config"]]
    params = BuildParams(
        k=cfg["k"],
        lambda_denoising=cfg["lambdas"][0],
        lambda_weight_decay=cfg["lambdas"][1],
        gauge=GaugeParams(),  # the CLI's default (library callers get none)
        models=ModelChoice(train=("als",) if "als" in extra else ()),
        evaluate="evaluate" in extra,
    )
    store = ArtifactStore(cfg["out"])
    t0 = time.perf_counter()
    version = store.new_version(ds.fingerprint(), {"bench": cfg})
    progress = Progress(quiet=True)
    with store.staging(version) as staging:
        manifest = build_into(staging, ds, params, progress)
        with progress.step("publishing"):
            final = store.publish(staging, version, manifest, keep=1)
    wall = time.perf_counter() - t0
    published = load_manifest(final)
    steps = {**published["step_seconds"], **progress.timings}
    return {"wall_seconds": wall, "step_seconds": steps, "models": list(published["models"])}


# --------------------------------------------------------------------------- the parent


def run_child(cfg: dict[str, Any]) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="own-models-"))
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps({**cfg, "out": str(out)})],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"},
        )
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise RuntimeError(f"{cfg['name']} {cfg['config']}: child failed ({status})")
        result = json.loads(stdout.strip().splitlines()[-1])
        result["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1024**3
        result["process_seconds"] = time.perf_counter() - t0
        return result
    finally:
        shutil.rmtree(out, ignore_errors=True)


def grouped(steps: dict[str, float]) -> dict[str, float]:
    out = dict.fromkeys(GROUPS, 0.0)
    for step, seconds in steps.items():
        group = group_of(step)
        if group is not None:
            out[group] += seconds
    return out


def table(name: str, runs: dict[str, list[dict[str, Any]]]) -> str:
    configs = list(CONFIGS)
    med = {c: {g: statistics.median(grouped(r["step_seconds"])[g] for r in runs[c]) for g in GROUPS} for c in configs}
    wall = {c: statistics.median(r["wall_seconds"] for r in runs[c]) for c in configs}
    rss = {c: max(r["peak_rss_gb"] for r in runs[c]) for c in configs}
    rounds = len(runs[configs[0]])
    lines = [f"\n{name} ({rounds} round{'s' if rounds > 1 else ''}, medians, seconds)", ""]
    lines.append("| step | " + " | ".join(configs) + " |")
    lines.append("| --- |" + " ---: |" * len(configs))
    for g in GROUPS:
        lines.append(f"| {g} | " + " | ".join(f"{med[c][g]:.1f}" for c in configs) + " |")
    lines.append("| **build (wall)** | " + " | ".join(f"**{wall[c]:.1f}**" for c in configs) + " |")
    lines.append("| vs base | " + " | ".join(f"{wall[c] / wall['base']:.2f}x" for c in configs) + " |")
    lines.append("| peak RSS GB | " + " | ".join(f"{rss[c]:.2f}" for c in configs) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child")
    a = ap.parse_args()
    if a.child:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        print(json.dumps(child(json.loads(a.child))))
        return
    results: dict[str, Any] = {"machine": machine(), "load_average_start": load_average(), "datasets": {}}
    report = []
    for spec in datasets(a.quick):
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
        for r in range(spec["rounds"]):
            order = list(CONFIGS) if r % 2 == 0 else list(reversed(CONFIGS))
            for config in order:
                print(f"{spec['name']}: round {r + 1}, {config} ...", file=sys.stderr, flush=True)
                runs[config].append(run_child({**spec, "config": config}))
        results["datasets"][spec["name"]] = runs
        report.append(table(spec["name"], runs))
        print(report[-1], flush=True)
    results["load_average_end"] = load_average()
    path = write_results(results_path("own_models_cost", a.quick), results)
    print(f"\nload average {results['load_average_start']} -> {results['load_average_end']}; results: {path}")


if __name__ == "__main__":
    main()
