"""Valuation tests: appliances pointed at the simulators (the sync tests' fixtures), with helpers to sync, price
and read values through the API."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.access.helpers import auth, token
from tests.support.sim import RunningSim
from tests.sync.conftest import https_client, sim_account, sta, sta_factory  # noqa: F401  (fixtures shared with the sync tests)

HOUR_MS = 3_600_000


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[requests.PreparedRequest]:
    """Every HTTP request this process sends from now on (recorded at the transport adapter, below ccxt and the
    egress layer)."""
    log: list[requests.PreparedRequest] = []
    real = requests.adapters.HTTPAdapter.send

    def recording(self: Any, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        log.append(request)
        return real(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", recording)
    return log


def poll(built: Any, *connection_ids: int) -> None:
    from appliance.services.sync import run_cycle

    for connection_id in connection_ids:
        cycle = run_cycle(built.appliance, only=connection_id, force=True)
        assert cycle.outcomes and not cycle.failed, cycle.lines()


def price(built: Any, **kwargs: Any) -> Any:
    from appliance.services.valuation.job import run_pricing

    return run_pricing(built.appliance, **kwargs)


def sync_and_price(built: Any, *connection_ids: int) -> Any:
    """Poll the connections now, then run the pricing job once; returns the pricing result."""
    poll(built, *connection_ids)
    return price(built)


def employee_of(built: Any, connection_id: int) -> int:
    from appliance.store.models import Connection

    with built.store.read() as session:
        row = session.get(Connection, connection_id)
        assert row is not None
        return int(row.employee_id)


def api_get(built: Any, path: str, persona: str = "alice") -> dict[str, Any]:
    client = https_client(built)
    response = client.get(f"/api/v1{path}", headers=auth(token(client, built, persona)))
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def set_balances(sim: RunningSim, venue: str, api_key: str, balances: dict[str, str]) -> None:
    """Replace the simulated account's balances (in process: some keys hold characters a URL path would mangle)."""
    _venue_sim, account = sim_account(sim, venue, api_key)
    with sim.app.state.lock:
        account.balances.clear()
        account.balances.update({asset: Decimal(amount) for asset, amount in balances.items()})


def add_trade(sim: RunningSim, venue: str, api_key: str, **spec: Any) -> str:
    venue_sim, account = sim_account(sim, venue, api_key)
    with sim.app.state.lock:
        (trade,) = venue_sim.add_trades(account, 0, explicit=[spec])
    return str(trade.id)


def sim_price(sim: RunningSim, venue: str, base: str, quote: str, at: dt.datetime | None = None) -> Decimal:
    """What the simulated venue quotes for base/quote at ``at`` (now by default)."""
    when = at or dt.datetime.now(dt.UTC)
    return sim.app.state.prices.price(venue, base, quote, int(when.timestamp() * 1000))


def sim_candle_close(sim: RunningSim, venue: str, base: str, quote: str, open_at: dt.datetime,
                     step_ms: int = HOUR_MS) -> Decimal:
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    return sim.app.state.prices.candle(venue, base, quote, int(open_at.timestamp() * 1000), step_ms, now).close


def near(value: Decimal, expected: Decimal, tolerance: Decimal = Decimal("0.005")) -> bool:
    """Within a relative tolerance (prices move between the sim's answer and the test's own reckoning)."""
    return abs(value - expected) <= abs(expected) * tolerance
