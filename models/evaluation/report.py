"""evaluation.json as markdown tables: one row per model x metric, then the baselines; or a model x metric grid."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COLUMNS: tuple[tuple[str, str], ...] = (
    ("recall_at_20", "Recall@20"),
    ("ndcg_at_100", "nDCG@100"),
    ("category_precision_at_10", "cat.prec@10"),
    ("popularity_ratio", "pop. ratio"),
    ("coverage_at_10", "coverage@10"),
    ("spearman_truth", "Spearman vs truth"),
)


def format_evaluation(doc: Mapping[str, Any]) -> str:
    """The results of an evaluation document as a markdown table; columns that are null everywhere are left out."""
    rows = list(doc.get("results", []))
    columns = [(key, title) for key, title in COLUMNS if any(r.get(key) is not None for r in rows)]
    split = doc.get("split", {})
    head = (
        f"{split.get('method', 'split')}: {split.get('fraction', '?')} of each user with >= "
        f"{split.get('min_interactions', '?')} interactions held out (seed {split.get('seed', '?')}), "
        f"{doc.get('params', {}).get('users_evaluated', split.get('eval_users', '?'))} of "
        f"{split.get('eval_users', '?')} such users evaluated"
    )
    lines = [head, "", "| model | metric | " + " | ".join(t for _, t in columns) + " |", "|---|---|" + "---:|" * len(columns)]
    for r in rows:
        name = str(r.get("model")) + ("" if r.get("refitted", True) else " (not refitted)")
        metric = r.get("metric") or "(baseline)"
        lines.append(f"| {name} | {metric} | " + " | ".join(_cell(r.get(key)) for key, _ in columns) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def format_metric_grid(doc: Mapping[str, Any], keys: tuple[str, ...] = ("spearman_truth", "category_precision_at_10")) -> str:
    """One markdown row per model, one column per metric, each cell the `keys` figures joined by " / ": the
    paper's Figure 1 as numbers (Spearman with the ground truth, cluster precision@10) when run on the simulation."""
    rows = [r for r in doc.get("results", []) if r.get("metric")]
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    cells: dict[str, dict[str, str]] = {}
    for r in rows:
        cells.setdefault(str(r["model"]), {})[r["metric"]] = " / ".join(_cell(r.get(key)) for key in keys)
    titles = " / ".join(dict(COLUMNS).get(key, key) for key in keys)
    lines = [f"| model ({titles}) | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    lines += [f"| {model} | " + " | ".join(by.get(m, "–") for m in metrics) + " |" for model, by in cells.items()]
    return "\n".join(lines)
