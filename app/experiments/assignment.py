"""Deterministic assignment of a unit (a user or an item id) to one arm of an A/B experiment.

The rule is a pure function of the experiment's salt, the arms' weights in file order and the unit id,
so it is identical in every worker, after restarts and after reloads that leave those three unchanged:

    bucket(salt, u) = int.from_bytes(sha256(f"{salt}:{u}".encode("utf-8")).digest()[:8], "big") % 10000

i.e. the first 8 bytes of the SHA-256 digest read as a big-endian unsigned 64-bit integer, modulo
BUCKETS = 10000 (the modulo bias, 2**64 mod 10000 over 2**64, is below 1e-15 and ignored). No Python
`hash()` is involved, so PYTHONHASHSEED does not matter.

Arms take consecutive bucket ranges in file order. With weights w_0 .. w_{n-1} and W = sum(w) (Python's
`sum` over the weights as given, ints stay exact), arm i < n-1 is `round(w_i / W * 10000)` buckets wide
(Python's `round`: halves go to the even integer), and the last arm takes the rest:

    start_0 = 0
    stop_i  = min(start_i + round(w_i / W * 10000), 10000)     for i < n - 1
    start_{i+1} = stop_i
    stop_{n-1} = 10000

Clipping at 10000 is the edge where rounding makes the earlier widths sum to more than 10000 (several
arms rounding up while the last arm's exact share is under half a bucket per earlier arm): the arms that
would start past the end, and the last arm, then get empty ranges. The ranges are therefore always
contiguous, disjoint and cover 0 .. 9999 exactly, so every bucket maps to exactly one arm. An arm can get
zero buckets (by that clipping, or an exact share under half a bucket, e.g. weights (1, 10**6)); the
experiments loader refuses such a file, since the arm would never be served.

`assign(experiment, unit_id)` hashes once and looks the bucket up in the experiment's precomputed
bucket -> arm table. Its SHA-256 is CPython's own (`salted_sha256`), the implementation hashlib falls back
to without OpenSSL: the same digest, and on a short string a fraction of the cost of OpenSSL's, whose
copy() and digest() each allocate and copy a context.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from models.errors import InputError

if TYPE_CHECKING:
    from app.experiments.definitions import Arm, Experiment

BUCKETS = 10000

try:  # CPython's built-in SHA-256: _sha256 up to 3.11, _sha2 from 3.12; hashlib's (OpenSSL) where neither is built
    from _sha256 import sha256 as _builtin_sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other Python versions
    try:
        from _sha2 import sha256 as _builtin_sha256  # type: ignore[import-not-found]
    except ImportError:
        _builtin_sha256 = hashlib.sha256


def bucket(salt: str, unit_id: str) -> int:
    """The unit's bucket in 0 .. 9999: int.from_bytes(sha256(f"{salt}:{unit_id}").digest()[:8], "big") % 10000."""
    return _bucket_of(hashlib.sha256(f"{salt}:{unit_id}".encode()).digest())


def salted_sha256(salt: str) -> Any:
    """A SHA-256 object that has hashed f"{salt}:"; assign() copies it and adds the unit id (CPython's built-in
    SHA-256, see the module docstring: one runs on every experiment request)."""
    return _builtin_sha256(f"{salt}:".encode())


def _bucket_of(digest: bytes) -> int:
    """The bucket of a SHA-256 digest: its first 8 bytes, big-endian, modulo BUCKETS."""
    return int.from_bytes(digest[:8], "big") % BUCKETS


def _check_weights(weights: Sequence[float]) -> None:
    if len(weights) == 0:
        raise InputError("weights must hold at least one weight")
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, int | float):
            raise InputError(f"weights[{i}] must be a number, got {type(w).__name__}")
        try:
            finite = math.isfinite(w)
        except OverflowError:
            finite = False
        if not finite or w <= 0:
            raise InputError(f"weights[{i}] must be a positive finite number, got {w!r}")


def arm_ranges(weights: Sequence[float]) -> tuple[range, ...]:
    """The bucket range of each arm, in order, for weights (n_arms,): contiguous, disjoint, covering 0 .. 9999.

    Arm i < n-1 is round(w_i / sum(w) * 10000) wide and the last arm takes the rest, every bound clipped
    to 10000 (see the module docstring); a range may be empty.
    """
    _check_weights(weights)
    total = sum(weights)
    if not math.isfinite(total):
        raise InputError(f"the weights sum to {total!r}, not a finite number")
    ranges: list[range] = []
    start = 0
    for w in weights[:-1]:
        stop = min(start + round(w / total * BUCKETS), BUCKETS)
        ranges.append(range(start, stop))
        start = stop
    ranges.append(range(start, BUCKETS))
    return tuple(ranges)


def assign(experiment: Experiment, unit_id: str) -> Arm:
    """The arm of `experiment` that serves `unit_id`: the one whose bucket range holds bucket(salt, unit_id).

    The same digest as bucket(), computed from the experiment's hash of f"{salt}:" (a copy, updated with the
    unit id) and looked up in its bucket -> arm table: this runs on every experiment request.
    """
    h = experiment.salted.copy()
    h.update(unit_id.encode())
    return experiment.arms[experiment.arm_of_bucket[_bucket_of(h.digest())]]
