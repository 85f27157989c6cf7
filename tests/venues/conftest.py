"""Fixtures for adapter tests: settings pointing every venue at the session's simulators."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.settings import VENUE_IDS, Settings, settings_from_mapping
from appliance.venues.registry import VenueRegistry
from tests.support.sim import RunningSim


def sim_settings(sim: RunningSim, **venue_overrides: dict[str, object]) -> Settings:
    venues = {v: {"base_url": sim.base_url(v), "requests_per_second": 1000} for v in VENUE_IDS}
    for venue, override in venue_overrides.items():
        venues[venue].update(override)
    return settings_from_mapping({"data_dir": "/nonexistent/vigatra", "venues": venues,
                                  "egress": {"timeout_seconds": 5}})


@pytest.fixture
def registry(sim: RunningSim) -> Iterator[VenueRegistry]:
    yield VenueRegistry(sim_settings(sim))
    sim.clear_faults()
