"""--engine dask with --milvus-uri against a real Milvus (milvus-lite's server) and a LocalCluster of two workers:
the workers insert the rows of the files they wrote, and every collection holds exactly its index file's rows; the
HNSW collections (whose recall the build measured against exact answers the workers computed range by range)
find what a brute force here finds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.artifacts import ROOT

from models.artifact.manifest import milvus_entries
from models.artifact.store import ArtifactStore
from models.indexes.milvus_collections import milvus_client
from models.inputs.simulation import SimulationSpec, simulate

pytestmark = pytest.mark.slow


def _parquet_dir(root: Path) -> None:
    ds, _ = simulate(SimulationSpec(n_users=900, n_items=150, n_clusters=4, seed=5))
    X = ds.X.tocoo()
    users, items = np.array(ds.user_ids), np.array(ds.item_ids)
    root.mkdir(parents=True)
    for j, part in enumerate(np.array_split(np.random.default_rng(1).permutation(X.nnz), 2)):
        table = {"user_id": users[X.row[part]], "item_id": items[X.col[part]], "value": X.data[part].astype(np.float64)}
        pq.write_table(pa.table(table), root / f"part-{j}.parquet")


def test_workers_fill_every_collection_with_its_file(milvus, tmp_path):
    _parquet_dir(tmp_path / "data")
    out = tmp_path / "art"
    cmd = [sys.executable, "-m", "models.build", "--dataset", "parquet", "--input", str(tmp_path / "data"), "--out", str(out)]
    cmd += ["--engine", "dask", "--dask-workers", "2", "--dask-block-nnz", "3000", "--milvus-uri", milvus.uri]
    cmd += ["--k", "6", "--exact-max-rows", "400", "--no-diagnostics", "--gauge-transforms", "0", "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    version = out / "versions" / ArtifactStore(out).current_version()
    entries = milvus_entries(json.loads((version / "manifest.json").read_text()))
    client = milvus_client(milvus.uri, timeout=30)
    hnsw = 0
    for file, e in entries.items():
        want = faiss.read_index(str(version / file))
        rows = want.reconstruct_n(0, want.ntotal)
        got = client.query(e.collection, filter="row >= 0", output_fields=["row", "vec"], limit=want.ntotal + 1)
        assert len(got) == want.ntotal == e.rows, file
        stored = np.array([g["vec"] for g in sorted(got, key=lambda g: g["row"])], dtype=np.float32)
        np.testing.assert_allclose(stored, rows, atol=1e-6, err_msg=file)
        if e.index_type == "HNSW":
            hnsw += 1
            assert e.recall_at_10 >= 0.95
            queries = rows[::7]
            scores = queries.astype(np.float64) @ rows.T.astype(np.float64)
            tenth = -np.sort(-scores, axis=1)[:, 9]  # a hit scored at least the exact 10th (ties) is found
            hits = client.search(
                e.collection,
                data=queries.tolist(),
                limit=10,
                anns_field="vec",
                search_params={"metric_type": "IP", "params": dict(e.search_params)},
                output_fields=["row"],
            )
            found = [sum(scores[q, h["row"]] >= tenth[q] - 1e-5 for h in hit) for q, hit in enumerate(hits)]
            assert np.mean(found) / 10 >= 0.85, file  # another sample than the build's 200 rows: some slack
    assert hnsw >= 10  # the user collections (900 rows > --exact-max-rows 400); the items' are FLAT
    assert len(entries) >= 30
