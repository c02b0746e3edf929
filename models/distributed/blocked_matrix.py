"""X (n_users, n_items) as row blocks of CSR matrices held by Dask workers, and the products the fit needs.

The blocks never come to the client together: every product runs where the blocks are, and only results of
the sizes named in each docstring travel (n x m ones as dask arrays that stay on the workers until used).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp
from dask.distributed import Client, Future

from models.build.progress import Progress
from models.errors import naming_the_file
from models.fit.svd import TruncatedSVD


@dataclass
class BlockedMatrix:
    """Row block b holds rows starts[b]:starts[b+1] of X as a float32 CSR (rows_b, n_items), on a worker."""

    client: Client
    blocks: list[Future]
    starts: np.ndarray  # (n_blocks + 1,) int64
    n_items: int
    nnz: int

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.starts[-1]), self.n_items

    @property
    def block_rows(self) -> list[int]:
        return [int(r) for r in np.diff(self.starts)]

    def times_lazy(self, M: np.ndarray | da.Array) -> da.Array:
        """X M as a dask array (n_users, m), one chunk per block, left on the workers; M (n_items, m) is sent once
        to every worker (a numpy array) or stays a dask array."""
        m = int(M.shape[1])
        shared = self.client.scatter(M, broadcast=True) if isinstance(M, np.ndarray) else M
        chunks = [
            da.from_delayed(dask.delayed(_times)(block, shared), shape=(rows, m), dtype=np.float64)
            for block, rows in zip(self.blocks, self.block_rows, strict=True)
        ]
        return da.concatenate(chunks, axis=0)

    def __matmul__(self, M: np.ndarray) -> da.Array:
        """X M (n_users, m) float64 for M (n_items, m), computed and kept on the workers (persisted, one chunk per
        block): the user embeddings' X V, which the models scale column by column and write from there."""
        return self.times_lazy(np.asarray(M, dtype=np.float64)).persist()

    def transpose_times_lazy(self, Q: da.Array) -> da.Array:
        """X^T Q (n_items, m) as a dask array on the workers, for Q (n_users, m): a sum over the blocks of X_b^T Q_b,
        reduced as a tree there (p x m pieces move between workers, never a block of X)."""
        q_chunks = Q.rechunk({0: tuple(self.block_rows)}).to_delayed().ravel()
        m = int(Q.shape[1])
        parts = [
            da.from_delayed(dask.delayed(_transpose_times)(block, q), shape=(1, self.n_items, m), dtype=np.float64)
            for block, q in zip(self.blocks, q_chunks, strict=True)
        ]
        return da.concatenate(parts, axis=0).sum(axis=0)

    def transpose_times(self, Q: da.Array) -> np.ndarray:
        """X^T Q (n_items, m) on the client (transpose_times_lazy computed)."""
        return np.asarray(self.transpose_times_lazy(Q).compute())

    def times(self, M: np.ndarray) -> da.Array:
        """X M (n_users, m) on the workers (as a pre-learning transform's .times)."""
        return self @ M

    def svd(
        self, k: int, seed: int = 0, n_iter: int = 6, n_oversamples: int = 20, progress: Progress | None = None
    ) -> TruncatedSVD:
        """The truncated SVD on the workers (models.distributed.halko.blocked_truncated_svd)."""
        from models.distributed.halko import blocked_truncated_svd

        return blocked_truncated_svd(self, k, seed=seed, n_iter=n_iter, n_oversamples=n_oversamples, progress=progress)

    def squared_norm(self) -> float:
        """||X||_F^2, a sum over the blocks."""
        return float(sum(self.client.gather(self.client.map(_squared_norm, self.blocks))))

    def positive_counts(self, axis: int) -> np.ndarray:
        """int64 counts of positive entries: per column (axis 0, (n_items,)) or per row (axis 1, (n_users,))."""
        parts = self.client.gather(self.client.map(_positive_counts, self.blocks, axis=axis))
        return np.sum(parts, axis=0) if axis == 0 else np.concatenate(parts)

    def digest(self) -> str:
        """sha256 over the blocks' own sha256 digests (of indptr, indices and data) in row order."""
        h = hashlib.sha256()
        for d in self.client.gather(self.client.map(_digest, self.blocks)):
            h.update(d)
        return h.hexdigest()

    def iter_blocks(self) -> Iterator[sp.csr_matrix]:
        """The blocks in row order, one at a time on the client (to stream them into a file)."""
        for block in self.blocks:
            yield block.result()

    def save_npz(self, path: Path) -> None:
        """X written as scipy.sparse.save_npz(path, X, compressed=False) would, without assembling X: each array
        of the CSR is streamed into the zip block by block (one block on the client at a time)."""
        n, p = self.shape
        with naming_the_file(path), zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
            ends = np.cumsum([0, *self.client.gather(self.client.map(_nnz, self.blocks))])
            self._stream(z, "indices", np.dtype(np.int32), int(ends[-1]), lambda b, _: b.indices.astype(np.int32))
            self._stream(
                z, "indptr", np.dtype(np.int64), n + 1, lambda b, i: (b.indptr[(0 if i == 0 else 1) :] + ends[i]).astype(np.int64)
            )
            _write_array(z, "format", np.array(b"csr"))
            _write_array(z, "shape", np.array([n, p], dtype=np.int64))
            self._stream(z, "data", np.dtype(np.float32), int(ends[-1]), lambda b, _: b.data.astype(np.float32))

    def _stream(self, z: zipfile.ZipFile, name: str, dtype: np.dtype[Any], length: int, piece: Any) -> None:
        with z.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)}
            )
            for i, block in enumerate(self.iter_blocks()):
                f.write(np.ascontiguousarray(piece(block, i), dtype=dtype).tobytes())


def _write_array(z: zipfile.ZipFile, name: str, value: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, value, allow_pickle=False)
    z.writestr(f"{name}.npy", buffer.getvalue())


def _times(block: sp.csr_matrix, M: np.ndarray) -> np.ndarray:
    return np.asarray(block @ M, dtype=np.float64)


def _transpose_times(block: sp.csr_matrix, Q: np.ndarray) -> np.ndarray:
    return np.asarray(block.T @ Q, dtype=np.float64)[None]


def _squared_norm(block: sp.csr_matrix) -> float:
    return float(np.square(block.data, dtype=np.float64).sum())


def _positive_counts(block: sp.csr_matrix, axis: int) -> np.ndarray:
    return np.asarray((block > 0).sum(axis=axis)).ravel().astype(np.int64)


def _nnz(block: sp.csr_matrix) -> int:
    return int(block.nnz)


def _digest(block: sp.csr_matrix) -> bytes:
    h = hashlib.sha256()
    for arr in (block.indptr.astype(np.int64), block.indices.astype(np.int64), block.data.astype(np.float32)):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.digest()
