"""Prometheus metrics, correct with several uvicorn workers.

Multiprocess mode: when PROMETHEUS_MULTIPROC_DIR is set (`python -m app` always sets it, to a fresh
temporary folder unless given) every worker writes its samples to memory-mapped files there and
/metrics, served by any worker, aggregates all of them: counters and histograms are summed over
workers, gauges are reported per worker (label `pid`). Without the variable (a single process, e.g.
create_app() in a notebook) the default in-process registry is used. prometheus_client reads the
variable when it is first imported, so `python -m app` sets it before importing this module.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.serving.reload import Fallback, Refusal, ReloadEvents
from app.serving.version import Version
from models.artifact.store import process_alive

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
SCOPE_LABELS = "simserve.labels"  # (model, metric) an endpoint resolved, stored in the ASGI scope
VERSION_HEADER = "artifact-version"
NONE = "none"

REQUESTS = Counter(
    "simserve_requests", "HTTP requests by endpoint, model, metric and status code.", ["endpoint", "model", "metric", "status"]
)
ERRORS = Counter(
    "simserve_request_errors",
    "HTTP responses with status >= 400 by endpoint, model, metric and status code.",
    ["endpoint", "model", "metric", "status"],
)
LATENCY = Histogram(
    "simserve_request_duration_seconds",
    "Time from request to the end of the response body, by endpoint, model and metric.",
    ["endpoint", "model", "metric"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ARTIFACT = Gauge(
    "simserve_artifact_version_info",
    "1 for the artifact version a worker serves, 0 for versions it served before.",
    ["version"],
    multiprocess_mode="liveall",
)
LOADED_AT = Gauge(
    "simserve_artifact_loaded_timestamp_seconds",
    "When a worker swapped in its current artifact version (unix time).",
    multiprocess_mode="liveall",
)
RELOADS = Counter(
    "simserve_reloads",
    "Artifact versions loaded and swapped in, by trigger (startup, poll, admin, fallback: an older version served because "
    "the one CURRENT names was refused when the worker had none).",
    ["trigger"],
)
REFUSED = Counter(
    "simserve_reload_refused", "Artifact versions refused (verification or loading failed), by trigger.", ["trigger"]
)
REFUSAL = Gauge(
    "simserve_last_refusal_info",
    "1 for a worker's most recent refused version and the reason.",
    ["version", "reason"],
    multiprocess_mode="liveall",
)
CONNECTIONS_REFUSED = Counter(
    "simserve_connections_refused",
    "Connections answered with a problem and closed before any endpoint ran, by reason: header-timeout (408: the "
    "request head did not arrive within HEADER_TIMEOUT), max-connections (503: the worker was at MAX_CONNECTIONS).",
    ["reason"],
)
FALLBACK = Gauge(
    "simserve_fallback_info",
    "1 while a worker serves an older version (served) because the one CURRENT names (current) was refused when the "
    "worker started.",
    ["served", "current"],
    multiprocess_mode="liveall",
)


EVENTS = Counter(
    "simserve_experiment_events",
    "Experiment records (exposures and feedback) by outcome: queued, written, spilled (the database could not take "
    "them yet), replayed (spilled, then written), dropped (queue and spill file full).",
    ["outcome"],
)
EXPERIMENTS_REFUSED = Counter("simserve_experiments_refused", "Experiments files refused (the previous definitions stayed).")


def count_event(outcome: str, n: int) -> None:
    EVENTS.labels(outcome).inc(n)


def experiments_refused(reason: str) -> None:
    del reason  # in the log and /readyz; a label per reason would grow without bound
    EXPERIMENTS_REFUSED.inc()


def reload_events() -> ReloadEvents:
    """Hooks for app.serving.reload.Reloader that keep the version gauges and reload counters current."""
    last_refusal: list[tuple[str, str]] = []

    def loaded(new: Version, old: Version | None, trigger: str) -> None:
        if old is not None:
            ARTIFACT.labels(old.name).set(0)
        ARTIFACT.labels(new.name).set(1)
        LOADED_AT.set(new.loaded_at)
        RELOADS.labels(trigger).inc()

    def refused(refusal: Refusal) -> None:
        REFUSED.labels(refusal.trigger).inc()
        if last_refusal:
            REFUSAL.labels(*last_refusal.pop()).set(0)
        labels = (refusal.version or NONE, refusal.reason[:300])
        REFUSAL.labels(*labels).set(1)
        last_refusal.append(labels)

    shown: list[tuple[str, str]] = []

    def fallback(state: Fallback | None) -> None:
        if shown:
            FALLBACK.labels(*shown.pop()).set(0)
        if state is not None:
            shown.append((state.served, state.current))
            FALLBACK.labels(*shown[-1]).set(1)

    return ReloadEvents(loaded=loaded, refused=refused, fallback=fallback)


def render() -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text exposition, aggregated over every worker."""
    if MULTIPROCESS:
        folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        forget_dead_workers(folder)
        registry = CollectorRegistry()
        registry.register(WorkerFilesCollector(folder))
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class WorkerFilesCollector:
    """prometheus_client's MultiProcessCollector over `folder`, minus the files not yet given a header.

    MmapedDict creates a worker's file and sizes it only afterwards, so a scrape can meet it at 0 bytes:
    a worker starting, or one killed in that moment, whose file then stays empty for good. The library's
    reader fails the whole scrape on it with a struct.error (prometheus_client 0.26.0; upstream issue
    prometheus/client_python#1199, open). Such a file holds no samples yet, so leaving it out loses none.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def collect(self) -> Any:
        files = [f for f in glob.glob(os.path.join(self.folder, "*.db")) if _has_header(f)]
        return multiprocess.MultiProcessCollector.merge(files, accumulate=True)


_HEADER_BYTES = 8  # MmapedDict: 4 bytes "used", 4 of padding; once sized, a file only grows


def _has_header(path: str) -> bool:
    try:
        return os.stat(path).st_size >= _HEADER_BYTES
    except FileNotFoundError:  # a live gauge of a dead worker, removed by a sibling's scrape
        return False


def forget_dead_workers(folder: str) -> None:
    """Drop the per-process gauges of workers that died without their exit hook (SIGKILL, OOM).

    Their counters stay (what they counted happened); a live gauge of a dead pid would claim a worker that
    is gone still serves its version. The supervisor has no hook of ours to call, so the reader cleans up.
    Two workers may scrape at once and remove the same file: the second one's miss is not an error.
    """
    for entry in os.scandir(folder):
        m = _LIVE_GAUGE_FILE.match(entry.name)
        if m and not process_alive(int(m.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)


_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


def worker_exit() -> None:
    """Drop this worker's per-process gauges (liveall) from the shared folder."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())


class MetricsMiddleware:
    """Pure ASGI middleware: counts, errors and latency per request; adds the artifact-version header.

    endpoint = the route path (unknown paths are "other", so label values stay bounded);
    model, metric = what the endpoint resolved (SCOPE_LABELS), "none" when it did not get that far.
    """

    def __init__(self, app: Any, current_version: Callable[[], str | None], paths: Callable[[], set[str]]) -> None:
        self.app = app
        self.current_version = current_version
        self._paths = paths
        self._known: set[str] | None = None
        self._children: dict[tuple[str, str, str, int], tuple[Any, Any, Any]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500  # if nothing is sent, ServerErrorMiddleware outside us answered 500
        current_version = self.current_version

        async def send_with_version(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.setdefault("headers", [])
                if not any(k == b"artifact-version" for k, _ in headers):
                    v = current_version()
                    if v is not None:
                        message["headers"] = [*headers, (b"artifact-version", v.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_version)
        finally:
            self._record(scope, status, time.perf_counter() - t0)

    def _record(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        if self._known is None:
            self._known = self._paths()
        path = scope["path"]
        endpoint = path if path in self._known else "other"
        model, metric = scope.get(SCOPE_LABELS) or (NONE, NONE)
        key = (endpoint, model, metric, status)
        children = self._children.get(key)
        if children is None:  # .labels() costs more than the increment itself: resolve each label set once
            children = (
                REQUESTS.labels(endpoint, model, metric, str(status)),
                ERRORS.labels(endpoint, model, metric, str(status)) if status >= 400 else None,
                LATENCY.labels(endpoint, model, metric),
            )
            self._children[key] = children
        children[0].inc()
        if children[1] is not None:
            children[1].inc()
        children[2].observe(seconds)
