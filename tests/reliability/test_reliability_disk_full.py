"""A build that runs out of disk, with the API serving from the same artifacts root.

Two ways of running out: a small tmpfs (a real full file system: ENOSPC; needs root for the mount, skipped
otherwise) and RLIMIT_FSIZE (a file-size limit on the build process: works for anyone). Either way the
build fails with a message naming the step, the file and the reason, publishes nothing (CURRENT and
versions/ as they were), leaves no staging folder or CURRENT temporary behind, and the API keeps serving
the previous version without a failed request."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.artifacts import ROOT, ApiArtifact, api_build, api_build_command, copy_artifacts
from support.load import LoadGenerator, neighbour_queries
from support.servers import each_worker, start_api_server, wait_serving

from models.artifact.manifest import CURRENT_TMP_PREFIX, STAGING_PREFIX
from models.artifact.store import ArtifactStore, verify_version

WORKERS = 2


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@contextlib.contextmanager
def small_tmpfs(mount_point: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes at mount_point (skips the test when this process may not mount one)."""
    mount_point.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE test covers the same promises without it")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _build(out: Path, limit: int | None = None, **overrides: float | int | str) -> subprocess.CompletedProcess[str]:
    """`python -m models.build` of the API build's parameters into `out`; `limit`: its RLIMIT_FSIZE in bytes."""

    def file_size_limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        api_build_command(out, **overrides),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=file_size_limit if limit is not None else None,
    )


def _assert_nothing_published(art: ApiArtifact, before: list[str], done: subprocess.CompletedProcess[str]) -> None:
    store = ArtifactStore(art.root)
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    assert "nothing was published (the staging folder is removed); the previous version is untouched" in done.stderr
    assert store.current_version() == art.version and store.list_versions() == before
    assert not list(art.root.glob(f"{STAGING_PREFIX}*")) and not list(art.root.glob(f"{CURRENT_TMP_PREFIX}*"))
    verify_version(art.version_dir)
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_build_on_a_full_file_system_publishes_nothing_and_the_api_keeps_serving(api_artifact, tmp_path):
    version_bytes = _tree_bytes(api_artifact.version_dir)
    # room for the published version and half of another: the second build runs out part-way through
    with small_tmpfs(tmp_path / "disk", int(version_bytes * 1.5)) as disk:
        art = copy_artifacts(api_artifact, disk / "art")
        before = ArtifactStore(art.root).list_versions()
        queries = neighbour_queries(art.version_dir, ["denoising-symmetric"], ["projected", "cosine"], ids=3)
        with start_api_server(art.root, tmp_path, workers=WORKERS, RELOAD_INTERVAL="0.2") as server:
            wait_serving(server, art.version, WORKERS)
            with LoadGenerator(server.base_url, queries, threads=2, max_seconds=120, pause=0.01) as load:
                done = _build(art.root, lambda_denoising=321.0)
                result = load.stop()
            _assert_nothing_published(art, before, done)
            error = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
            assert "No space left on device" in error or "the file system is full" in error, error
            assert f"writing {art.root}/{STAGING_PREFIX}" in error and "step '" in error, error
            assert result.failures == [] and result.requests > 50, (result.requests, result.failures[:5])
            for body in each_worker(server, "/readyz", WORKERS).values():
                assert body["artifact_version"] == art.version and body["last_refusal"] is None
            # room again: the next build publishes and every worker serves it
            subprocess.run(["mount", "-o", f"remount,size={version_bytes * 4}", str(disk)], check=True)
            new = api_build(art.root, lambda_denoising=321.0)
            wait_serving(server, new, WORKERS)


def test_a_build_over_its_file_size_limit_publishes_nothing(api_artifact, tmp_path):
    art = copy_artifacts(api_artifact, tmp_path / "art")
    before = ArtifactStore(art.root).list_versions()
    largest = max(p.stat().st_size for p in art.version_dir.rglob("*") if p.is_file())
    done = _build(art.root, limit=largest // 2, lambda_denoising=321.0)
    _assert_nothing_published(art, before, done)
    error = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert f"writing {art.root}/{STAGING_PREFIX}" in error, error  # the file (here outside any step)
    assert f"at most {largest // 2} bytes (RLIMIT_FSIZE)" in error or "errno EFBIG" in error, error
