"""Screenshots of the comparison page for the README (docs/img/compare-*.png), with Debian's headless chromium.

    .venv/bin/python tools/compare_screenshots.py --base http://127.0.0.1:8000 --item 208 --out docs/img/compare-goodbooks.png
    .venv/bin/python tools/compare_screenshots.py --base http://127.0.0.1:8001 --summary --out docs/img/compare-summary.png
    .venv/bin/python tools/compare_screenshots.py --base http://127.0.0.1:8000 --tab models --out docs/img/models-goodbooks.png

--item: open the comparison of that item (typed into the search box and picked from the suggestions, as a person would);
--summary: the summary tab (tables and heatmaps); --tab models|evaluation: that tab.
Needs `python -m app` running on the version to show.
A relative --out is relative to the repository root (docs/img/ holds the README's screenshots).
Chromium: $CHROMIUM, default /usr/bin/chromium (Debian's package; never `playwright install`).
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.harness import CHROMIUM, CHROMIUM_ARGS, get_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--item")
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--tab", choices=("models", "evaluation"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--width", type=int, default=1400)
    a = ap.parse_args()
    out = ROOT / a.out
    from playwright.sync_api import sync_playwright  # after --help: a dev dependency

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": a.width, "height": 900})
        page.set_default_timeout(30_000)
        page.goto(a.base + "/")
        page.wait_for_function("() => !document.getElementById('version').textContent.startsWith('loading')")
        if a.item:
            found = get_json(f"{a.base}/items/search?{urllib.parse.urlencode({'q': a.item, 'limit': 1})}")
            title = found["items"][0]["title"]
            page.fill("#search", title[:12])
            page.wait_for_selector(f"#suggestions li[data-id='{a.item}']")
            page.click(f"#suggestions li[data-id='{a.item}']")
            page.wait_for_selector("#columns .col li[data-id]")
            page.hover("#columns .col[data-list='projected'] li[data-id]")  # shows the cross-column highlight
        if a.summary:
            page.click("#tab-summary")
            page.wait_for_selector("#summary table.summary-quality")
            page.wait_for_function(
                "() => { const i = document.getElementById('heatmap-grid'); return !i || (i.complete && i.naturalWidth > 0); }"
            )
        if a.tab:
            page.click(f"#tab-{a.tab}")
            page.wait_for_selector(f"#view-{a.tab} table")
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    print(out)


if __name__ == "__main__":
    main()
