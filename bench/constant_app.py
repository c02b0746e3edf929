"""The benchmark's reference: a minimal FastAPI app returning a constant JSON body.

    python bench/constant_app.py --port 8101 --workers 2 --body-file body.json
    python bench/constant_app.py --port 8101 --workers 2 --body-dir bodies/

GET /similar-items (any query string) answers the bytes of --body-file (a real /similar-items
response, so both sides send the same number of bytes) from an async endpoint without
serialisation: the floor of FastAPI + uvicorn per request. With --body-dir, every `<name>.json` in it
is answered the same way at its own fixed route GET /<name> (one reference for several endpoints,
each with the size of its own real response). uvicorn runs with exactly the options `python -m app`
uses (app.__main__.uvicorn_options).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BODY = Path(os.environ["CONSTANT_BODY_FILE"]).read_bytes() if os.environ.get("CONSTANT_BODY_FILE") else b'{"ok":true}'

app = FastAPI()


@app.get("/similar-items")
async def constant() -> Response:
    return Response(content=BODY, media_type="application/json")


def _constant_route(body: bytes) -> Callable[[], Coroutine[Any, Any, Response]]:
    async def constant_body() -> Response:
        return Response(content=body, media_type="application/json")

    return constant_body


if os.environ.get("CONSTANT_BODY_DIR"):
    for _file in sorted(Path(os.environ["CONSTANT_BODY_DIR"]).glob("*.json")):
        app.add_api_route(f"/{_file.stem}", _constant_route(_file.read_bytes()), methods=["GET"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--body-file", default=None)
    ap.add_argument("--body-dir", default=None)
    args = ap.parse_args()
    if args.body_file:
        os.environ["CONSTANT_BODY_FILE"] = str(Path(args.body_file).resolve())
    if args.body_dir:
        os.environ["CONSTANT_BODY_DIR"] = str(Path(args.body_dir).resolve())
    sys.path.insert(0, str(ROOT))
    import uvicorn

    from app.__main__ import uvicorn_options
    from app.settings import Settings

    options = uvicorn_options(Settings(host=args.host, port=args.port, workers=args.workers))
    uvicorn.run("constant_app:app", app_dir=str(HERE), **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
