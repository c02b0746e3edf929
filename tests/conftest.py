"""Shared fixtures: a fixture artifact built once per session, and real API server processes.

For HTTP tests of app/ (the API and later /compare-metrics):
- `api_artifact`: an artifacts root with one published simulation version (models.build as a
  subprocess, 2,000 users x 300 items, k = 16), read-only: copy it (`copy_artifacts`) to publish more.
- `api_server`: `python -m app` with 2 workers on that root (production settings otherwise),
  session-scoped; `.client` is an httpx.Client on its base URL.
- `start_api_server(root, workers=1, **env)`: a context manager for a server with other settings.
- `dense_oracle(version_dir)`: every score the API serves, recomputed in dense numpy from svd.npz
  and interactions.npz with PAPER.md's closed forms (independent of models/ and of the indexes).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
API_BUILD = {"sim_users": 2000, "sim_items": 300, "k": 16, "lambda_denoising": 100.0, "lambda_weight_decay": 5.0}


def api_build(out: Path, diagnostics: bool = False, **overrides: float | int | str) -> str:
    """Publish one simulation version into `out` with models.build (a subprocess); returns its name.

    diagnostics=False passes --no-diagnostics (no summary.json, no heatmaps: a quicker build).
    """
    params = {**API_BUILD, **overrides}
    args = [arg for key, value in params.items() for arg in (f"--{key.replace('_', '-')}", str(value))]
    if not diagnostics:
        args.append("--no-diagnostics")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "models.build",
            "--dataset",
            "simulation",
            "--out",
            str(out),
            "--quiet",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return (out / "CURRENT").read_text().strip()


@dataclass(frozen=True)
class ApiArtifact:
    root: Path
    version: str

    @property
    def version_dir(self) -> Path:
        return self.root / "versions" / self.version


@pytest.fixture(scope="session")
def api_artifact(tmp_path_factory: pytest.TempPathFactory) -> ApiArtifact:
    root = tmp_path_factory.mktemp("api-artifacts")
    return ApiArtifact(root, api_build(root))


def copy_artifacts(src: ApiArtifact, dst: Path) -> ApiArtifact:
    """A writable copy of an artifacts root (to publish or corrupt versions in it)."""
    shutil.copytree(src.root, dst, ignore=shutil.ignore_patterns(".lock"))
    return ApiArtifact(dst, src.version)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ApiServer:
    base_url: str
    proc: subprocess.Popen[bytes]
    log: Path
    client: httpx.Client

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def start_api_server(
    artifacts_dir: Path, log_dir: Path, workers: int = 1, ready: str = "/readyz", timeout: float = 60.0, **env: str
) -> Iterator[ApiServer]:
    """`python -m app` on a free loopback port; waits until `ready` answers 200 (or /healthz if ready="")."""
    for _attempt in range(3):  # a free port can be taken between the probe and uvicorn's bind
        port = free_port()
        log = log_dir / f"server-{port}.log"
        full_env = {
            **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
            "ARTIFACTS_DIR": str(artifacts_dir),
            "LOG_LEVEL": "info",
            **env,
        }
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                cwd=ROOT,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, timeout=10.0)
        server = ApiServer(base, proc, log, client)
        try:
            if _wait(server, ready or "/healthz", timeout):
                yield server
                return
        finally:
            client.close()
            _stop(proc)
        if "address already in use" not in log.read_text(errors="replace").lower():
            raise AssertionError(f"API server did not become ready:\n{log.read_text(errors='replace')[-4000:]}")
    raise AssertionError("API server could not bind a free port")


def _wait(server: ApiServer, path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            if server.client.get(path).status_code == 200:
                return True
        time.sleep(0.1)
    raise AssertionError(f"API server not ready after {timeout}s:\n{server.logs()[-4000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # our own process group: uvicorn's supervisor and its workers
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def api_server(api_artifact: ApiArtifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """The API as `make demo` runs it (2 workers), on the session's fixture artifact."""
    with start_api_server(api_artifact.root, tmp_path_factory.mktemp("api-server"), workers=2) as server:
        yield server


# A second, smaller version built WITH diagnostics (summary.json, heatmaps): /compare-metrics/summary, /figures, the page.
DIAG_BUILD = {
    "sim_users": 600,
    "sim_items": 120,
    "k": 8,
    "lambda_denoising": 30.0,
    "lambda_weight_decay": 2.0,
    "diagnostics_user_sample": 100,
}


@pytest.fixture(scope="session")
def diag_artifact(tmp_path_factory: pytest.TempPathFactory) -> ApiArtifact:
    root = tmp_path_factory.mktemp("diag-artifacts")
    return ApiArtifact(root, api_build(root, diagnostics=True, **DIAG_BUILD))


@pytest.fixture(scope="session")
def diag_server(diag_artifact: ApiArtifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """`python -m app` (1 worker) on diag_artifact."""
    with start_api_server(diag_artifact.root, tmp_path_factory.mktemp("diag-server"), workers=1) as server:
        yield server


# --------------------------------------------------------------------------- the dense oracle


def _cos_rows(M: np.ndarray) -> np.ndarray:
    """Row-row cosine of M (m, d) by the definition; rows of norm 0 give 0."""
    n = np.sqrt((M * M).sum(axis=1))
    G = M @ M.T
    den = np.outer(n, n)
    return np.divide(G, den, out=np.zeros_like(G), where=den > 0)


def paper_factors(
    s: np.ndarray, V: np.ndarray, model: str, lam_denoising: float, lam_weight_decay: float
) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of PAPER.md's closed forms, written out here independently of models/."""
    if model == "weight-decay":
        keep = np.clip(1.0 - lam_weight_decay / s, 0.0, None)
        return V * np.sqrt(keep / s), V * np.sqrt(keep * s)
    f = s**2 / (s**2 + lam_denoising)
    a, b = {
        "denoising-symmetric": (np.sqrt(f), np.sqrt(f)),
        "denoising-item-orthonormal": (f, np.ones_like(f)),
        "denoising-user-orthonormal": (np.ones_like(f), f),
        "denoising-sigma-matched": (np.sqrt(f / s), np.sqrt(f * s)),
    }[model]
    return V * a, V * b


class DenseOracle:
    """Dense scores per (model, metric), computed on first use: items (p, p), users (n, n), recommend (n, p).

    items(model, metric)[q] are the scores of every item against item q; likewise for users and
    recommend (user u against every item).
    """

    def __init__(self, version_dir: Path, lam_denoising: float, lam_weight_decay: float) -> None:
        with np.load(version_dir / "svd.npz") as z:
            self.s, self.V = z["s"].astype(np.float64), z["V"].astype(np.float64)
        self.X = sp.load_npz(version_dir / "interactions.npz").toarray().astype(np.float64)
        self.lams = (lam_denoising, lam_weight_decay)
        self._cache: dict[tuple[str, str, str], np.ndarray] = {}

    def _model(self, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P, B, Xhat) of a model: P = X A (n, k), B (p, k), Xhat = P B^T (n, p), the model's smoothed X."""
        A, B = paper_factors(self.s, self.V, model, *self.lams)
        P = self.X @ A
        return P, B, P @ B.T

    def _get(self, side: str, model: str, metric: str) -> np.ndarray:
        key = (side, model, metric)
        if key not in self._cache:
            P, B, Xhat = self._model(model)
            if side == "items":
                M = {"dot": lambda: B @ B.T, "cosine": lambda: _cos_rows(B), "projected": lambda: _cos_rows(Xhat.T)}[metric]()
            elif side == "users":
                M = {"dot": lambda: P @ P.T, "cosine": lambda: _cos_rows(P), "projected": lambda: _cos_rows(Xhat)}[metric]()
            else:
                if metric == "dot":
                    M = Xhat
                else:
                    a, b = (P, B) if metric == "cosine" else (Xhat, Xhat.T)
                    den = np.outer(np.sqrt((a * a).sum(1)), np.sqrt((b * b).sum(1)))
                    M = np.divide(Xhat, den, out=np.zeros_like(Xhat), where=den > 0)
            self._cache[key] = M
        return self._cache[key]

    def items(self, model: str, metric: str) -> np.ndarray:
        return self._get("items", model, metric)

    def users(self, model: str, metric: str) -> np.ndarray:
        return self._get("users", model, metric)

    def recommend(self, model: str, metric: str) -> np.ndarray:
        return self._get("recommend", model, metric)


def dense_oracle(version_dir: Path, lam_denoising: float, lam_weight_decay: float) -> DenseOracle:
    return DenseOracle(version_dir, lam_denoising, lam_weight_decay)
