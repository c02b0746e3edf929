"""The benchmark's reference: a minimal FastAPI app returning a constant JSON body.

    python bench/constant_app.py --port 8101 --workers 2 --body-file body.json

GET /similar-items (any query string) answers the bytes of --body-file (a real /similar-items
response, so both sides send the same number of bytes) from an async endpoint without
serialisation: the floor of FastAPI + uvicorn per request. uvicorn runs with exactly the options
`python -m app` uses (app.__main__.uvicorn_options).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BODY = Path(os.environ["CONSTANT_BODY_FILE"]).read_bytes() if os.environ.get("CONSTANT_BODY_FILE") else b'{"ok":true}'

app = FastAPI()


@app.get("/similar-items")
async def constant() -> Response:
    return Response(content=BODY, media_type="application/json")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--body-file", required=True)
    args = ap.parse_args()
    os.environ["CONSTANT_BODY_FILE"] = str(Path(args.body_file).resolve())
    sys.path.insert(0, str(ROOT))
    import uvicorn

    from app.__main__ import uvicorn_options
    from app.settings import Settings

    options = uvicorn_options(Settings(host=args.host, port=args.port, workers=args.workers))
    uvicorn.run("constant_app:app", app_dir=str(HERE), **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
