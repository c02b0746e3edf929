"""Artifacts roots for the tests: the fixture builds, writable copies, and the offline job run in-process.

- `api_build(out, ...)`: publish one simulation version with `python -m models.build` (a subprocess),
  2,000 users x 300 items, k = 16 (API_BUILD) unless overridden; returns the version name.
- `ApiArtifact(root, version)`: an artifacts root and its published version.
- `copy_artifacts(src, dst)`: a writable copy of an artifacts root (to publish or corrupt versions in it).
- `build_in_process(argv)`: `models.build.cli.main(argv)` in this process, its exit code and what it
  printed as a CompletedProcess, for fast tests where the subprocess itself is not what is tested;
  `api_build_in_process(out, ...)` is api_build through it.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the project root (models/, app/, tests/)
API_BUILD = {"sim_users": 2000, "sim_items": 300, "k": 16, "lambda_denoising": 100.0, "lambda_weight_decay": 5.0}

# A second, smaller version built WITH diagnostics (summary.json, heatmaps), an implicit ALS model and the held-out
# evaluation (DIAG_FLAGS): /compare-metrics/summary, /figures, /models/{model}/gauge, /evaluation, the page.
DIAG_BUILD = {
    "sim_users": 600,
    "sim_items": 120,
    "k": 8,
    "lambda_denoising": 30.0,
    "lambda_weight_decay": 2.0,
    "diagnostics_user_sample": 100,
    "train": "als",
    "als_iterations": 5,
}
DIAG_FLAGS = ("--evaluate",)


def build_args(params: dict[str, float | int | str]) -> list[str]:
    """{"sim_users": 300, ...} -> ["--sim-users", "300", ...]: the CLI flags of models.build."""
    return [arg for key, value in params.items() for arg in (f"--{key.replace('_', '-')}", str(value))]


def api_build_command(
    out: Path, diagnostics: bool = False, flags: tuple[str, ...] = (), **overrides: float | int | str
) -> list[str]:
    """The command line of `python -m models.build` for the API build's parameters (API_BUILD, overridden) into `out`.

    diagnostics=False passes --no-diagnostics (no summary.json, no heatmaps: a quicker build); flags: more
    CLI flags without a value (e.g. --evaluate, --quiet).
    """
    args = [*build_args({**API_BUILD, **overrides}), *flags]
    if not diagnostics:
        args.append("--no-diagnostics")
    return [sys.executable, "-m", "models.build", "--dataset", "simulation", "--out", str(out), *args]


def api_build(out: Path, diagnostics: bool = False, flags: tuple[str, ...] = (), **overrides: float | int | str) -> str:
    """Publish one simulation version into `out` with models.build (a subprocess); returns its name."""
    proc = subprocess.run(
        api_build_command(out, diagnostics, ("--quiet", *flags), **overrides),
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


def copy_artifacts(src: ApiArtifact, dst: Path) -> ApiArtifact:
    """A writable copy of an artifacts root (to publish or corrupt versions in it)."""
    shutil.copytree(src.root, dst, ignore=shutil.ignore_patterns(".lock"))
    return ApiArtifact(dst, src.version)


def build_in_process(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the offline job's CLI (`models.build.cli.main`) in this process.

    Returns what `subprocess.run([python, -m, models.build, *argv], capture_output=True, text=True)`
    would: the exit code, stdout (the summary) and stderr (progress lines, error messages). An exit
    through SystemExit (argparse's usage errors) is its code, as for the subprocess.
    """
    from models.build.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return subprocess.CompletedProcess(["models.build", *argv], code, out.getvalue(), err.getvalue())


def api_build_in_process(out: Path, diagnostics: bool = False, **overrides: float | int | str) -> str:
    """api_build, with the offline job's CLI called in this process (same parameters, same version)."""
    args = build_args({**API_BUILD, **overrides})
    if not diagnostics:
        args.append("--no-diagnostics")
    proc = build_in_process(["--dataset", "simulation", "--out", str(out), "--quiet", *args])
    assert proc.returncode == 0, proc.stderr
    return (out / "CURRENT").read_text().strip()
