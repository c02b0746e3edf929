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

from models.artifact.store import Digests, sha256_file


def worker_digests(client: Client) -> Digests:
    """artifact.store.Digests whose files are hashed on `client`'s workers, largest file first."""

    def digests(paths: Sequence[Path]) -> list[str]:
        # dask runs higher priorities first: by size, the longest hashes start first
        futures = [client.submit(_hash, str(p), pure=False, priority=os.stat(p).st_size) for p in paths]
        return list(client.gather(futures))

    return digests


def _hash(path: str) -> str:
    return sha256_file(Path(path))
