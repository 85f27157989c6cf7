"""Conduct rules and cases, end to end: employees onboarded against the simulators through the real
path (ccxt, signatures verified), synced by the real engine, rules driven through the API."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.support.app import TestAppliance
from tests.support.sim import RunningSim
from tests.sync import conftest as sync_fixtures
from tests.sync.conftest import https_client

# The sync tests' appliance factory (pointed at the simulators), shared as a fixture here.
sta_factory = sync_fixtures.sta_factory

# An account with no seeded activity: each test makes exactly the trades it judges.
QUIET = {"trades": 0, "deposits": 0, "withdrawals": 0}


def ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def days_ago(days: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=days)


def add_trades(sim: RunningSim, venue: str, key: dict[str, Any], trades: list[dict[str, Any]]) -> None:
    """Explicit trades at the venue (``when`` a datetime), as the employee made them."""
    body = [{**{k: v for k, v in t.items() if k != "when"}, "timestamp": ms(t["when"])} for t in trades]
    sim.control("POST", f"{venue}/keys/{key['api_key']}/trades", {"trades": body})


def sync(sta: Any, *connection_ids: int) -> None:
    from appliance.services.sync import run_cycle

    for connection_id in connection_ids:
        result = run_cycle(sta.appliance, only=connection_id, force=True)
        assert all(o.ok for o in result.outcomes), result.lines()


def employee_of(sta: Any, connection_id: int) -> int:
    from appliance.store.models import Connection

    with sta.store.read() as session:
        row = session.get(Connection, connection_id)
        assert row is not None
        return int(row.employee_id)


class Api:
    """The JSON API as one persona sees it."""

    def __init__(self, client: Any, sta: Any, name: str) -> None:
        self.client = client
        persona = sta.personas[name]
        response = client.post("/api/v1/auth/token", json={"username": name, "password": persona.password})
        assert response.status_code == 200, response.get_json()
        self.headers = {"Authorization": f"Bearer {response.get_json()['access_token']}"}

    def get(self, path: str, status: int = 200) -> Any:
        response = self.client.get(f"/api/v1{path}", headers=self.headers)
        assert response.status_code == status, (path, response.status_code, response.get_json())
        return response.get_json()

    def send(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = self.client.open(f"/api/v1{path}", method=method, headers=self.headers, json=body)
        assert response.status_code == status, (method, path, response.status_code, response.get_json())
        return response.get_json()

    def post(self, path: str, body: Any = None, status: int = 201) -> Any:
        return self.send("POST", path, body if body is not None else {}, status)


@pytest.fixture
def sta(sta_factory: Any) -> TestAppliance:
    built: TestAppliance = sta_factory()
    return built


@pytest.fixture
def api(sta: Any) -> Any:
    client = https_client(sta)

    def as_(name: str) -> Api:
        return Api(client, sta, name)

    return as_


def link_for(sta: Any, employee_id: int) -> Any:
    from appliance.rbac.actors import system_actor
    from appliance.services import onboarding

    with sta.store.unit_of_work() as session:
        row, _token = onboarding.create_link(session, system_actor("t"), sta.settings, employee_id)
        return onboarding.Link(row.id, row.employee_id, row.purpose, False, row.expires_at)


def new_employee(sta: Any, name: str, department: str = "") -> int:
    import secrets

    from appliance.services import employees

    with sta.store.unit_of_work() as session:
        return int(employees.create(session, name=name, email=f"{secrets.token_hex(4)}@example.com",
                                    department=department).id)


def onboard_key_for(sta: Any, sim: RunningSim, venue: str, employee_id: int) -> tuple[int, dict[str, Any]]:
    """Another venue key for an existing employee, stored as the onboarding page stores it."""
    from appliance.services import onboarding
    from appliance.venues.base import Credentials

    key = sim.create_key(venue, ["read"], history=QUIET)
    link = link_for(sta, employee_id)
    adapter = sta.appliance.venues.get(venue)
    creds = Credentials(key["api_key"], key["api_secret"], key.get("passphrase") or "")
    outcome = onboarding.probe(adapter, creds, "accept_unverified")
    assert outcome.accepted, outcome.message
    with sta.store.unit_of_work() as session:
        row = onboarding.record_key_submission(session, sta.appliance.keys, link, adapter, creds, outcome,
                                               sta.appliance.keys.derive("fingerprint"))
        return row.id, key


def onboard_wallet(sta: Any, employee_id: int, venue: str, address: str) -> int:
    from appliance.services import onboarding

    link = link_for(sta, employee_id)
    with sta.store.unit_of_work() as session:
        return int(onboarding.record_wallet(session, link, sta.appliance.venues.get(venue), address, venue).id)
