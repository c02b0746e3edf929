"""What the benchmark scripts share: ports, HTTP, server processes, wrk, machine facts, results files.

Import it from a script in bench/ or tools/ after putting the repository root on sys.path:

    ROOT = Path(__file__).resolve().parent.parent
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    from bench.harness import Server, start_app  # noqa: E402

- free_port, get: a free local port; one GET (status, body), never raising on HTTP or socket errors.
- Server: a command in its own process group (a uvicorn supervisor and its workers), output to a log file;
  wait() for readiness, wait_serving() until N workers serve a version, cpu_seconds() of the whole group,
  stop() the whole group. start_app() starts `python -m app`, start_reference() bench/constant_app.py.
- MilvusServer: milvus-lite's gRPC server (`python -m milvus_lite server`) on a loopback port, a real Milvus
  reached through pymilvus as a cluster would be; start(), stop(), rss_bytes().
- server_env: the caller's environment without the variables that would move the app off its defaults.
- wrk: require_wrk, write_wrk_script (random paths, a BENCH_JSON summary line), run_wrk (parsed, with the
  server's CPU time per request).
- machine facts (cpus, python, platform, load average) and results files (results_path, write_results).
- CHROMIUM, CHROMIUM_ARGS: Debian's headless chromium as tools/compare_screenshots.py drives it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MiB = 1 << 20
# Settings a benchmark must not inherit from the caller's shell: the app runs at its production defaults
# unless a benchmark sets one on purpose (prometheus' folder is the app's own, one per server).
APP_VARS = ("PROMETHEUS_MULTIPROC_DIR", "SEARCH_MODE", "WORKERS", "MMAP_INDEXES")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# --------------------------------------------------------------------------- HTTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    """(status, body) of GET url; (0, b"") when no answer came (refused, reset, timed out)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def get_json(url: str, timeout: float = 30.0) -> Any:
    """The JSON body of GET url; RuntimeError unless the status is 200."""
    status, body = get(url, timeout)
    if status != 200:
        raise RuntimeError(f"GET {url}: {status} {body[:300]!r}")
    return json.loads(body)


# --------------------------------------------------------------------------- servers


def server_env(**overrides: str) -> dict[str, str]:
    """os.environ without APP_VARS, plus overrides (e.g. ARTIFACTS_DIR=...)."""
    env = {k: v for k, v in os.environ.items() if k not in APP_VARS}
    env.update(overrides)
    return env


class Server:
    """cmd (which has `--port P`) started in a new session: the process group is the server's whole tree."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self.port = int(cmd[cmd.index("--port") + 1])
        self.base = f"http://127.0.0.1:{self.port}"
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, url_path: str, timeout: float, ready: Callable[[bytes], bool] | None = None) -> None:
        """Until GET url_path answers 200 (and ready(body), if given); RuntimeError if the server exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            status, body = get(self.base + url_path, timeout=5)
            if status == 200 and (ready is None or ready(body)):
                return
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log}")

    def wait_serving(self, workers: int, version: str, timeout: float = 300.0) -> None:
        """Until `workers` workers report the version in /metrics (each loads it before it accepts connections)."""
        self.wait("/metrics", timeout, workers_serving(workers, version))

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of every process in the server's process group (supervisor and workers)."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:  # pgrp: start_new_session made the server a group leader
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the process group (uvicorn's supervisor and its workers), SIGKILL after timeout."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


class MilvusServer:
    """milvus-lite's server on 127.0.0.1:port with its data in data_dir, output appended to log."""

    def __init__(self, data_dir: Path, log: Path, port: int | None = None) -> None:
        self.data_dir, self.log, self.port = data_dir, log, port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait until it lists its collections; RuntimeError if it exits or time runs out."""
        cmd = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.data_dir)]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"milvus-lite server on {self.uri} did not start; see {self.log}")
            time.sleep(0.25)

    def answers(self) -> bool:
        from models.indexes.milvus_collections import milvus_client

        try:
            client = milvus_client(self.uri, timeout=2)
            client.list_collections(timeout=2)
            client.close()
        except Exception:
            return False
        return True

    def rss_bytes(self) -> int:
        """Resident memory of the server process (0 when it is not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0
        pages = int(Path(f"/proc/{self.proc.pid}/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")

    def stop(self) -> None:
        """Kill it (a crash, as the unreachable-Milvus test needs) and wait."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=30)
        self.proc = None


def workers_serving(n: int, version: str) -> Callable[[bytes], bool]:
    """A /metrics check: n live workers report the version."""

    def check(body: bytes) -> bool:
        lines = [
            ln for ln in body.decode().splitlines() if ln.startswith("simserve_artifact_version_info{") and ln.endswith(" 1.0")
        ]
        return sum(f'version="{version}"' in ln for ln in lines) >= n

    return check


def start_app(name: str, env: dict[str, str], log: Path, workers: int | None = None) -> Server:
    """`python -m app --host 127.0.0.1 --port <free>` [--workers N], as `make demo` starts it."""
    cmd = [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(free_port())]
    if workers:
        cmd += ["--workers", str(workers)]
    return Server(name, cmd, env, log)


def start_reference(body_file: Path, workers: int, env: dict[str, str], log: Path, name: str = "reference") -> Server:
    """bench/constant_app.py answering body_file's bytes (a file), or each <name>.json of a folder at GET /<name>,
    with `python -m app`'s uvicorn options."""
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "constant_app.py"),
        "--port",
        str(free_port()),
        "--workers",
        str(workers),
        "--body-dir" if body_file.is_dir() else "--body-file",
        str(body_file),
    ]
    return Server(name, cmd, env, log)


def metric_samples(server: Server, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called `name` in the server's /metrics (summed over workers by the app)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = get(server.base + "/metrics", timeout=10)
    if status != 200:
        raise RuntimeError(f"GET {server.base}/metrics: {status}")
    return [
        (dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == name
    ]


def metric_sum(server: Server, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0.0 when there are none)."""
    return sum(v for got, v in metric_samples(server, name) if all(got.get(k) == want for k, want in labels.items()))


# --------------------------------------------------------------------------- wrk

WRK_LUA = """
local paths = {%(paths)s}
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
init = function(args)
  math.randomseed(%(seed)d + seed * 7919)
end
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


WRK_POST_LUA = WRK_LUA.replace("local paths = {%(paths)s}", "local bodies = {%(bodies)s}").replace(
    'return wrk.format("GET", paths[math.random(#paths)])',
    'return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json"}, bodies[math.random(#bodies)])',
)


def require_wrk() -> bool:
    """True if wrk is on PATH; otherwise says how to install it (on stderr)."""
    if shutil.which("wrk") is not None:
        return True
    print("error: wrk is not installed (Debian/Ubuntu: apt-get install -y wrk); nothing was measured", file=sys.stderr)
    return False


def write_wrk_script(path: Path, request_paths: Iterable[str], seed: int) -> None:
    """A wrk Lua script: each request GETs one of request_paths (already URL-quoted), uniformly at random."""
    paths = ",".join(f'"{p}"' for p in request_paths)
    path.write_text(WRK_LUA % {"paths": paths, "seed": seed})


def write_wrk_post_script(path: Path, url_path: str, bodies: Iterable[str], seed: int) -> None:
    """A wrk Lua script: each request POSTs one of `bodies` (JSON) to url_path, uniformly at random."""
    quoted = ",".join(f"[==[{b}]==]" for b in bodies)  # Lua long strings: JSON needs no escaping in them
    path.write_text(WRK_POST_LUA % {"bodies": quoted, "path": url_path, "seed": seed})


def parse_wrk(stdout: str) -> dict[str, Any] | None:
    """The BENCH_JSON summary of a WRK_LUA run, with rps and errors (socket errors + non-2xx); None if absent."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        return None
    r = json.loads(line.removeprefix("BENCH_JSON "))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return r


def run_wrk(server: Server, lua: Path, seconds: float, connections: int, threads: int) -> dict[str, Any]:
    """One wrk run against server: parse_wrk's fields plus server_cpu_us_per_request."""
    duration = f"-d{max(1, round(seconds))}s"
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", duration, "--timeout", "5s", "-s", str(lua), server.base]
    cpu0 = server.cpu_seconds()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    cpu = server.cpu_seconds() - cpu0
    r = parse_wrk(out.stdout)
    if out.returncode != 0 or r is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    r["server_cpu_us_per_request"] = cpu * 1e6 / max(1, r["requests"])
    return r


# --------------------------------------------------------------------------- machine and results


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: the machine may be shared, results say how busy it was."""
    return list(os.getloadavg())


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def results_path(name: str, quick: bool) -> Path:
    """bench/results/<name>.json, or <name>.quick.json for a quick run (which never overwrites a full run's file)."""
    return RESULTS / f"{name}{'.quick' if quick else ''}.json"


def write_results(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return path
