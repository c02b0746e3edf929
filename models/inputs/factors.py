"""Read a factorisation trained elsewhere (`--import-factors NAME=PATH`) and align it to the interaction data's ids.

Accepted layouts of PATH:
- npy: a directory with `item_factors.npy` (n_items_f, k) and `item_ids.txt`, optionally `user_factors.npy`
  (n_users_f, k) with `user_ids.txt`;
- implicit-npz: implicit's `model.save()` file (arrays `user_factors`, `item_factors`; other keys ignored), given as
  the file or as the directory holding exactly one .npz, with `item_ids.txt` and `user_ids.txt` beside it;
- parquet: `item_factors.parquet` (optionally `user_factors.parquet`) in the directory, or PATH the item Parquet file
  itself (then only item factors are read): an id column and a list column of the vectors.

Id files are UTF-8, one id per line in row order. Rows of factor arrays and Parquet files are counted from 0.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from models.errors import InputError

Format = Literal["npy", "implicit-npz", "parquet"]
Side = Literal["item", "user"]

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
EXPECTED_LAYOUTS = (
    "a directory with item_factors.npy and item_ids.txt (optionally user_factors.npy and user_ids.txt); "
    "an implicit model .npz (the file, or a directory holding exactly one) with item_ids.txt and user_ids.txt beside it; "
    "or item_factors.parquet (optionally user_factors.parquet), as the directory or the item file itself"
)
MAX_SHOWN = 5  # unknown ids quoted in an error message


@dataclass(frozen=True)
class ImportedFactors:
    """Imported factors in the data's order.

    Q: (n_items, k) float64, row i the vector of the data's item i; items the import lacks are zero rows.
    P: (n_users, k) float64 likewise, or None when no user factors were given (the caller derives P = X Q).
    info: JSON-able manifest entry (source, path, format, k, row counts, rows the import lacks).
    """

    Q: np.ndarray
    P: np.ndarray | None
    info: dict[str, Any]


def parse_import_spec(spec: str) -> tuple[str, Path]:
    """'NAME=PATH' -> (NAME, Path); NAME must match ^[a-z0-9][a-z0-9._-]{0,63}$ since it appears in URLs."""
    name, sep, path = spec.partition("=")
    if not sep or not path:
        raise InputError(f"--import-factors {spec!r}: expected NAME=PATH")
    if NAME_PATTERN.fullmatch(name) is None:
        raise InputError(
            f"--import-factors {spec!r}: model name {name!r} must be 1-64 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name, Path(path)


def read_imported_factors(path: Path, item_ids: Sequence[str], user_ids: Sequence[str]) -> ImportedFactors:
    """Read the factors at `path` and place row r of the import at the data position of its id.

    `item_ids` (n_items,) and `user_ids` (n_users,) are the column and row order of X (n_users, n_items).
    Every id of the import must be in the data; data ids the import lacks get zero rows (counted in `info`).
    """
    path = Path(path)
    fmt, (items, users) = _read_layout(path)
    Fq, q_ids, q_where, q_ids_where = items
    if not Fq.any():
        raise InputError(f"{q_where}: all item factors are zero (nothing to serve)")
    Q = _align(Fq, q_ids, item_ids, q_ids_where, "item")
    P: np.ndarray | None = None
    user_rows: int | None = None
    if users is not None:
        Fp, p_ids, p_where, p_ids_where = users
        if Fp.shape[1] != Fq.shape[1]:
            raise InputError(f"{p_where} has k = {Fp.shape[1]} but {q_where} has k = {Fq.shape[1]}; they must be equal")
        P = _align(Fp, p_ids, user_ids, p_ids_where, "user")
        user_rows = int(Fp.shape[0])
    info: dict[str, Any] = {
        "source": "imported",
        "path": str(path),
        "format": fmt,
        "k": int(Fq.shape[1]),
        "item_rows": int(Fq.shape[0]),
        "items_without_factors": len(item_ids) - int(Fq.shape[0]),
        "user_rows": user_rows,
        "users_without_factors": len(user_ids) - user_rows if user_rows is not None else None,
    }
    return ImportedFactors(Q=Q, P=P, info=info)


def users_from_items(X: sp.csr_matrix | sp.csr_array, Q: np.ndarray) -> np.ndarray:
    """P = X Q (n_users, k): a user is the sum of the vectors of the items it consumed, weighted by X's values."""
    if X.shape[1] != Q.shape[0]:
        raise ValueError(f"X has {X.shape[1]} items but Q has {Q.shape[0]} rows")
    return np.asarray(X @ Q, dtype=np.float64)


# One side as read: factors (rows, k) float64, ids (rows,) in row order, and where each came from (for messages).
_Side = tuple[np.ndarray, list[str], str, str]


def _read_layout(path: Path) -> tuple[Format, tuple[_Side, _Side | None]]:
    if not path.exists():
        raise InputError(f"{path}: no such file or directory (expected {EXPECTED_LAYOUTS})")
    if path.is_file():
        if path.suffix == ".npz":
            return "implicit-npz", _read_npz(path)
        if path.suffix == ".parquet":
            return "parquet", (_read_parquet(path, "item"), None)
        raise InputError(f"{path}: not a recognised factor file (expected {EXPECTED_LAYOUTS})")
    if not path.is_dir():
        raise InputError(f"{path}: neither a file nor a directory")
    try:
        names = {p.name for p in path.iterdir()}
    except OSError as e:
        raise InputError(f"{path}: cannot read directory: {e.strerror or e}") from e
    npzs = sorted(n for n in names if n.endswith(".npz"))
    found: list[Format] = []
    if names & {"item_factors.npy", "user_factors.npy"}:
        found.append("npy")
    if npzs:
        found.append("implicit-npz")
    if names & {"item_factors.parquet", "user_factors.parquet"}:
        found.append("parquet")
    if not found:
        raise InputError(f"{path}: no factor files found (expected {EXPECTED_LAYOUTS})")
    if len(found) > 1:
        raise InputError(f"{path}: holds factors in more than one layout ({', '.join(found)}); keep one")
    fmt = found[0]
    if fmt == "npy":
        return fmt, _read_npy_dir(path, names)
    if fmt == "implicit-npz":
        if len(npzs) > 1:
            raise InputError(f"{path}: holds {len(npzs)} .npz files ({', '.join(npzs)}); give the one to import")
        return fmt, _read_npz(path / npzs[0])
    if "item_factors.parquet" not in names:
        raise InputError(f"{path}: user_factors.parquet without item_factors.parquet (the item factors are required)")
    items = _read_parquet(path / "item_factors.parquet", "item")
    users = _read_parquet(path / "user_factors.parquet", "user") if "user_factors.parquet" in names else None
    return fmt, (items, users)


def _read_npy_dir(path: Path, names: set[str]) -> tuple[_Side, _Side | None]:
    if "item_factors.npy" not in names:
        raise InputError(f"{path}: item_factors.npy is missing (the item factors are required)")
    pairs = [("item_factors.npy", "item_ids.txt"), ("user_factors.npy", "user_ids.txt")]
    for vectors, ids in pairs:
        if (vectors in names) != (ids in names):
            present, missing = (vectors, ids) if vectors in names else (ids, vectors)
            raise InputError(f"{path}: {present} without {missing} ({path / missing} is missing)")
    items = _npy_side(path / "item_factors.npy", path / "item_ids.txt")
    users = _npy_side(path / "user_factors.npy", path / "user_ids.txt") if "user_factors.npy" in names else None
    return items, users


def _npy_side(vectors: Path, ids_file: Path) -> _Side:
    try:
        with open(vectors, "rb") as handle:
            magic = handle.read(6)
            # checked first: np.load reports any other bytes as "pickled data", which misleads
            if magic != b"\x93NUMPY":
                raise InputError(f"{vectors}: not a .npy file (np.save format expected)")
            handle.seek(0)
            F = np.load(handle, allow_pickle=False)
    except OSError as e:
        raise InputError(f"{vectors}: cannot read: {e.strerror or e}") from e
    except InputError:
        raise
    except ValueError as e:  # a corrupt header, or an object array that would need pickle
        raise InputError(f"{vectors}: not a readable .npy array: {e}") from e
    return _checked_side(F, str(vectors), _read_ids(ids_file), str(ids_file))


def _read_npz(npz: Path) -> tuple[_Side, _Side | None]:
    item_ids_file, user_ids_file = npz.parent / "item_ids.txt", npz.parent / "user_ids.txt"
    for f in (item_ids_file, user_ids_file):
        if not f.is_file():
            raise InputError(f"{npz}: {f.name} is missing beside it ({f})")
    try:
        if not zipfile.is_zipfile(npz):
            raise InputError(f"{npz}: not an .npz archive (expected the file implicit's model.save() writes)")
        with np.load(npz, allow_pickle=False) as archive:
            keys = list(archive.files)
            arrays = {key: archive[key] for key in ("item_factors", "user_factors") if key in keys}
    except OSError as e:
        raise InputError(f"{npz}: cannot read: {e.strerror or e}") from e
    except InputError:
        raise
    except (ValueError, zipfile.BadZipFile) as e:  # a corrupt member, or an object array that would need pickle
        raise InputError(f"{npz}: not a readable .npz archive: {e}") from e
    missing = [key for key in ("item_factors", "user_factors") if key not in arrays]
    if missing:
        raise InputError(
            f"{npz}: no array {' or '.join(missing)} (holds {', '.join(keys) or 'nothing'}); "
            "expected the file implicit's model.save() writes"
        )
    items = _checked_side(arrays["item_factors"], f"{npz} (item_factors)", _read_ids(item_ids_file), str(item_ids_file))
    users = _checked_side(arrays["user_factors"], f"{npz} (user_factors)", _read_ids(user_ids_file), str(user_ids_file))
    return items, users


def _read_ids(path: Path) -> list[str]:
    """One id per line, trailing whitespace stripped; blank lines only at the end; no repeats."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    lines = raw.split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError(f"{path}: empty file (no ids)")
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        try:
            text = line.decode("utf-8-sig" if number == 1 else "utf-8").rstrip()
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: line {number}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        if not text:
            raise InputError(f"{path}: line {number}: blank id")
        if text in first_line:
            raise InputError(f"{path}: line {number}: duplicate id {text!r} (first on line {first_line[text]})")
        first_line[text] = number
        ids.append(text)
    return ids


def _checked_side(F: np.ndarray, where: str, ids: list[str], ids_where: str) -> _Side:
    """Validate factors (rows, k) read from `where` against their ids; return them as float64."""
    _check_matrix(F, where)
    if F.shape[0] != len(ids):
        raise InputError(
            f"{where} has {F.shape[0]} rows but {ids_where} has {len(ids)} ids; each factor row needs exactly one id"
        )
    F = np.asarray(F, dtype=np.float64)
    _check_finite(F, where, ids)
    return F, ids, where, ids_where


def _check_matrix(F: np.ndarray, where: str) -> None:
    if F.dtype == np.bool_ or not (np.issubdtype(F.dtype, np.floating) or np.issubdtype(F.dtype, np.integer)):
        raise InputError(f"{where}: dtype {F.dtype} is not numeric (expected float or integer factors)")
    if F.ndim != 2:
        raise InputError(f"{where}: expected a 2-D array (rows, k), got shape {F.shape}")
    if F.shape[0] == 0:
        raise InputError(f"{where}: empty (0 rows)")
    if F.shape[1] == 0:
        raise InputError(f"{where}: k = 0 (rows have no components)")


def _check_finite(F: np.ndarray, where: str, ids: list[str]) -> None:
    bad = ~np.isfinite(F)
    n_bad = int(bad.sum())
    if n_bad:
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise InputError(f"{where}: {n_bad} values are NaN or inf; first in row {row} (id {ids[row]!r})")


def _align(F: np.ndarray, ids: list[str], data_ids: Sequence[str], where: str, side: Side) -> np.ndarray:
    """M (n_data, k) with M[position of ids[r] in data_ids] = F[r] and zero rows elsewhere."""
    position = {x: i for i, x in enumerate(data_ids)}
    rows = np.fromiter((position.get(x, -1) for x in ids), dtype=np.intp, count=len(ids))
    unknown = np.flatnonzero(rows < 0)
    if unknown.size:
        shown = ", ".join(repr(ids[r]) for r in unknown[:MAX_SHOWN])
        raise InputError(f"{where}: {unknown.size} {side} ids are not in the interaction data (first: {shown})")
    M = np.zeros((len(data_ids), F.shape[1]), dtype=np.float64)
    M[rows] = F
    return M


def _read_parquet(path: Path, side: Side) -> _Side:
    """An id column and a list column of equal-length numeric vectors -> (rows, k) float64 and str ids."""
    import pyarrow as pa  # only imports need it: keep it off the job's import path
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{path}: not a readable Parquet file: {e}") from e
    where = str(path)
    if table.num_rows == 0:
        raise InputError(f"{where}: empty (0 rows)")
    columns = {f.name: f.type for f in table.schema}
    described = ", ".join(f"{n} ({t})" for n, t in columns.items())

    id_like = [n for n, t in columns.items() if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)]
    named = [n for n in ("id", f"{side}_id") if n in columns]
    if len(named) > 1:
        raise InputError(f"{where}: both 'id' and '{side}_id' columns; keep one")
    if named:
        id_col = named[0]
        if id_col not in id_like:
            raise InputError(f"{where}: id column {id_col!r} has type {columns[id_col]} (expected string or integer)")
    elif len(id_like) == 1:
        id_col = id_like[0]
    else:
        raise InputError(
            f"{where}: cannot tell the id column: no column named 'id' or '{side}_id' and "
            f"{len(id_like)} string/integer columns (columns: {described})"
        )
    list_cols = [
        n for n, t in columns.items() if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    ]
    if len(list_cols) != 1:
        raise InputError(f"{where}: expected exactly one list column of vectors, found {len(list_cols)} (columns: {described})")
    vec_col = list_cols[0]

    id_arr = table.column(id_col).combine_chunks()
    if id_arr.null_count:
        raise InputError(f"{where}: row {_first_null(id_arr)}: null id in column {id_col!r}")
    ids = [str(x) for x in id_arr.to_pylist()]
    first_row: dict[str, int] = {}
    for row, x in enumerate(ids):
        if x == "" or x.isspace():
            raise InputError(f"{where}: row {row}: blank id in column {id_col!r}")
        if x in first_row:
            raise InputError(f"{where}: row {row}: duplicate id {x!r} (first on row {first_row[x]})")
        first_row[x] = row

    vec = table.column(vec_col).combine_chunks()
    value_type = vec.type.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        raise InputError(f"{where}: column {vec_col!r} holds {value_type} values, which are not numeric (expected float)")
    if vec.null_count:
        raise InputError(f"{where}: row {_first_null(vec)}: null vector in column {vec_col!r}")
    if pa.types.is_fixed_size_list(vec.type):
        k = vec.type.list_size
    else:
        import pyarrow.compute as pc

        lengths = pc.list_value_length(vec).to_numpy(zero_copy_only=False)
        k = int(lengths[0])
        differ = np.flatnonzero(lengths != k)
        if differ.size:
            r = int(differ[0])
            raise InputError(
                f"{where}: column {vec_col!r}: row {r} (id {ids[r]!r}) has {int(lengths[r])} values but row 0 has {k}; "
                "all vectors must have the same length"
            )
    values = vec.flatten()
    if values.null_count:
        raise InputError(f"{where}: column {vec_col!r}: row {_first_null(values) // max(k, 1)}: null value in a vector")
    F = values.to_numpy(zero_copy_only=False).reshape(len(ids), k)
    return _checked_side(F, f"{where} (column {vec_col!r})", ids, f"{where} (column {id_col!r})")


def _first_null(arr: Any) -> int:
    return int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
