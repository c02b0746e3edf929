"""Versioned artifact folders: atomic publish, the CURRENT pointer, retention, verification.

Layout under the artifacts root:
    CURRENT                  name of the live version (switched with an atomic rename)
    versions/<version>/      manifest.json plus the files it lists with their sha256
    .staging-<version>-<pid> a build in progress (removed on failure; leftovers of a killed
                             build are removed by the next build)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact.manifest import (
    CURRENT,
    CURRENT_TMP_PREFIX,
    LOCK,
    MANIFEST,
    REQUIRED_KEYS,
    SCHEMA_VERSION,
    STAGING_PREFIX,
    VERSION_RE,
    VERSIONS_DIR,
    version_name,
)
from models.errors import naming_the_file


class ArtifactError(Exception):
    """A version that must not be served: missing, incomplete or corrupt. The message says why."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


Digests = Callable[[Sequence[Path]], list[str]]
"""The sha256 hex digest of each file, in order (models.distributed.file_digests has the Dask engine's, each
file hashed on one of the workers)."""


def local_digests(paths: Sequence[Path]) -> list[str]:
    """sha256 of each file, in this process."""
    return [sha256_file(p) for p in paths]


def fsync_path(path: Path) -> None:
    """fsync a file or a directory, so a rename that follows is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_npy(path: Path, array: np.ndarray) -> None:
    """np.save, with the file named in the OSError of a failed write (numpy's own names none)."""
    with naming_the_file(path):
        np.save(path, array)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """np.savez, with the file named in the OSError of a failed write."""
    with naming_the_file(path):
        np.savez(path, **arrays)  # type: ignore[arg-type]


def write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())


class ArtifactStore:
    """The artifacts root: where builds stage, publish and where the API reads the live version."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.versions = self.root / VERSIONS_DIR
        self.current_file = self.root / CURRENT
        self.lock_file = self.root / LOCK

    def current_version(self) -> str | None:
        try:
            name = self.current_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name or None

    def version_dir(self, version: str) -> Path:
        if not VERSION_RE.match(version):
            raise ArtifactError(f"CURRENT names {version!r}, which is not a version name")
        return self.versions / version

    def new_version(self, fingerprint: str, params: dict[str, Any]) -> str:
        """A fresh version name (models.artifact.manifest.version_name) not yet under versions/."""
        return version_name(fingerprint, params, self.list_versions())

    def list_versions(self) -> list[str]:
        if not self.versions.is_dir():
            return []
        return sorted(p.name for p in self.versions.iterdir() if p.is_dir() and VERSION_RE.match(p.name))

    def cleanup_leftovers(self) -> list[str]:
        """Remove staging folders of builds that are no longer running (killed mid-build)."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        for p in self.root.glob(f"{STAGING_PREFIX}*"):
            pid = p.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and process_alive(int(pid)):
                continue
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
        for p in self.root.glob(f"{CURRENT_TMP_PREFIX}*"):
            p.unlink(missing_ok=True)
            removed.append(p.name)
        return removed

    @contextlib.contextmanager
    def staging(self, version: str) -> Iterator[Path]:
        """A private folder on the same file system as versions/; removed unless published."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{STAGING_PREFIX}{version}-{os.getpid()}"
        path.mkdir()
        try:
            yield path
        finally:
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)

    def publish(self, staging: Path, version: str, manifest: dict[str, Any], keep: int, digests: Digests = local_digests) -> Path:
        """Hash every file (`digests`), write the manifest, fsync, rename into versions/, switch CURRENT.

        Until the final rename of CURRENT the live version is untouched; a crash at any point
        leaves either the old or the new version live, never a partial one.
        """
        paths = [p for p in sorted(staging.rglob("*")) if p.is_file()]
        for p in paths:  # before hashing: what this machine wrote is on disk when another machine reads it
            fsync_path(p)
        files = {
            p.relative_to(staging).as_posix(): {"sha256": digest, "bytes": p.stat().st_size}
            for p, digest in zip(paths, digests(paths), strict=True)
        }
        manifest = {**manifest, "schema_version": SCHEMA_VERSION, "version": version, "files": files}
        write_json(staging / MANIFEST, manifest)
        for d in [staging, *[p for p in staging.rglob("*") if p.is_dir()]]:
            fsync_path(d)
        self.versions.mkdir(parents=True, exist_ok=True)
        final = self.versions / version
        os.rename(staging, final)
        try:
            fsync_path(self.versions)
            self.switch_current(version)
        except BaseException:
            # CURRENT still names the previous version (switch_current fails before its rename or not at all): a
            # complete folder it never named would only be a candidate for a worker's fallback.
            shutil.rmtree(final, ignore_errors=True)
            raise
        self.apply_retention(keep)
        return final

    def switch_current(self, version: str) -> None:
        """Point CURRENT at `version` by an atomic rename; on failure CURRENT is untouched, no temporary left."""
        tmp = self.root / f"{CURRENT_TMP_PREFIX}{os.getpid()}"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(version + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.current_file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # Published from here on: the rename is done and every worker sees it. Syncing the directory makes it
        # survive a power cut; if that fails the publish still happened, and saying otherwise would be wrong.
        with contextlib.suppress(OSError):
            fsync_path(self.root)

    def apply_retention(self, keep: int) -> list[str]:
        """Keep the newest `keep` versions (and always the live one); delete the rest."""
        current = self.current_version()
        versions = self.list_versions()
        doomed = [v for v in versions[: max(0, len(versions) - keep)] if v != current]
        for v in doomed:
            shutil.rmtree(self.versions / v, ignore_errors=True)
        return doomed


def load_manifest(version_dir: Path) -> dict[str, Any]:
    """The manifest of a version folder, checked for shape; ArtifactError says what is wrong."""
    path = version_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path}: not a JSON object")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(f"{path}: schema_version {manifest.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    for key in REQUIRED_KEYS:
        if key not in manifest:
            raise ArtifactError(f"{path}: missing key {key!r}")
    if manifest["version"] != version_dir.name:
        raise ArtifactError(f"{path}: names version {manifest['version']!r} but lives in {version_dir.name!r}")
    return manifest


def verify_version(version_dir: Path) -> dict[str, Any]:
    """Load the manifest and check every listed file's size and sha256; return the manifest."""
    manifest = load_manifest(version_dir)
    for rel, meta in manifest["files"].items():
        p = version_dir / rel
        if not _inside(version_dir, p) or not p.is_file():
            raise ArtifactError(f"{version_dir.name}: file {rel} is missing")
        if p.stat().st_size != meta.get("bytes"):
            raise ArtifactError(f"{version_dir.name}: file {rel} has {p.stat().st_size} bytes, manifest says {meta.get('bytes')}")
        if sha256_file(p) != meta.get("sha256"):
            raise ArtifactError(f"{version_dir.name}: file {rel} fails its sha256 checksum")
    return manifest


def _inside(root: Path, p: Path) -> bool:
    try:
        p.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts until reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
