"""The publish step's checksums computed on the Dask workers: each file's digest is hashlib's of its bytes, in
the order asked (the tasks run largest file first), and a file a worker cannot read is named in the error."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from dask.distributed import get_task_stream

from models.artifact.manifest import MANIFEST
from models.artifact.store import ArtifactStore
from models.distributed.file_digests import worker_digests

pytestmark = pytest.mark.slow


def _files(tmp_path):
    rng = np.random.default_rng(3)
    sizes = {"small.json": 17, "empty.npy": 0, "big.faiss": 9 << 20, "mid.npy": 300_001}
    paths = []
    for name, n in sizes.items():
        (tmp_path / name).write_bytes(rng.bytes(n))
        paths.append(tmp_path / name)
    return paths


def test_each_digest_is_hashlibs_of_the_file_and_computed_on_a_worker(tmp_path, dask_client):
    paths = _files(tmp_path)
    with get_task_stream(dask_client) as stream:
        got = worker_digests(dask_client)(paths)
    assert got == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    hashed = [t for t in stream.data if t["key"].startswith("_hash-")]
    assert len(hashed) == len(paths) and {t["worker"] for t in hashed} <= set(dask_client.scheduler_info()["workers"])


def test_a_file_gone_before_hashing_is_named(tmp_path, dask_client):
    paths = _files(tmp_path)
    paths.append(tmp_path / "gone.npy")
    with pytest.raises(FileNotFoundError, match=r"gone\.npy"):
        worker_digests(dask_client)(paths)


def test_a_file_a_worker_cannot_read_is_named_by_the_workers_own_error(tmp_path, dask_client):
    paths = _files(tmp_path)
    (tmp_path / "unreadable.npy").mkdir()  # the client can stat it; the worker's open fails
    paths.append(tmp_path / "unreadable.npy")
    with pytest.raises(IsADirectoryError, match=r"unreadable\.npy"):
        worker_digests(dask_client)(paths)  # an OSError: the build's `except OSError` makes it a WriteFailed


def test_a_version_published_with_worker_digests_lists_each_files_own(tmp_path, dask_client):
    store = ArtifactStore(tmp_path / "art")
    version = store.new_version("test", {})
    with store.staging(version) as staging:
        _files(staging)
        (staging / "indexes").mkdir()
        (staging / "indexes" / "x.npy").write_bytes(b"rows")
        final = store.publish(staging, version, {"created_at": "now"}, keep=1, digests=worker_digests(dask_client))
    files = json.loads((final / MANIFEST).read_text())["files"]
    on_disk = {p.relative_to(final).as_posix(): p for p in final.rglob("*") if p.is_file() and p.name != MANIFEST}
    assert set(files) == set(on_disk)
    for rel, p in on_disk.items():
        assert files[rel] == {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size}, rel
    assert store.current_version() == version
