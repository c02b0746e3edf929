"""A Parquet dataset (a directory of files) -> checked interactions -> X as row blocks on Dask workers.

dask.dataframe reads the files, one partition per file, so that a problem is named by file and row (0-based in
its file) as the in-process reader names it. The checks and options are the in-process reader's
(models.inputs.interaction_columns), run on every partition where it lies. Id maps are built on the workers
(_id_map): the in-process reader's numbering (first appearance over the files in order), by shuffles of the
distinct ids, so both engines build the same X. The rows are coded by joining them with the two maps (dask's
hash-partitioned merge) and moved to their block by dask's shuffle (set_index on the block number with known
divisions); only the ids themselves, in code order, come to the client, which writes the artifact's id files.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
from dask.distributed import Client, Future

from models.build.progress import Progress
from models.distributed import DEFAULT_BLOCK_NNZ
from models.distributed.blocked_matrix import BlockedMatrix
from models.errors import InputError, RowProblem
from models.inputs.dataset import Dataset, DuplicatePolicy, matrix_from_codes
from models.inputs.interaction_columns import _floats, _ids, first_problem, interactions_source
from models.inputs.parquet_files import checked_columns, parquet_files


@dataclass
class BlockedDataset(Dataset):
    """A Dataset whose X is a BlockedMatrix (on the workers) instead of a CSR matrix in this process."""

    X: BlockedMatrix  # type: ignore[assignment]

    def item_popularity(self) -> np.ndarray:
        return self.X.positive_counts(axis=0)

    def user_activity(self) -> np.ndarray:
        return self.X.positive_counts(axis=1)

    def save_interactions(self, path: Path) -> None:
        self.X.save_npz(path)

    def fingerprint(self) -> str:
        """sha256 over the blocks' digests and both id lists (models.distributed.blocked_matrix.digest): equal data
        and blocks give an equal fingerprint; not comparable with the in-process reader's."""
        import hashlib

        h = hashlib.sha256(self.X.digest().encode())
        for ids in (self.user_ids, self.item_ids):
            h.update("\x1f".join(ids).encode())
            h.update(b"\x1e")
        return h.hexdigest()


def read_parquet_blocks(
    path: str | Path,
    client: Client,
    user_col: str = "user_id",
    item_col: str = "item_id",
    value_col: str | None = "value",
    min_value: float | None = None,
    binarize: bool = False,
    duplicates: DuplicatePolicy = "sum",
    block_nnz: int = DEFAULT_BLOCK_NNZ,
    progress: Progress | None = None,
    partial_width: int = 0,
) -> BlockedDataset:
    """The interactions of the Parquet file or directory at `path` as X in row blocks of about `block_nnz`
    interactions (at least one block per worker thread); the in-process reader's checks, errors and options.

    partial_width (l, the SVD's sketch width; 0: no cap): every block adds a dense (n_items, l) float64 partial
    to each Xᵀ Q, so there are never more blocks than make those partials together as large as X's CSR (12 bytes
    an interaction), nor fewer than the worker threads: at 10M items, 4M-interaction blocks would move 2,500
    partials of 11.8 GB a power iteration; capped, one a thread.
    """
    progress = progress or Progress(quiet=True)
    path = Path(path)
    files = parquet_files(path)
    columns = [checked_columns(f, user_col, item_col, value_col) for f in files]  # footers only, on the client
    if len({len(c) for c in columns}) > 1:
        without = next(f for f, c in zip(files, columns, strict=True) if len(c) == 2)
        raise InputError(f"{without}: no value column {value_col!r}, which other files of {path} have")
    has_values = len(columns[0]) == 3
    # pyarrow dtypes: a null value and a NaN stay apart (numpy-backed float64 would make both NaN)
    frame = dd.read_parquet([str(f) for f in files], columns=columns[0], split_row_groups=False, dtype_backend="pyarrow")
    parts = frame.to_delayed()
    if len(parts) != len(files):  # one partition per file is what lets an error name its file
        raise RuntimeError(f"dask read {len(files)} files into {len(parts)} partitions")
    with progress.step(f"checking {len(files)} files on the workers"):
        cleaned = client.compute([dask.delayed(_clean)(part, columns[0], has_values, min_value, binarize) for part in parts])
        problems = client.gather(client.map(operator.itemgetter(1), cleaned))
        for file, problem in zip(files, problems, strict=True):
            if problem is not None:
                raise InputError(f"{file}: row {problem[0]}: {problem[1]}")
        frames = client.map(operator.itemgetter(0), cleaned)
        del cleaned
    rows = sum(client.gather(client.map(len, frames)))
    if rows == 0:
        raise InputError(f"{path}: no interactions{' after --min-value' if min_value is not None else ''}")
    with progress.step("id maps on the workers (distinct ids shuffled by id, numbered by first file and position)"):
        users_map, user_ids = _id_map(client, frames, "user")
        items_map, item_ids = _id_map(client, frames, "item")
    n, p = len(user_ids), len(item_ids)
    workers = max(1, sum(client.nthreads().values()))
    wanted = -(-rows // block_nnz)
    if partial_width > 0:
        wanted = min(wanted, max(1, (12 * rows) // (8 * p * partial_width)))
    n_blocks = int(min(n, max(workers, wanted)))
    block_rows = -(-n // n_blocks)
    n_blocks = -(-n // block_rows)
    starts = np.minimum(np.arange(n_blocks + 1, dtype=np.int64) * block_rows, n)
    with progress.step(
        f"X as {n_blocks} row blocks of {block_rows} users ({n} x {p}, {rows} rows; joins and shuffle on the workers)"
    ):
        kept = dd.from_delayed(
            [dask.delayed(f) for f in frames],
            meta=pd.DataFrame({"user": pd.Series(dtype="str"), "item": pd.Series(dtype="str"), "v": np.zeros(0)}),
        )
        coded = kept.merge(users_map.rename(columns={"id": "user", "code": "u"}), on="user", shuffle_method=_SHUFFLE).merge(
            items_map.rename(columns={"id": "item", "code": "i"}), on="item", shuffle_method=_SHUFFLE
        )[["u", "i", "v"]]
        coded = coded.assign(block=coded["u"] // block_rows)
        by_block = coded.set_index("block", divisions=tuple(range(n_blocks + 1)), shuffle_method=_SHUFFLE)
        made = client.compute(
            [
                dask.delayed(_csr_block)(part, int(starts[b]), int(starts[b + 1] - starts[b]), p, duplicates, binarize)
                for b, part in enumerate(by_block.to_delayed())
            ]
        )
        blocks: list[Future] = client.map(operator.itemgetter(0), made)
        problems = client.gather(client.map(operator.itemgetter(1), made))
        del made, frames
    bad = next((pr for pr in problems if pr is not None), None)
    if bad is not None:
        pair = (user_ids[bad[0]], item_ids[bad[1]])
        raise InputError(f"{path}: duplicate (user, item) pair {pair!r}; use --duplicates sum or max to merge repeats")
    nnz = int(sum(client.gather(client.map(_nnz, blocks))))
    X = BlockedMatrix(client=client, blocks=blocks, starts=starts, n_items=p, nnz=nnz)
    return BlockedDataset(
        X=X,
        user_ids=user_ids,
        item_ids=item_ids,
        source={
            **interactions_source(
                "parquet",
                path,
                rows,
                duplicates,
                rows - nnz,
                min_value,
                binarize,
                {"user": user_col, "item": item_col, "value": value_col if has_values else None},
            ),
            "files": len(files),
            "engine": "dask",
            "blocks": n_blocks,
        },
    )


def _clean(
    part: pd.DataFrame, columns: list[str], has_values: bool, min_value: float | None, binarize: bool
) -> tuple[pd.DataFrame, tuple[int, str] | None]:
    """(the rows kept as user/item strings and float64 values, the first problem (row in the file, message) or None),
    by the in-process reader's checks (models.inputs.interaction_columns.first_problem)."""
    table = pa.Table.from_pandas(part, preserve_index=False)
    users = _ids(table.column(columns[0]))
    items = _ids(table.column(columns[1]))
    raw = table.column(columns[2]).cast(pa.float64()) if has_values else None
    values = None if raw is None else _floats(raw.fill_null(0))
    try:
        first_problem(users, items, values, raw)
    except RowProblem as p:
        return pd.DataFrame(), (p.row, p.message)
    v = np.ones(len(users)) if values is None else values
    keep = np.ones(len(v), dtype=bool) if min_value is None else v >= min_value
    if binarize:
        v = np.ones(len(v))
    out = pd.DataFrame(
        {
            "user": pd.array(np.asarray(users.to_numpy(zero_copy_only=False), dtype=object)[keep], dtype="str"),
            "item": pd.array(np.asarray(items.to_numpy(zero_copy_only=False), dtype=object)[keep], dtype="str"),
            "v": v[keep],
        }
    )
    return out, None


def _id_map(client: Client, frames: list[Future], column: str) -> tuple[dd.DataFrame, list[str]]:
    """(the map {id, code} as a dask dataframe on the workers, the ids in code order) of one column of the kept
    rows of every file (frames, in file order).

    Codes number the ids in order of first appearance over the files in order, as the in-process reader's
    pd.unique does: each file's distinct ids carry key = (file, position among them); a shuffle by id keeps
    each id's smallest key; a shuffle by the file of that key puts every id into the partition of the file
    that first has it, sorted by position; the partitions' sizes (one number per file) give their offsets.
    The ids come to the client once, in code order, for the artifact's id files.
    """
    firsts = dd.from_delayed(
        [dask.delayed(_firsts)(frame, f, column) for f, frame in enumerate(frames)],
        meta=pd.DataFrame({"id": pd.Series(dtype="str"), "key": np.zeros(0, np.int64)}),
    )
    owners = firsts.groupby("id")["key"].min(split_out=len(frames), shuffle_method=_SHUFFLE).reset_index()
    by_file = owners.assign(file=owners["key"] // _FILE_STRIDE).set_index(
        "file", divisions=tuple(range(len(frames) + 1)), shuffle_method=_SHUFFLE
    )
    ordered = client.compute([dask.delayed(_by_key)(part) for part in by_file.to_delayed()])
    sizes = client.gather(client.map(len, ordered))
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    numbered = client.map(_numbered, ordered, [int(o) for o in offsets])
    chunks = client.gather(client.map(_id_array, ordered))
    ids: list[str] = np.concatenate(chunks).tolist() if chunks else []
    meta = pd.DataFrame({"id": pd.Series(dtype="str"), "code": np.zeros(0, np.int64)})
    return dd.from_delayed([dask.delayed(f) for f in numbered], meta=meta), ids


# dask's task-based shuffle: p2p measured 1.3x (id maps) and 1.8x (joins and shuffle) slower at 4.2M interactions
_SHUFFLE = "tasks"
_FILE_STRIDE = 1 << 40  # key = file * stride + position: more distinct ids than this in one file cannot be read


def _firsts(frame: pd.DataFrame, file: int, column: str) -> pd.DataFrame:
    """One file's distinct ids of `column` in order of first appearance, keyed file * stride + position."""
    ids = pd.unique(frame[column].to_numpy())
    return pd.DataFrame({"id": pd.array(ids, dtype="str"), "key": file * _FILE_STRIDE + np.arange(len(ids), dtype=np.int64)})


def _by_key(part: pd.DataFrame) -> pd.DataFrame:
    return part.sort_values("key", kind="stable").reset_index(drop=True)


def _numbered(part: pd.DataFrame, offset: int) -> pd.DataFrame:
    """{id, code}: the ids of one file's partition numbered from `offset` in key order."""
    return pd.DataFrame({"id": part["id"].astype("str").array, "code": offset + np.arange(len(part), dtype=np.int64)})


def _id_array(part: pd.DataFrame) -> np.ndarray:
    """The ids of a partition as an object array of str (pickled many times faster than a list of them)."""
    return part["id"].to_numpy(dtype=object)


def _csr_block(
    part: pd.DataFrame, start: int, rows: int, n_items: int, duplicates: DuplicatePolicy, binarize: bool
) -> tuple[Any, tuple[int, int] | None]:
    """(rows start:start+rows of X as float32 CSR, the (user code, item code) of a rejected duplicate or None)."""
    u = part["u"].to_numpy() - start
    i = part["i"].to_numpy()
    try:
        X, merged = matrix_from_codes(u, i, part["v"].to_numpy(), _Numbers(rows), _Numbers(n_items), duplicates)
    except RowProblem as p:
        return None, (int(u[p.row]) + start, int(i[p.row]))
    if binarize and merged:
        X.data[:] = 1.0
    return X, None


class _Numbers(Sequence[str]):
    """The ids "0" .. "n-1" without a list of them: a block's rows and columns are codes, not external ids."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [str(r) for r in range(self.n)[index]]
        return str(range(self.n)[index])


def _nnz(block: Any) -> int:
    return int(block.nnz)
