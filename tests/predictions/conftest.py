"""Fixtures for the prediction-market adapters: real clients against the session's simulators."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from appliance.settings import VENUE_IDS, settings_from_mapping
from appliance.venues.base import Page, TxRecord
from appliance.venues.egress import Egress
from appliance.venues.predictions import KalshiAdapter, PolymarketAdapter
from tests.support.sim import RunningSim


@pytest.fixture
def egress(sim: RunningSim) -> Iterator[Egress]:
    venues = {v: {"base_url": sim.base_url(v), "requests_per_second": 1000} for v in VENUE_IDS}
    settings = settings_from_mapping({"data_dir": "/nonexistent/vigatra", "venues": venues,
                                      "egress": {"timeout_seconds": 5}})
    yield Egress(settings)
    sim.clear_faults()


@pytest.fixture
def polymarket(egress: Egress) -> PolymarketAdapter:
    return PolymarketAdapter(egress)


@pytest.fixture
def kalshi(egress: Egress) -> KalshiAdapter:
    return KalshiAdapter(egress)


def drain(fetch: Any, stream: str, cursor: dict[str, Any] | None = None, max_pages: int = 100
          ) -> tuple[list[TxRecord], dict[str, Any], list[Page]]:
    """Every page of ``stream`` from ``cursor`` on, as the sync engine would ask for them."""
    records: list[TxRecord] = []
    pages: list[Page] = []
    cursor = dict(cursor or {})
    for _ in range(max_pages):
        page = fetch(stream, cursor)
        pages.append(page)
        records.extend(page.records)
        cursor = page.cursor
        if page.done:
            return records, cursor, pages
    raise AssertionError(f"{stream}: more than {max_pages} pages")
