"""Read interactions from Parquet (one file, or a directory of files) into a Dataset, columnar throughout.

A directory means every `*.parquet` file below it, in path order, skipping names that start with `_` or `.`
(Spark's and Hadoop's `_SUCCESS`, `.crc` files). A problem is named by file and row (0-based within the file):
Parquet rows have no lines, and the columnar checks already know the row, so no second pass is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from models.errors import InputError, RowProblem
from models.inputs.dataset import Dataset, DuplicatePolicy
from models.inputs.interaction_columns import Column, interactions_from_columns, interactions_source


@dataclass
class _Part:
    """One file's used columns, already in the types the checks expect: ids as strings, values as float64."""

    path: Path
    users: Column
    items: Column
    values: Column | None


def read_interactions_parquet(
    path: str | Path,
    user_col: str = "user_id",
    item_col: str = "item_id",
    value_col: str | None = "value",
    min_value: float | None = None,
    binarize: bool = False,
    duplicates: DuplicatePolicy = "sum",
) -> Dataset:
    """The interactions of the Parquet file or directory at `path`, with the CSV reader's checks and options.

    Id columns must be strings or integers (integers are read as their decimal text); the value column, optional
    when it has the default name, must be numeric in every file. Only the three columns are read.
    """
    path = Path(path)
    files = parquet_files(path)
    parts = [_read_part(f, user_col, item_col, value_col) for f in files]
    if any(p.values is None for p in parts) and any(p.values is not None for p in parts):
        without = next(p.path for p in parts if p.values is None)
        raise InputError(f"{without}: no value column {value_col!r}, which other files of {path} have")
    has_values = parts[0].values is not None
    try:
        got = interactions_from_columns(
            _joined([p.users for p in parts], pa.string()),
            _joined([p.items for p in parts], pa.string()),
            _joined([p.values for p in parts], pa.float64()) if has_values else None,
            min_value,
            binarize,
            duplicates,
        )
    except RowProblem as p:
        file, row = _locate(p.row, [(part.path, len(part.users)) for part in parts])
        raise InputError(f"{file}: row {row}: {p.message}") from None
    if got.rows == 0:
        raise InputError(f"{path}: no interactions{' after --min-value' if min_value is not None else ''}")
    return Dataset(
        X=got.X,
        user_ids=got.user_ids,
        item_ids=got.item_ids,
        source={
            **interactions_source(
                "parquet",
                path,
                got.rows,
                duplicates,
                got.duplicates_merged,
                min_value,
                binarize,
                {"user": user_col, "item": item_col, "value": value_col if has_values else None},
            ),
            "files": len(files),
        },
    )


def parquet_files(path: Path) -> list[Path]:
    """[path] for a file; for a directory, its `*.parquet` files at any depth in path order, hidden names skipped."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: no such file or directory")
    files = sorted(
        f
        for f in path.rglob("*.parquet")
        if f.is_file() and not any(part.startswith(("_", ".")) for part in f.relative_to(path).parts)
    )
    if not files:
        raise InputError(f"{path}: a directory without *.parquet files")
    return files


def _read_part(file: Path, user_col: str, item_col: str, value_col: str | None) -> _Part:
    """The file's user, item and (if present) value columns, type-checked and cast; InputError naming the file."""
    columns = checked_columns(file, user_col, item_col, value_col)
    try:
        table = pq.read_table(file, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{file}: cannot read columns {columns}: {e}") from e
    has_value = len(columns) == 3
    return _Part(
        path=file,
        users=_cast(table.column(user_col), pa.string()),
        items=_cast(table.column(item_col), pa.string()),
        values=_cast(table.column(value_col), pa.float64()) if has_value else None,
    )


def checked_columns(file: Path, user_col: str, item_col: str, value_col: str | None) -> list[str]:
    """[user_col, item_col] plus value_col when the file has it, from the file's schema (its footer only); InputError
    naming the file for an unreadable file, a missing column (the value column may be missing only under its default
    name), ids that are neither strings nor integers, or values that are not numbers."""
    try:
        schema = pq.read_schema(file)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{file}: not a readable Parquet file: {e}") from e
    names = schema.names
    missing = [c for c in (user_col, item_col) if c not in names]
    if missing:
        raise InputError(f"{file}: missing column(s) {', '.join(missing)}; columns are {names}")
    has_value = value_col is not None and value_col in names
    if value_col is not None and not has_value and value_col != "value":
        raise InputError(f"{file}: missing value column {value_col!r}; columns are {names}")
    for col in (user_col, item_col):
        if not _is_id_type(schema.field(col).type):
            raise InputError(f"{file}: column {col!r} has type {schema.field(col).type}; ids must be strings or integers")
    if has_value:
        t = schema.field(value_col).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
            raise InputError(f"{file}: value column {value_col!r} has type {t}; values must be numbers")
    return [user_col, item_col] + ([value_col] if has_value and value_col is not None else [])


def _is_id_type(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)


def _cast(column: Column, to: pa.DataType) -> Column:
    return column if column.type == to else column.cast(to)


def _joined(columns: list[Column], to: pa.DataType) -> pa.ChunkedArray:
    """One chunked column of the files' columns, in file order (no copy of the chunks)."""
    return pa.chunked_array([chunk for c in columns for chunk in c.chunks], type=to)


def _locate(row: int, sizes: list[tuple[Path, int]]) -> tuple[Path, int]:
    """(file, row within that file) of a 0-based row over the files' rows laid end to end."""
    ends = np.cumsum([n for _, n in sizes])
    at = int(np.searchsorted(ends, row, side="right"))
    return sizes[at][0], row - (int(ends[at - 1]) if at else 0)
