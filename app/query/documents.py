"""JSON documents a version carries beside its indexes (summary.json, gauge.json, evaluation.json), read once.

Each is parsed on first use and kept for as long as its Version is loaded (a weak cache keyed by the
Version); its checksum was verified when the version was loaded.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import orjson

from app.plumbing.problems import ProblemError
from app.serving.version import Version

_cache: weakref.WeakKeyDictionary[Version, dict[str, Any]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def version_document(version: Version, rel: str | None, what: str, missing: str) -> Any:
    """The parsed JSON file `rel` of `version`: 404 /problems/<what>-unavailable saying `missing` when the
    version has none, 503 /problems/<what>-unreadable when its folder is gone."""
    if not rel or rel not in version.manifest.get("files", {}):
        raise ProblemError(
            404, f"No {what} in this version", f"artifact version {version.name} {missing}", f"/problems/{what}-unavailable"
        )
    docs = _cache.get(version)
    if docs is not None and rel in docs:
        return docs[rel]
    try:
        doc = orjson.loads((version.path / rel).read_bytes())
    except OSError as e:  # the version folder was removed (garbage-collected) under us
        raise ProblemError(
            503, f"{what.capitalize()} unreadable", f"{rel} of {version.name}: {e}", f"/problems/{what}-unreadable"
        ) from e
    with _lock:
        _cache.setdefault(version, {})[rel] = doc
    return doc
