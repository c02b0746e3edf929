"""What the gauge probe's sample sizes change: two GaugeParams on the same published models, with standard errors.

    .venv/bin/python bench/gauge_samples.py --artifacts DIR        # DIR/CURRENT's version (python -m models.build --out DIR)

For every model of the version (its factors read back from the dot indexes, float32 as served) the probe runs
twice: once with the defaults before the probe was made cheap (8 transforms, score budget 25,000,000 per
side, at least 100 queries) and once with GaugeParams' defaults. For the moving metrics (dot, cosine) of
each side it prints the mean Jaccard@10 of both, their standard errors (queries and transforms are both
samples: standard_error), the difference and z = difference / sqrt(se_a^2 + se_b^2). The shared metrics
are 1.0 in both by construction (models/diagnostics/gauge.py) and are not repeated here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.diagnostics.gauge import (  # noqa: E402
    MIN_QUERIES,
    GaugeParams,
    list_agreement,
    probe_lists,
    random_diagonals,
)
from models.diagnostics.sampling import budgeted_count, sample_rows  # noqa: E402

BEFORE = GaugeParams(transforms=8, score_budget=25_000_000)
BEFORE_MIN_QUERIES = 100
MOVING = ("dot", "cosine")


def factors(version_dir: Path, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(P (n_users, k), Q (n_items, k)) float64 from the version's dot indexes of `model`."""
    import faiss

    manifest = json.loads((version_dir / "manifest.json").read_text())
    out = []
    for side in ("users", "items"):
        entry = manifest["indexes"][f"{side}/{model}/dot"]
        index = faiss.read_index(str(version_dir / entry["file"]))
        out.append(index.reconstruct_n(0, index.ntotal).astype(np.float64))
    return out[0], out[1]


def jaccards(P: np.ndarray, Q: np.ndarray, params: GaugeParams, min_queries: int) -> dict[tuple[str, str], np.ndarray]:
    """{(side, metric): Jaccard@k (R transforms, q queries)} for the moving metrics."""
    sizes = {"items": Q.shape[0], "users": P.shape[0]}
    wanted = {"items": params.item_queries, "users": params.user_queries}
    rows = {
        side: sample_rows(m, budgeted_count(wanted[side], m, params.score_budget, min_queries), params.seed)
        for side, m in sizes.items()
    }
    lists = probe_lists(P, Q, random_diagonals(P.shape[1], params), rows, params.k, params.shared_transforms)
    return {(side, metric): list_agreement(*lists[side, metric])[0] for side in sizes for metric in MOVING}


def standard_error(J: np.ndarray) -> float:
    """Standard error of the mean of J (R, q): queries and transforms both sampled, var = s_D^2 / R + s_q^2 / q
    (s_D^2 the variance of the transforms' means, s_q^2 of the queries')."""
    R, q = J.shape
    between_d = J.mean(axis=1).var(ddof=1) / R if R > 1 else 0.0
    between_q = J.mean(axis=0).var(ddof=1) / q if q > 1 else 0.0
    return float(np.sqrt(between_d + between_q))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", required=True, help="artifacts root with a CURRENT version")
    args = ap.parse_args(argv)
    root = Path(args.artifacts)
    version_dir = root / "versions" / (root / "CURRENT").read_text().strip()
    manifest = json.loads((version_dir / "manifest.json").read_text())
    after = GaugeParams()

    print(
        f"{version_dir.name}: before = {BEFORE.transforms} transforms, budget {BEFORE.score_budget:,}, min {BEFORE_MIN_QUERIES};"
    )
    print(f"after = {after.transforms} transforms, budget {after.score_budget:,}, min {MIN_QUERIES}")
    head = ["q before", "before", "se", "q after", "after", "se", "diff", "z"]
    print(f"{'model':28s}{'side':>6s}{'metric':>8s}" + "".join(f"{h:>9s}" for h in head))
    rows: list[dict[str, Any]] = []
    for model in manifest["models"]:
        P, Q = factors(version_dir, model)
        a = jaccards(P, Q, BEFORE, BEFORE_MIN_QUERIES)
        b = jaccards(P, Q, after, MIN_QUERIES)
        for (side, metric), x in a.items():
            y = b[side, metric]
            se_x, se_y = standard_error(x), standard_error(y)
            diff = float(y.mean() - x.mean())
            z = diff / float(np.hypot(se_x, se_y)) if se_x or se_y else 0.0
            rows.append({"model": model, "side": side, "metric": metric, "diff": diff, "z": z})
            print(
                f"{model:28s}{side:>6s}{metric:>8s}{x.shape[1]:9d}{x.mean():9.3f}{se_x:9.3f}"
                f"{y.shape[1]:9d}{y.mean():9.3f}{se_y:9.3f}{diff:9.3f}{z:9.2f}"
            )
    worst = max(rows, key=lambda r: abs(r["z"]))
    where = f"{worst['model']} {worst['side']} {worst['metric']}"
    print(f"largest |diff| {max(abs(r['diff']) for r in rows):.3f}; largest |z| {abs(worst['z']):.2f} ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
