"""Soak: minutes of load at about 80 % of the measured maximum, with a new version published every 30 s.

    .venv/bin/python bench/soak.py                 # 10 minutes (the table in bench/README.md), ~13 minutes in all
    .venv/bin/python bench/soak.py --minutes 2     # a shorter soak, same checks

What it does, on `python -m app` with 2 workers (the production entry point, its defaults):
1. Builds the simulation (the demo catalogue: 20,000 users x 1,000 items, 167 MB a version) three times with
   `python -m models.build --no-diagnostics --gauge-transforms 0` (three lambdas) into a folder of sources,
   publishes a copy of one into a fresh artifacts root, starts the server, warms it up.
2. Measures the maximum: wrk, 32 connections, 20 s, on a mix of /similar-items (projected, cosine, dot),
   /similar-users and /recommend over random ids of two models.
3. Calibrates wrk's per-request delay (its Lua `delay()`) so the same connections send about 80 % of that.
4. Runs that load as one wrk run of --minutes (one split of its connections between the workers for the
   whole soak), next to a latency probe (200 requests/s of the same mix, open loop, 4 kept-alive connections,
   every request timed), while a new version is published every 30 s (at 15 s and 45 s of every
   minute): a copy of the next source under a new name, staged, renamed into versions/ and CURRENT switched
   as the job publishes, retention keeping 3 (the job's own publish under load has its tests; building on
   the serving machine would measure the build's CPU, not the server). Every 10 s it samples each worker
   (found as the supervisor's children): RSS, open file descriptors, and which versions' files it maps.
5. Prints a table per minute (the probe's latencies) and checks the promises:
   - zero failed requests (wrk's socket errors, timeouts and non-2xx, and the probe's failures);
   - p99 stable: the probe's p99 in the last minute within 20 % of its p99 in the first minute (either way);
   - resident memory flat: every worker's RSS at the end within 10 % of its RSS after the first minute (warm-up);
   - nothing left behind: at the end each worker maps files of at most the live version and the one it just
     replaced (a swap in flight), and its file-descriptor count is within 10 of its count after warm-up.

Results: bench/results/soak.json (soak.quick.json for runs shorter than 10 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    WRK_LUA,
    Server,
    load_average,
    machine,
    parse_wrk,
    require_wrk,
    results_path,
    server_env,
    start_app,
    write_results,
)
from models.artifact.manifest import MANIFEST  # noqa: E402
from models.artifact.store import ArtifactStore, write_json  # noqa: E402

WORKERS = 2
# uvicorn's workers share one listening socket: how a wrk run's connections split between them is whatever the
# accept races gave, and it stays for the run. One-minute wrk runs drew a new split every minute (60/40: p50 3.5
# ms; 50/50: 1.5 ms), so the load is one wrk run for the whole soak and the per-minute latencies come from a probe.
CONNECTIONS = 32
PROBE_RATE = 200.0  # requests/s of the latency probe, on PROBE_CONNECTIONS kept-alive connections
PROBE_CONNECTIONS = 4
THREADS = 2
PUBLISH_EVERY = 30.0
LAMBDAS = (10000.0, 10100.0, 10200.0)  # the versions published in turn differ (their lambda), so every swap is real
SAMPLE_EVERY = 10.0
MODELS = ("denoising-symmetric", "weight-decay")


def build(out: Path, lam: float) -> None:
    """One real build into `out` (published there when it ends)."""
    cmd = [
        sys.executable, "-m", "models.build", "--dataset", "simulation", "--out", str(out), "--no-diagnostics",
        "--gauge-transforms", "0", "--keep", str(len(LAMBDAS)), "--lambda-denoising", f"{lam:g}", "--quiet",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"build failed: {done.stderr[-2000:]}")


def publish_copy(store: ArtifactStore, source: Path) -> str:
    """Publish a copy of a built version folder under a new name, as the job publishes: staged beside versions/,
    its manifest renamed, renamed into versions/, CURRENT switched by an atomic rename, retention applied."""
    manifest = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
    version = store.new_version(manifest["dataset"].get("fingerprint", ""), {"copy_of": source.name})
    with store.staging(version) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        manifest["version"] = version
        write_json(staging / MANIFEST, manifest)  # not among its own checksummed files
        store.versions.mkdir(parents=True, exist_ok=True)
        os.rename(staging, store.versions / version)
    store.switch_current(version)
    store.apply_retention(3)
    return version


def request_paths(version_dir: Path) -> list[str]:
    items = [it["id"] for it in json.loads((version_dir / "items.json").read_text(encoding="utf-8"))]
    users = json.loads((version_dir / "users.json").read_text(encoding="utf-8"))
    paths = []
    for i in range(400):
        model = MODELS[i % 2]
        item, user = items[(i * 37) % len(items)], users[(i * 101) % len(users)]
        metric = ("projected", "cosine", "dot")[i % 3]
        paths.append(f"/similar-items?item_id={item}&model={model}&metric={metric}&k=10")
        if i % 4 == 0:
            paths.append(f"/similar-users?user_id={user}&model={model}&k=10")
        if i % 4 == 1:
            paths.append(f"/recommend?user_id={user}&model={model}&metric=projected&k=10&exclude_seen=true")
    return paths


def write_lua(path: Path, paths: list[str], delay_ms: float) -> None:
    """wrk's script with a delay after every answer; wrk takes whole milliseconds, so a fractional delay is
    dithered (floor or ceil at random, in the right proportion)."""
    script = WRK_LUA % {"paths": ",".join(f'"{p}"' for p in paths), "seed": 7}
    base, frac = int(delay_ms), delay_ms - int(delay_ms)
    path.write_text(
        script + f"\ndelay = function()\n  if math.random() < {frac:.4f} then return {base + 1} end\n  return {base}\nend\n"
    )


def wrk(server: Server, lua: Path, seconds: float) -> dict[str, Any]:
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{round(seconds)}s", "--timeout", "5s", "-s", str(lua), server.base]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    r = parse_wrk(out.stdout)
    if out.returncode != 0 or r is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    return r


def workers(server: Server) -> list[psutil.Process]:
    """The uvicorn workers: the supervisor's children that are not multiprocessing helpers."""
    kids = psutil.Process(server.proc.pid).children()
    return [p for p in kids if "resource_tracker" not in " ".join(p.cmdline())]


def sample(server: Server, versions_dir: Path) -> dict[str, Any]:
    """Per worker: RSS (MiB), open fds, and the versions whose files it maps."""
    out = {}
    for p in workers(server):
        try:
            maps = Path(f"/proc/{p.pid}/maps").read_text()
            mapped = sorted(
                {
                    line.split(str(versions_dir) + "/", 1)[1].split("/", 1)[0]
                    for line in maps.splitlines()
                    if str(versions_dir) + "/" in line
                }
            )
            out[str(p.pid)] = {"rss_mib": p.memory_info().rss / 2**20, "fds": p.num_fds(), "versions_mapped": mapped}
        except (psutil.NoSuchProcess, FileNotFoundError):
            continue
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--target", type=float, default=0.8, help="share of the measured maximum to send (default 0.8)")
    args = ap.parse_args()
    if not require_wrk():
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    root = tmp / "artifacts"
    versions_dir = root / "versions"
    print(f"building {len(LAMBDAS)} versions to publish copies of, into {tmp / 'sources'} ...", flush=True)
    for lam in LAMBDAS:
        build(tmp / "sources", lam)
    sources = [tmp / "sources" / "versions" / v for v in ArtifactStore(tmp / "sources").list_versions()]
    store = ArtifactStore(root)
    first = publish_copy(store, sources[-1])
    server = start_app("api", server_env(ARTIFACTS_DIR=str(root), RELOAD_INTERVAL="1"), tmp / "api.log", workers=WORKERS)
    results: dict[str, Any] = {"config": vars(args) | {"workers": WORKERS, "connections": CONNECTIONS}, "machine": machine()}
    try:
        server.wait_serving(WORKERS, first)
        paths = request_paths(versions_dir / first)
        lua = tmp / "load.lua"
        write_lua(lua, paths, 0)
        wrk(server, lua, 5)  # warm-up
        peak = wrk(server, lua, 20)
        print(f"maximum: {peak['rps']:.0f} requests/s (p99 {peak['p99_us'] / 1e3:.1f} ms, {peak['errors']} errors)", flush=True)
        stop = threading.Event()
        published: list[dict[str, Any]] = []
        samples: list[dict[str, Any]] = []
        t_start = time.monotonic()

        def publisher() -> None:
            # a publish every PUBLISH_EVERY s from the start, so every minute holds the same number of them
            while not stop.wait(max(0.0, PUBLISH_EVERY * (len(published) + 0.5) - (time.monotonic() - t_start))):
                t0 = time.monotonic()
                version = publish_copy(store, sources[len(published) % len(sources)])
                published.append({"at": time.monotonic() - t_start, "version": version, "publish_s": time.monotonic() - t0})

        def sampler() -> None:
            while not stop.wait(SAMPLE_EVERY):
                samples.append({"at": time.monotonic() - t_start, "workers": sample(server, versions_dir)})

        threads = [threading.Thread(target=publisher, daemon=True), threading.Thread(target=sampler, daemon=True)]
        probes: list[tuple[float, float, bool]] = []
        threads.append(threading.Thread(target=probe, args=(server.base, paths, stop, t_start, probes), daemon=True))
        for t in threads:
            t.start()
        # calibrated under the soak's own conditions: builds, reloads and the probe running
        target = args.target * peak["rps"]
        delay, rps = 0.0, peak["rps"]
        for _ in range(6):  # closed loop: each connection sends its next request `delay` ms after an answer
            delay = max(0.0, delay + 0.7 * (CONNECTIONS / target - CONNECTIONS / rps) * 1e3)  # damped: latency moves too
            write_lua(lua, paths, delay)
            rps = wrk(server, lua, 10)["rps"]
        print(f"delay {delay:.2f} ms per request: {rps:.0f} requests/s ({rps / peak['rps']:.0%} of the maximum)", flush=True)
        results.update(peak=peak, target_rps=target, delay_ms=delay, load_average_before=load_average())
        soak_start = time.monotonic() - t_start
        load = wrk(server, lua, 60 * args.minutes)
        print(f"load: {load['rps']:.0f} requests/s ({load['rps'] / peak['rps']:.0%} of the maximum), errors {load['errors']}")
        minutes = per_minute(probes, published, args.minutes, soak_start)
        stop.set()
        for t in threads:
            t.join(timeout=600)
        time.sleep(3.0)  # the last publish picked up
        live = (root / "CURRENT").read_text().strip()
        server.wait_serving(WORKERS, live, timeout=60)
        final = sample(server, versions_dir)
        results["probe_failures_total"] = sum(1 for _, _, ok in probes if not ok)
        results.update(load=load, minutes=minutes, published=published, samples=samples, final=final, live=live)
        results["load_average_after"] = load_average()
        results["warm_at"] = soak_start + 60.0
        results["checks"] = checks(
            load, minutes, samples, final, live, published, results["warm_at"], results["probe_failures_total"]
        )
    finally:
        server.stop()
    path = write_results(results_path("soak", quick=args.minutes < 10), results)
    print_table(results)
    print(f"results: {path}")
    return 0 if all(c["ok"] for c in results["checks"].values()) else 1


def probe(base: str, paths: list[str], stop: threading.Event, t0: float, out: list[tuple[float, float, bool]]) -> None:
    """PROBE_RATE requests/s over PROBE_CONNECTIONS threads, each on its own schedule (open loop: a late answer
    does not delay the next request's slot); (time since t0, seconds, ok) of each."""

    def one(offset: int) -> None:
        period = PROBE_CONNECTIONS / PROBE_RATE
        with httpx.Client(base_url=base, timeout=10.0) as client:
            n = 0
            while not stop.is_set():
                due = t0 + offset * period / PROBE_CONNECTIONS + n * period
                time.sleep(max(0.0, due - time.monotonic()))
                started = time.monotonic()
                try:
                    ok = client.get(paths[(n * PROBE_CONNECTIONS + offset) % len(paths)]).status_code == 200
                except httpx.HTTPError:
                    ok = False
                out.append((started - t0, time.monotonic() - started, ok))
                n += 1

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(PROBE_CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def per_minute(
    probes: list[tuple[float, float, bool]], published: list[dict[str, Any]], minutes: int, start: float
) -> list[dict[str, Any]]:
    """The probe's latencies and failures per minute of the soak (which starts `start` s after the probe)."""
    out = []
    for m in range(minutes):
        lo, hi = start + m * 60, start + (m + 1) * 60
        times = sorted(s for at, s, ok in probes if lo <= at < hi and ok)
        failed = sum(1 for at, _, ok in probes if lo <= at < hi and not ok)
        q = statistics.quantiles(times, n=100) if len(times) > 100 else [float("nan")] * 99
        out.append(
            {
                "minute": m + 1,
                "probe_requests": len(times) + failed,
                "p50_us": q[49] * 1e6,
                "p99_us": q[98] * 1e6,
                "max_us": (times[-1] if times else float("nan")) * 1e6,
                "errors": failed,
                "published_so_far": sum(1 for p in published if p["at"] < hi),
            }
        )
        r = out[-1]
        print(f"minute {m + 1:2d}: probe p50 {r['p50_us'] / 1e3:6.2f} ms  p99 {r['p99_us'] / 1e3:6.2f} ms  "
              f"max {r['max_us'] / 1e3:7.1f} ms  failed {failed}  versions published {r['published_so_far']}")  # fmt: skip
    return out


def checks(
    load: dict[str, Any],
    minutes: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    final: dict[str, Any],
    live: str,
    published: list[dict[str, Any]],
    warm_at: float,
    probe_failures: int,
) -> dict[str, dict[str, Any]]:
    errors = load["errors"] + probe_failures
    first, last = minutes[0]["p99_us"], minutes[-1]["p99_us"]
    warm = next((s["workers"] for s in samples if s["at"] >= warm_at), samples[0]["workers"] if samples else {})
    rss = {pid: (warm[pid]["rss_mib"], final[pid]["rss_mib"]) for pid in final if pid in warm}
    fds = {pid: (warm[pid]["fds"], final[pid]["fds"]) for pid in final if pid in warm}
    previous = published[-2]["version"] if len(published) >= 2 else None
    stale = {pid: [v for v in w["versions_mapped"] if v not in (live, previous)] for pid, w in final.items()}
    return {
        "zero failed requests": {"ok": errors == 0, "value": errors},
        "p99 last minute within 20% of the first": {"ok": abs(last / first - 1) <= 0.2, "value": round(last / first, 3)},
        "RSS within 10% of warm-up": {
            "ok": bool(rss) and all(b <= 1.1 * a for a, b in rss.values()),
            "value": {pid: round(b / a, 3) for pid, (a, b) in rss.items()},
        },
        "fds within 10 of warm-up": {
            "ok": bool(fds) and all(b <= a + 10 for a, b in fds.values()),
            "value": {pid: [a, b] for pid, (a, b) in fds.items()},
        },
        "no old version mapped": {"ok": bool(final) and not any(stale.values()), "value": stale},
        "same workers all along": {"ok": set(final) == set(warm), "value": sorted(final)},
    }


def print_table(results: dict[str, Any]) -> None:
    rows = [
        [
            m["minute"],
            m["probe_requests"],
            f"{m['p50_us'] / 1e3:.2f}",
            f"{m['p99_us'] / 1e3:.2f}",
            f"{m['max_us'] / 1e3:.1f}",
            m["errors"],
            m["published_so_far"],
        ]
        for m in results["minutes"]
    ]
    markdown(["minute", "probe requests", "p50 ms", "p99 ms", "max ms", "failed", "versions published"], rows)
    warm: dict[str, Any] = next((s["workers"] for s in results["samples"] if s["at"] >= results["warm_at"]), {})
    rows = []
    for pid, w in results["final"].items():
        a = warm.get(pid, {})
        rss = f"{a['rss_mib']:.0f}" if a else ""
        rows.append([pid, rss, f"{w['rss_mib']:.0f}", a.get("fds", ""), w["fds"], ", ".join(w["versions_mapped"])])
    markdown(
        ["worker", "RSS after warm-up MiB", "RSS at the end MiB", "fds after warm-up", "fds at the end", "mapped at the end"],
        rows,
    )
    builds = statistics.median([p["publish_s"] for p in results["published"]]) if results["published"] else float("nan")
    load = results["load"]
    print(
        f"\nload (wrk, {CONNECTIONS} connections, whole soak): {load['rps']:.0f} requests/s, p50 {load['p50_us'] / 1e3:.2f} ms, "
        f"p99 {load['p99_us'] / 1e3:.2f} ms, errors {load['errors']}"
    )
    print(
        f"maximum {results['peak']['rps']:.0f} requests/s; target {results['target_rps']:.0f} "
        f"({results['config']['target']:.0%}); live version {results['live']}; "
        f"{len(results['published'])} versions published, each in {builds:.2f} s (median)"
    )
    for name, c in results["checks"].items():
        print(f"  {'ok  ' if c['ok'] else 'FAIL'} {name}: {c['value']}")


def markdown(header: list[str], rows: list[list[Any]]) -> None:
    print("\n| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for row in rows:
        print("| " + " | ".join(str(x) for x in row) + " |")


if __name__ == "__main__":
    sys.exit(main())
