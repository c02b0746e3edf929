"""The Milvus server of this folder's tests (bench.harness.MilvusServer), one per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.harness import MilvusServer


@pytest.fixture(scope="module")
def milvus(tmp_path_factory) -> Iterator[MilvusServer]:
    root = tmp_path_factory.mktemp("milvus")
    server = MilvusServer(data_dir=root / "data", log=root / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
