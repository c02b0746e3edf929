"""The experiments file: a TOML list of experiments, validated against the served version on load.

    [[experiment]]
    name = "item-metric"
    endpoint = "similar-items"        # similar-items | similar-users | recommend
    salt = "2026-12"
    mode = "ab"                       # ab | interleave (team-draft, exactly two arms)
    arms = [
      { name = "control",   model = "denoising-symmetric", metric = "cosine",    weight = 50 },
      { name = "projected", model = "denoising-symmetric", metric = "projected", weight = 50 },
    ]

Every field is required and no other is allowed. A file with no [[experiment]] table (an empty file)
holds no experiments. Refused, with one `ExperimentsError` whose message names the file, the experiment
(experiment[i], 0-based in file order, and its name once known) and the field (e.g. arms[1].metric):
unreadable or non-UTF-8 bytes, invalid TOML (the parser's line and column), a missing, unknown or
wrongly typed field, an empty name or salt, an endpoint or mode outside the lists above, a model or a
metric the served version lacks, a metric the endpoint cannot serve (recommend: only `recommend_metrics`),
an arm weight that is not a positive finite number, an arm that would get no bucket (see
app.experiments.assignment; e.g. weights (1, 10**6)), interleave without exactly two arms, and duplicate
experiment names or arm names within an experiment. Weights are validated the same way in both modes.

The loader takes the version's models and metrics as plain tuples, so it needs nothing from the serving
code; the result is immutable and carries the sha256 of the bytes it parsed, so a reloader can tell
whether the file changed (`file_fingerprint`) before parsing it again.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

from app.experiments.assignment import BUCKETS, arm_ranges, salted_sha256
from models.errors import InputError

Endpoint = Literal["similar-items", "similar-users", "recommend"]
Mode = Literal["ab", "interleave"]
ENDPOINTS: tuple[Endpoint, ...] = ("similar-items", "similar-users", "recommend")
MODES: tuple[Mode, ...] = ("ab", "interleave")
EXPERIMENT_FIELDS = ("name", "endpoint", "salt", "mode", "arms")
ARM_FIELDS = ("name", "model", "metric", "weight")


class ExperimentsError(InputError):
    """An experiments file that cannot be served; the message names the file, the experiment and the field."""


@dataclass(frozen=True)
class Arm:
    """One arm: the model and metric it serves, and its share of the units (weight / sum of the weights)."""

    name: str
    model: str
    metric: str
    weight: int | float


@dataclass(frozen=True)
class Experiment:
    """One experiment on one endpoint; `ranges[i]` is the bucket range of arms[i] (assignment.arm_ranges)."""

    name: str
    endpoint: Endpoint
    salt: str
    mode: Mode
    arms: tuple[Arm, ...]
    ranges: tuple[range, ...] = field(init=False, repr=False, compare=False)
    # arm_of_bucket[b]: the index in arms of the arm whose range holds bucket b (BUCKETS entries)
    arm_of_bucket: tuple[int, ...] = field(init=False, repr=False, compare=False)
    salted: Any = field(init=False, repr=False, compare=False)  # salted_sha256(salt), copied per unit

    def __post_init__(self) -> None:
        # Precomputed so that assign(), once per experiment request, only hashes the unit id and indexes.
        ranges = arm_ranges([arm.weight for arm in self.arms])
        object.__setattr__(self, "ranges", ranges)
        object.__setattr__(self, "arm_of_bucket", tuple(i for i, r in enumerate(ranges) for _ in r))
        object.__setattr__(self, "salted", salted_sha256(self.salt))


@dataclass(frozen=True)
class Experiments:
    """The experiments of one file, in file order; fingerprint is the sha256 (hex) of its bytes ("" if none)."""

    experiments: tuple[Experiment, ...] = ()
    fingerprint: str = ""
    by_name: Mapping[str, Experiment] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_name = {e.name: e for e in self.experiments}
        if len(by_name) != len(self.experiments):
            raise ValueError("experiment names must be unique")
        object.__setattr__(self, "by_name", MappingProxyType(by_name))

    def for_endpoint(self, endpoint: Endpoint) -> tuple[Experiment, ...]:
        """The experiments on `endpoint`, in file order."""
        return tuple(e for e in self.experiments if e.endpoint == endpoint)


def file_fingerprint(path: str | PathLike[str]) -> str:
    """sha256 (hex) of the file's bytes: equal to Experiments.fingerprint iff the file is byte-for-byte the same."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise ExperimentsError(f"{path}: cannot read the experiments file: {exc.strerror or exc}") from exc


def load_experiments(
    path: str | PathLike[str], models: Sequence[str], metrics: Sequence[str], recommend_metrics: Sequence[str]
) -> Experiments:
    """Read and validate the experiments file against the served version's models and metrics (see module docstring)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ExperimentsError(f"{path}: cannot read the experiments file: {exc.strerror or exc}") from exc
    return parse_experiments(data, str(path), models, metrics, recommend_metrics)


def parse_experiments(
    data: bytes, source: str, models: Sequence[str], metrics: Sequence[str], recommend_metrics: Sequence[str]
) -> Experiments:
    """Validate the bytes of an experiments file; `source` names it in error messages."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExperimentsError(f"{source}: not UTF-8 text (invalid byte at offset {exc.start})") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
        raise ExperimentsError(f"{source}: invalid TOML: {exc}") from exc
    unknown = [key for key in document if key != "experiment"]
    if unknown:
        raise ExperimentsError(f"{source}: unknown top-level field {unknown[0]!r}; the file holds only [[experiment]] tables")
    tables = document.get("experiment", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ExperimentsError(f"{source}: field 'experiment' must be an array of tables ([[experiment]]), got {_kind(tables)}")
    version = _Version(tuple(models), tuple(metrics), tuple(recommend_metrics))
    experiments: list[Experiment] = []
    first_index: dict[str, int] = {}
    for i, table in enumerate(tables):
        experiment = _experiment(table, _Scope(source, f"experiment[{i}]"), version)
        if experiment.name in first_index:
            raise _Scope(source, f"experiment[{i}] {experiment.name!r}").error(
                "name", f"duplicate experiment name (also experiment[{first_index[experiment.name]}])"
            )
        first_index[experiment.name] = i
        experiments.append(experiment)
    return Experiments(tuple(experiments), hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class _Version:
    models: tuple[str, ...]
    metrics: tuple[str, ...]
    recommend_metrics: tuple[str, ...]


@dataclass(frozen=True)
class _Scope:
    source: str
    label: str

    def error(self, field_name: str, problem: str) -> ExperimentsError:
        return ExperimentsError(f"{self.source}: {self.label}, field {field_name}: {problem}")


_TOML_KINDS = {str: "a string", int: "an integer", float: "a float", bool: "a boolean", list: "an array", dict: "a table"}


def _kind(value: Any) -> str:
    return _TOML_KINDS.get(type(value), type(value).__name__)


def _allowed(values: Sequence[str]) -> str:
    return ", ".join(values) if values else "(none)"


def _check_fields(table: dict[str, Any], expected: tuple[str, ...], prefix: str, scope: _Scope) -> None:
    for key in expected:
        if key not in table:
            raise scope.error(f"{prefix}{key}", f"missing (required fields: {_allowed(expected)})")
    for key in table:
        if key not in expected:
            raise scope.error(f"{prefix}{key}", f"unknown field; allowed: {_allowed(expected)}")


def _string(table: dict[str, Any], key: str, field_name: str, scope: _Scope) -> str:
    value = table[key]
    if not isinstance(value, str):
        raise scope.error(field_name, f"must be a string, got {_kind(value)}")
    if not value.strip():
        raise scope.error(field_name, "must not be empty")
    return value


def _choice(table: dict[str, Any], key: str, field_name: str, scope: _Scope, allowed: Sequence[str], what: str) -> str:
    value = _string(table, key, field_name, scope)
    if value not in allowed:
        raise scope.error(field_name, f"unknown {what} {value!r}; allowed: {_allowed(allowed)}")
    return value


def _weight(value: Any, field_name: str, scope: _Scope) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise scope.error(field_name, f"must be a number, got {_kind(value)}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer beyond the float range
        finite = False
    if not finite or value <= 0:
        raise scope.error(field_name, f"must be a positive finite number, got {value!r}")
    return value


def _experiment(table: dict[str, Any], scope: _Scope, version: _Version) -> Experiment:
    if "name" in table:  # named first, so that every later message names the experiment
        scope = _Scope(scope.source, f"{scope.label} {_string(table, 'name', 'name', scope)!r}")
    _check_fields(table, EXPERIMENT_FIELDS, "", scope)
    name = _string(table, "name", "name", scope)
    endpoint = cast(Endpoint, _choice(table, "endpoint", "endpoint", scope, ENDPOINTS, "endpoint"))
    salt = _string(table, "salt", "salt", scope)
    mode = cast(Mode, _choice(table, "mode", "mode", scope, MODES, "mode"))
    tables = table["arms"]
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise scope.error(
            "arms", f"must be an array of tables ({{ name = ..., model = ..., metric = ..., weight = ... }}), got {_kind(tables)}"
        )
    if not tables:
        raise scope.error("arms", "must hold at least one arm")
    if mode == "interleave" and len(tables) != 2:
        raise scope.error("arms", f"mode 'interleave' (team-draft) needs exactly two arms, got {len(tables)}")
    serving = version.recommend_metrics if endpoint == "recommend" else version.metrics
    arms: list[Arm] = []
    first_index: dict[str, int] = {}
    for j, arm_table in enumerate(tables):
        prefix = f"arms[{j}]."
        _check_fields(arm_table, ARM_FIELDS, prefix, scope)
        arm_name = _string(arm_table, "name", f"{prefix}name", scope)
        if arm_name in first_index:
            raise scope.error(f"{prefix}name", f"duplicate arm name {arm_name!r} (also arms[{first_index[arm_name]}])")
        first_index[arm_name] = j
        model = _choice(arm_table, "model", f"{prefix}model", scope, version.models, "model")
        metric = _choice(arm_table, "metric", f"{prefix}metric", scope, version.metrics, "metric")
        if metric not in serving:
            raise scope.error(
                f"{prefix}metric", f"metric {metric!r} cannot serve endpoint {endpoint!r}; allowed there: {_allowed(serving)}"
            )
        weight = _weight(arm_table["weight"], f"{prefix}weight", scope)
        arms.append(Arm(arm_name, model, metric, weight))
    total = sum(arm.weight for arm in arms)
    if not math.isfinite(total):
        raise scope.error("arms", f"the weights sum to {total!r}, not a finite number")
    experiment = Experiment(name, endpoint, salt, mode, tuple(arms))
    for j, (arm, r) in enumerate(zip(experiment.arms, experiment.ranges, strict=True)):
        if len(r) == 0:
            raise scope.error(
                f"arms[{j}].weight",
                f"arm {arm.name!r} (weight {arm.weight!r} of {total!r}) would get none of the {BUCKETS} buckets; "
                "raise its weight or remove the arm",
            )
    return experiment
