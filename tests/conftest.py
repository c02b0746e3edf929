"""Session fixtures shared by every folder, on a fixture artifact built once per session.

tests/ goes on sys.path first, so test modules import the helpers as `from support.servers import ...`
(tests/support/: servers, artifacts, the dense oracle, Prometheus parsing, load, ...). This file holds
fixtures only; never import it (`from conftest import` is ambiguous with one conftest.py per folder).

- `api_artifact`: an artifacts root with one published simulation version (models.build as a
  subprocess, 2,000 users x 300 items, k = 16), read-only: copy it (`copy_artifacts`) to publish more.
- `diag_artifact`: a smaller version built WITH diagnostics (summary.json, heatmaps), an implicit ALS model,
  the gauge probe and the held-out evaluation (evaluation.json).
The servers on them (`api_server`, `diag_server`) are tests/api/conftest.py's.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # before anything imports support.*

import pytest
from support.artifacts import DIAG_BUILD, DIAG_FLAGS, ApiArtifact, api_build


@pytest.fixture(scope="session")
def api_artifact(tmp_path_factory: pytest.TempPathFactory) -> ApiArtifact:
    root = tmp_path_factory.mktemp("api-artifacts")
    return ApiArtifact(root, api_build(root))


@pytest.fixture(scope="session")
def diag_artifact(tmp_path_factory: pytest.TempPathFactory) -> ApiArtifact:
    root = tmp_path_factory.mktemp("diag-artifacts")
    return ApiArtifact(root, api_build(root, diagnostics=True, flags=DIAG_FLAGS, **DIAG_BUILD))
