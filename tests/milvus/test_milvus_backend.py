"""VECTOR_BACKEND=milvus against a real Milvus (milvus-lite's gRPC server): publishing loads and verifies one
collection per version and index and switches one alias per index; the API's answers equal the FAISS exact answers
for every model x metric x endpoint (ties aside); an alias switch under load fails no request; Milvus unreachable
is a 503 problem and /readyz says why, and serving resumes when it is back."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from support.load import LoadGenerator, neighbour_queries
from support.milvus import publish
from support.servers import start_api_server, wait_for, wait_serving

from models.artifact.manifest import METRICS, RECOMMEND_METRICS, milvus_alias, milvus_entries
from models.artifact.store import ArtifactStore
from models.indexes.milvus_collections import milvus_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def published(milvus, tmp_path_factory):
    out = tmp_path_factory.mktemp("milvus-art")
    proc = publish(out, milvus.uri)
    assert proc.returncode == 0, proc.stderr
    return out, ArtifactStore(out).current_version()


def _client(uri):
    return milvus_client(uri, timeout=10)


def test_publish_makes_verified_collections_and_aliases(milvus, published):
    out, version = published
    manifest = json.loads((out / "versions" / version / "manifest.json").read_text())
    entries = milvus_entries(manifest)
    files = {e["file"] for e in manifest["indexes"].values()} | {
        r["items"]["file"] for by in manifest["recommend"].values() for r in by.values()
    }
    assert set(entries) == files  # every index file, once
    client = _client(milvus.uri)
    present = set(client.list_collections())
    rows = {v["file"]: v["rows"] for v in manifest["indexes"].values()}
    for file, e in entries.items():
        assert e.collection in present and version.replace("-", "_") in e.collection
        assert e.rows == rows.get(file, e.rows)
        assert e.index_type == "FLAT" and e.recall_at_10 >= 0.99  # small indexes: exact, as the FAISS side
        assert client.describe_alias(e.alias)["collection_name"] == e.collection
        assert e.alias == milvus_alias(file)
        stats = client.query(e.collection, output_fields=["count(*)"])[0]["count(*)"]
        assert stats == e.rows


def _pairs(body):
    key = "neighbors" if "neighbors" in body else "items" if "items" in body else "recommendations"
    return [(entry.get("item_id") or entry.get("user_id"), entry["score"]) for entry in body[key]]


def _same_up_to_ties(a, b, what):
    ids_a, s_a = zip(*a, strict=True) if a else ((), ())
    ids_b, s_b = zip(*b, strict=True) if b else ((), ())
    assert len(ids_a) == len(ids_b), what
    tol = 1e-5 * max(1.0, max((abs(x) for x in s_a), default=1.0))
    np.testing.assert_allclose(s_a, s_b, atol=tol, err_msg=what)
    for i in set(ids_a) ^ set(ids_b):  # an id only one answer holds must score as the last one: a tie at the cut
        score = dict(a).get(i, dict(b).get(i))
        assert abs(score - s_a[-1]) <= tol, f"{what}: {i} is not a tie"


def test_answers_equal_faiss_exact_for_every_model_metric_endpoint(milvus, published, tmp_path):
    out, version = published
    vdir = out / "versions" / version
    models = json.loads((vdir / "manifest.json").read_text())["models"]
    queries = neighbour_queries(vdir, models, METRICS, ids=3, k=10)
    with (
        start_api_server(out, tmp_path, workers=1, SEARCH_MODE="exact") as faiss_api,
        start_api_server(out, tmp_path, workers=1, VECTOR_BACKEND="milvus", MILVUS_URI=milvus.uri) as milvus_api,
    ):
        served = milvus_api.client.get("/models").json()
        for m in served["models"].values():
            for info in m["indexes"].values():
                assert info["served_by"] == "milvus" and info["backend"] == "milvus" and info["collection"]
        ready = milvus_api.client.get("/readyz").json()
        assert ready["vector_backend"] == {"name": "milvus", "uri": milvus.uri, "reachable": True, "problem": None}
        endpoints = set()
        for path, params in queries:
            a, b = faiss_api.client.get(path, params=params), milvus_api.client.get(path, params=params)
            assert a.status_code == b.status_code == 200, (path, params, b.text)
            _same_up_to_ties(_pairs(a.json()), _pairs(b.json()), f"{path} {params}")
            endpoints.add(path)
        assert endpoints == {"/similar-items", "/similar-users", "/recommend"}
        # the batch endpoint and filters go through the same searches
        batch = {"queries": [{"item_id": p["item_id"], "k": 5} for path, p in queries[:3] if path == "/similar-items"]}
        a = faiss_api.client.post("/similar-items/batch", json=batch).json()
        b = milvus_api.client.post("/similar-items/batch", json=batch).json()
        for x, y in zip(a["results"], b["results"], strict=True):
            _same_up_to_ties(_pairs(x), _pairs(y), "batch")
    assert len(queries) >= len(models) * (2 * len(METRICS) + len(RECOMMEND_METRICS))


def test_alias_switch_under_load_fails_no_request(milvus, published, tmp_path):
    out, version = published
    vdir = out / "versions" / version
    queries = neighbour_queries(vdir, ["denoising-symmetric", "weight-decay"], ["dot", "cosine", "projected"], ids=3)
    alias = milvus_alias("indexes/items-denoising-projected.faiss")
    direct_errors: list[str] = []
    direct_done = threading.Event()
    seen_collections: set[str] = set()

    def direct_client() -> None:  # what a user of pymilvus does: search the alias
        client = _client(milvus.uri)
        rng = np.random.default_rng(0)
        while not direct_done.is_set():
            try:
                hits = client.search(alias, data=[rng.standard_normal(8).tolist()], limit=5, output_fields=["row"])
                assert len(hits[0]) == 5
                seen_collections.add(client.describe_alias(alias)["collection_name"])
            except Exception as e:
                direct_errors.append(repr(e))
            time.sleep(0.01)

    with start_api_server(out, tmp_path, workers=2, VECTOR_BACKEND="milvus", MILVUS_URI=milvus.uri, RELOAD_INTERVAL="0.5") as api:
        thread = threading.Thread(target=direct_client, daemon=True)
        thread.start()
        with LoadGenerator(api.base_url, queries, threads=4, max_seconds=300, pause=0.002) as load:
            time.sleep(2)
            proc = publish(out, milvus.uri, lambda_denoising=31.0)  # the same users and items: every query answers k
            assert proc.returncode == 0, proc.stderr
            new = ArtifactStore(out).current_version()
            assert new != version
            wait_serving(api, new, workers=2)
            time.sleep(1)
        result = load.result
        direct_done.set()
        thread.join(timeout=10)
    assert result.requests > 200 and not result.failures, "\n".join(result.failures[:8])
    assert {version, new} <= set(result.versions)
    assert not direct_errors, direct_errors[:3]
    assert len(seen_collections) == 2  # the alias named the old collection, then the new one
    client = _client(milvus.uri)
    assert new.replace("-", "_") in client.describe_alias(alias)["collection_name"]
    # both versions are kept (--keep 3): their collections stay; none of any other version
    names = client.list_collections()
    assert any(version.replace("-", "_") in n for n in names) and any(new.replace("-", "_") in n for n in names)


def test_retention_drops_the_collections_of_versions_not_kept(milvus, tmp_path):
    out = tmp_path / "art"
    versions = []
    for seed in (1, 2):
        proc = publish(out, milvus.uri, "--keep", "1", seed=seed, sim_users=200, sim_items=50, k=4)
        assert proc.returncode == 0, proc.stderr
        versions.append(ArtifactStore(out).current_version())
    names = _client(milvus.uri).list_collections()
    assert not any(versions[0].replace("-", "_") in n for n in names)
    assert any(versions[1].replace("-", "_") in n for n in names)


def test_unreachable_milvus_is_a_503_problem_and_readyz_says_why(milvus, published, tmp_path):
    out, _ = published
    version = ArtifactStore(out).current_version()  # the alias test may have published a newer one
    assert version is not None
    vdir = out / "versions" / version
    item = json.loads((vdir / "items.json").read_text())[0]["id"]
    with start_api_server(out, tmp_path, workers=1, VECTOR_BACKEND="milvus", MILVUS_URI=milvus.uri, MILVUS_TIMEOUT="1") as api:
        assert api.client.get("/similar-items", params={"item_id": item}).status_code == 200
        milvus.stop()
        try:
            t0 = time.monotonic()
            r = api.client.get("/similar-items", params={"item_id": item, "k": 3})
            took = time.monotonic() - t0
            assert r.status_code == 503 and took < 5, (r.status_code, took)
            body = r.json()
            assert r.headers["content-type"] == "application/problem+json" and r.headers["retry-after"] == "1"
            assert body["type"] == "/problems/vector-backend-unavailable" and milvus.uri in body["detail"]
            assert body["artifact_version"] == version
            ready = api.client.get("/readyz")
            assert ready.status_code == 503 and milvus.uri in ready.json()["detail"]
            assert api.client.get("/healthz").status_code == 200  # alive, only not ready
        finally:
            milvus.start()
        # back: the released collections are loaded again on first use, and answers resume
        wait_for(lambda: api.client.get("/readyz").status_code == 200, timeout=60, what="ready again")
        r = wait_for(
            lambda: (x := api.client.get("/similar-items", params={"item_id": item, "k": 3})).status_code == 200 and x,
            timeout=60,
            what="answers again",
        )
        assert len(r.json()["neighbors"]) == 3


def test_version_without_collections_is_refused(milvus, tmp_path):
    from support.artifacts import api_build

    out = tmp_path / "plain"
    api_build(out, sim_users=200, sim_items=50, k=4)
    with start_api_server(out, tmp_path, workers=1, ready="", VECTOR_BACKEND="milvus", MILVUS_URI=milvus.uri) as api:
        r = wait_for(lambda: (x := api.client.get("/readyz")).status_code == 503 and x, timeout=30, what="refusal")
        assert "not loaded into Milvus" in json.dumps(r.json())


def test_build_with_milvus_unreachable_publishes_nothing(tmp_path):
    out = tmp_path / "art"
    proc = publish(out, "http://127.0.0.1:9", sim_users=200, sim_items=50, k=4)
    assert proc.returncode == 1, proc.stderr
    assert "--milvus-uri http://127.0.0.1:9: cannot connect" in proc.stderr and "nothing was published" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert ArtifactStore(out).current_version() is None and not list(out.glob(".staging-*"))


def test_settings_need_a_uri():
    from pydantic import ValidationError

    from app.settings import Settings

    with pytest.raises(ValidationError, match="VECTOR_BACKEND=milvus needs MILVUS_URI"):
        Settings(vector_backend="milvus")
