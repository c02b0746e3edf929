"""/similar-items served from FAISS in the API, from Milvus behind the API, and a direct pymilvus search loop: one
run, the same 50,000 x 128 item vectors, the same machine.

    .venv/bin/python bench/milvus_vs_faiss.py           # 50,000 items x 20,000 users, k = 128
    .venv/bin/python bench/milvus_vs_faiss.py --quick   # 5,000 items x 2,000 users, k = 32, short rounds: a smoke test

1. Catalogue: bench/serve_vs_constant.py's clustered power law written as one Parquet file, published by
   `python -m models.build --dataset parquet --milvus-uri URI` (the CLI's defaults) into an artifact root and a
   milvus-lite server (bench.harness.MilvusServer, a real Milvus reached over gRPC); the publish is timed.
2. Three ways to answer "the 10 items most similar to item i" (model denoising-symmetric, metric projected):
     faiss     GET /similar-items on `python -m app` at its defaults (FAISS in the workers: for 50,000 rows the
               build's IVF twin)
     milvus    the same GET on `python -m app` with VECTOR_BACKEND=milvus (the version's collection: HNSW, ef
               chosen by the build for recall@10 >= 0.95, or FLAT)
     pymilvus  what a user would write instead of the API: threads in one Python process calling
               MilvusClient.search on the index's alias with the item's vector (limit 11, the item itself dropped,
               rows mapped to item ids), the build's search parameters
3. Load: wrk (2 threads, --connections connections) against each API; the pymilvus loop with --connections threads.
   Rounds of --duration seconds alternate the order of the three; the table shows each one's median round.
   Every round must have 0 errors. Both APIs run the app's default workers, and the Milvus server shares the
   machine's cores with them, as it would on one box.
4. recall@10 of each against exact inner-product search (FAISS flat over the index file, in this process) on 200
   items; an answer scoring within 1e-5 of the exact 10th counts as found (ties).
Results: bench/results/milvus_vs_faiss[.quick].json. wrk: `apt-get install -y wrk` (Debian).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `bench`, `app` and `models` importable
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    MiB,
    MilvusServer,
    Server,
    get,
    load_average,
    machine,
    require_wrk,
    results_path,
    run_wrk,
    server_env,
    start_app,
    write_results,
    write_wrk_script,
)
from bench.serve_vs_constant import FULL, QUICK, clustered_power_law  # noqa: E402
from models.artifact.manifest import ITEMS, MANIFEST, VERSIONS_DIR, IndexKey, index_entries, milvus_entries  # noqa: E402
from models.artifact.store import ArtifactStore  # noqa: E402
from models.indexes.faiss_index import flat_index, flat_vectors, read_index  # noqa: E402
from models.indexes.milvus_collections import ROW, VEC, milvus_client  # noqa: E402

MODEL, METRIC, K = "denoising-symmetric", "projected", 10
SIZES = {"full": {**FULL, "users": 20_000}, "quick": {**QUICK, "users": 2_000}}
RECALL_QUERIES, PATHS = 200, 10_000
WAYS = ("faiss", "milvus", "pymilvus")


def flat_file(path: Path) -> faiss.IndexFlat:
    """The flat index at path (the exact search every other index is measured against)."""
    index = read_index(path)
    assert isinstance(index, faiss.IndexFlat), path
    return index


def write_parquet(cfg: dict[str, Any], path: Path) -> int:
    """The benchmark's interactions as one Parquet file (user_id, item_id); the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, _ = clustered_power_law(cfg["users"], cfg["items"], cfg["clusters"], cfg["mean_items"], cfg["seed"])
    coo = X.tocoo()
    # item ids in column order, so that row i of every item index is item i
    order = np.lexsort((coo.row, coo.col))
    users = pa.array([f"u{u}" for u in coo.row[order].tolist()])
    items = pa.array([f"i{i}" for i in coo.col[order].tolist()])
    pq.write_table(pa.table({"user_id": users, "item_id": items}), path)
    return int(X.nnz)


def publish(cfg: dict[str, Any], data: Path, out: Path, uri: str) -> float:
    """`python -m models.build` of the Parquet file into `out` and Milvus at `uri`; its wall time in seconds."""
    cmd = [sys.executable, "-m", "models.build", "--dataset", "parquet", "--input", str(data), "--out", str(out)]
    cmd += ["--k", str(cfg["k"]), "--seed", str(cfg["seed"]), "--lambda-denoising", str(cfg["lambda_denoising"])]
    cmd += ["--lambda-weight-decay", str(cfg["lambda_weight_decay"]), "--milvus-uri", uri]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"build failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    for line in proc.stderr.splitlines():
        if "milvus" in line:
            print(f"  {line.strip()}", flush=True)
    return seconds


class DirectLoop:
    """`threads` threads each searching the alias with the vector of a random query row until `seconds` pass."""

    def __init__(self, uri: str, alias: str, vectors: np.ndarray, ids: list[str], search: dict[str, Any]) -> None:
        self.client = milvus_client(uri, timeout=10)
        self.alias, self.vectors, self.ids, self.search = alias, vectors, ids, search

    def neighbours(self, rows: list[int]) -> list[list[str]]:
        """The K nearest item ids of each row's item, itself dropped: what a client of the alias serves."""
        hits = self.client.search(
            self.alias,
            data=self.vectors[rows].tolist(),
            limit=K + 1,
            anns_field=VEC,
            search_params={"metric_type": "IP", "params": self.search},
            output_fields=[ROW],
        )
        return [[self.ids[h[ROW]] for h in hit if h[ROW] != r][:K] for r, hit in zip(rows, hits, strict=True)]

    def run(self, rows: np.ndarray, seconds: float, threads: int, seed: int) -> dict[str, Any]:
        latencies: list[list[float]] = [[] for _ in range(threads)]
        errors: list[str] = []
        stop = time.perf_counter() + seconds

        def worker(t: int) -> None:
            rng = np.random.default_rng(seed + t)
            while time.perf_counter() < stop:
                r = int(rows[rng.integers(rows.size)])
                t0 = time.perf_counter()
                try:
                    got = self.neighbours([r])[0]
                    if len(got) != K:
                        errors.append(f"row {r}: {len(got)} neighbours")
                except Exception as e:
                    errors.append(repr(e))
                latencies[t].append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        wall = time.perf_counter() - t0
        lat = np.sort(np.concatenate([np.asarray(x) for x in latencies]))
        return {
            "requests": int(lat.size),
            "rps": lat.size / wall,
            "p50_us": float(np.quantile(lat, 0.5) * 1e6),
            "p99_us": float(np.quantile(lat, 0.99) * 1e6),
            "errors": len(errors),
            "first_errors": errors[:3],
        }


def api_neighbours(base: str, item: str) -> list[str]:
    status, body = get(f"{base}/similar-items?{_query(item)}", timeout=30)
    if status != 200:
        raise RuntimeError(f"{base}: {status} {body[:300]!r}")
    return [n["item_id"] for n in json.loads(body)["neighbors"]]


def _query(item: str) -> str:
    return f"item_id={urllib.parse.quote(item, safe='')}&model={MODEL}&metric={METRIC}&k={K}"


def recall(answers: list[list[str]], rows: list[int], vectors: np.ndarray, ids: list[str]) -> float:
    """Mean share of each answer's ids among the exact top K (the query item excluded), ties at the K-th found."""
    exact = flat_index(vectors)
    scores, top = exact.search(vectors[rows], K + 1)
    index = {item: i for i, item in enumerate(ids)}
    found = []
    for q, r in enumerate(rows):
        keep = top[q] != r
        truth, s = top[q][keep][:K], scores[q][keep][:K]
        tol = 1e-5 * max(1.0, abs(float(s[0])))
        got = [index[i] for i in answers[q]]
        found.append(sum(g in set(truth.tolist()) or float(vectors[g] @ vectors[r]) >= s[-1] - tol for g in got) / K)
    return float(np.mean(found))


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small catalogue and short rounds: a smoke test")
    ap.add_argument("--connections", type=int, default=8, help="wrk connections, and the pymilvus loop's threads")
    ap.add_argument("--duration", type=float, default=None, help="seconds per round (default 10, quick 3)")
    ap.add_argument("--rounds", type=int, default=None, help="measured rounds of each way (default 3, quick 1)")
    args = ap.parse_args()
    if not require_wrk():
        return 2
    cfg = SIZES["quick" if args.quick else "full"]
    seconds = args.duration or (3.0 if args.quick else 10.0)
    rounds = args.rounds or (1 if args.quick else 3)
    tmp = Path(tempfile.mkdtemp(prefix="milvus-bench-"))
    milvus = MilvusServer(tmp / "milvus", tmp / "milvus.log")
    servers: list[Server] = []
    load_before = load_average()
    try:
        milvus.start()
        rows_in = write_parquet(cfg, tmp / "interactions.parquet")
        print(f"publishing {cfg['items']} items x {cfg['users']} users ({rows_in} interactions), k={cfg['k']} ...", flush=True)
        publish_seconds = publish(cfg, tmp / "interactions.parquet", tmp / "art", milvus.uri)
        store = ArtifactStore(tmp / "art")
        version = store.current_version()
        assert version is not None
        vdir = tmp / "art" / VERSIONS_DIR / version
        manifest = json.loads((vdir / MANIFEST).read_text())
        entry = index_entries(manifest)[IndexKey("items", MODEL, METRIC)]
        mentry = milvus_entries(manifest)[entry.file]
        flat = flat_file(vdir / entry.file)
        vectors = np.array(flat_vectors(flat), dtype=np.float32)  # a copy: the view lives only as long as the index
        del flat
        ids = [str(it["id"]) for it in json.loads((vdir / ITEMS).read_text())]
        nonzero = np.flatnonzero(np.linalg.norm(vectors, axis=1) > 0)  # an item nobody saw has no neighbours
        rng = np.random.default_rng(cfg["seed"])
        query_rows = rng.choice(nonzero, PATHS)
        milvus_rss_published = milvus.rss_bytes()

        env = server_env(ARTIFACTS_DIR=str(tmp / "art"))
        faiss_api = start_app("faiss", env, tmp / "faiss.log")
        milvus_api = start_app("milvus", {**env, "VECTOR_BACKEND": "milvus", "MILVUS_URI": milvus.uri}, tmp / "milvus-api.log")
        servers += [faiss_api, milvus_api]
        from app.settings import Settings

        workers = Settings().workers
        for s in servers:
            s.wait_serving(workers, version, 600)
        direct = DirectLoop(milvus.uri, mentry.alias, vectors, ids, dict(mentry.search_params))
        lua = tmp / "paths.lua"
        write_wrk_script(lua, [f"/similar-items?{_query(ids[r])}" for r in query_rows], cfg["seed"])

        sample = query_rows[:RECALL_QUERIES].tolist()
        recalls = {
            "faiss": recall([api_neighbours(faiss_api.base, ids[r]) for r in sample], sample, vectors, ids),
            "milvus": recall([api_neighbours(milvus_api.base, ids[r]) for r in sample], sample, vectors, ids),
            "pymilvus": recall([direct.neighbours([r])[0] for r in sample], sample, vectors, ids),
        }
        served = json.loads(get(faiss_api.base + "/models", timeout=30)[1])["models"][MODEL]["indexes"][f"items/{METRIC}"]
        served_milvus = json.loads(get(milvus_api.base + "/models", timeout=30)[1])["models"][MODEL]["indexes"][f"items/{METRIC}"]

        def once(way: str, secs: float) -> dict[str, Any]:
            if way == "pymilvus":
                return direct.run(query_rows, secs, args.connections, cfg["seed"])
            return run_wrk(faiss_api if way == "faiss" else milvus_api, lua, secs, args.connections, 2)

        for way in WAYS:  # warm-up: first-use paths, page cache
            once(way, min(2.0, seconds))
        runs: dict[str, list[dict[str, Any]]] = {w: [] for w in WAYS}
        for r in range(rounds):
            for way in WAYS if r % 2 == 0 else WAYS[::-1]:
                runs[way].append(once(way, seconds))
                print(f"  round {r + 1}/{rounds} {way}: {runs[way][-1]['rps']:.0f}/s", flush=True)
        milvus_rss_served = milvus.rss_bytes()
    finally:
        for s in servers:
            s.stop()
        milvus.stop()

    summary = {w: _median_round(rs) for w, rs in runs.items()}
    failed = {w: [r["errors"] for r in rs] for w, rs in runs.items() if any(r["errors"] for r in rs)}
    out = {
        "machine": machine(),
        "load_average": {"before": load_before, "after": load_average()},
        "catalogue": {**cfg, "interactions": rows_in, "version": version},
        "publish_seconds": publish_seconds,
        "collections": len(milvus_entries(manifest)),
        "served_by": {"faiss": served, "milvus": served_milvus},
        "milvus_index": mentry.to_json(),
        "milvus_rss_mib": {"published": milvus_rss_published / MiB, "after_load": milvus_rss_served / MiB},
        "connections": args.connections,
        "seconds": seconds,
        "rounds": runs,
        "median": summary,
        "recall_at_10": recalls,
    }
    path = write_results(results_path("milvus_vs_faiss", args.quick), out)

    print(
        f"\n{cfg['items']:,} items x {cfg['k']}, {MODEL} {METRIC}, k={K}, {args.connections} connections/threads, "
        f"median of {rounds} rounds of {seconds:.0f} s"
    )
    print(
        f"publish (FAISS + {out['collections']} Milvus collections, verified): {publish_seconds:.0f} s; "
        f"Milvus index {mentry.index_type} {dict(mentry.search_params)}; Milvus RSS {milvus_rss_served / MiB:.0f} MiB"
    )
    print(f"{'way':<10} {'queries/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>10} {'vs faiss':>9}")
    base = summary["faiss"]["rps"]
    for w in WAYS:
        m = summary[w]
        print(
            f"{w:<10} {m['rps']:>10.0f} {m['p50_us'] / 1e3:>8.1f} {m['p99_us'] / 1e3:>8.1f} {recalls[w]:>10.3f} "
            f"{m['rps'] / base:>8.2f}x"
        )
    print(f"results: {path}")
    if failed:
        print(f"error: rounds with failed requests: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
