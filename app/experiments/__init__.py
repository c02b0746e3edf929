"""Online experiments: the experiments file (definitions) and the deterministic assignment of units to arms."""

from app.experiments.assignment import BUCKETS, arm_ranges, assign, bucket
from app.experiments.definitions import (
    ENDPOINTS,
    MODES,
    Arm,
    Endpoint,
    Experiment,
    Experiments,
    ExperimentsError,
    Mode,
    file_fingerprint,
    load_experiments,
    parse_experiments,
)

__all__ = [
    "BUCKETS",
    "ENDPOINTS",
    "MODES",
    "Arm",
    "Endpoint",
    "Experiment",
    "Experiments",
    "ExperimentsError",
    "Mode",
    "arm_ranges",
    "assign",
    "bucket",
    "file_fingerprint",
    "load_experiments",
    "parse_experiments",
]
