"""/metrics in multiprocess mode reads every worker's sample files; the files are written here by
prometheus_client's own MmapedDict, as a worker would, so the reader is checked against the writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict

from app.plumbing.metrics import WorkerFilesCollector, forget_dead_workers


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_counter(folder: Path, pid: int, value: float) -> None:
    d = MmapedDict(str(folder / f"counter_{pid}.db"))
    key = json.dumps(["simserve_requests", "simserve_requests_total", {"endpoint": "/x"}, "help"], sort_keys=True)
    d.write_value(key, value, 0.0)
    d.close()


def _samples(folder: Path) -> dict[str, float]:
    return {s.name: s.value for m in WorkerFilesCollector(str(folder)).collect() for s in m.samples}


def test_files_a_worker_created_but_never_sized_are_left_out_and_the_rest_still_counted(tmp_path):
    _write_counter(tmp_path, 101, 3.0)
    _write_counter(tmp_path, 102, 4.0)
    (tmp_path / f"counter_{_dead_pid()}.db").write_bytes(b"")  # killed between open and truncate
    (tmp_path / "histogram_103.db").write_bytes(b"\x00\x00")  # a header only partly there
    assert _samples(tmp_path) == {"simserve_requests_total": 7.0}


def test_the_live_gauges_of_dead_workers_go_and_everything_else_stays(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    for name in (f"gauge_liveall_{dead}.db", f"gauge_liveall_{alive}.db", f"counter_{dead}.db", f"gauge_all_{dead}.db"):
        (tmp_path / name).write_bytes(b"")
    forget_dead_workers(str(tmp_path))
    forget_dead_workers(str(tmp_path))  # a sibling scraping at the same moment finds them gone already
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gauge_liveall_{alive}.db", f"counter_{dead}.db", f"gauge_all_{dead}.db"]
    )
