"""The publish step's checksums on the Dask workers: each file's sha256 is computed by a worker, the files
in parallel, so the bytes of the version (the user indexes alone are n_users x k x 4 bytes each) are read
on the machines of the cluster instead of all through the publishing machine's one core and link.

The files are in the staging folder on the filesystem the workers share with the client (the workers wrote
the user indexes there). What travels to the client: one 64-character digest a file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from dask.distributed import Client

from models.artifact.store import Digests, fsync_path, sha256_file


def worker_digests(client: Client) -> Digests:
    """artifact.store.Digests whose files are fsynced and hashed on `client`'s workers, largest file first."""

    def digests(paths: Sequence[Path]) -> list[str]:
        order = sorted(range(len(paths)), key=lambda i: -os.stat(paths[i]).st_size)
        futures = {i: client.submit(_fsync_and_hash, str(paths[i]), pure=False) for i in order}
        return list(client.gather([futures[i] for i in range(len(paths))]))

    return digests


def _fsync_and_hash(path: str) -> str:
    fsync_path(Path(path))  # and again on the client: whichever machine's cache holds dirty pages flushes them
    return sha256_file(Path(path))
