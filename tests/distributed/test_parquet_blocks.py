"""The Dask engine's reader against the in-process one: the same X, ids and counts from a directory of files of
different column types, the same error (file and row) for every bad file, on a LocalCluster of two processes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from job.test_parquet_input import BAD, _rows, _two_files, _write_parts

from models.errors import InputError
from models.inputs.parquet_files import read_interactions_parquet

pytestmark = pytest.mark.slow


def _blocks(path, client, **kw):
    from models.distributed.parquet_blocks import read_parquet_blocks

    return read_parquet_blocks(path, client, **kw)


@pytest.mark.parametrize("duplicates", ["sum", "max"])
@pytest.mark.parametrize("block_nnz", [7, 1_000_000])
def test_blocks_equal_the_in_process_matrix(tmp_path, dask_client, duplicates, block_nnz):
    _write_parts(tmp_path / "d", _rows(3, 500), [120, 121, 300, 420])
    want = read_interactions_parquet(tmp_path / "d", duplicates=duplicates, min_value=0.5)
    got = _blocks(tmp_path / "d", dask_client, duplicates=duplicates, min_value=0.5, block_nnz=block_nnz)
    assert got.user_ids == want.user_ids and got.item_ids == want.item_ids
    blocks = list(got.X.iter_blocks())
    assert len(blocks) == got.source["blocks"] and (len(blocks) > 2) == (block_nnz == 7)
    X = sp.vstack(blocks).tocsr()
    assert X.shape == want.X.shape and X.nnz == want.X.nnz == got.X.nnz
    np.testing.assert_array_equal(X.toarray(), want.X.toarray())
    np.testing.assert_array_equal(got.item_popularity(), want.item_popularity())
    np.testing.assert_array_equal(got.user_activity(), want.user_activity())
    for key in ("rows", "duplicate_rows_merged", "files", "kind", "columns", "min_value"):
        assert got.source[key] == want.source[key], key
    path = tmp_path / "x.npz"
    got.save_interactions(path)  # streamed block by block
    saved = sp.load_npz(path)
    assert saved.format == "csr" and saved.dtype == np.float32
    np.testing.assert_array_equal(saved.toarray(), want.X.toarray())


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_named_as_in_process(tmp_path, dask_client, case):
    table, message = BAD[case]
    root = _two_files(tmp_path, table)
    with pytest.raises(InputError) as e:
        _blocks(root, dask_client)
    assert message in str(e.value) and str(root) in str(e.value)


def test_duplicate_rejected(tmp_path, dask_client):
    root = _two_files(tmp_path, pa.table({"user_id": ["q", "b"], "item_id": ["q", "y"], "value": [1.0, 1.0]}))
    with pytest.raises(InputError, match=r"duplicate \(user, item\) pair \('b', 'y'\)"):
        _blocks(root, dask_client, duplicates="error")


def test_ids_numbered_by_first_appearance_across_files(tmp_path, dask_client):
    """Ids met first in a later file (after a file that --min-value empties) come after every id of the earlier
    files, in their order of appearance, as the in-process reader numbers them."""
    files = [
        [("c", "z", 1.0), ("a", "y", 1.0)],
        [("x", "q", 0.1)],
        [("b", "y", 1.0), ("a", "w", 1.0), ("d", "z", 1.0)],
        [("d", "v", 1.0), ("e", "y", 1.0), ("c", "v", 1.0)],
    ]
    root = tmp_path / "d"
    root.mkdir()
    for j, chunk in enumerate(files):
        columns = dict(zip(("user_id", "item_id", "value"), map(list, zip(*chunk, strict=True)), strict=True))
        pq.write_table(pa.table(columns), root / f"p{j}.parquet")
    want = read_interactions_parquet(root, min_value=0.5)
    got = _blocks(root, dask_client, min_value=0.5, block_nnz=2)
    assert got.user_ids == want.user_ids == ["c", "a", "b", "d", "e"]
    assert got.item_ids == want.item_ids == ["z", "y", "w", "v"]
    assert got.source["blocks"] >= 3
    np.testing.assert_array_equal(sp.vstack(list(got.X.iter_blocks())).toarray(), want.X.toarray())


def test_user_embeddings_stay_on_the_workers(tmp_path, dask_client):
    """Every closed form's P of the Dask engine is a dask array (its rows on the workers) equal to X A from the dense X."""
    import dask.array as da

    from models.build.fitting import ModelChoice, fit_models
    from models.build.progress import Progress
    from models.fit.closed_forms import MODELS, WEIGHT_DECAY, denoising_factors, weight_decay_factors

    _write_parts(tmp_path / "d", _rows(4, 600), [200, 400])
    got = _blocks(tmp_path / "d", dask_client, block_nnz=50)
    svd = got.X.svd(5, n_iter=8)
    dense = sp.vstack(list(got.X.iter_blocks())).toarray().astype(np.float64)
    fitted = list(fit_models(got.X, svd, 10.0, 1.0, ModelChoice(), {}, 0, Progress(quiet=True)))
    assert [fm.name for fm in fitted] == list(MODELS)
    for fm in fitted:
        assert isinstance(fm.P, da.Array) and fm.P.numblocks[0] == got.source["blocks"]
        if fm.name == WEIGHT_DECAY:
            A = weight_decay_factors(svd.V, svd.s, 1.0)[0]
        else:
            A = denoising_factors(svd.V, svd.s, 10.0, fm.name)[0]
        np.testing.assert_allclose(fm.P.compute(), dense @ A, rtol=1e-10, atol=1e-10)


def test_blocks_capped_where_the_dense_partials_would_outweigh_x(tmp_path, dask_client):
    """Tiny blocks asked for, but each block's (n_items, l) partial of X^T Q would be as large as X: one block per
    worker thread, and the same X."""
    _write_parts(tmp_path / "d", _rows(3, 500), [250])
    many = _blocks(tmp_path / "d", dask_client, block_nnz=7)
    capped = _blocks(tmp_path / "d", dask_client, block_nnz=7, partial_width=148)
    threads = sum(dask_client.nthreads().values())
    assert many.source["blocks"] > 10 and capped.source["blocks"] == threads
    np.testing.assert_array_equal(
        sp.vstack(list(capped.X.iter_blocks())).toarray(), sp.vstack(list(many.X.iter_blocks())).toarray()
    )
