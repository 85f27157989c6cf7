"""Connection health: a revoked key turns the connection red in the same cycle and raises an alert;
with ``require_reonboarding_after_break`` it stays red after the key works again until a new key
arrives through a new link; a key that gained trade permission stops being used; "sync now"."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from appliance.rbac.actors import system_actor
from appliance.services import employees as employee_service
from appliance.services import onboarding
from appliance.services.sync import run_cycle
from appliance.store.models import Alert, AuditEvent, Connection, CoverageInterval
from tests.access.helpers import auth, csrf_of, login_session, token
from tests.support.sim import RunningSim
from tests.sync.conftest import connection, detached, https_client, make_due, onboard

REVOKE_HISTORY = {"trades": 4, "deposits": 2, "withdrawals": 1}


def alerts_of(sta: Any, connection_id: int, kind: str) -> list[Alert]:
    with sta.store.read() as session:
        return detached(session, list(session.execute(select(Alert).where(
            Alert.connection_id == connection_id, Alert.kind == kind)).scalars()))


def open_gaps(sta: Any, connection_id: int) -> list[CoverageInterval]:
    with sta.store.read() as session:
        return detached(session, list(session.execute(select(CoverageInterval).where(
            CoverageInterval.connection_id == connection_id, CoverageInterval.kind == "gap",
            CoverageInterval.closed_at.is_(None))).scalars()))


def test_revoked_key_is_red_after_one_cycle_and_green_again_when_restored(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "kraken", history=REVOKE_HISTORY)
    assert run_cycle(sta.appliance).outcomes[0].ok
    assert connection(sta, cid).status == "active"

    sim.control("POST", f"kraken/keys/{key['api_key']}/revoke")
    make_due(sta, cid)
    result = run_cycle(sta.appliance)
    assert [(o.ok, o.error_class) for o in result.outcomes] == [(False, "authentication")]
    row = connection(sta, cid)
    assert row.status == "broken" and row.last_error_class == "authentication"
    assert row.next_poll_at is not None and row.lease_owner is None
    [alert] = alerts_of(sta, cid, "connection_broken")
    assert alert.severity == "critical" and alert.status == "open" and alert.employee_id == row.employee_id
    assert {g.reason for g in open_gaps(sta, cid)} == {"auth_error"}
    with sta.store.read() as session:
        [employee_row] = [r for r in employee_service.list_rows(session) if r.employee.id == row.employee_id]
        assert employee_row.red

    # A second failing cycle neither raises a second alert nor opens a second gap per stream.
    make_due(sta, cid)
    run_cycle(sta.appliance)
    assert len(alerts_of(sta, cid, "connection_broken")) == 1
    gaps = open_gaps(sta, cid)
    assert sorted(g.stream for g in gaps) == sorted(sta.appliance.venues.get("kraken").streams)

    # Without require_reonboarding_after_break, a key that works again turns the connection green
    # and the auth gap is filled.
    sim.control("POST", f"kraken/keys/{key['api_key']}/restore")
    make_due(sta, cid)
    assert run_cycle(sta.appliance).outcomes[0].ok
    assert connection(sta, cid).status == "active"
    assert open_gaps(sta, cid) == []


def test_require_reonboarding_keeps_the_connection_red_until_a_new_key(
        sta_factory: Callable[..., Any], sim: RunningSim) -> None:
    sta = sta_factory(poller={"require_reonboarding_after_break": True})
    cid, key = onboard(sta, sim, "kraken", history=REVOKE_HISTORY)
    assert run_cycle(sta.appliance).outcomes[0].ok
    sim.control("POST", f"kraken/keys/{key['api_key']}/revoke")
    make_due(sta, cid)
    run_cycle(sta.appliance)
    assert connection(sta, cid).status == "reonboarding_required"
    assert len(alerts_of(sta, cid, "connection_broken")) == 1

    # The key works again: data keeps flowing, but the connection stays red.
    sim.control("POST", f"kraken/keys/{key['api_key']}/restore")
    make_due(sta, cid)
    assert run_cycle(sta.appliance).outcomes[0].ok
    row = connection(sta, cid)
    assert row.status == "reonboarding_required" and row.status_reason
    employee_id = row.employee_id

    # The employee opens a new link and submits a new read-only key through the onboarding page.
    new_key = sim.create_key("kraken", ["read"], history=REVOKE_HISTORY)
    with sta.store.unit_of_work() as session:
        _row, link_token = onboarding.create_link(session, system_actor("t"), sta.settings, employee_id,
                                                  purpose="reonboard")
    client = https_client(sta)
    page = client.get(f"/onboard/{link_token}")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert csrf is not None
    submitted = client.post(f"/onboard/{link_token}", data={
        "csrf_token": csrf.group(1), "action": "key", "venue": "kraken", "api_key": new_key["api_key"],
        "api_secret": new_key["api_secret"]})
    assert submitted.status_code == 200, submitted.get_data(as_text=True)[:2000]

    with sta.store.read() as session:
        rows = detached(session, list(session.execute(select(Connection).where(
            Connection.employee_id == employee_id).order_by(Connection.id)).scalars()))
    assert [r.status for r in rows] == ["superseded", "pending"]
    assert rows[0].api_key_sealed is None and rows[0].api_secret_sealed is None
    result = run_cycle(sta.appliance)
    assert [(o.connection_id, o.ok) for o in result.outcomes] == [(rows[1].id, True)]
    assert connection(sta, rows[1].id).status == "active"
    assert connection(sta, cid).status == "superseded"


def test_a_key_that_gains_trade_permission_raises_an_alert_and_is_no_longer_used(
        sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "kraken", history=REVOKE_HISTORY)
    assert run_cycle(sta.appliance).outcomes[0].ok
    sim.control("POST", f"kraken/keys/{key['api_key']}/permissions", {"permissions": ["read", "trade"]})

    # Before scope_reprobe_hours have passed the scope is not asked again.
    make_due(sta, cid)
    assert run_cycle(sta.appliance).outcomes[0].ok
    assert connection(sta, cid).status == "active"

    make_due(sta, cid, hours=sta.settings.poller.scope_reprobe_hours + 1)
    sim.control("DELETE", "requests")
    result = run_cycle(sta.appliance)
    assert [(o.ok, o.error_class) for o in result.outcomes] == [(False, "scope_escalation")]
    row = connection(sta, cid)
    assert row.status == "reonboarding_required"
    assert "trade" in row.status_reason
    assert (row.api_key_sealed, row.api_secret_sealed, row.passphrase_sealed) == (None, None, None)
    assert row.scope is not None and row.scope["trade"] is True
    [alert] = alerts_of(sta, cid, "scope_escalation")
    assert alert.severity == "critical" and alert.detail is not None and alert.detail["granted"] == ["trade"]
    # Only the scope probe reached the venue: no balance or history call was made with that key.
    assert [r["path"] for r in sim.requests_log("kraken")] == ["/0/private/GetApiKeyInfo"]
    with sta.store.read() as session:
        assert session.execute(select(AuditEvent).where(AuditEvent.action == "sync.scope_escalation",
                                                        AuditEvent.resource_id == str(cid))).scalar_one()

    # The key is not used again: later cycles do not claim the connection at all.
    make_due(sta, cid)
    sim.control("DELETE", "requests")
    assert run_cycle(sta.appliance).outcomes == []
    assert sim.requests_log("kraken") == []
    assert connection(sta, cid).status == "reonboarding_required"


def test_sync_now_makes_the_connection_due_and_is_audited(sta: Any, sim: RunningSim) -> None:
    cid, _key = onboard(sta, sim, "kraken", history=REVOKE_HISTORY)
    assert run_cycle(sta.appliance).outcomes[0].ok
    later = connection(sta, cid).next_poll_at
    assert later is not None and later > dt.datetime.now(dt.UTC)
    assert run_cycle(sta.appliance).outcomes == []  # not due

    client = https_client(sta)
    bearer = token(client, sta, "carol")
    response = client.post(f"/api/v1/connections/{cid}/sync", headers=auth(bearer))
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["id"] == cid
    assert connection(sta, cid).next_poll_at <= dt.datetime.now(dt.UTC)  # type: ignore[operator]
    assert [o.connection_id for o in run_cycle(sta.appliance).outcomes] == [cid]

    # The dashboard button (a form POST with the session's CSRF token).
    login_session(client, sta, "alice")
    response = client.post(f"/connections/{cid}/sync", data={"csrf_token": csrf_of(client)})
    assert response.status_code == 302
    assert connection(sta, cid).next_poll_at <= dt.datetime.now(dt.UTC)  # type: ignore[operator]
    assert [o.connection_id for o in run_cycle(sta.appliance).outcomes] == [cid]

    # It needs connections:write (Admin and Compliance); a connection that is not polled cannot be
    # made due.
    for persona in ("victor", "nora"):
        assert client.post(f"/api/v1/connections/{cid}/sync",
                           headers=auth(token(client, sta, persona))).status_code == 403
    with sta.store.unit_of_work() as session:
        session.execute(update(Connection).where(Connection.id == cid).values(status="offboarded"))
    assert client.post(f"/api/v1/connections/{cid}/sync", headers=auth(bearer)).status_code == 409

    with sta.store.read() as session:
        events = detached(session, list(session.execute(select(AuditEvent).where(
            AuditEvent.action == "connections.sync_now").order_by(AuditEvent.id)).scalars()))
    alice, carol, victor, nora = (sta.personas[p].user_id for p in ("alice", "carol", "victor", "nora"))
    assert [(e.user_id, e.resource_id, e.method, e.outcome) for e in events] == [
        (carol, str(cid), "POST", "success"), (alice, str(cid), "POST", "success"),
        (victor, str(cid), "POST", "denied"), (nora, str(cid), "POST", "denied"),
        (carol, str(cid), "POST", "failure")]
