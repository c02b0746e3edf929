"""The interaction matrix X (n_users x n_items) with its id maps and item metadata."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from models.errors import InputError, RowProblem, naming_the_file

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

    def item_popularity(self) -> np.ndarray:
        """(n_items,) int64: users with a positive entry per item."""
        return item_popularity(self.X)

    def user_activity(self) -> np.ndarray:
        """(n_users,) int64: items with a positive entry per user."""
        return user_activity(self.X)

    def save_interactions(self, path: Path) -> None:
        """X as scipy's uncompressed .npz (CSR)."""
        with naming_the_file(path):
            sp.save_npz(path, self.X.tocsr(), compressed=False)

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

    Ids are numbered in order of first appearance; duplicates as in `matrix_from_codes`, a rejected repeat named
    by its input line when `lines` is given. Returns (X, user_ids, item_ids, number_of_duplicate_rows_merged).
    """
    if len(users) == 0:
        raise InputError(f"{where}: no interactions")
    u_codes, u_ids = codes_of(pa.array(users, type=pa.string()))
    i_codes, i_ids = codes_of(pa.array(items, type=pa.string()))
    try:
        X, n_dup = matrix_from_codes(u_codes, i_codes, values, u_ids, i_ids, duplicates)
    except RowProblem as p:
        at = f"line {int(lines[p.row])}" if lines is not None else f"row {p.row}"
        raise InputError(f"{where}: {at}: {p.message}") from None
    return X, u_ids, i_ids, n_dup


def matrix_from_codes(
    u_codes: np.ndarray,
    i_codes: np.ndarray,
    values: np.ndarray,
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    duplicates: DuplicatePolicy = "sum",
) -> tuple[sp.csr_matrix, int]:
    """X (n_users, n_items) float32 CSR, sorted indices, from row codes u_codes (nnz,), column codes i_codes (nnz,)
    into user_ids / item_ids, and values (nnz,).

    Duplicate (user, item) pairs are summed, kept at their maximum, or rejected: RowProblem at the first row that
    repeats an earlier one. Returns (X, number_of_duplicate_rows_merged).
    """
    n, p = len(user_ids), len(item_ids)
    X = sp.coo_matrix((values.astype(np.float64, copy=False), (u_codes, i_codes)), shape=(n, p)).tocsr()
    X.sum_duplicates()  # summing is the default policy; the merged count is what it removed
    n_dup = len(values) - int(X.nnz)
    if n_dup and duplicates != "sum":
        key = u_codes.astype(np.int64) * p + i_codes
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        if duplicates == "error":
            repeat = np.flatnonzero(sorted_key[1:] == sorted_key[:-1]) + 1
            first = int(order[repeat].min())
            pair = (user_ids[int(u_codes[first])], item_ids[int(i_codes[first])])
            raise RowProblem(first, f"duplicate (user, item) pair {pair!r}; use --duplicates sum or max to merge repeats")
        uniq, start = np.unique(sorted_key, return_index=True)
        vals = np.maximum.reduceat(values[order].astype(np.float64), start)
        X = sp.coo_matrix((vals, (uniq // p, uniq % p)), shape=(n, p)).tocsr()
    X.sort_indices()
    return X.astype(np.float32), n_dup


def codes_of(ids: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """(codes (n,) int32 into the distinct ids, the distinct ids in order of first appearance) of a string column.

    One hash pass (dictionary_encode). Encoding a chunked column gives each chunk the dictionary seen so far, so
    the last chunk's dictionary extends every earlier one and all indices are codes into it; that is checked (one
    comparison of dictionaries per chunk), and where it does not hold the dictionaries are unified first.
    """
    encoded = ids.dictionary_encode()
    if not isinstance(encoded, pa.ChunkedArray):
        return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False), encoded.dictionary.to_pylist()
    if encoded.num_chunks == 0:
        return np.zeros(0, dtype=np.int32), []
    dictionary = encoded.chunk(encoded.num_chunks - 1).dictionary
    if not all(c.dictionary.equals(dictionary.slice(0, len(c.dictionary))) for c in encoded.chunks):
        encoded = encoded.unify_dictionaries()
        dictionary = encoded.chunk(0).dictionary
    codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in encoded.chunks])
    return codes.astype(np.int32, copy=False), dictionary.to_pylist()


def item_popularity(X: sp.spmatrix) -> np.ndarray:
    """(n_items,) int64: users with a positive entry per item column of X (n_users, n_items)."""
    # scipy-stubs: spmatrix is a bare mixin without the comparison operators every concrete sparse matrix has
    return np.asarray((X > 0).sum(axis=0)).ravel().astype(np.int64)  # type: ignore[operator, attr-defined]


def user_activity(X: sp.spmatrix) -> np.ndarray:
    """(n_users,) int64: items with a positive entry per user row of X (n_users, n_items)."""
    # scipy-stubs: spmatrix is a bare mixin without the comparison operators every concrete sparse matrix has
    return np.asarray((X > 0).sum(axis=1)).ravel().astype(np.int64)  # type: ignore[operator, attr-defined]
