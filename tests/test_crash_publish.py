"""SIGKILL the offline job at several points of a build: CURRENT still names a complete version,
and the next build removes the leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from models.artifact.store import ArtifactStore, verify_version

ROOT = Path(__file__).resolve().parent.parent
SIM = ["--dataset", "simulation", "--sim-users", "20000", "--sim-items", "1000", "--k", "50", "--no-diagnostics"]


def build(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "models.build", "--out", str(out), *SIM, "--quiet", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def kill_when(out: Path, marker: str, seed: int) -> str:
    """Start a build, SIGKILL it as soon as its progress output shows `marker`; return what it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "models.build", "--out", str(out), *SIM, "--seed", str(seed)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    return "".join(seen)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("crash")
    assert build(out).returncode == 0
    return out


@pytest.mark.parametrize(
    "marker",
    [
        "reading simulation ...",  # before any file is written
        "svd k=",  # while fitting
        "index users-denoising-item-orthonormal-dot",  # half the indexes written
        "index recommend-weight-decay-projected-items",  # every index written, publish next
        "publishing ...",  # inside publish (may finish first)
    ],
)
def test_killed_build_leaves_a_complete_live_version(root, marker):
    store = ArtifactStore(root)
    before = store.current_version()
    kill_when(root, marker, seed=7)
    live = store.current_version()
    verify_version(store.version_dir(live))  # whatever is live is complete and checksummed
    if marker != "publishing ...":
        assert live == before
    for version in store.list_versions():  # versions/ only ever holds complete versions
        verify_version(store.version_dir(version))


def test_next_build_cleans_leftovers(root):
    kill_when(root, "index users-denoising-symmetric-dot", seed=8)
    store = ArtifactStore(root)
    assert list(root.glob(".staging-*")), "a killed mid-build should leave its staging folder"
    proc = build(root, "--seed", "9")
    assert proc.returncode == 0, proc.stderr
    assert not list(root.glob(".staging-*"))
    verify_version(store.version_dir(store.current_version()))
