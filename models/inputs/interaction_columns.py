"""Interaction columns read by a columnar reader (Arrow arrays) -> checked codes and values -> X.

The checks are those of the row-by-row CSV reader, done on whole columns: a problem is reported as a
RowProblem at the first row that has it, and the reader that knows where that row came from names it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from models.errors import RowProblem
from models.inputs.dataset import DuplicatePolicy, codes_of, matrix_from_codes

# A pyarrow Array or ChunkedArray (pyarrow has no type stubs: Any to the type checker).
Column: TypeAlias = Any


@dataclass
class Interactions:
    """X (n_users, n_items) float32 CSR with its id lists, the rows kept and the duplicate rows merged."""

    X: sp.csr_matrix
    user_ids: list[str]
    item_ids: list[str]
    rows: int
    duplicates_merged: int


def interactions_from_columns(
    users: Column,
    items: Column,
    values: Column | None,
    min_value: float | None = None,
    binarize: bool = False,
    duplicates: DuplicatePolicy = "sum",
) -> Interactions:
    """Check and convert columns of n rows: user and item ids (strings, surrounding whitespace dropped, never
    empty or null), values (finite, >= 0; 1 for every row when None).

    Rows with value < `min_value` are dropped; `binarize` sets every kept value to 1. RowProblem names the first
    bad row (0-based, over all n rows); with no rows kept, Interactions with rows == 0.
    """
    users = _ids(users)
    items = _ids(items)
    v = None if values is None else _floats(values.fill_null(0))
    first_problem(users, items, v, values)
    if v is None:
        v = np.ones(len(users))
    kept_rows: np.ndarray | None = None  # rows read, in order, of the rows --min-value kept (None: all of them)
    if min_value is not None:
        keep = v >= min_value
        if not keep.all():
            users, items, v = users.filter(pa.array(keep)), items.filter(pa.array(keep)), v[keep]
            kept_rows = np.flatnonzero(keep)
    if binarize:
        v = np.ones(len(v))
    if len(v) == 0:
        return Interactions(sp.csr_matrix(np.zeros((0, 0), dtype=np.float32)), [], [], 0, 0)
    with ThreadPoolExecutor(2) as pool:  # pyarrow's hash kernels release the GIL: one column per core
        (u_codes, user_ids), (i_codes, item_ids) = pool.map(codes_of, (users, items))
    try:
        X, n_dup = matrix_from_codes(u_codes, i_codes, v, user_ids, item_ids, duplicates)
    except RowProblem as p:
        raise RowProblem(p.row if kept_rows is None else int(kept_rows[p.row]), p.message) from None
    if binarize and n_dup:
        X.data[:] = 1.0
    return Interactions(X, user_ids, item_ids, len(v), n_dup)


def interactions_source(
    kind: str,
    path: Path,
    rows: int,
    duplicates: DuplicatePolicy,
    merged: int,
    min_value: float | None,
    binarize: bool,
    columns: dict[str, str | None],
) -> dict[str, object]:
    """The manifest's record of where the interactions came from and how they were read (any reader's)."""
    return {
        "kind": kind,
        "path": str(path),
        "rows": rows,
        "duplicates": duplicates,
        "duplicate_rows_merged": merged,
        "min_value": min_value,
        "binarize": binarize,
        "columns": columns,
    }


def first_problem(users: Column, items: Column, values: np.ndarray | None, value_nulls: Column | None = None) -> None:
    """RowProblem at the first row with a null or empty id, a null value (`value_nulls` true), or a non-finite or
    negative value (`values` (n,) float64). Whole-column aggregates first: the masks are made only for a column
    that has a problem."""
    bad: list[tuple[int, str]] = []
    for ids in (users, items):
        if ids.null_count or (len(ids) and pc.min(pc.utf8_length(ids)).as_py() == 0):
            at = _first_true(pc.or_kleene(pc.is_null(ids), pc.equal(pc.utf8_length(ids), 0)))
            bad.append((at, "empty user or item id"))
    if value_nulls is not None and value_nulls.null_count:
        bad.append((_first_true(pc.is_null(value_nulls)), "empty value; values must be numbers"))
    if values is not None and len(values) and not (np.isfinite(values).all() and values.min() >= 0):
        for mask, message in (
            (~np.isfinite(values), "value {!r} is not finite"),
            (values < 0, "negative value {}; values must be >= 0"),
        ):
            where = np.flatnonzero(mask)
            if where.size:
                bad.append((int(where[0]), message.format(float(values[where[0]]))))
    if bad:
        row, message = min(bad)
        raise RowProblem(row, message)


def _ids(column: Column) -> Column:
    """The column as strings with surrounding whitespace dropped (the row reader strips ids too)."""
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = pc.cast(column, pa.string())
    return pc.utf8_trim_whitespace(column)


def _floats(column: Column) -> np.ndarray:
    """(n,) float64 of a numeric column without nulls."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], type=pa.float64())
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _first_true(mask: Column) -> int:
    """Index of the first true entry of a boolean column that has one."""
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    return int(np.flatnonzero(mask.fill_null(False).to_numpy(zero_copy_only=False))[0])
