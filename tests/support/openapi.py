"""Write the shipped OpenAPI document: ``python -m tests.support.openapi docs/openapi.json`` (``make openapi``).

The document depends only on the route table and the routes' declared schemas, but those live on the
Flask app that create_app builds, so an app is built here on a throwaway SQLite path and key (nothing
is opened, queried or stored). tests/api/test_openapi.py fails while the shipped copy is stale.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support.app import new_kek_env, test_settings


def current_document() -> dict[str, Any]:
    from appliance.api.openapi import document
    from appliance.app import create_app
    from appliance.services.context import Appliance

    with tempfile.TemporaryDirectory() as scratch:
        settings = test_settings(f"sqlite:///{scratch}/unused.db", Path(scratch), new_kek_env())
        return document(create_app(Appliance(settings)))


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.support.openapi PATH", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(render(current_document()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
