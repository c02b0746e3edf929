"""A dask array's rows written into one file by the workers that hold them: a FAISS flat index or a .npy.

Both files are a header followed by the rows as float32, row-major, so the client writes the header and
sizes the file, and each worker writes its row blocks at their offsets: an (n, d) array never comes to one
process. The file must be on a filesystem the workers share with the client (the staging folder, as the
Parquet input must be readable by them).

The headers are made by the libraries themselves: FAISS serialises an empty IndexFlatIP of the dimension,
and the two sizes it holds (ntotal, the stored floats) are set to the file's; numpy writes the .npy header
np.save would. flat_index_header checks once per process that this layout is what FAISS writes for a small
index (so a FAISS release that changes it fails loudly instead of writing unreadable files).
"""

from __future__ import annotations

import functools
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import faiss
import numpy as np

from models.errors import naming_the_file

_NTOTAL = slice(8, 16)  # after the fourcc "IxFI" and d (int32): ntotal (int64)
_SIZE = 8  # the last bytes of an empty flat index: the number of stored floats (uint64), then the floats


@dataclass(frozen=True)
class RowsWritten:
    rows: int
    dim: int
    zero_rows: int


def flat_index_header(n: int, d: int) -> bytes:
    """The bytes of a FAISS IndexFlatIP file of n rows of dimension d that come before its float32 rows."""
    _check_flat_layout()
    return _flat_header(n, d)


def npy_header(n: int, d: int) -> bytes:
    """The bytes np.save writes before the data of an (n, d) float32 C-order array."""
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": (n, d)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def write_rows(M: Any, path: Path, header: bytes) -> RowsWritten:
    """Write M (n, d), a dask array, as `header` then its rows as float32 into `path`, each row block by the
    worker that holds it; returns the sizes and the count of all-zero rows (summed from the blocks)."""
    M = M.rechunk({1: -1})
    n, d = (int(s) for s in M.shape)
    with naming_the_file(path), open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + n * d * 4)
    starts = np.concatenate([[0], np.cumsum(M.chunks[0])]).astype(np.int64)
    blocks = M.to_delayed().ravel()
    offsets = [len(header) + int(s) * d * 4 for s in starts[:-1]]
    zeros = dask.compute(*[dask.delayed(_write_block)(b, str(path), o) for b, o in zip(blocks, offsets, strict=True)])
    return RowsWritten(rows=n, dim=d, zero_rows=int(sum(zeros)))


def _write_block(block: np.ndarray, path: str, offset: int) -> int:
    rows = np.ascontiguousarray(block, dtype=np.float32)
    with naming_the_file(Path(path)), open(path, "r+b") as f:
        f.seek(offset)
        f.write(rows.tobytes())
        f.flush()
        os.fsync(f.fileno())  # on a shared filesystem only the writer's own fsync makes its rows durable
    return int(np.count_nonzero(~np.any(rows != 0, axis=1)))


def _flat_header(n: int, d: int) -> bytes:
    empty = bytearray(faiss.serialize_index(faiss.IndexFlatIP(d)).tobytes())
    empty[_NTOTAL] = struct.pack("<q", n)
    empty[-_SIZE:] = struct.pack("<Q", n * d)
    return bytes(empty)


@functools.cache
def _check_flat_layout() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    index = faiss.IndexFlatIP(3)
    index.add(x)
    if faiss.serialize_index(index).tobytes() != _flat_header(2, 3) + x.tobytes():
        raise RuntimeError(
            f"faiss {faiss.__version__} lays out a flat index file differently: its rows cannot be written in place"
        )
