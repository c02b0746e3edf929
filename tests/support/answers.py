"""Comparing two neighbour answers of the same query, where tied scores may come in either order."""

from __future__ import annotations

import numpy as np

TIE = 1e-6  # float32 rounding of scores of order 1


def same_answer(rows, scores, ref_rows, ref_scores) -> None:
    """Equal score lists, and equal ids among those scoring above the k-th (ties at the cut may differ)."""
    assert len(rows) == len(ref_rows) > 0
    np.testing.assert_allclose(scores, ref_scores, rtol=TIE, atol=TIE)
    cut = min(scores[-1], ref_scores[-1]) + TIE * max(1.0, abs(float(scores[-1])))

    def above(r, s):
        return {x for x, y in zip(r.tolist(), s.tolist(), strict=True) if y > cut}

    assert above(rows, scores) == above(ref_rows, ref_scores)
