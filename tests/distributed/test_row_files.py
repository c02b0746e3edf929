"""Files written in place by the Dask workers against the libraries' own writers: the bytes FAISS serialises for a
flat index of the same rows and the bytes np.save writes, for row blocks of uneven sizes and zero rows."""

from __future__ import annotations

import dask.array as da
import faiss
import numpy as np
import pytest

from models.distributed.row_files import flat_index_header, npy_header, write_rows

pytestmark = pytest.mark.slow


def _rows() -> np.ndarray:
    M = np.random.default_rng(5).standard_normal((1003, 7))
    M[[0, 500, 1002]] = 0.0
    return M


def test_flat_index_bytes_are_faiss_own(tmp_path, dask_client):
    M = _rows()
    lazy = da.from_array(M, chunks=((1, 400, 300, 302), (7,)))
    written = write_rows(lazy, tmp_path / "x.faiss", flat_index_header(*M.shape))
    index = faiss.IndexFlatIP(7)
    index.add(M.astype(np.float32))
    assert (tmp_path / "x.faiss").read_bytes() == faiss.serialize_index(index).tobytes()
    assert (written.rows, written.dim, written.zero_rows) == (1003, 7, 3)
    back = faiss.read_index(str(tmp_path / "x.faiss"))
    scores, ids = back.search(M[:5].astype(np.float32), 3)
    want_scores, want_ids = index.search(M[:5].astype(np.float32), 3)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)


def test_npy_bytes_are_numpy_own(tmp_path, dask_client):
    M = _rows()
    write_rows(da.from_array(M, chunks=(250, 3)), tmp_path / "x.npy", npy_header(*M.shape))
    np.save(tmp_path / "want.npy", M.astype(np.float32))
    assert (tmp_path / "x.npy").read_bytes() == (tmp_path / "want.npy").read_bytes()


def test_unwritable_file_is_named(tmp_path, dask_client):
    with pytest.raises(OSError, match="missing"):
        write_rows(da.zeros((4, 2), chunks=2), tmp_path / "missing" / "x.npy", npy_header(4, 2))


def test_exact_top_by_ranges_on_the_workers_is_the_brute_force(tmp_path, dask_client, monkeypatch):
    """The Milvus loader's exact answers, searched range by range on the workers and merged, equal a dense top 10."""
    from models.distributed import milvus_rows

    M = _rows()
    write_rows(da.from_array(M, chunks=300), tmp_path / "x.faiss", flat_index_header(*M.shape))
    monkeypatch.setattr(milvus_rows, "RANGE_ROWS", 101)  # 10 ranges, so the merge has work to do
    queries = M[::50].astype(np.float32)
    scores, ids = milvus_rows.WorkerRows(dask_client, "unused").exact_top(tmp_path / "x.faiss", queries, 10)
    dense = queries.astype(np.float64) @ M.astype(np.float32).astype(np.float64).T
    want = np.argsort(-dense, axis=1, kind="stable")[:, :10]
    np.testing.assert_allclose(scores, np.take_along_axis(dense, want, axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        np.take_along_axis(dense, ids, axis=1), np.take_along_axis(dense, want, axis=1), rtol=1e-5, atol=1e-5
    )
