"""The build's exact neighbour lists (`models.build --precompute-neighbours N`) and /similar-items served from them.

- Lists: each item index's stored (ids, scores) equal an independent brute force: numpy over the
  stored vectors, and the dense oracle (support.oracle.dense_oracle: PAPER.md's closed forms, no index,
  no models/ code), the row itself excluded.
- API: two builds of the same data, with lists (N = 20) and without (N = 0: every answer is a
  search); /similar-items answers are equal for k <= N (a lookup) and k > N (the fallback search).
Ties (the weight-decay model collapses some items onto one direction) may be ordered differently:
as in test_api_scores, the score lists must agree, and the ids wherever the score is not tied.

The builds (subprocesses) and servers (`python -m app`) make those tests slow; their fast twins at the
end run the same bodies on builds made in this process, and the API in this process (TestClient).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import faiss
import numpy as np
import pytest
from support.answers import TIE, same_answer
from support.artifacts import API_BUILD, ROOT, ApiArtifact, api_build, api_build_in_process, build_in_process
from support.in_process import in_process_server
from support.oracle import dense_oracle
from support.servers import start_api_server

from app.query.neighbours import neighbours_of_row, neighbours_of_rows
from app.serving.loader import load_version
from models.artifact.manifest import METRICS, SHARED_METRICS
from models.fit.closed_forms import MODELS
from models.indexes.faiss_index import flat_index
from models.indexes.neighbour_lists import exact_neighbours

N = 20
RTOL, ATOL = 2e-4, 2e-5  # float32 lists against the float64 oracle


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[ApiArtifact, ApiArtifact]:
    """(with lists, without lists): the same simulation, seed and parameters."""
    with_lists, without = tmp_path_factory.mktemp("with-lists"), tmp_path_factory.mktemp("without-lists")
    return (
        ApiArtifact(with_lists, api_build(with_lists, precompute_neighbours=N)),
        ApiArtifact(without, api_build(without, precompute_neighbours=0)),
    )


def manifest_of(art: ApiArtifact) -> dict:
    return json.loads((art.version_dir / "manifest.json").read_text())


@pytest.mark.slow
def test_lists_equal_brute_force(builds):
    art = builds[0]
    manifest = manifest_of(art)
    oracle = dense_oracle(art.version_dir, API_BUILD["lambda_denoising"], API_BUILD["lambda_weight_decay"])
    n_items = manifest["counts"]["items"]
    assert not any("neighbours" in e for key, e in manifest["indexes"].items() if key.startswith("users/"))
    files = set()
    for model in MODELS:
        for metric in METRICS:
            entry = manifest["indexes"][f"items/{model}/{metric}"]
            lists = entry["neighbours"]
            assert lists["n"] == N and not lists["complete"]
            assert {lists["ids"], lists["scores"]} <= set(manifest["files"])  # checksummed with the rest
            files.add(lists["ids"])
            ids = np.load(art.version_dir / lists["ids"])
            scores = np.load(art.version_dir / lists["scores"])
            assert ids.shape == scores.shape == (n_items, N) and ids.dtype == np.int32 and scores.dtype == np.float32
            rows = np.arange(n_items)[:, None]
            assert (ids != rows).all() and (ids >= 0).all() and (ids < n_items).all()
            assert all(len(set(r)) == N for r in ids.tolist())
            assert (np.diff(scores, axis=1) <= TIE).all()  # best first

            # numpy over the stored float32 vectors: exact scores, and the true top N of each row
            index = faiss.read_index(str(art.version_dir / entry["file"]))
            V = index.reconstruct_n(0, index.ntotal).astype(np.float64)
            G = V @ V.T
            np.testing.assert_allclose(scores, np.take_along_axis(G, ids, axis=1), rtol=1e-5, atol=1e-6)
            np.fill_diagonal(G, -np.inf)
            np.testing.assert_allclose(scores, -np.sort(-G, axis=1)[:, :N], rtol=1e-5, atol=1e-6)

            # the paper's quantities, from svd.npz and the interactions alone
            S = oracle.items(model, metric).copy()
            np.testing.assert_allclose(scores, np.take_along_axis(S, ids, axis=1), rtol=RTOL, atol=ATOL)
            np.fill_diagonal(S, -np.inf)
            np.testing.assert_allclose(scores, -np.sort(-S, axis=1)[:, :N], rtol=RTOL, atol=ATOL)
    # dot, cosine per model; each shared metric once per group (denoising, weight decay)
    assert len(files) == 2 * len(MODELS) + 2 * len(SHARED_METRICS)


def test_exact_neighbours_edge_cases():
    """Fewer rows than N (complete lists), a zero row and duplicated rows, against numpy."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 4)).astype(np.float32)
    x[2] = 0.0
    x[5] = x[6] = x[7]  # ties: the row itself may fall outside its top n + 1
    for n in (3, 8, 50):
        ids, scores = exact_neighbours(flat_index(x), x, n, block=4)
        w = min(n, 8)
        assert ids.shape == scores.shape == (9, w)
        G = x.astype(np.float64) @ x.T.astype(np.float64)
        np.testing.assert_allclose(scores, np.take_along_axis(G, ids, axis=1), rtol=1e-5, atol=1e-6)
        np.fill_diagonal(G, -np.inf)
        np.testing.assert_allclose(scores, -np.sort(-G, axis=1)[:, :w], rtol=1e-5, atol=1e-6)
        assert all(len(set(r)) == w for r in ids.tolist())
        assert all(i not in r for i, r in enumerate(ids.tolist()))  # in its top n + 1 it is dropped, else absent
    assert exact_neighbours(flat_index(x[:1]), x[:1], 5)[0].shape == (1, 0)


@pytest.mark.slow
def test_store_serves_the_lists_and_they_equal_the_search(builds):
    version = load_version(builds[0].version_dir)
    for key, index in version.indexes.items():
        if key.side == "users":
            assert index.neighbours is None
            continue
        assert index.neighbours is not None and index.neighbours.n == N
        searched = replace(index, neighbours=None)
        for row in (0, 17, 123, 299):
            for k in (1, N, N + 1, 70):
                rows, scores = neighbours_of_row(index, row, k)
                ref_rows, ref_scores = neighbours_of_row(searched, row, k)
                assert rows.dtype == np.int64 and scores.dtype == np.float32
                if k <= N:
                    assert rows.tolist() == index.neighbours.ids[row, :k].tolist()  # a lookup, not a search
                same_answer(rows, scores, ref_rows, ref_scores)


def check_batched_equal_single(version) -> None:
    """neighbours_of_rows (one gather or one search for many rows, each its own k) answers every row as
    neighbours_of_row does, on the stored lists, on the search, and with k on both sides of the lists' N."""
    rows = [0, 17, 123, 299, 17]
    ks = [1, N, N + 1, 70, 5]
    for key, index in version.indexes.items():
        if key.side == "users":
            continue
        for variant in (index, replace(index, neighbours=None)):
            for batch_rows, batch_ks in ((rows, ks), (rows[:2], ks[:2]), (rows[2:4], ks[2:4]), ([], [])):
                got = neighbours_of_rows(variant, batch_rows, batch_ks)
                assert len(got) == len(batch_rows)
                for row, k, (r, s) in zip(batch_rows, batch_ks, got, strict=True):
                    ref_rows, ref_scores = neighbours_of_row(variant, row, k)
                    assert r.dtype == np.int64 and s.dtype == np.float32 and len(r) == k
                    same_answer(r, s, ref_rows, ref_scores)


@pytest.mark.slow
def test_batched_neighbours_equal_one_query_at_a_time(builds):
    check_batched_equal_single(load_version(builds[0].version_dir))


@pytest.mark.slow
def test_api_answers_equal_the_search_path(builds, tmp_path):
    with_lists, without = builds
    m_with, m_without = manifest_of(with_lists), manifest_of(without)
    faiss_files = {f: meta["sha256"] for f, meta in m_with["files"].items() if f.endswith(".faiss")}
    assert faiss_files == {f: meta["sha256"] for f, meta in m_without["files"].items() if f.endswith(".faiss")}
    assert not any("neighbours" in f for f in m_without["files"])
    item_ids = [it["id"] for it in json.loads((with_lists.version_dir / "items.json").read_text())]
    with start_api_server(with_lists.root, tmp_path) as lists_server, start_api_server(without.root, tmp_path) as search_server:
        for model in MODELS:
            for metric in METRICS:
                for q in (0, 123):
                    for k in (1, 10, N, N + 1, 100):
                        params = {"item_id": item_ids[q], "model": model, "metric": metric, "k": k}
                        a = lists_server.client.get("/similar-items", params=params)
                        b = search_server.client.get("/similar-items", params=params)
                        assert a.status_code == b.status_code == 200, (a.text, b.text)
                        na, nb = a.json()["neighbors"], b.json()["neighbors"]
                        assert len(na) == k
                        same_answer(
                            np.array([item_ids.index(n["item_id"]) for n in na]),
                            np.array([n["score"] for n in na]),
                            np.array([item_ids.index(n["item_id"]) for n in nb]),
                            np.array([n["score"] for n in nb]),
                        )
                        by_id = {n["item_id"]: {**n, "score": None} for n in nb}
                        assert all({**n, "score": None} == by_id[n["item_id"]] for n in na if n["item_id"] in by_id)


@pytest.mark.slow
def test_negative_count_is_refused(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "models.build", "--out", str(tmp_path), "--precompute-neighbours", "-1", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--precompute-neighbours" in proc.stderr
    assert not (tmp_path / "CURRENT").exists()


# --------------------------------------------------------------------------- in-process (fast)


@pytest.fixture(scope="module")
def builds_in_process(tmp_path_factory: pytest.TempPathFactory) -> tuple[ApiArtifact, ApiArtifact]:
    """`builds`, made by the offline job's CLI called in this process."""
    with_lists, without = tmp_path_factory.mktemp("with-lists-here"), tmp_path_factory.mktemp("without-lists-here")
    return (
        ApiArtifact(with_lists, api_build_in_process(with_lists, precompute_neighbours=N)),
        ApiArtifact(without, api_build_in_process(without, precompute_neighbours=0)),
    )


def test_lists_equal_brute_force_in_process(builds_in_process):
    test_lists_equal_brute_force(builds_in_process)


def test_store_serves_the_lists_and_they_equal_the_search_in_process(builds_in_process):
    test_store_serves_the_lists_and_they_equal_the_search(builds_in_process)


def test_batched_neighbours_equal_one_query_at_a_time_in_process(builds_in_process):
    check_batched_equal_single(load_version(builds_in_process[0].version_dir))


def test_api_answers_equal_the_search_path_in_process(builds_in_process, tmp_path, monkeypatch):
    """The same requests to the API in this process (create_app + TestClient) instead of two servers."""
    monkeypatch.setattr(sys.modules[__name__], "start_api_server", in_process_server)
    test_api_answers_equal_the_search_path(builds_in_process, tmp_path)


def test_negative_count_is_refused_in_process(tmp_path):
    proc = build_in_process(["--out", str(tmp_path), "--precompute-neighbours", "-1", "--quiet"])
    assert proc.returncode == 2 and "--precompute-neighbours" in proc.stderr
    assert not (tmp_path / "CURRENT").exists()


# --------------------------------------------------------------------------- the CLI's default: lists where they are cheap


def _items_lists(version_dir) -> dict[str, dict | None]:
    manifest = json.loads((version_dir / "manifest.json").read_text())
    return {key: entry.get("neighbours") for key, entry in manifest["indexes"].items()}


def test_default_lists_the_item_indexes_served_exactly(tmp_path):
    """No flag: the item indexes of at most --exact-max-rows rows (API_BUILD's 300 items: all of them) get exact top-100
    lists, equal to a brute force over their stored vectors; user indexes never do."""
    art = ApiArtifact(tmp_path, api_build_in_process(tmp_path))
    lists = _items_lists(art.version_dir)
    items = {k: v for k, v in lists.items() if k.startswith("items/")}
    assert items and all(v is not None and v["n"] == 100 for v in items.values()), items
    assert all(v is None for k, v in lists.items() if k.startswith("users/"))
    manifest = json.loads((art.version_dir / "manifest.json").read_text())
    key = "items/denoising-symmetric/cosine"
    vectors = faiss.read_index(str(art.version_dir / manifest["indexes"][key]["file"])).reconstruct_n(0, API_BUILD["sim_items"])
    ids = np.load(art.version_dir / items[key]["ids"])
    scores = vectors.astype(np.float64) @ vectors.astype(np.float64).T
    np.fill_diagonal(scores, -np.inf)
    best = -np.sort(-scores, axis=1)[:, :100]
    got = np.take_along_axis(scores, ids.astype(np.int64), axis=1)
    np.testing.assert_allclose(got, best, rtol=RTOL, atol=ATOL)


def test_default_skips_lists_above_exact_max_rows_and_an_explicit_count_does_not(tmp_path):
    """300 items > --exact-max-rows 200: the default stores no lists (the IVF twin serves); --precompute-neighbours 10
    stores them whatever the size."""
    auto, explicit = tmp_path / "auto", tmp_path / "explicit"
    lists_auto = _items_lists(ApiArtifact(auto, api_build_in_process(auto, exact_max_rows=200)).version_dir)
    assert all(v is None for v in lists_auto.values()), lists_auto
    lists_n = _items_lists(
        ApiArtifact(explicit, api_build_in_process(explicit, exact_max_rows=200, precompute_neighbours=10)).version_dir
    )
    assert all(v is not None and v["n"] == 10 for k, v in lists_n.items() if k.startswith("items/"))


def test_unreadable_count_is_refused_in_process(tmp_path):
    proc = build_in_process(["--out", str(tmp_path), "--precompute-neighbours", "some", "--quiet"])
    assert proc.returncode == 2 and "--precompute-neighbours" in proc.stderr and "auto" in proc.stderr
    assert not (tmp_path / "CURRENT").exists()
