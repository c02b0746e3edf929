"""Deterministic assignment: the bucket formula recomputed here, the arm ranges worked by hand, balance, determinism.

The bucket is recomputed with struct (a big-endian unsigned 64-bit read of the digest's first 8 bytes),
the ranges are written out by hand from round(w / W * 10000), balance is a chi-square goodness-of-fit
against the weights' shares, and determinism compares with a fresh interpreter under other hash seeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import chi2_contingency, chisquare

from app.experiments.assignment import BUCKETS, arm_ranges, assign, bucket
from app.experiments.definitions import Arm, Experiment
from models.errors import InputError


def expected_bucket(salt: str, unit_id: str) -> int:
    (value,) = struct.unpack(">Q", hashlib.sha256((salt + ":" + unit_id).encode("utf-8")).digest()[:8])
    return value % 10000


def experiment(weights: tuple[float, ...], salt: str = "2026-12") -> Experiment:
    arms = tuple(Arm(f"arm{i}", "denoising-symmetric", "cosine", w) for i, w in enumerate(weights))
    return Experiment("exp", "similar-items", salt, "ab", arms)


def random_ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcXYZ019:-_ é漢🙂"
    return [str(i) for i in range(50)] + ["".join(rng.choices(alphabet, k=rng.randint(0, 20))) for _ in range(n)]


@pytest.mark.parametrize("salt", ["2026-12", "", "x:y", "salt with spaces ü"])
def test_bucket_is_the_documented_formula(salt):
    for unit_id in random_ids(2000, seed=len(salt)):
        assert bucket(salt, unit_id) == expected_bucket(salt, unit_id)


def test_buckets_span_the_whole_range():
    seen = {bucket("s", f"u{i}") for i in range(100_000)}
    assert min(seen) == 0 and max(seen) == BUCKETS - 1 == 9999
    assert len(seen) > 9990  # 100,000 draws leave ~0.45 of 10,000 buckets empty on average


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ((50, 50), [(0, 5000), (5000, 10000)]),
        ((1, 2, 3), [(0, 1667), (1667, 5000), (5000, 10000)]),  # 1666.67 -> 1667, 3333.33 -> 3333, the rest 5000
        ((1, 1, 1), [(0, 3333), (3333, 6666), (6666, 10000)]),  # 3333, 3333, 3334
        ((20, 30, 50), [(0, 2000), (2000, 5000), (5000, 10000)]),
        ((0.25, 0.75), [(0, 2500), (2500, 10000)]),
        ((7,), [(0, 10000)]),
        ((1, 10**6), [(0, 0), (0, 10000)]),  # 0.0099999 buckets round to 0: an empty first arm (the loader refuses it)
        ((10**6, 1), [(0, 10000), (10000, 10000)]),  # the last arm takes the rest: nothing
        ((1, 3), [(0, 2500), (2500, 10000)]),
        ((1, 7999), [(0, 1), (1, 10000)]),  # 1.25 -> 1
        ((3, 7997), [(0, 4), (4, 10000)]),  # 3.75 -> 4
        ((1, 3999), [(0, 2), (2, 10000)]),  # exactly 2.5 -> 2: Python's round sends halves to the even integer
        ((3, 3997), [(0, 8), (8, 10000)]),  # exactly 7.5 -> 8
    ],
)
def test_arm_ranges_worked_by_hand(weights, expected):
    assert [(r.start, r.stop) for r in arm_ranges(weights)] == expected


def test_arm_ranges_clip_when_rounding_overshoots():
    # Shares 9987.9, twenty of 0.6 and 0.1 buckets: the rounded widths 9988 + 20 * 1 exceed 10000 by 8,
    # so arms 1..12 get one bucket each, arms 13..20 and the last arm none.
    weights = (99879, *([6] * 20), 1)
    expected = [(0, 9988)] + [(9988 + j, 9989 + j) for j in range(12)] + [(10000, 10000)] * 9
    assert [(r.start, r.stop) for r in arm_ranges(weights)] == expected


def test_arm_ranges_cover_every_bucket_exactly_once():
    rng = np.random.default_rng(0)
    cases = [rng.integers(1, 100, size=rng.integers(1, 12)).tolist() for _ in range(300)]
    cases += [rng.exponential(size=rng.integers(1, 40)).tolist() for _ in range(300)]
    cases += [(99879, *([6] * 20), 1), (1, 10**6), tuple([1] * 30_000)]
    for weights in cases:
        ranges = arm_ranges(weights)
        assert len(ranges) == len(weights)
        hits = np.zeros(10000, dtype=int)
        for r in ranges:
            assert r.step == 1 and 0 <= r.start <= r.stop <= 10000
            hits[r.start : r.stop] += 1
        assert (hits == 1).all()
        # Contiguous in file order, and each earlier arm as wide as the formula allows before the clip.
        start, total = 0, sum(weights)
        for w, r in zip(weights[:-1], ranges[:-1], strict=True):
            assert r.start == start
            assert len(r) == min(round(w / total * 10000), 10000 - start)
            start = r.stop
        assert ranges[-1] == range(start, 10000)


@pytest.mark.parametrize(
    "weights", [(), (0, 1), (1, -2), (float("nan"), 1), (float("inf"), 1), (True, 1), ("1", 1), (10**400, 1)]
)
def test_arm_ranges_refuse_bad_weights(weights):
    with pytest.raises(InputError, match="weights"):
        arm_ranges(weights)


def test_assign_picks_the_arm_whose_range_holds_the_bucket():
    exp = experiment((1, 2, 3), salt="s1")
    bounds = [(0, 1667), (1667, 5000), (5000, 10000)]  # by hand, as above
    for unit_id in random_ids(3000, seed=7):
        b = expected_bucket("s1", unit_id)
        (index,) = [i for i, (lo, hi) in enumerate(bounds) if lo <= b < hi]
        assert assign(exp, unit_id) is exp.arms[index]


def test_assign_never_returns_a_zero_width_arm():
    exp = experiment((1, 10**6))
    assert {assign(exp, f"u{i}").name for i in range(5000)} == {"arm1"}


@pytest.mark.parametrize("weights", [(50, 50), (20, 30, 50)])
def test_arms_are_balanced(weights):
    exp = experiment(weights)
    names = [arm.name for arm in exp.arms]
    n = 100_000
    counts = {name: 0 for name in names}
    for i in range(n):
        counts[assign(exp, f"u{i}").name] += 1
    shares = np.array(weights, dtype=float) / sum(weights)
    observed = np.array([counts[name] for name in names])
    assert observed.sum() == n
    assert chisquare(observed, f_exp=shares * n).pvalue > 0.001


def test_salts_assign_independently():
    # Two concurrent 50/50 experiments with different salts: the arms of a unit are independent.
    a, b = experiment((50, 50), salt="exp-a"), experiment((50, 50), salt="exp-b")
    table = np.zeros((2, 2), dtype=int)
    for i in range(20_000):
        table[int(assign(a, f"u{i}").name[-1]), int(assign(b, f"u{i}").name[-1])] += 1
    assert chi2_contingency(table).pvalue > 0.001


CHILD = """
import json, sys
from app.experiments.assignment import assign
from app.experiments.definitions import Arm, Experiment
arms = tuple(Arm(f"arm{i}", "denoising-symmetric", "cosine", w) for i, w in enumerate((20, 30, 50)))
exp = Experiment("exp", "similar-items", "2026-12", "ab", arms)
print(json.dumps([assign(exp, f"u{i}").name for i in range(1000)]))
"""


def test_assignment_is_identical_in_other_processes():
    here = [assign(experiment((20, 30, 50)), f"u{i}").name for i in range(1000)]
    assert len(set(here)) == 3
    for seed in ("1", "2718"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True, timeout=60)
        assert json.loads(out.stdout) == here
