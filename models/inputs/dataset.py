"""The interaction matrix X (n_users x n_items) with its id maps and item metadata."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp

from models.errors import InputError

DuplicatePolicy = Literal["sum", "max", "error"]


@dataclass
class Dataset:
    """X as CSR (n_users, n_items), float32; row/column order is the order of the id lists."""

    X: sp.csr_matrix
    user_ids: list[str]
    item_ids: list[str]
    item_titles: list[str] | None = None
    item_categories: list[list[str]] | None = None
    source: dict[str, object] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.X.shape[1])

    def fingerprint(self) -> str:
        """sha256 over the CSR arrays and both id lists: equal data gives an equal fingerprint."""
        h = hashlib.sha256()
        X = self.X
        for arr in (X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data.astype(np.float32)):
            h.update(np.ascontiguousarray(arr).tobytes())
        for ids in (self.user_ids, self.item_ids):
            h.update("\x1f".join(ids).encode())
            h.update(b"\x1e")
        return h.hexdigest()


def matrix_from_triplets(
    users: list[str],
    items: list[str],
    values: np.ndarray,
    duplicates: DuplicatePolicy = "sum",
    lines: np.ndarray | None = None,
    where: str = "input",
) -> tuple[sp.csr_matrix, list[str], list[str], int]:
    """Build X (n_users, n_items) from parallel lists of string ids and values (nnz,).

    Ids are numbered in order of first appearance. Duplicate (user, item) pairs are summed,
    kept at their maximum, or rejected (naming the input line of the repeat when `lines` is given).
    Returns (X, user_ids, item_ids, number_of_duplicate_rows_merged).
    """
    if len(users) == 0:
        raise InputError(f"{where}: no interactions")
    u_codes, u_ids = _codes(users)
    i_codes, i_ids = _codes(items)
    n, p = len(u_ids), len(i_ids)
    key = u_codes.astype(np.int64) * p + i_codes
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    repeat = np.flatnonzero(sorted_key[1:] == sorted_key[:-1]) + 1
    n_dup = int(repeat.size)
    if n_dup and duplicates == "error":
        first = int(order[repeat].min())
        at = f"line {int(lines[first])}" if lines is not None else f"row {first}"
        raise InputError(
            f"{where}: {at}: duplicate (user, item) pair ({users[first]!r}, {items[first]!r}); "
            "use --duplicates sum or max to merge repeats"
        )
    X = sp.coo_matrix((values.astype(np.float64), (u_codes, i_codes)), shape=(n, p))
    if duplicates == "max" and n_dup:
        uniq, start = np.unique(sorted_key, return_index=True)
        vals = np.maximum.reduceat(values[order].astype(np.float64), start)
        X = sp.coo_matrix((vals, (uniq // p, uniq % p)), shape=(n, p))
    csr = X.tocsr()  # coo -> csr sums duplicates
    csr.sum_duplicates()
    csr.sort_indices()
    return csr.astype(np.float32), u_ids, i_ids, n_dup


def _codes(ids: list[str]) -> tuple[np.ndarray, list[str]]:
    """Integer code per id in order of first appearance, and the distinct ids in that order."""
    index: dict[str, int] = {}
    codes = np.empty(len(ids), dtype=np.int64)
    for j, x in enumerate(ids):
        c = index.get(x)
        if c is None:
            c = index[x] = len(index)
        codes[j] = c
    return codes, list(index)


def item_popularity(X: sp.spmatrix) -> np.ndarray:
    """(n_items,) int64: users with a positive entry per item column of X (n_users, n_items)."""
    # scipy-stubs: spmatrix is a bare mixin without the comparison operators every concrete sparse matrix has
    return np.asarray((X > 0).sum(axis=0)).ravel().astype(np.int64)  # type: ignore[operator, attr-defined]


def user_activity(X: sp.spmatrix) -> np.ndarray:
    """(n_users,) int64: items with a positive entry per user row of X (n_users, n_items)."""
    # scipy-stubs: spmatrix is a bare mixin without the comparison operators every concrete sparse matrix has
    return np.asarray((X > 0).sum(axis=1)).ravel().astype(np.int64)  # type: ignore[operator, attr-defined]
