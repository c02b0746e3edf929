"""A throwaway PostgreSQL cluster for the experiments' tests (support.postgres), one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.postgres import SKIP_REASON, PostgresCluster, binaries


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PostgresCluster]:
    if binaries() is None:
        pytest.skip(SKIP_REASON)
    cluster = PostgresCluster.create()
    try:
        yield cluster
    finally:
        cluster.destroy()
