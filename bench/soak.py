"""Soak: minutes of load at about 80 % of the measured maximum, with a new version published every 30 s.

    .venv/bin/python bench/soak.py                 # 10 minutes (the table in bench/README.md), ~13 minutes in all
    .venv/bin/python bench/soak.py --minutes 2     # a shorter soak, same checks

What it does, on `python -m app` with 2 workers (the production entry point, its defaults):
1. Builds the simulation (the demo catalogue: 20,000 users x 1,000 items) with `python -m models.build
   --no-diagnostics --gauge-transforms 0` into a fresh artifacts root, starts the server, warms it up.
2. Measures the maximum: wrk, 32 connections, 20 s, on a mix of /similar-items (projected, cosine, dot),
   /similar-users and /recommend over random ids of two models.
3. Calibrates wrk's per-request delay (its Lua `delay()`) so the same connections send about 80 % of that.
4. Runs the load in one-minute wrk segments for --minutes, while a real build (`nice -n 19`, a new lambda
   each time, retention `--keep 3`) starts every 30 s from the start and publishes when it ends, so every
   minute holds two publishes. Every 10 s it samples each worker
   (found as the supervisor's children): RSS, open file descriptors, and which versions' files it maps.
5. Prints a table per minute and checks the promises:
   - zero failed requests (socket errors, timeouts and non-2xx, summed over the segments);
   - p99 stable: the last minute's p99 within 20 % of the first minute's;
   - resident memory flat: every worker's RSS at the end within 10 % of its RSS after the first minute (warm-up);
   - nothing left behind: at the end each worker maps files of at most the live version and the one it just
     replaced (a swap in flight), and its file-descriptor count is within 10 of its count after warm-up.

Results: bench/results/soak.json (soak.quick.json for runs shorter than 10 minutes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

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

WORKERS = 2
CONNECTIONS = 32
THREADS = 2
PUBLISH_EVERY = 30.0
SAMPLE_EVERY = 10.0
MODELS = ("denoising-symmetric", "weight-decay")


def build(out: Path, lam: float, nice: bool) -> float:
    """One real build into `out` (published when it ends); returns its seconds."""
    cmd = [
        sys.executable, "-m", "models.build", "--dataset", "simulation", "--out", str(out), "--no-diagnostics",
        "--gauge-transforms", "0", "--keep", "3", "--lambda-denoising", f"{lam:g}", "--quiet",
    ]  # fmt: skip
    if nice:
        cmd = ["nice", "-n", "19", *cmd]
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"build failed: {done.stderr[-2000:]}")
    return time.monotonic() - t0


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
    ap.add_argument("--no-nice", action="store_true", help="run the builds at normal priority")
    args = ap.parse_args()
    if not require_wrk():
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    root = tmp / "artifacts"
    versions_dir = root / "versions"
    print(f"building the first version into {root} ...", flush=True)
    build(root, 10000.0, nice=False)
    first = (root / "CURRENT").read_text().strip()
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
        target = args.target * peak["rps"]
        delay, rps = 0.0, peak["rps"]
        for _ in range(4):  # closed loop: each connection sends its next request `delay` ms after an answer
            delay = max(0.0, delay + (CONNECTIONS / target - CONNECTIONS / rps) * 1e3)
            write_lua(lua, paths, delay)
            rps = wrk(server, lua, 8)["rps"]
        print(f"delay {delay:.2f} ms per request: {rps:.0f} requests/s ({rps / peak['rps']:.0%} of the maximum)", flush=True)
        results.update(peak=peak, target_rps=target, delay_ms=delay, load_average_before=load_average())

        stop = threading.Event()
        published: list[dict[str, Any]] = []
        samples: list[dict[str, Any]] = []
        t_start = time.monotonic()

        def publisher() -> None:
            # a build starts every PUBLISH_EVERY s from the start, so every minute holds the same number of publishes
            lam = 10000.0
            while not stop.wait(max(0.0, PUBLISH_EVERY * len(published) - (time.monotonic() - t_start))):
                lam += 100.0
                seconds = build(root, lam, nice=not args.no_nice)
                published.append(
                    {"at": time.monotonic() - t_start, "version": (root / "CURRENT").read_text().strip(), "build_s": seconds}
                )

        def sampler() -> None:
            while not stop.wait(SAMPLE_EVERY):
                samples.append({"at": time.monotonic() - t_start, "workers": sample(server, versions_dir)})

        threads = [threading.Thread(target=publisher, daemon=True), threading.Thread(target=sampler, daemon=True)]
        for t in threads:
            t.start()
        minutes = []
        for m in range(args.minutes):
            r = wrk(server, lua, 60)
            r["minute"] = m + 1
            r["published_so_far"] = len(published)
            minutes.append(r)
            print(f"minute {m + 1:2d}: {r['rps']:7.0f} req/s  p50 {r['p50_us'] / 1e3:6.2f} ms  p99 {r['p99_us'] / 1e3:6.2f} ms  "
                  f"errors {r['errors']}  versions published {len(published)}", flush=True)  # fmt: skip
        stop.set()
        for t in threads:
            t.join(timeout=600)
        time.sleep(3.0)  # the last publish picked up
        live = (root / "CURRENT").read_text().strip()
        server.wait_serving(WORKERS, live, timeout=60)
        final = sample(server, versions_dir)
        results.update(minutes=minutes, published=published, samples=samples, final=final, live=live)
        results["load_average_after"] = load_average()
        results["checks"] = checks(minutes, samples, final, live, published)
    finally:
        server.stop()
    path = write_results(results_path("soak", quick=args.minutes < 10), results)
    print_table(results)
    print(f"results: {path}")
    return 0 if all(c["ok"] for c in results["checks"].values()) else 1


def checks(
    minutes: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    final: dict[str, Any],
    live: str,
    published: list[dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    errors = sum(m["errors"] for m in minutes)
    first, last = minutes[0]["p99_us"], minutes[-1]["p99_us"]
    warm = next((s["workers"] for s in samples if s["at"] >= 60.0), samples[0]["workers"] if samples else {})
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
            f"{m['rps']:.0f}",
            f"{m['p50_us'] / 1e3:.2f}",
            f"{m['p99_us'] / 1e3:.2f}",
            m["errors"],
            m["published_so_far"],
        ]
        for m in results["minutes"]
    ]
    markdown(["minute", "requests/s", "p50 ms", "p99 ms", "errors", "versions published"], rows)
    warm: dict[str, Any] = next((s["workers"] for s in results["samples"] if s["at"] >= 60.0), {})
    rows = []
    for pid, w in results["final"].items():
        a = warm.get(pid, {})
        rss = f"{a['rss_mib']:.0f}" if a else ""
        rows.append([pid, rss, f"{w['rss_mib']:.0f}", a.get("fds", ""), w["fds"], ", ".join(w["versions_mapped"])])
    markdown(
        ["worker", "RSS after warm-up MiB", "RSS at the end MiB", "fds after warm-up", "fds at the end", "mapped at the end"],
        rows,
    )
    builds = statistics.median([p["build_s"] for p in results["published"]]) if results["published"] else float("nan")
    print(
        f"\nmaximum {results['peak']['rps']:.0f} requests/s; target {results['target_rps']:.0f} "
        f"({results['config']['target']:.0%}); live version {results['live']}; "
        f"{len(results['published'])} versions published, builds {builds:.1f} s (median)"
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
