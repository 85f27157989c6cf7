"""End to end through the real path: onboard a read-only key (probe, seal), poll once, read it back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from appliance.rbac.actors import system_actor
from appliance.services import employees, onboarding
from appliance.services.sync import run_cycle
from appliance.store.models import BalanceSnapshot, Connection, Transaction
from appliance.venues.base import Credentials
from tests.support.app import build
from tests.support.sim import RunningSim


def sim_venues(sim: RunningSim) -> dict[str, Any]:
    from appliance.settings import VENUE_IDS

    return {v: {"base_url": sim.base_url(v), "requests_per_second": 1000} for v in VENUE_IDS}


@pytest.fixture
def sta(db_url: str, tmp_path: Path, sim: RunningSim) -> Any:
    built = build(db_url, tmp_path / "data", venues=sim_venues(sim))
    yield built
    built.appliance.close()
    sim.clear_faults()


def onboard(sta: Any, sim: RunningSim, venue: str, permissions: list[str] | None = None,
            history: dict[str, int] | None = None) -> tuple[int, dict[str, Any]]:
    app = sta.appliance
    key = sim.create_key(venue, permissions or ["read"], history=history)
    with app.store.unit_of_work() as session:
        person = employees.create(session, name=f"E {key['api_key'][:6]}", email=f"{key['api_key'][:12]}@example.com")
        row, _token = onboarding.create_link(session, system_actor("t"), sta.settings, person.id)
        link = onboarding.Link(row.id, row.employee_id, row.purpose, False, row.expires_at)
    adapter = app.venues.get(venue)
    creds = Credentials(key["api_key"], key["api_secret"], key.get("passphrase") or "")
    outcome = onboarding.probe(adapter, creds, "accept_unverified")
    with app.store.unit_of_work() as session:
        connection = onboarding.record_key_submission(session, app.keys, link, adapter, creds, outcome,
                                                      app.keys.derive("fingerprint"))
        return connection.id, key


def test_onboard_and_poll(sta: Any, sim: RunningSim) -> None:
    connection_id, key = onboard(sta, sim, "kraken", history={"trades": 30, "deposits": 5, "withdrawals": 3})
    result = run_cycle(sta.appliance)
    assert [o.ok for o in result.outcomes] == [True], result.lines()
    with sta.store.read() as session:
        status = session.get(Connection, connection_id).status  # type: ignore[union-attr]
        txs = session.execute(select(func.count()).select_from(Transaction)).scalar_one()
        balances = session.execute(select(func.count()).select_from(BalanceSnapshot)).scalar_one()
    assert status == "active"
    assert txs > 0
    assert balances > 0
    again = run_cycle(sta.appliance, only=connection_id, force=True)
    assert again.outcomes[0].ok
    assert again.outcomes[0].records == 0
