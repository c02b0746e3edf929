"""The build's held-out evaluation (evaluation.json) end to end through the CLI, against the paper's identities
and an independent recomputation of the split and of a baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.artifacts import build_in_process

from models.evaluation.split import holdout_split
from models.fit.closed_forms import DENOISING_VARIANTS
from models.inputs.simulation import SimulationSpec, simulate

MEASURES = ("recall_at_20", "ndcg_at_100", "category_precision_at_10", "popularity_ratio", "coverage_at_10", "spearman_truth")


def _evaluate(out: Path, *args: str) -> dict:
    flags = ["--quiet", "--no-diagnostics", "--gauge-transforms", "0", "--evaluate"]
    proc = build_in_process(["--dataset", "simulation", "--out", str(out), *flags, *args])
    assert proc.returncode == 0, proc.stderr
    vdir = out / "versions" / (out / "CURRENT").read_text().strip()
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert manifest["evaluation"] == "evaluation.json" and "evaluation.json" in manifest["files"]
    return json.loads((vdir / "evaluation.json").read_text())


@pytest.fixture(scope="module")
def low_rank(tmp_path_factory) -> dict:
    args = ["--sim-users", "800", "--sim-items", "80", "--k", "10", "--lambda-denoising", "50", "--seed", "2"]
    return _evaluate(tmp_path_factory.mktemp("eval"), *args)


def _rows(doc: dict) -> dict[tuple[str, str | None], dict]:
    return {(r["model"], r["metric"]): r for r in doc["results"]}


def test_projected_evaluation_is_identical_across_the_d_variants(low_rank):
    """Same predictions, different D: projected numbers identical, cosine numbers not."""
    rows = _rows(low_rank)
    ref = rows[(DENOISING_VARIANTS[0], "projected")]
    for variant in DENOISING_VARIANTS[1:]:
        got = rows[(variant, "projected")]
        for measure in MEASURES:
            assert got[measure] == pytest.approx(ref[measure], abs=1e-12), (variant, measure)
    cosine = {rows[(v, "cosine")]["coverage_at_10"] for v in DENOISING_VARIANTS} | {
        rows[(v, "cosine")]["recall_at_20"] for v in DENOISING_VARIANTS
    }
    assert len(cosine) > 2  # the arbitrary D does move cosine


def test_rows_split_and_popular_baseline_recomputed(low_rank):
    spec = SimulationSpec(n_users=800, n_items=80, seed=2)
    ds, _ = simulate(spec)
    split = holdout_split(ds.X, 0.2, 5, 2)
    assert low_rank["split"] == json.loads(json.dumps(split.info))
    assert low_rank["has_truth"] is True and low_rank["has_categories"] is True
    # most popular (training popularity, ties by lower id), training items excluded: Recall@20 by hand
    train, test = split.train.toarray() > 0, split.test.toarray() > 0
    pop = train.sum(axis=0)
    order = np.lexsort((np.arange(pop.size), -pop))
    recalls = []
    for u in np.flatnonzero(test.any(axis=1)):
        ranked = [i for i in order if not train[u, i]][:20]
        recalls.append(test[u, ranked].sum() / min(20, test[u].sum()))
    popular = _rows(low_rank)[("popular", None)]
    assert popular["recall_at_20"] == pytest.approx(float(np.mean(recalls)), abs=1e-12)
    assert popular["source"] == "baseline" and popular["spearman_truth"] is None
    for row in low_rank["results"]:
        for measure in ("recall_at_20", "ndcg_at_100", "coverage_at_10"):
            assert row[measure] is None or 0.0 <= row[measure] <= 1.0


def test_full_rank_item_orthonormal_cosine_and_dot_rank_users_alike(tmp_path):
    """PAPER.md identity 5: at full rank, item-orthonormal B = V has unit rows, so user -> item cosine is dot / ||P_u||."""
    doc = _evaluate(tmp_path / "art", "--sim-users", "600", "--sim-items", "30", "--k", "30", "--lambda-denoising", "20")
    assert doc["params"]["k"] == 30
    rows = _rows(doc)
    dot, cosine = rows[("denoising-item-orthonormal", "dot")], rows[("denoising-item-orthonormal", "cosine")]
    assert dot["recall_at_20"] == cosine["recall_at_20"] and dot["ndcg_at_100"] == cosine["ndcg_at_100"]
    other_dot, other_cos = rows[("denoising-user-orthonormal", "dot")], rows[("denoising-user-orthonormal", "cosine")]
    assert (other_dot["recall_at_20"], other_dot["ndcg_at_100"]) != (other_cos["recall_at_20"], other_cos["ndcg_at_100"])
