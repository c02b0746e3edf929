"""Read an interaction CSV (`user_id,item_id[,value]`, header required) into a Dataset: columnar, row by row on a problem."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from models.errors import InputError, RowProblem
from models.inputs.dataset import Dataset, DuplicatePolicy, matrix_from_triplets
from models.inputs.interaction_columns import interactions_from_columns, interactions_source

Layout = tuple[int, int, int | None]  # positions of the user, item and value (if any) columns in the header
_BLOCK_BYTES = 16 << 20  # pyarrow's parse block: larger than its 1 MiB default, fewer chunks per column


def read_interactions_csv(
    path: str | Path,
    user_col: str = "user_id",
    item_col: str = "item_id",
    value_col: str | None = "value",
    min_value: float | None = None,
    binarize: bool = False,
    duplicates: DuplicatePolicy = "sum",
) -> Dataset:
    """Read the file with pyarrow's CSV reader and check it column by column; when that finds any problem, read it
    again row by row (`read_interactions_csv_rows`), which names the line, so a bad file costs two passes and a
    good one a single fast pass.

    `value_col` is optional in the file when it is the default name; values must be finite and >= 0.
    Rows with value < `min_value` are dropped; `binarize` sets every kept value to 1.
    """
    path = Path(path)
    header, columns = _layout(path, user_col, item_col, value_col)
    try:
        table = _arrow_table(path, header, columns)
        ui, ii, vi = columns
        got = interactions_from_columns(
            table.column(f"c{ui}"),
            table.column(f"c{ii}"),
            None if vi is None else table.column(f"c{vi}"),
            min_value,
            binarize,
            duplicates,
        )
    except (pa.ArrowException, RowProblem):
        # The row reader raises the line-numbered error; where it accepts what the columnar pass refused (a line
        # of blanks, a value such as "1_000"), its result stands.
        return read_interactions_csv_rows(path, user_col, item_col, value_col, min_value, binarize, duplicates)
    if got.rows == 0:
        raise _no_interactions(path, min_value)
    del table
    return Dataset(
        X=got.X,
        user_ids=got.user_ids,
        item_ids=got.item_ids,
        source=_source(path, got.rows, duplicates, got.duplicates_merged, min_value, binarize, header, columns),
    )


def read_interactions_csv_rows(
    path: str | Path,
    user_col: str = "user_id",
    item_col: str = "item_id",
    value_col: str | None = "value",
    min_value: float | None = None,
    binarize: bool = False,
    duplicates: DuplicatePolicy = "sum",
) -> Dataset:
    """`read_interactions_csv`, parsing the file row by row in Python so that every problem names its line."""
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
        ui, ii, vi = _columns(header, path, user_col, item_col, value_col)
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
        raise _no_interactions(path, min_value)
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
        source=_source(path, len(users), duplicates, n_dup, min_value, binarize, header, (ui, ii, vi)),
    )


def _layout(path: Path, user_col: str, item_col: str, value_col: str | None) -> tuple[list[str], Layout]:
    """The header of the file at `path` and the positions of its user, item and value columns."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 -- opened here so that an unreadable path is its own error
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    with handle:
        header = read_header(csv.reader(_decoded_lines(handle, path)), path)
    return header, _columns(header, path, user_col, item_col, value_col)


def _columns(header: list[str], path: Path, user_col: str, item_col: str, value_col: str | None) -> Layout:
    """(user, item, value or None) column positions in `header`; InputError for a missing column."""
    missing = [c for c in (user_col, item_col) if c not in header]
    if missing:
        raise InputError(f"{path}: line 1: missing column(s) {', '.join(missing)}; header is {header}")
    vi: int | None = None
    if value_col is not None and value_col in header:
        vi = header.index(value_col)
    elif value_col is not None and value_col != "value":
        raise InputError(f"{path}: line 1: missing value column {value_col!r}; header is {header}")
    return header.index(user_col), header.index(item_col), vi


def _arrow_table(path: Path, header: list[str], columns: Layout) -> pa.Table:
    """The file's used columns as c<position> (strings, strings, float64), the header line skipped.

    Columns are named by position, not by the header's names, so that names the row reader accepts (padded with
    blanks, repeated) read the same here. Values are never null-marked text: an empty value is null.
    """
    names = [f"c{j}" for j in range(len(header))]
    ui, ii, vi = columns
    types = {f"c{ui}": pa.string(), f"c{ii}": pa.string()}
    if vi is not None:
        types[f"c{vi}"] = pa.float64()
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=types, include_columns=list(types), null_values=[""], strings_can_be_null=False
        ),
    )


def _no_interactions(path: Path, min_value: float | None) -> InputError:
    return InputError(f"{path}: no interactions (after the header{' and --min-value' if min_value is not None else ''})")


def _source(
    path: Path,
    rows: int,
    duplicates: DuplicatePolicy,
    merged: int,
    min_value: float | None,
    binarize: bool,
    header: list[str],
    columns: Layout,
) -> dict[str, object]:
    """interactions_source of a CSV: the columns as the header names them."""
    ui, ii, vi = columns
    names = {"user": header[ui], "item": header[ii], "value": None if vi is None else header[vi]}
    return interactions_source("csv", path, rows, duplicates, merged, min_value, binarize, names)


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
