"""Servers of the HTTP tests of tests/api/: real `python -m app` processes on the session's fixture artifacts; and
the browser of the page tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page
from support.artifacts import ApiArtifact
from support.browser import chromium, watched_page
from support.servers import ApiServer, start_api_server, wait_serving


@pytest.fixture(scope="session")
def api_server(api_artifact: ApiArtifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """The API as `make demo` runs it (2 workers), on the session's fixture artifact; `.client` is an httpx.Client."""
    with start_api_server(api_artifact.root, tmp_path_factory.mktemp("api-server"), workers=2) as server:
        wait_serving(server, api_artifact.version, 2)  # start_api_server returns once the first worker is ready
        yield server


@pytest.fixture(scope="session")
def diag_server(diag_artifact: ApiArtifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """`python -m app` (1 worker) on diag_artifact."""
    with start_api_server(diag_artifact.root, tmp_path_factory.mktemp("diag-server"), workers=1) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A fresh page and the errors it reports (support.browser.watched_page)."""
    with watched_page(browser) as watched:
        yield watched


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: SCREENSHOT_DIR, or a temporary folder."""
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
