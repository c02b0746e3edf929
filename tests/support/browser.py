"""Debian's headless Chromium for the page tests, through Playwright: where it is, how it is started, and a page
that records what goes wrong on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from bench.harness import CHROMIUM, CHROMIUM_ARGS  # the flags the benchmarks and tools/compare_screenshots.py use

TIMEOUT_MS = 20_000


@contextmanager
def chromium() -> Iterator[Browser]:
    """A launched Chromium; skips the test (naming the reason) when there is none or it cannot start."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium; .ci/run does it as root)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000)
        except PlaywrightError as e:
            pytest.skip(f"Chromium at {CHROMIUM} cannot be launched: {str(e).splitlines()[0]}")
        try:
            yield b
        finally:
            b.close()


@contextmanager
def watched_page(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A fresh page and the errors it reports (console errors with their source, uncaught exceptions, CSP
    violations, failed requests)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []

    def on_console(m: Any) -> None:
        if m.type == "error":
            errors.append(f"console: {m.text} @ {m.location.get('url', '')}")

    pg.on("console", on_console)
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("requestfailed", lambda r: errors.append(f"requestfailed: {r.url}"))
    try:
        yield pg, errors
    finally:
        context.close()
