"""Valuation tests: appliances pointed at the simulators (the sync tests' fixtures), with helpers to sync,
price and read values."""

from __future__ import annotations

from typing import Any

from tests.sync.conftest import sta, sta_factory  # noqa: F401  (fixtures shared with the sync tests)


def sync_and_price(built: Any, *connection_ids: int) -> Any:
    """Poll the connections now, then run the pricing job once; returns the pricing result."""
    from appliance.services.sync import run_cycle
    from appliance.services.valuation.job import run_pricing

    for connection_id in connection_ids:
        cycle = run_cycle(built.appliance, only=connection_id, force=True)
        assert cycle.outcomes and not cycle.failed, cycle.lines()
    return run_pricing(built.appliance)
