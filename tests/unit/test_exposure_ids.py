"""Exposure ids: the time in nanoseconds then 64 random bits, 32 hex digits, never repeated, from any thread."""

from __future__ import annotations

import re
import threading
import time

from app.experiments.service import ExposureIds


def test_an_id_is_the_time_then_random_bits():
    ids = ExposureIds()
    now = time.time_ns()
    values = [ids.new(now) for _ in range(2000)]  # past several 512-id refills
    assert all(re.fullmatch(r"[0-9a-f]{32}", v) for v in values)
    assert {int(v[:16], 16) for v in values} == {now}
    assert len({v[16:] for v in values}) == len(values)
    before = time.time_ns()
    stamped = int(ids.new()[:16], 16)
    assert before <= stamped <= time.time_ns()


def test_ids_taken_from_many_threads_at_once_are_all_different():
    ids = ExposureIds()
    out: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def take(bucket: list[str]) -> None:
        start.wait()
        bucket.extend(ids.new(0) for _ in range(20_000))  # one time for all: only the random part differs

    threads = [threading.Thread(target=take, args=(b,)) for b in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    values = [v for b in out for v in b]
    assert len(values) == 80_000 and len(set(values)) == 80_000


def test_two_sources_do_not_repeat_each_other():
    a, b = ExposureIds(), ExposureIds()
    assert not {a.new(0) for _ in range(5000)} & {b.new(0) for _ in range(5000)}
