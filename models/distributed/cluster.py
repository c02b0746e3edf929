"""The Dask client of a build: an existing cluster's scheduler, or a LocalCluster of worker processes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from dask.distributed import Client, LocalCluster

from models.build.progress import Progress
from models.errors import InputError

CONNECT_TIMEOUT = "10s"


@contextmanager
def dask_client(scheduler: str | None, workers: int, progress: Progress) -> Iterator[Client]:
    """A Client of `scheduler` (tcp://HOST:PORT), or of a LocalCluster of `workers` single-threaded worker processes
    (the embedded default, closed on exit); prints the workers and the dashboard's address.

    InputError naming --dask-scheduler when it cannot be reached within CONNECT_TIMEOUT.
    """
    if workers < 1:
        raise InputError(f"--dask-workers must be >= 1, got {workers}")
    cluster: LocalCluster | None = None
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:
            raise InputError(f"--dask-scheduler {scheduler}: cannot connect within {CONNECT_TIMEOUT}: {e}") from e
    else:
        # one thread per process: the blocks' sparse products are single-threaded, and BLAS inside a worker would
        # compete with the other workers for the cores
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
        )
        client = Client(cluster)
    try:
        threads = client.nthreads()
        where = scheduler or f"LocalCluster of {workers} worker processes"
        progress.say(f"dask: {where}, {len(threads)} workers, {sum(threads.values())} threads; dashboard {client.dashboard_link}")
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
