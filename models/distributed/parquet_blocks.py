"""A Parquet dataset (a directory of files) -> checked interactions -> X as row blocks on Dask workers.

dask.dataframe reads the files, one partition per file, so that a problem is named by file and row (0-based in
its file) as the in-process reader names it. The checks and options are the in-process reader's
(models.inputs.interaction_columns), run on every partition where it lies. Id maps: each partition's distinct
ids in order of appearance travel to the client, which numbers them in file order (the in-process reader's
numbering, so both engines build the same X); the two maps are then sent to every worker, each partition coded,
and rows moved to their block by dask's shuffle (set_index on the block number with known divisions).
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
) -> BlockedDataset:
    """The interactions of the Parquet file or directory at `path` as X in row blocks of about `block_nnz`
    interactions (at least one block per worker thread); the in-process reader's checks, errors and options."""
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
    with progress.step("id maps (distinct ids of every file, numbered in file order)"):
        distinct = client.gather(client.map(_distinct, frames))
        user_ids = pd.unique(np.concatenate([u for u, _ in distinct])).tolist() if distinct else []
        item_ids = pd.unique(np.concatenate([i for _, i in distinct])).tolist() if distinct else []
        rows = sum(client.gather(client.map(len, frames)))
    if rows == 0:
        raise InputError(f"{path}: no interactions{' after --min-value' if min_value is not None else ''}")
    n, p = len(user_ids), len(item_ids)
    workers = max(1, sum(client.nthreads().values()))
    n_blocks = int(min(n, max(workers, -(-rows // block_nnz))))
    block_rows = -(-n // n_blocks)
    n_blocks = -(-n // block_rows)
    starts = np.minimum(np.arange(n_blocks + 1, dtype=np.int64) * block_rows, n)
    with progress.step(f"X as {n_blocks} row blocks of {block_rows} users ({n} x {p}, {rows} rows; shuffle on the workers)"):
        users_map, items_map = client.scatter([pd.Index(user_ids), pd.Index(item_ids)], broadcast=True)
        coded = dd.from_delayed(
            [dask.delayed(_coded)(f, users_map, items_map, block_rows) for f in frames],
            meta=pd.DataFrame(
                {"u": np.zeros(0, np.int64), "i": np.zeros(0, np.int64), "v": np.zeros(0), "block": np.zeros(0, np.int64)}
            ),
        )
        by_block = coded.set_index("block", divisions=tuple(range(n_blocks + 1)), shuffle_method="tasks")
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
        user_ids=[str(u) for u in user_ids],
        item_ids=[str(i) for i in item_ids],
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
            "user": np.asarray(users.to_numpy(zero_copy_only=False), dtype=object)[keep],
            "item": np.asarray(items.to_numpy(zero_copy_only=False), dtype=object)[keep],
            "v": v[keep],
        }
    )
    return out, None


def _distinct(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(distinct users, distinct items) of one file's kept rows, in order of first appearance."""
    return pd.unique(frame["user"].to_numpy()), pd.unique(frame["item"].to_numpy())


def _coded(frame: pd.DataFrame, users: pd.Index, items: pd.Index, block_rows: int) -> pd.DataFrame:
    u = users.get_indexer(frame["user"]).astype(np.int64)
    return pd.DataFrame(
        {"u": u, "i": items.get_indexer(frame["item"]).astype(np.int64), "v": frame["v"].to_numpy(), "block": u // block_rows}
    )


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
