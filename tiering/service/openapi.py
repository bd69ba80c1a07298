"""Write the API's OpenAPI document: `python -m tiering.service.openapi [schemas/openapi.json]`.

Built from the app itself (no database, no server), so the saved file always matches the code;
tests/e2e/test_api.py checks that it is up to date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    from tiering.context import Session
    from tiering.service.app import create_app
    from tiering.settings import Settings

    app = create_app(Session(Settings()), instance="openapi")
    return app.openapi()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    path.write_text(render())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
