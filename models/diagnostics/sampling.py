"""Which query rows the agreement figures are computed on: seeded, documented, the same everywhere."""

from __future__ import annotations

import numpy as np

MIN_TAU_QUERIES = 20


def sample_rows(m: int, sample: int, seed: int) -> np.ndarray:
    """Query rows (q,): all m rows in order when m <= sample, else `sample` rows drawn uniformly
    without replacement by numpy default_rng(seed), in increasing order."""
    if m <= sample:
        return np.arange(m)
    return np.sort(np.random.default_rng(seed).choice(m, size=sample, replace=False))


def tau_query_count(n_queries: int, m: int, tau_budget: int) -> int:
    """How many of the sampled queries get a weighted tau: tau_budget // m, at most n_queries; 0 (the
    summary's weighted tau is then None) when that is fewer than MIN_TAU_QUERIES (too noisy a mean)."""
    n = min(n_queries, tau_budget // max(m, 1))
    return n if n >= MIN_TAU_QUERIES else 0


def budgeted_count(wanted: int, rows: int, score_budget: int, min_queries: int) -> int:
    """Query rows of a side of `rows` rows whose lists each score every row: `wanted`, at most
    score_budget // rows (a large side gets fewer), never fewer than min_queries because of the budget."""
    return min(wanted, max(min_queries, score_budget // max(rows, 1)))
