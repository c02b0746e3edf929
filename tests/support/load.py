"""A bounded load generator against a running server, and the queries it sends."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from models.artifact.manifest import RECOMMEND_METRICS


@dataclass
class LoadResult:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    failure_times: list[float] = field(default_factory=list)  # time.monotonic() of each failure, in order
    latencies: list[float] = field(default_factory=list)  # seconds of each successful request, in order
    versions: Counter[str] = field(default_factory=Counter)
    bodies: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (query, version) -> body digests
    seconds: float = 0.0


class LoadGenerator:
    """Threads sending GET requests to a server until stopped, or until `max_requests` / `max_seconds`.

    Every response must be a 200 whose body names an artifact version equal to its header; anything
    else (status, connection error, timeout) is recorded as a failure. Half of the threads keep their
    connection alive, the other half open a new connection per request so that every worker serves.
    `pause` seconds between a thread's requests leave CPU to whatever runs next to the load (a build).
    """

    def __init__(
        self,
        base_url: str,
        queries: list[tuple[str, dict[str, Any]]],
        threads: int = 4,
        max_requests: int = 50_000,
        max_seconds: float = 120.0,
        pause: float = 0.0,
    ) -> None:
        self.base_url, self.queries, self.threads, self.pause = base_url, queries, threads, pause
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._t0 = 0.0

    def __enter__(self) -> LoadGenerator:
        self._t0 = time.monotonic()
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)
        self.result.seconds = time.monotonic() - self._t0
        return self.result

    def _run(self, thread: int) -> None:
        headers = {} if thread % 2 == 0 else {"Connection": "close"}
        with httpx.Client(base_url=self.base_url, timeout=10.0, headers=headers) as client:
            i = thread
            while not self._stop.is_set() and time.monotonic() - self._t0 < self.max_seconds:
                with self._lock:
                    if self.result.requests >= self.max_requests:
                        return
                    self.result.requests += 1
                path, params = self.queries[i % len(self.queries)]
                i += self.threads
                self._one(client, path, params)
                if self.pause:
                    self._stop.wait(self.pause)

    def _one(self, client: httpx.Client, path: str, params: dict[str, Any]) -> None:
        key = f"{path}?{sorted(params.items())}"
        t0 = time.perf_counter()
        try:
            r = client.get(path, params=params)
        except httpx.HTTPError as e:
            self._fail(f"{key}: {type(e).__name__}: {e}")
            return
        if r.status_code != 200:
            self._fail(f"{key}: {r.status_code} {r.text[:300]}")
            return
        body = r.json()
        version = body.get("artifact_version")
        if not version or r.headers.get("artifact-version") != version or len(body["neighbors"]) != params["k"]:
            self._fail(f"{key}: inconsistent response {r.headers.get('artifact-version')} {str(body)[:300]}")
            return
        digest = hashlib.sha256(json.dumps(body["neighbors"], sort_keys=True).encode()).hexdigest()
        seconds = time.perf_counter() - t0
        with self._lock:
            self.result.latencies.append(seconds)
            self.result.versions[version] += 1
            self.result.bodies.setdefault((key, version), set()).add(digest)

    def _fail(self, message: str) -> None:
        with self._lock:
            self.result.failures.append(message)
            self.result.failure_times.append(time.monotonic())


def neighbour_queries(
    version_dir: Path, models: Iterable[str], metrics: Iterable[str], ids: int = 4, k: int = 5
) -> list[tuple[str, dict[str, Any]]]:
    """Queries over every endpoint x model x metric (of /recommend: RECOMMEND_METRICS) for a few item and user ids
    of a version."""
    items = [it["id"] for it in json.loads((version_dir / "items.json").read_text(encoding="utf-8"))][:ids]
    users = json.loads((version_dir / "users.json").read_text(encoding="utf-8"))[:ids]
    out: list[tuple[str, dict[str, Any]]] = []
    for model in models:
        for metric_name in metrics:
            base = {"model": model, "metric": metric_name, "k": k}
            out += [("/similar-items", {**base, "item_id": i}) for i in items]
            out += [("/similar-users", {**base, "user_id": u}) for u in users]
            if metric_name in RECOMMEND_METRICS:  # whitened has no user -> item score (a 422)
                out += [("/recommend", {**base, "user_id": u}) for u in users]
    return out
