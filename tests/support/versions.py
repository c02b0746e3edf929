"""Versions published by hand (copied, renamed, switched to) and builds of the offline job SIGKILLed mid-way."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from models.artifact.store import MANIFEST, ArtifactStore
from support.artifacts import API_BUILD, ROOT, build_args


def new_version_name() -> str:
    """A fresh name in the offline job's format (timestamp + 8 hex digits)."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"


def copy_version(root: Path, src: str) -> tuple[str, Path]:
    """Copy versions/<src> to a new version folder whose manifest names it: a complete, valid version."""
    name = new_version_name()
    dst = root / "versions" / name
    shutil.copytree(root / "versions" / src, dst)
    manifest = json.loads((dst / MANIFEST).read_text(encoding="utf-8"))
    manifest["version"] = name
    (dst / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return name, dst


def publish_by_hand(root: Path, version: str) -> None:
    """Switch CURRENT to `version` the way the offline job does (atomic rename)."""
    ArtifactStore(root).switch_current(version)


def kill_build_when(out: Path, marker: str, **overrides: float | int | str) -> tuple[int, str]:
    """Start `python -m models.build` (the API build's parameters, support.artifacts.API_BUILD) and SIGKILL it
    as soon as its progress output shows `marker`; returns (return code, what it printed). The return code
    is 0 when the build finished before the signal landed."""
    args = build_args({**API_BUILD, **overrides})
    proc = subprocess.Popen(
        [sys.executable, "-m", "models.build", "--dataset", "simulation", "--out", str(out), "--no-diagnostics", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            break
    proc.stderr.close()
    return proc.wait(timeout=60), "".join(seen)
