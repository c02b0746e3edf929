"""A real Milvus for the Milvus backend's tests (bench.harness.MilvusServer: milvus-lite's gRPC server on a free
loopback port, reached through pymilvus as a Milvus cluster would be), and publishing a version into it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.artifacts import ROOT, api_build_command

# small, and every model x metric: 33 collections
MILVUS_BUILD = {"sim_users": 600, "sim_items": 120, "k": 8, "lambda_denoising": 30.0, "lambda_weight_decay": 2.0}


def publish(out: Path, uri: str, *flags: str, **overrides: float | int | str) -> subprocess.CompletedProcess[str]:
    """models.build of MILVUS_BUILD into `out` with --milvus-uri; the finished process."""
    cmd = api_build_command(out, False, ("--gauge-transforms", "0", "--milvus-uri", uri, *flags), **{**MILVUS_BUILD, **overrides})
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
