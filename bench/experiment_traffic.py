"""An online experiment you can watch end to end: simulated users of the paper's simulation click on what
the running API shows them, with probabilities from the ground truth, and the experiment report says which
metric wins.

    make demo-experiment                                   # = .venv/bin/python bench/experiment_traffic.py
    .venv/bin/python bench/experiment_traffic.py --artifacts artifacts --users 3000

Starts `python -m app` on the artifacts (a simulation build, e.g. `make build-sim`) with an experiments file
of three experiments on the metrics of denoising-symmetric, two A/B with one arm per metric and one
team-draft interleaving:
  rec-metric        /recommend      A/B          dot | cosine | projected
  item-metric       /similar-items  A/B          cosine | projected
  item-interleave   /similar-items  interleave   cosine | projected
Each simulated user u (a unit) asks for 10 recommendations and for the 10 neighbours of one item it
consumed, under the A/B experiments and again, for the same item, under the interleaving; every shown
item i is clicked with probability min(1, C * p_true(u, i)) (C = CLICK_SCALE x
n_items: a uniform p gives CLICK_SCALE), where p_true(u, .) is the simulation's true preference row. Clicks
go to POST /feedback; then the reports are printed (markdown) and written to bench/results/. The events
database is a SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import results_path, server_env, start_app, write_results  # noqa: E402
from models.artifact.store import ArtifactStore  # noqa: E402
from models.inputs.simulation import simulation_truth, spec_from_source  # noqa: E402

CLICK_SCALE = 0.01
MODEL = "denoising-symmetric"
EXPERIMENTS = f"""
[[experiment]]
name = "rec-metric"
endpoint = "recommend"
salt = "demo"
mode = "ab"
arms = [
  {{ name = "dot",       model = "{MODEL}", metric = "dot",       weight = 1 }},
  {{ name = "cosine",    model = "{MODEL}", metric = "cosine",    weight = 1 }},
  {{ name = "projected", model = "{MODEL}", metric = "projected", weight = 1 }},
]

[[experiment]]
name = "item-metric"
endpoint = "similar-items"
salt = "demo"
mode = "ab"
arms = [
  {{ name = "cosine",    model = "{MODEL}", metric = "cosine",    weight = 1 }},
  {{ name = "projected", model = "{MODEL}", metric = "projected", weight = 1 }},
]

[[experiment]]
name = "item-interleave"
endpoint = "similar-items"
salt = "demo"
mode = "interleave"
arms = [
  {{ name = "cosine",    model = "{MODEL}", metric = "cosine",    weight = 1 }},
  {{ name = "projected", model = "{MODEL}", metric = "projected", weight = 1 }},
]
"""
NAMES = ("rec-metric", "item-metric", "item-interleave")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", type=Path, default=ROOT / "artifacts", help="a simulation build (make build-sim)")
    ap.add_argument("--users", type=int, default=3000, help="simulated users (units)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    store = ArtifactStore(args.artifacts)
    version = store.current_version()
    if version is None:
        print(f"error: no published version under {args.artifacts}: run make build-sim first", file=sys.stderr)
        return 2
    manifest = json.loads((store.version_dir(version) / "manifest.json").read_text())
    if manifest["dataset"].get("kind") != "simulation":
        print("error: the experiment simulator needs a simulation build (its ground truth)", file=sys.stderr)
        return 2
    truth = simulation_truth(spec_from_source(manifest["dataset"]))
    p_true = truth.probabilities()
    users = json.loads((store.version_dir(version) / "users.json").read_text())
    items = [it["id"] for it in json.loads((store.version_dir(version) / "items.json").read_text())]
    item_row = {item: i for i, item in enumerate(items)}
    import scipy.sparse as sp

    X = sp.csr_matrix(sp.load_npz(store.version_dir(version) / "interactions.npz"))
    rng = np.random.default_rng(args.seed)
    scale = CLICK_SCALE * len(items)
    with tempfile.TemporaryDirectory(prefix="simserve-experiment-") as tmp:
        folder = Path(tmp)
        (folder / "experiments.toml").write_text(EXPERIMENTS)
        env = server_env(
            ARTIFACTS_DIR=str(args.artifacts),
            EXPERIMENTS_FILE=str(folder / "experiments.toml"),
            EVENTS_DIR=str(folder / "events"),
        )
        server = start_app("app", env, folder / "server.log", workers=2)
        try:
            server.wait("/readyz", 120)
            t0 = time.perf_counter()
            clicks = 0
            with httpx.Client(base_url=server.base, timeout=30) as client:
                chosen = rng.choice(len(users), size=min(args.users, len(users)), replace=False)
                for n, u in enumerate(chosen.tolist()):
                    unit = users[u]
                    seen = X.indices[X.indptr[u] : X.indptr[u + 1]]
                    calls = [("/recommend", {"user_id": unit, "experiment": "rec-metric"})]
                    if seen.size:
                        item = items[int(rng.choice(seen))]
                        calls.append(("/similar-items", {"item_id": item, "experiment": "item-metric"}))
                        calls.append(("/similar-items", {"item_id": item, "experiment": "item-interleave"}))
                    for path, params in calls:
                        body = client.get(path, params={**params, "unit_id": unit, "k": 10}).raise_for_status().json()
                        for entry in body["neighbors"]:
                            if rng.random() < min(1.0, scale * p_true[u, item_row[entry["item_id"]]]):
                                feedback = {
                                    "exposure_id": body["experiment"]["exposure_id"],
                                    "item_id": entry["item_id"],
                                    "event": "click",
                                }
                                client.post("/feedback", json=feedback).raise_for_status()
                                clicks += 1
                    if (n + 1) % 500 == 0:
                        print(f"  {n + 1} users, {clicks} clicks, {time.perf_counter() - t0:.0f}s", file=sys.stderr)
                time.sleep(1.0)  # the event log's writer flushes every 0.1 s
                reports = {name: client.get(f"/experiments/{name}/report").json() for name in NAMES}
                markdown = {
                    name: client.get(f"/experiments/{name}/report", params={"format": "markdown"}).text for name in reports
                }
        finally:
            server.stop()
    for name in reports:
        print(markdown[name])
        print()
    out = write_results(
        results_path("experiment_traffic", quick=False),
        {"version": version, "users": len(chosen), "click_scale": CLICK_SCALE, "seed": args.seed, "reports": reports},
    )
    print(f"results: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
