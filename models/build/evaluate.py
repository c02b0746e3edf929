"""Held-out evaluation of every model x metric: evaluation.json (METHODS.md, "Held-out evaluation conventions").

A seeded per-user split; every model fitted again on the training part with the build's parameters
(models.build.fitting.fit_models, the function the build itself uses); per model and metric the
user -> item and item -> item measures of models.evaluation.scoring, then the random and popular
baselines. Imported factors cannot be refitted: they are evaluated as given and flagged, since
their training may have seen the held-out interactions. Nothing here changes what is served.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.artifact.manifest import EVALUATION
from models.build.fitting import ModelChoice, fit_models
from models.build.progress import Progress
from models.diagnostics.agreement import category_matrix
from models.evaluation.scoring import EvalParams, baselines, evaluate_model
from models.evaluation.split import holdout_split
from models.fit.svd import truncated_svd
from models.inputs.dataset import Dataset, item_popularity
from models.inputs.factors import ImportedFactors

TRUTH_MAX_ITEMS = 3000  # the Spearman against the simulation's ground truth ranks p (p - 1) / 2 pairs per metric


def run_evaluation(
    folder: Path,
    ds: Dataset,
    k: int,
    lambda_denoising: float,
    lambda_weight_decay: float,
    choice: ModelChoice,
    imported: Mapping[str, ImportedFactors],
    svd_options: Mapping[str, int],
    params: EvalParams,
    progress: Progress,
) -> dict[str, Any]:
    """Write EVALUATION into `folder` and return its document: {"split", "params", "results", ...}."""
    t0 = time.perf_counter()
    with progress.step(f"evaluation split ({params.fraction:.0%} of each user with >= {params.min_interactions})"):
        split = holdout_split(ds.X, params.fraction, params.min_interactions, params.seed)
    progress.say(
        f"evaluation: {split.info['eval_users']} users, {split.info['train_interactions']} training / "
        f"{split.info['test_interactions']} held-out interactions"
    )
    with progress.step("evaluation svd (training part)"):
        svd = truncated_svd(split.train, k, seed=params.seed, **svd_options)
    popularity = item_popularity(split.train)
    categories = category_matrix(ds.item_categories)[0] if ds.item_categories is not None else None
    truth = None
    if ds.source.get("kind") == "simulation" and ds.n_items <= TRUTH_MAX_ITEMS:
        from models.inputs.simulation import simulation_truth, spec_from_source

        truth = simulation_truth(spec_from_source(ds.source)).item_similarity()
    results: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    fitted = fit_models(
        split.train, svd, lambda_denoising, lambda_weight_decay, choice, imported, params.seed, progress, svd_options
    )
    for fm in fitted:
        t = time.perf_counter()
        with progress.step(f"evaluation {fm.name}"):
            rows = evaluate_model(fm.P, fm.Q, split.train, split.test, popularity, categories, truth, params)
        seconds[fm.name] = round(time.perf_counter() - t, 3)
        refitted = fm.source != "imported"
        results += [{"model": fm.name, "source": fm.source, "refitted": refitted, **row} for row in rows]
        del fm
    with progress.step("evaluation baselines (random, popular)"):
        results += [
            {"source": "baseline", "refitted": True, **row}
            for row in baselines(split.train, split.test, popularity, categories, params)
        ]
    doc = {
        "split": split.info,
        "params": {
            "recall_at": params.recall_at,
            "ndcg_at": params.ndcg_at,
            "list_k": params.list_k,
            "max_users": params.max_users,
            "max_items": params.max_items,
            "users_evaluated": min(split.info["eval_users"], params.max_users or split.info["eval_users"]),
            "items_evaluated": min(ds.n_items, params.max_items or ds.n_items),
            "k": svd.k,
            "lambda_denoising": lambda_denoising,
            "lambda_weight_decay": lambda_weight_decay,
        },
        "definitions": DEFINITIONS,
        "results": results,
        "has_categories": categories is not None,
        "has_truth": truth is not None,
        "evaluation_seconds": seconds,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    with open(folder / EVALUATION, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
    return doc


DEFINITIONS = {
    "recall_at_20": "|top-20 ∩ held-out| / min(20, |held-out|), training items excluded, mean over evaluated users",
    "samples": "users: every user with held-out items, or a seeded sample of max_users; query items: every item, or a "
    "seeded sample of max_items",
    "ndcg_at_100": "binary-relevance DCG@100 / ideal DCG of min(100, |held-out|) hits (Liang et al. 2018)",
    "category_precision_at_10": "share of an item's 10 neighbours sharing a category with it, mean over query items with one",
    "popularity_ratio": "median training popularity of an item's 10 neighbours / catalogue median, mean over query items",
    "coverage_at_10": "share of the catalogue in at least one query item's top-10 neighbour list",
    "spearman_truth": "Spearman correlation of the metric's item-item similarities with the simulation's true ones",
    "refitted": "false: imported factors, evaluated as given (their training may have seen the held-out part)",
}
