"""summary.json as tables: plain text for the build's output, markdown for docs and the API.

Reads only the summary document (models.diagnostics.summary writes it), so the API can format a
served version's summary without the build's dependencies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.artifact.manifest import METRICS
from models.diagnostics.sampling import MIN_TAU_QUERIES
from models.fit.closed_forms import DENOISING_VARIANTS


def metric_pairs(metrics: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Every unordered pair of metrics, in order: (dot, cosine), (dot, projected), ..."""
    return tuple((a, b) for i, a in enumerate(metrics) for b in metrics[i + 1 :])


def pair_name(a: str, b: str) -> str:
    """The name of a pair of lists in summary.json: "dot~cosine"."""
    return f"{a}~{b}"


def format_summary(summary: Mapping[str, Any], markdown: bool = False) -> str:
    """The summary as tables: plain text for the build's output, or markdown for docs and pages."""
    blocks: list[str] = []
    k = summary["k"]
    for side, s in summary["sides"].items():
        # the metrics this summary has: a version built before a metric existed lacks it
        metrics = [me for me in METRICS if all(me in mo["metrics"] for mo in s["models"].values())]
        how = "seeded sample" if s["sampled"] else "all"
        tau = (
            f"weighted tau on the first {s['tau_queries']} queries"
            if s["tau_queries"]
            else f"weighted tau left out ({summary['tau_budget']} // {s['rows']} rows < {MIN_TAU_QUERIES} queries)"
        )
        blocks.append(
            f"{side}: {s['queries']} of {s['rows']} rows queried ({how}); lists of {k}; RBO p={summary['rbo_p']}; {tau}; "
            f"popularity = {s['popularity']}, catalogue median {s['catalogue_median_popularity']:g}"
        )
        cat = any(v["category_precision"] is not None for mo in s["models"].values() for v in mo["metrics"].values())
        head = ["model"] + ([f"cat.prec@{k} {me}" for me in metrics] if cat else []) + [f"pop.bias {me}" for me in metrics]
        rows = []
        for model, mo in s["models"].items():
            vals = [mo["metrics"][me]["category_precision"] for me in metrics] if cat else []
            vals += [mo["metrics"][me]["popularity_bias"] for me in metrics]
            rows.append([model, *(_fmt(v) for v in vals)])
        blocks.append(_table(head, rows, markdown))
        rows = []
        for model, mo in s["models"].items():
            for n, (a, b) in enumerate(metric_pairs(metrics)):
                fig = mo["pairs"][pair_name(a, b)]
                rows.append(
                    [
                        model if n == 0 or markdown else "",
                        pair_name(a, b),
                        *(_fmt(fig[f]) for f in ("jaccard", "rbo", "weighted_tau")),
                    ]
                )
        blocks.append(_table(["model", "metric pair", f"Jaccard@{k}", "RBO", "weighted tau"], rows, markdown, left=2))
        d = s["d_sensitivity"]
        rows = [
            [
                f"mean Jaccard@{k} over the {len(DENOISING_VARIANTS)} denoising D-variants (6 pairs)",
                *(_fmt(d[me]["jaccard"]) + (" (one index)" if d[me]["shared_index"] else "") for me in metrics),
            ],
            ["least similar pair of D-variants", *(_fmt(d[me]["min_pair"]) for me in metrics)],
        ]
        blocks.append(_table(["D-sensitivity", *metrics], rows, markdown))
    embeddings = summary.get("embeddings")
    if embeddings:
        rows = [
            [
                model if n == 0 or markdown else "",
                side,
                *(_fmt(fig.get(f)) for f in ("anisotropy", "effective_rank", "norm_popularity_spearman")),
                str(fig.get("dims", "")),
            ]
            for model, by_side in embeddings.items()
            for n, (side, fig) in enumerate(by_side.items())
        ]
        blocks.append("embedding health (raw embeddings; they move with D, like cosine):")
        blocks.append(_table(["model", "side", "anisotropy", "effective rank", "norm~popularity", "k"], rows, markdown, left=2))
    return "\n\n".join(blocks)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool, left: int = 1) -> str:
    """A markdown table, or aligned text: the first `left` columns left-aligned, the rest right-aligned."""
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i < left else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join("  " + fmt.format(*r) for r in [head, *rows])


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
