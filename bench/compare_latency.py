"""Latency of /compare-metrics on a large catalogue, side by side with /similar-users, and the cost of an unbounded tau.

    ARTIFACTS_DIR=/tmp/gb-art make build-goodbooks && ARTIFACTS_DIR=/tmp/gb-art .venv/bin/python -m app --port 8766 --workers 1 &
    .venv/bin/python bench/compare_latency.py --base http://127.0.0.1:8766 --version-dir /tmp/gb-art/versions/<version>

Part 1: every request case once per round, interleaved (all see the same machine load), first round a warm-up.
Part 2: in-process, the weighted tau of cosine vs projected user scores (denoising-symmetric) over every user
against the API's default seeded sample of 2,000 rows: time per pair and how far the sampled value is off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from scipy.stats import weightedtau

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `models` importable
    sys.path.insert(0, str(ROOT))

from models.artifact.manifest import ITEMS, MANIFEST, USERS, IndexKey  # noqa: E402
from models.diagnostics.sampling import sample_rows  # noqa: E402
from models.diagnostics.summary import index_vectors  # noqa: E402
from models.fit.closed_forms import MODELS  # noqa: E402


def latency(base: str, d: Path, rounds: int) -> None:
    users = json.loads((d / USERS).read_text())
    items = [it["id"] for it in json.loads((d / ITEMS).read_text())]
    c = httpx.Client(base_url=base, timeout=60)
    models = list(MODELS)
    cases = {
        "/similar-users (reference)": lambda u, i: ("/similar-users", {"user_id": u}),
        "/compare-metrics user, tau_rows=0": lambda u, i: ("/compare-metrics", {"user_id": u, "tau_rows": 0}),
        "/compare-metrics user (default tau_rows=2000)": lambda u, i: ("/compare-metrics", {"user_id": u}),
        "/compare-metrics user, tau_rows=5000 (max)": lambda u, i: ("/compare-metrics", {"user_id": u, "tau_rows": 5000}),
        "/compare-metrics user, 5 models, tau_rows=5000": lambda u, i: (
            "/compare-metrics",
            {"user_id": u, "models": models, "tau_rows": 5000},
        ),
        "/compare-metrics item": lambda u, i: ("/compare-metrics", {"item_id": i}),
        "/compare-metrics item, 5 models": lambda u, i: ("/compare-metrics", {"item_id": i, "models": models}),
        "/items/search q=the": lambda u, i: ("/items/search", {"q": "the"}),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(rounds + 1):
        u, i = users[(r * 1693) % len(users)], items[(r * 37) % len(items)]
        for name, case in cases.items():
            path, params = case(u, i)
            t = time.perf_counter()
            resp = c.get(path, params=params)
            dt = time.perf_counter() - t
            assert resp.status_code == 200, resp.text
            if r:
                times[name].append(dt * 1000)
    print("| request | median ms | p95 ms | max ms |\n| --- | --- | --- | --- |")
    for name, ts in times.items():
        ts.sort()
        print(f"| {name} | {statistics.median(ts):.1f} | {ts[int(0.95 * len(ts)) - 1]:.1f} | {ts[-1]:.1f} |")


def tau_cost(d: Path, queries: int) -> None:
    manifest = json.loads((d / MANIFEST).read_text())
    A = index_vectors(d / manifest["indexes"][str(IndexKey("users", "denoising-symmetric", "cosine"))]["file"])
    B = index_vectors(d / manifest["indexes"][str(IndexKey("users", "denoising-symmetric", "projected"))]["file"])
    full_t, sample_t, diffs = [], [], []
    for q in np.random.default_rng(1).choice(A.shape[0], queries, replace=False):
        t = time.perf_counter()
        full = weightedtau(np.delete(A @ A[q], q), np.delete(B @ B[q], q)).statistic
        full_t.append(time.perf_counter() - t)
        rows = sample_rows(A.shape[0], 2000, 0)
        rows = rows[rows != q]
        t = time.perf_counter()
        sampled = weightedtau(A[rows] @ A[q], B[rows] @ B[q]).statistic
        sample_t.append(time.perf_counter() - t)
        diffs.append(abs(full - sampled))
    print(
        f"weighted tau per pair: all {A.shape[0] - 1} rows {np.median(full_t) * 1000:.0f} ms, "
        f"2,000-row sample {np.median(sample_t) * 1000:.1f} ms (medians of {queries}); "
        f"|full - sampled| mean {np.mean(diffs):.3f}, max {np.max(diffs):.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--version-dir", required=True, type=Path)
    ap.add_argument("--rounds", type=int, default=29)
    ap.add_argument("--tau-queries", type=int, default=10)
    a = ap.parse_args()
    latency(a.base, a.version_dir, a.rounds)
    tau_cost(a.version_dir, a.tau_queries)


if __name__ == "__main__":
    main()
