"""The API's OpenAPI schema as the app generates it, and the reviewed copy checked in beside this file.

`make openapi` rewrites tests/openapi.json from the app (run it after a deliberate change of the public
contract and review the diff); tests/api/test_contract.py fails while the running server's schema differs
from the checked-in one, and generates its property tests from the checked-in one.
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import Any

CHECKED_IN = Path(__file__).resolve().with_name("openapi.json")


def generated_schema() -> dict[str, Any]:
    """The schema of `python -m app` with its default settings (no ADMIN_TOKEN: no admin endpoint)."""
    from app.main import create_app
    from app.settings import Settings

    # Explicit values win over the environment, so a developer's ADMIN_TOKEN cannot leak into the contract.
    return create_app(Settings(admin_token=None)).openapi()


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def diff(expected: dict[str, Any], actual: dict[str, Any], limit: int = 80) -> str:
    """A unified diff of two schemas as `make openapi` writes them, cut to `limit` lines."""
    lines = list(
        difflib.unified_diff(
            dumps(expected).splitlines(), dumps(actual).splitlines(), "tests/openapi.json", "served", lineterm="", n=2
        )
    )
    return "\n".join(lines[:limit] + ([f"... {len(lines) - limit} more lines"] if len(lines) > limit else []))


def main() -> int:
    schema = generated_schema()
    old = json.loads(CHECKED_IN.read_text(encoding="utf-8")) if CHECKED_IN.exists() else {}
    CHECKED_IN.write_text(dumps(schema), encoding="utf-8")
    if old == schema:
        print(f"{CHECKED_IN.name}: unchanged")
    else:
        print(f"{CHECKED_IN.name}: rewritten; review the change of the public contract:\n{diff(old, schema)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
