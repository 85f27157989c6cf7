from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.live import LiveServer, find_chromium, start_live


@pytest.fixture(autouse=True)
def _need_chromium() -> None:
    if find_chromium() is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("Chromium is missing in CI: `make test` must install it", pytrace=False)
        pytest.skip("Chromium is not installed (make test installs it)")


@pytest.fixture
def live(flask_app: Any) -> Iterator[LiveServer]:
    server = start_live(flask_app)
    try:
        yield server
    finally:
        server.stop()
