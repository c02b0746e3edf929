"""SIGKILL the offline job at several points of a build: CURRENT still names a complete version,
and the next build removes the leftovers.

The SIGKILLed subprocesses are slow (`-m slow`). The fast tests at the end interrupt a build run in this
process at the same points (an exception nothing catches, raised from its progress output) and check
the same invariants; what only a real kill leaves behind (a staging folder of a dead process) is
planted by hand for the next build to clean.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.artifacts import ROOT, build_in_process

from models.artifact.store import ArtifactStore, verify_version
from models.build.cli import main
from models.build.progress import Progress

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
    """An artifacts root with one version, built by a subprocess (only the slow tests use it)."""
    out = tmp_path_factory.mktemp("crash")
    assert build(out).returncode == 0
    return out


MARKERS = [
    "reading simulation ...",  # before any file is written
    "svd k=",  # while fitting
    "index users-denoising-item-orthonormal-dot",  # half the indexes written
    "index recommend-weight-decay-projected-items",  # every index written, publish next
    "publishing ...",  # inside publish (may finish first)
]


@pytest.mark.slow
@pytest.mark.parametrize("marker", MARKERS)
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


@pytest.mark.slow
def test_next_build_cleans_leftovers(root):
    kill_when(root, "index users-denoising-symmetric-dot", seed=8)
    store = ArtifactStore(root)
    assert list(root.glob(".staging-*")), "a killed mid-build should leave its staging folder"
    proc = build(root, "--seed", "9")
    assert proc.returncode == 0, proc.stderr
    assert not list(root.glob(".staging-*"))
    verify_version(store.version_dir(store.current_version()))


# --------------------------------------------------------------------------- in-process (fast)

SIM_IN_PROCESS = ["--dataset", "simulation", "--sim-users", "2000", "--sim-items", "300", "--k", "16", "--no-diagnostics"]
DEAD_PID = 999_999_999  # above any pid_max: no such process


class Interrupted(BaseException):
    """Stands in for the SIGKILL: a BaseException, so no `except Exception` of the job can swallow it."""


def interrupt_when(monkeypatch: pytest.MonkeyPatch, out: Path, marker: str, seed: int) -> None:
    """Run the CLI in this process and interrupt it as soon as its progress output shows `marker`."""
    say = Progress.say

    def say_or_stop(self: Progress, message: str) -> None:
        if marker in message:
            raise Interrupted(message)
        say(self, message)

    with monkeypatch.context() as m:
        m.setattr(Progress, "say", say_or_stop)
        with pytest.raises(Interrupted):
            main(["--out", str(out), *SIM_IN_PROCESS, "--seed", str(seed)])


@pytest.fixture(scope="module")
def root_in_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("crash-in-process")
    proc = build_in_process(["--out", str(out), *SIM_IN_PROCESS, "--quiet"])
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("marker", MARKERS)
def test_interrupted_build_leaves_a_complete_live_version_in_process(root_in_process, monkeypatch, marker):
    store = ArtifactStore(root_in_process)
    before, versions = store.current_version(), store.list_versions()
    interrupt_when(monkeypatch, root_in_process, marker, seed=7)
    assert store.current_version() == before  # every marker comes before publish's first rename
    verify_version(store.version_dir(before))  # whatever is live is complete and checksummed
    assert store.list_versions() == versions
    for version in store.list_versions():  # versions/ only ever holds complete versions
        verify_version(store.version_dir(version))
    assert not list(root_in_process.glob(".staging-*"))  # an interrupted build removes its own staging folder


def test_interrupted_between_rename_and_switch_leaves_the_old_version_live_in_process(root_in_process, monkeypatch):
    """Interrupted inside publish, after the rename into versions/ and before CURRENT switches: the renamed
    folder is removed again (a version CURRENT never named is not published; a SIGKILL there would leave it)."""
    store = ArtifactStore(root_in_process)
    before, versions = store.current_version(), store.list_versions()

    def interrupted(self: ArtifactStore, version: str) -> None:
        raise Interrupted(f"switch_current({version})")

    with monkeypatch.context() as m:
        m.setattr(ArtifactStore, "switch_current", interrupted)
        with pytest.raises(Interrupted):
            main(["--out", str(root_in_process), *SIM_IN_PROCESS, "--seed", "8", "--quiet"])
    assert store.current_version() == before
    verify_version(store.version_dir(before))
    assert store.list_versions() == versions
    for version in store.list_versions():
        verify_version(store.version_dir(version))
    assert not list(root_in_process.glob(".staging-*")) and not list(root_in_process.glob(".CURRENT.*"))
    proc = build_in_process(["--out", str(root_in_process), *SIM_IN_PROCESS, "--seed", "9", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert store.current_version() not in versions
    verify_version(store.version_dir(store.current_version()))


def test_next_build_cleans_leftovers_in_process(root_in_process):
    """What a SIGKILL leaves (a dead build's staging folder and CURRENT temporary file) goes with the next build."""
    store = ArtifactStore(root_in_process)
    staging = root_in_process / f".staging-20200101T000000Z-deadbeef-{DEAD_PID}"
    (staging / "indexes").mkdir(parents=True)
    (staging / "indexes" / "users-denoising-symmetric-dot.faiss").write_bytes(b"partial")
    (root_in_process / f".CURRENT.{DEAD_PID}").write_text("20200101T000000Z-deadbeef")
    proc = build_in_process(["--out", str(root_in_process), *SIM_IN_PROCESS, "--seed", "10"])
    assert proc.returncode == 0, proc.stderr
    assert not list(root_in_process.glob(".staging-*")) and not list(root_in_process.glob(".CURRENT.*"))
    assert "leftovers" in proc.stderr
    verify_version(store.version_dir(store.current_version()))
