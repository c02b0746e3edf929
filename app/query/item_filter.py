"""Which items a /similar-items or /recommend answer may hold: `exclude` (item ids) and `category`. No HTTP here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.serving.version import Version


class UnknownCategory(LookupError):
    """A category no item of the served version has."""

    def __init__(self, category: str, known: Sequence[str], version: str) -> None:
        self.category, self.known, self.version = category, list(known), version
        shown = ", ".join(self.known[:20]) + (f", ... ({len(self.known)} in all)" if len(self.known) > 20 else "")
        super().__init__(
            f"unknown category {category!r}; artifact version {version} has "
            + (f"the categories {shown}" if self.known else "no item categories")
        )


@dataclass(frozen=True, eq=False)
class ItemFilter:
    """The item rows an answer may hold: those of a category (sorted rows; None: every item), less `excluded`
    (sorted rows)."""

    category_rows: np.ndarray | None
    excluded: np.ndarray

    def mask(self, n_items: int) -> np.ndarray:
        """(n_items,) bool: True for the rows that pass."""
        if self.category_rows is None:
            keep = np.ones(n_items, dtype=bool)
        else:
            keep = np.zeros(n_items, dtype=bool)
            keep[self.category_rows] = True
        keep[self.excluded] = False
        return keep


def item_filter(version: Version, exclude: Sequence[str] | None, category: str | None) -> ItemFilter | None:
    """The filter of a request's `exclude` and `category`, None when it has neither.

    Excluded ids the version does not have are ignored (they could not be returned anyway); an unknown category
    raises UnknownCategory, since it would silently empty every answer.
    """
    if not exclude and category is None:
        return None
    rows = None
    if category is not None:
        rows = version.category_rows.get(category)
        if rows is None:
            raise UnknownCategory(category, list(version.category_rows), version.name)
    excluded = sorted({r for r in (version.item_rows.get(i) for i in exclude or ()) if r is not None})
    return ItemFilter(rows, np.asarray(excluded, dtype=np.int64))
