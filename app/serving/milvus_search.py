"""Searches served by Milvus (VECTOR_BACKEND=milvus): one client per worker, one searcher per collection.

A MilvusSearcher has a FAISS index's search signature (scores (q, n) float32, rows (q, n) int64, -1 where fewer
were found), so every endpoint's search goes to Milvus unchanged. Every call is bounded by MILVUS_TIMEOUT; any
failure to reach or query Milvus raises BackendUnavailable, which the API answers with a 503 problem.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np

from models.artifact.manifest import MilvusEntry
from models.indexes.milvus_collections import MAX_TOPK, ROW, VEC, milvus_client

NOT_LOADED = 101  # Milvus's code for a search of a released collection
LOADED = "Loaded"
LOAD_TIMEOUT = 60.0  # loading a released collection back: longer than a search, once


class BackendUnavailable(RuntimeError):
    """Milvus could not be reached or did not answer within the timeout; the message says which and why."""


class MilvusBackend:
    """The worker's pymilvus client of `uri`, made on first use and again after a failure."""

    def __init__(self, uri: str, timeout: float) -> None:
        self.uri, self.timeout = uri, timeout
        self._client: Any = None
        self._lock = threading.Lock()
        self._loads: dict[str, threading.Lock] = {}

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = milvus_client(self.uri, self.timeout)
                except Exception as e:
                    raise BackendUnavailable(f"Milvus at {self.uri} is unreachable: {_reason(e)}") from e
            return self._client

    def loading(self, collection: str) -> threading.Lock:
        """The lock under which one thread of this worker loads a released collection."""
        with self._lock:
            return self._loads.setdefault(collection, threading.Lock())

    def forget(self) -> None:
        """Drop the client after a failure: the next call connects again (a restarted server, a new address)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            # closing a client whose server is gone may fail too; it is dropped either way
            with contextlib.suppress(Exception):
                client.close()

    def call(self, what: str, fn: Any) -> Any:
        """fn(client), any failure raised as BackendUnavailable naming `what`."""
        client = self.client()
        try:
            return fn(client)
        except Exception as e:
            self.forget()
            raise BackendUnavailable(f"Milvus at {self.uri}: {what} failed: {_reason(e)}") from e

    def problem(self) -> str | None:
        """None when Milvus answers a cheap call within the timeout, else why not (for /readyz)."""
        try:
            self.collections()
        except BackendUnavailable as e:
            return str(e)
        return None

    def collections(self) -> set[str]:
        return set(self.call("listing collections", lambda c: c.list_collections(timeout=self.timeout)))


class MilvusSearcher:
    """The search of one collection (models.artifact.manifest.MilvusEntry), as loader.Searcher."""

    def __init__(self, backend: MilvusBackend, entry: MilvusEntry) -> None:
        self.backend, self.entry = backend, entry

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores (q, n) float32, rows (q, n) int64) of the n largest inner products per query (q, dim)."""
        q = int(queries.shape[0])
        scores = np.full((q, n), -np.finfo(np.float32).max, dtype=np.float32)
        rows = np.full((q, n), -1, dtype=np.int64)
        limit = min(n, self.entry.rows, MAX_TOPK)
        if q == 0 or limit == 0:
            return scores, rows
        data = np.ascontiguousarray(queries, dtype=np.float32).tolist()
        params = {"metric_type": "IP", "params": dict(self.entry.search_params)}

        def once(c: Any) -> Any:
            return c.search(
                self.entry.collection,
                data=data,
                limit=limit,
                anns_field=VEC,
                search_params=params,
                output_fields=[ROW],
                timeout=self.backend.timeout,
            )

        def search(c: Any) -> Any:
            try:
                return once(c)
            except Exception as e:
                if getattr(e, "code", None) != NOT_LOADED:
                    raise
            # released (a restarted server loads nothing by itself): load it once, then search again
            with self.backend.loading(self.entry.collection):
                state = c.get_load_state(self.entry.collection, timeout=self.backend.timeout).get("state")
                if getattr(state, "name", str(state)) != LOADED:
                    c.load_collection(self.entry.collection, timeout=LOAD_TIMEOUT)
            return once(c)

        hits = self.backend.call(f"searching {self.entry.collection}", search)
        for i, hit in enumerate(hits):
            m = len(hit)
            rows[i, :m] = [h[ROW] for h in hit]
            scores[i, :m] = [h["distance"] for h in hit]
        return scores, rows


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text if len(text) <= 300 else text[:300] + "..."
