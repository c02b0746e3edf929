"""Read an interaction CSV (`user_id,item_id[,value]`, header required) into a Dataset."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from models.errors import InputError
from models.inputs.dataset import Dataset, DuplicatePolicy, matrix_from_triplets


def read_interactions_csv(
    path: str | Path,
    user_col: str = "user_id",
    item_col: str = "item_id",
    value_col: str | None = "value",
    min_value: float | None = None,
    binarize: bool = False,
    duplicates: DuplicatePolicy = "sum",
) -> Dataset:
    """Parse the file row by row so that every problem names its line.

    `value_col` is optional in the file when it is the default name; values must be finite and >= 0.
    Rows with value < `min_value` are dropped; `binarize` sets every kept value to 1.
    """
    path = Path(path)
    users: list[str] = []
    items: list[str] = []
    values: list[float] = []
    lines: list[int] = []
    try:
        handle = open(path, "rb")  # noqa: SIM115 -- opened here so that an unreadable path is its own error
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    with handle:
        reader = csv.reader(_decoded_lines(handle, path))
        header = read_header(reader, path)
        missing = [c for c in (user_col, item_col) if c not in header]
        if missing:
            raise InputError(f"{path}: line 1: missing column(s) {', '.join(missing)}; header is {header}")
        ui, ii = header.index(user_col), header.index(item_col)
        vi: int | None = None
        if value_col is not None and value_col in header:
            vi = header.index(value_col)
        elif value_col is not None and value_col != "value":
            raise InputError(f"{path}: line 1: missing value column {value_col!r}; header is {header}")
        width = len(header)
        try:
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != width:
                    raise InputError(f"{path}: line {line}: expected {width} fields, got {len(row)}")
                u, i = row[ui].strip(), row[ii].strip()
                if not u or not i:
                    raise InputError(f"{path}: line {line}: empty user or item id")
                v = 1.0
                if vi is not None:
                    v = _parse_value(row[vi], path, line)
                if min_value is not None and v < min_value:
                    continue
                users.append(u)
                items.append(i)
                values.append(1.0 if binarize else v)
                lines.append(line)
        except csv.Error as e:
            raise InputError(f"{path}: line {reader.line_num}: malformed CSV: {e}") from e
    if not users:
        raise InputError(f"{path}: no interactions (after the header{' and --min-value' if min_value is not None else ''})")
    X, user_ids, item_ids, n_dup = matrix_from_triplets(
        users,
        items,
        np.asarray(values, dtype=np.float64),
        duplicates,
        lines=np.asarray(lines),
        where=str(path),
    )
    if binarize and n_dup:
        X.data[:] = 1.0
    return Dataset(
        X=X,
        user_ids=user_ids,
        item_ids=item_ids,
        source={
            "kind": "csv",
            "path": str(path),
            "rows": len(users),
            "duplicates": duplicates,
            "duplicate_rows_merged": n_dup,
            "min_value": min_value,
            "binarize": binarize,
            "columns": {"user": user_col, "item": item_col, "value": value_col if vi is not None else None},
        },
    )


def read_header(reader: Iterator[list[str]], path: Path) -> list[str]:
    """The first row of a CSV reader, names stripped; InputError naming the file for an empty or unreadable header."""
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{path}: empty file (a header row is required)") from None
    except csv.Error as e:
        raise InputError(f"{path}: line 1: unreadable header: {e}") from e
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    return [h.strip() for h in header]


def _decoded_lines(handle: BinaryIO, path: Path) -> Iterator[str]:
    """Decode line by line so that a bad byte is reported with its line number."""
    for number, raw in enumerate(handle, start=1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: line {number}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _parse_value(text: str, path: Path, line: int) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{path}: line {line}: value {text!r} is not a number") from None
    if math.isnan(v) or math.isinf(v):
        raise InputError(f"{path}: line {line}: value {text!r} is not finite")
    if v < 0:
        raise InputError(f"{path}: line {line}: negative value {v}; values must be >= 0")
    return v
