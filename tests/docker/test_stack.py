"""The docker-compose stack end to end: image, one-shot build job, API, hot reload of a new version.

Runs only with a Docker engine (`make docker-test`, which wraps pytest in ../shared/container/with-docker);
skipped otherwise. What it does, against the real image and compose file:
  1. derives the host-networking variant of docker-compose.yml (tests/docker/compose_ci.py), with the API
     on a free 127.0.0.1 port;
  2. builds the image and `up -d`: `build` publishes the simulation into the volume, then `api` starts;
  3. waits for Docker's own healthcheck of `api` to say healthy (so the healthcheck itself is exercised);
  4. calls /readyz, /similar-items and /compare-metrics from the host and checks the answers against the
     version published in the volume;
  5. re-runs `build` on a CSV mounted from the host and sees the API serve the new version (its items) with
     the same container, never restarted; a bad CSV exits 2 and changes nothing;
  6. tears everything down (containers, volume, derived file) whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from compose_ci import ROOT, host_network_variant
from support.servers import free_port

pytestmark = pytest.mark.docker

IMAGE = "simserve:local"
BUILD_TIMEOUT = 900  # the first build installs the runtime dependencies (about a minute when cached by pip)
HEALTHY_TIMEOUT = 180
RELOAD_TIMEOUT = 60


def docker_ok() -> bool:
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
        compose = subprocess.run(["docker-compose", "version"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return info.returncode == 0 and compose.returncode == 0


def require_docker() -> None:
    if docker_ok():
        return
    if os.environ.get("REQUIRE_DOCKER") == "1":  # set by `make docker-test`: there, a skip would hide a broken setup
        pytest.fail("REQUIRE_DOCKER=1 but no Docker engine or docker-compose answers", pytrace=False)
    pytest.skip("no Docker engine or docker-compose: run `make docker-test` (../shared/container/with-docker)")


@dataclass
class Stack:
    project: str
    compose_file: Path
    base_url: str
    data_dir: Path
    env: dict[str, str]

    def compose(self, *args: str, timeout: float = 300, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        cmd = ["docker-compose", "--project-directory", ".", "-f", str(self.compose_file), "-p", self.project, *args]
        proc = subprocess.run(cmd, cwd=ROOT, env={**self.env, **env}, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def container(self, service: str) -> dict:
        cid = self.compose("ps", "-q", service).stdout.strip()
        assert cid, f"no container for {service}"
        out = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=True, timeout=30).stdout
        return json.loads(out)[0]

    def volume_read(self, path: str) -> str:
        """A file of the artifacts volume, read by a throwaway container (independent of the API)."""
        proc = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "host",
                "-v",
                f"{self.project}_artifacts:/artifacts:ro",
                "--entrypoint",
                "cat",
                IMAGE,
                f"/artifacts/{path}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def get(self, path: str, **params: object) -> httpx.Response:
        return httpx.get(f"{self.base_url}{path}", params=params, timeout=30)


def first_item_id(stack: Stack, version: str) -> str:
    return str(json.loads(stack.volume_read(f"versions/{version}/items.json"))[0]["id"])


def wait_healthy(stack: Stack, service: str, timeout: float) -> float:
    start = time.monotonic()
    status = "?"
    while time.monotonic() - start < timeout:
        state = stack.container(service)["State"]
        status = state.get("Health", {}).get("Status", "none")
        if status == "healthy":
            return time.monotonic() - start
        if state["Status"] in ("exited", "dead"):
            break
        time.sleep(1)
    logs = stack.compose("logs", "--no-color", "--tail", "80", check=False).stdout
    raise AssertionError(f"{service} not healthy after {time.monotonic() - start:.0f}s (health {status}):\n{logs}")


def ready_version(stack: Stack) -> str | None:
    try:
        r = stack.get("/readyz")
    except httpx.HTTPError:
        return None
    return r.json().get("artifact_version") if r.status_code == 200 else None


def wait_version(stack: Stack, changed_from: str, timeout: float, streak: int = 20) -> str:
    """The new version once `streak` answers in a row report it (every worker of the API has switched)."""
    start, seen, run = time.monotonic(), None, 0
    while time.monotonic() - start < timeout:
        v = ready_version(stack)
        if v and v != changed_from and v == seen:
            run += 1
            if run >= streak:
                return v
        else:
            seen, run = v, 1
        time.sleep(0.1)
    raise AssertionError(f"the API did not switch from {changed_from} to a new version within {timeout}s (last seen {seen})")


def write_csv(path: Path, n_users: int = 300, n_items: int = 40, seed: int = 7) -> list[str]:
    """Two groups of users each liking one half of the items: item ids are strings the simulation never uses."""
    rng = np.random.default_rng(seed)
    items = [f"csv-book-{i:03d}" for i in range(n_items)]
    rows = ["user_id,item_id,value"]
    for u in range(n_users):
        half = items[: n_items // 2] if u % 2 == 0 else items[n_items // 2 :]
        for item in rng.choice(half, size=8, replace=False):
            rows.append(f"csv-user-{u},{item},{rng.integers(1, 6)}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return items


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    require_docker()
    tmp = tmp_path_factory.mktemp("stack")
    port = free_port()
    compose_file = tmp / "docker-compose.ci.yml"
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    compose_file.write_text(yaml.safe_dump(host_network_variant(doc, port), sort_keys=False), encoding="utf-8")
    data_dir = tmp / "data"
    data_dir.mkdir()
    data_dir.chmod(0o755)  # read by the image's non-root user
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATASET", "INPUT", "K", "LAMBDA_DENOISING", "LAMBDA_WEIGHT_DECAY", "SEED", "BUILD_ARGS")
    }
    env["DATA_DIR"] = str(data_dir)
    s = Stack(f"simserve-ci-{os.getpid()}", compose_file, f"http://127.0.0.1:{port}", data_dir, env)
    # A SIGTERM (CI timeout) becomes an exception, so the teardown below still runs.
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    timings: dict[str, float] = {}
    try:
        t = time.monotonic()
        s.compose("build", timeout=BUILD_TIMEOUT)
        timings["image build"] = time.monotonic() - t
        t = time.monotonic()
        s.compose("up", "-d", timeout=600)  # returns once `build` completed and `api` started
        timings["up (offline job + api start)"] = time.monotonic() - t
        timings["api healthy after up"] = wait_healthy(s, "api", HEALTHY_TIMEOUT)
        yield s
    finally:
        t = time.monotonic()
        down = s.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180, check=False)
        timings["down"] = time.monotonic() - t
        # Images of earlier source trees left untagged by this build (the dependency layers stay cached).
        subprocess.run(
            ["docker", "image", "prune", "-f", "--filter", "label=org.opencontainers.image.title=simserve"],
            capture_output=True,
            timeout=120,
            check=False,
        )
        signal.signal(signal.SIGTERM, previous)
        print("\ndocker stack timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
        assert down.returncode == 0, down.stderr


def test_image_is_runtime_only_and_non_root(stack):
    probe = (
        "import importlib.util, os; "
        "import implicit.cpu.als, implicit.cpu.bpr, pyarrow.parquet; "  # runtime: --train and Parquet imports
        "print(os.getuid(), [m for m in ('pytest', 'schemathesis', 'hypothesis', 'ruff', 'mypy') "
        "if importlib.util.find_spec(m)])"
    )
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "host", "--entrypoint", "python", IMAGE, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    uid, dev_modules = proc.stdout.split(" ", 1)
    assert int(uid) != 0
    assert dev_modules.strip() == "[]"
    config = json.loads(
        subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, text=True, check=True, timeout=30).stdout
    )[0]["Config"]
    assert "/readyz" in " ".join(config["Healthcheck"]["Test"])


def test_build_job_published_and_exited_zero(stack):
    state = stack.container("build")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 0
    version = stack.volume_read("CURRENT").strip()
    assert f"published {version}" in stack.compose("logs", "--no-color", "build").stdout


def test_readyz_serves_the_published_version(stack):
    r = stack.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["artifact_version"] == stack.volume_read("CURRENT").strip()
    assert stack.get("/healthz").status_code == 200


def test_similar_items(stack):
    version = stack.volume_read("CURRENT").strip()
    item_id = first_item_id(stack, version)
    r = stack.get("/similar-items", item_id=item_id, model="denoising-symmetric", metric="projected", k=10)
    assert r.status_code == 200, r.text
    body = r.json()
    results = body["neighbors"]
    assert len(results) == 10
    ids = [str(x["item_id"]) for x in results]
    assert item_id not in ids and len(set(ids)) == 10
    scores = [x["score"] for x in results]
    assert all(np.isfinite(scores)) and scores == sorted(scores, reverse=True)
    assert body["artifact_version"] == version
    missing = stack.get("/similar-items", item_id="no-such-item", model="denoising-symmetric", metric="cosine", k=5)
    assert missing.status_code == 404


def test_comparison_page_is_served(stack):
    # non-Python files of the package (app/static) must be in the installed image, not only in the source tree
    r = stack.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text[:300]


def id_lists(doc: object) -> list[list[str]]:
    """Every list of neighbours ({"item_id": ...} objects) anywhere in a JSON document, as lists of ids."""
    found: list[list[str]] = []
    if isinstance(doc, dict):
        for value in doc.values():
            found += id_lists(value)
    elif isinstance(doc, list):
        if doc and all(isinstance(x, dict) and "item_id" in x for x in doc):
            found.append([str(x["item_id"]) for x in doc])
        for value in doc:
            found += id_lists(value)
    return found


def test_compare_metrics(stack):
    paths = stack.get("/openapi.json").json()["paths"]
    if "/compare-metrics" not in paths:
        pytest.skip("/compare-metrics is not in the API yet (app/)")
    version = stack.volume_read("CURRENT").strip()
    item_id = first_item_id(stack, version)
    r = stack.get("/compare-metrics", item_id=item_id, model="denoising-symmetric", k=10)
    assert r.status_code == 200, r.text
    assert r.headers.get("artifact-version") == version
    lists = id_lists(r.json())
    # side by side: the neighbour list of each metric, as /similar-items serves it
    for metric in ("dot", "cosine", "projected"):
        single = stack.get("/similar-items", item_id=item_id, model="denoising-symmetric", metric=metric, k=10).json()
        assert [str(x["item_id"]) for x in single["neighbors"]] in lists, metric


def test_projected_lists_do_not_depend_on_the_denoising_variant(stack):
    """The paper's point, end to end through the container: projected cosine is invariant to D, cosine is not."""
    version = stack.volume_read("CURRENT").strip()
    item_id = first_item_id(stack, version)

    def ids(model: str, metric: str) -> list[str]:
        r = stack.get("/similar-items", item_id=item_id, model=model, metric=metric, k=10)
        assert r.status_code == 200, r.text
        return [str(x["item_id"]) for x in r.json()["neighbors"]]

    variants = ("denoising-symmetric", "denoising-item-orthonormal", "denoising-user-orthonormal", "denoising-sigma-matched")
    assert len({tuple(ids(m, "projected")) for m in variants}) == 1
    assert len({tuple(ids(m, "cosine")) for m in variants}) > 1


def test_rebuild_from_csv_is_served_without_restart(stack):
    before = stack.container("api")
    old = ready_version(stack)
    assert old
    items = write_csv(stack.data_dir / "ratings.csv")
    (stack.data_dir / "ratings.csv").chmod(0o644)
    t = time.monotonic()
    proc = stack.compose(
        "run",
        "--rm",
        "-T",
        "-e",
        "DATASET=csv",
        "-e",
        "INPUT=/data/ratings.csv",
        "-e",
        "K=8",
        "-e",
        "LAMBDA_DENOISING=50",
        "-e",
        "LAMBDA_WEIGHT_DECAY=2",
        "build",
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    new = wait_version(stack, old, RELOAD_TIMEOUT)
    print(f"\nrebuild from CSV + reload: {time.monotonic() - t:.1f}s")
    assert new == stack.volume_read("CURRENT").strip()
    r = stack.get("/similar-items", item_id="csv-book-000", model="weight-decay", metric="cosine", k=5)
    assert r.status_code == 200, r.text
    got = [str(x["item_id"]) for x in r.json()["neighbors"]]
    assert set(got) <= set(items) and len(got) == 5
    # the simulation's items are gone with the old version
    gone = stack.get("/similar-items", item_id=first_item_id(stack, old), model="weight-decay", metric="cosine", k=5)
    assert gone.status_code == 404
    after = stack.container("api")
    assert after["Id"] == before["Id"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"] and after["RestartCount"] == 0


def test_bad_csv_exits_2_and_changes_nothing(stack):
    version = ready_version(stack)
    (stack.data_dir / "bad.csv").write_text("user_id,item_id,value\nu1,i1,not-a-number\n", encoding="utf-8")
    (stack.data_dir / "bad.csv").chmod(0o644)
    proc = stack.compose("run", "--rm", "-T", "-e", "DATASET=csv", "-e", "INPUT=/data/bad.csv", "build", timeout=300, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "line 2" in proc.stdout + proc.stderr
    assert stack.volume_read("CURRENT").strip() == version
    time.sleep(3)  # longer than the API's reload interval in the stack (RELOAD_INTERVAL=2)
    assert ready_version(stack) == version
