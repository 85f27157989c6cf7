"""Shared pieces of the sync engine tests: an appliance pointed at the simulators, onboarding a key
through the real path (probe, seal), the simulator's ground truth, and a config file that lets a
`vigatra` subprocess work on the same database against the same simulators."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, update

from appliance.rbac.actors import system_actor
from appliance.services import employees, onboarding
from appliance.store.models import BalanceSnapshot, Connection, Transaction
from appliance.venues.base import Credentials
from tests.support.app import FAST_ARGON2, TestAppliance, build
from tests.support.proc import VIGATRA
from tests.support.sim import RunningSim


def sim_venues(sim: RunningSim, rate: float = 1000) -> dict[str, Any]:
    from appliance.settings import VENUE_IDS

    return {v: {"base_url": sim.base_url(v), "requests_per_second": rate} for v in VENUE_IDS}


@pytest.fixture
def sta_factory(db_url: str, tmp_path: Path, sim: RunningSim) -> Iterator[Callable[..., TestAppliance]]:
    """Build appliances on this test's database, pointed at the simulators; ``poller={...}`` etc. override."""
    built: list[TestAppliance] = []

    def make(**overrides: Any) -> TestAppliance:
        overrides.setdefault("venues", sim_venues(sim))
        one = build(db_url, tmp_path / f"data{len(built) or ''}", **overrides)
        one.overrides = overrides  # type: ignore[attr-defined]  # write_config repeats them for subprocesses
        built.append(one)
        return one

    yield make
    for one in built:
        one.appliance.close()
    sim.clear_faults()


@pytest.fixture
def sta(sta_factory: Callable[..., TestAppliance]) -> TestAppliance:
    return sta_factory()


def onboard(sta: Any, sim: RunningSim, venue: str, permissions: list[str] | None = None,
            history: dict[str, int] | None = None, key: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """Create a key in the simulator (or use ``key``), a link for a new employee, probe the key and store it as
    the onboarding page does. Returns (connection id, the simulator's key)."""
    app = sta.appliance
    key = key or sim.create_key(venue, permissions or ["read"], history=history)
    with app.store.unit_of_work() as session:
        person = employees.create(session, name=f"E {key['api_key'][:6]}",
                                  email=f"{key['api_key'][:12].replace('/', '-')}@example.com")
        row, _token = onboarding.create_link(session, system_actor("t"), sta.settings, person.id)
        link = onboarding.Link(row.id, row.employee_id, row.purpose, False, row.expires_at)
    return submit_key(sta, link, venue, key), key


def submit_key(sta: Any, link: Any, venue: str, key: dict[str, Any]) -> int:
    """Probe ``key`` and store it on ``link`` as the onboarding page does; the new connection's id."""
    app = sta.appliance
    adapter = app.venues.get(venue)
    creds = Credentials(key["api_key"], key["api_secret"], key.get("passphrase") or "")
    outcome = onboarding.probe(adapter, creds, "accept_unverified")
    assert outcome.accepted, outcome.message
    with app.store.unit_of_work() as session:
        return int(onboarding.record_key_submission(session, app.keys, link, adapter, creds, outcome,
                                                    app.keys.derive("fingerprint")).id)


def https_client(sta: Any) -> Any:
    """A Flask test client of ``sta``'s app whose requests arrive over TLS from loopback."""
    from flask.testing import FlaskClient

    from appliance.app import create_app

    class HttpsClient(FlaskClient):
        def open(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("base_url", "https://localhost")
            return super().open(*args, **kwargs)

    flask_app = create_app(sta.appliance)
    flask_app.test_client_class = HttpsClient
    return flask_app.test_client()


# -- the simulator's ground truth (the simulator runs in this process) ------------------------------

def sim_account(sim: RunningSim, venue: str, api_key: str) -> tuple[Any, Any]:
    venue_sim = sim.app.state.venues[venue]
    return venue_sim, venue_sim.keys[api_key].account


def sim_stream_ids(sim: RunningSim, venue: str, api_key: str, stream: str) -> set[str]:
    venue_sim, account = sim_account(sim, venue, api_key)
    with sim.app.state.lock:
        return set(venue_sim.stream_ids(account, stream))


def sim_balances(sim: RunningSim, venue: str, api_key: str) -> dict[str, Decimal]:
    """Non-zero balances as the venue holds them."""
    _venue_sim, account = sim_account(sim, venue, api_key)
    with sim.app.state.lock:
        return {asset: amount for asset, amount in account.balances.items() if amount}


def stored_ids(sta: Any, connection_id: int, stream: str) -> list[str]:
    """Every stored venue id of one stream (a list: a duplicate would show twice)."""
    with sta.store.read() as session:
        return list(session.execute(select(Transaction.venue_tx_id).where(
            Transaction.connection_id == connection_id, Transaction.stream == stream)).scalars())


def current_balances(sta: Any, connection_id: int) -> dict[str, Decimal]:
    """The open balance observations, summed per asset over sub-accounts, zeros left out."""
    out: dict[str, Decimal] = {}
    with sta.store.read() as session:
        for asset, amount in session.execute(select(BalanceSnapshot.asset, BalanceSnapshot.amount).where(
                BalanceSnapshot.connection_id == connection_id, BalanceSnapshot.valid_to.is_(None))):
            out[asset] = out.get(asset, Decimal(0)) + amount
    return {k: v for k, v in out.items() if v}


def detached(session: Any, rows: list[Any]) -> list[Any]:
    """Rows usable after a read session ends (its rollback would expire them otherwise)."""
    for row in rows:
        session.expunge(row)
    return rows


def connection(sta: Any, connection_id: int) -> Connection:
    with sta.store.read() as session:
        row = session.get(Connection, connection_id)
        assert row is not None
        session.expunge(row)  # a detached snapshot: the read session's rollback must not expire it
        return row


def make_due(sta: Any, *ids: int, **shift: float) -> None:
    """Make connections due now, optionally moving their stored times back (``hours=1``) to simulate
    the passing of time without waiting for it."""
    now = dt.datetime.now(dt.UTC)
    with sta.store.unit_of_work() as session:
        session.execute(update(Connection).where(Connection.id.in_(ids)).values(
            next_poll_at=now - dt.timedelta(seconds=1), lease_owner=None, lease_expires_at=None))
        if shift:
            delta = dt.timedelta(**shift)
            for row in session.execute(select(Connection).where(Connection.id.in_(ids))).scalars():
                for name in ("scope_checked_at", "last_success_at", "last_attempt_at", "created_at"):
                    if getattr(row, name) is not None:
                        setattr(row, name, getattr(row, name) - delta)


# -- subprocesses -----------------------------------------------------------------------------------

def write_config(sta: Any, path: Path, **overrides: Any) -> Path:
    """A YAML config for a `vigatra` subprocess: the same database, KEK variable and simulators as
    ``sta`` (built by sta_factory), with section overrides merged in (``poller={"workers": 2}``)."""
    settings = sta.settings
    raw: dict[str, Any] = {
        "data_dir": str(settings.data_dir),
        "appliance_id": settings.appliance_id,
        "database": {"url": settings.database.url},
        "keys": {"provider": "env", "env_var": settings.keys.env_var},
        "auth": dict(FAST_ARGON2),
        "poller": {"enabled": False},
    }
    for section, values in {**getattr(sta, "overrides", {}), **overrides}.items():
        if isinstance(values, dict) and isinstance(raw.get(section), dict):
            raw[section] = {**raw[section], **values}
        else:
            raw[section] = values
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def vigatra(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `vigatra --config CONFIG ARGS...` in a subprocess (the KEK variable is inherited)."""
    return subprocess.run([*VIGATRA, "--config", str(config), *args], check=False, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))
