"""Progress lines on stderr for every long step, with elapsed time."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    """Writes `[build] step ... done in 1.23s` lines; `quiet=True` silences it (tests, library use)."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.failed_step: str | None = None  # the innermost step an exception left (an error message names it)

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"[build {self.elapsed():7.1f}s] {message}", file=self.stream, flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.say(f"{name} ...")
        t0 = time.perf_counter()
        try:
            yield
        except BaseException:
            if self.failed_step is None:
                self.failed_step = name
            raise
        took = time.perf_counter() - t0
        self.timings[name] = round(took, 3)
        self.say(f"{name} done in {took:.2f}s")
