"""RBAC rules: custom roles, nobody grants what they lack, built-ins fixed, last admin protected,
flagged scope indistinguishable from non-existence."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from appliance.rbac.actors import system_actor
from appliance.services import alerts as alert_service
from appliance.services import employees as employee_service
from appliance.store.models import Connection, Transaction
from tests.access.helpers import auth, token


def test_custom_role_and_its_limits(client: Any, ta: Any) -> None:
    admin = auth(token(client, ta, "alice"))
    created = client.post("/api/v1/roles", json={"name": "HR read", "permissions": ["employees:read"]},
                          headers=admin)
    assert created.status_code == 201
    bad = client.post("/api/v1/roles", json={"name": "Bad", "permissions": ["employees:fly"]}, headers=admin)
    assert bad.status_code == 400
    roles = {r["name"]: r for r in client.get("/api/v1/roles", headers=admin).get_json()["roles"]}
    assert client.delete(f"/api/v1/roles/{roles['Admin']['id']}", headers=admin).status_code == 403
    assert client.put(f"/api/v1/roles/{roles['Viewer']['id']}", json={"permissions": ["audit:read"]},
                      headers=admin).status_code == 403
    nora = ta.personas["nora"].user_id
    assert client.put(f"/api/v1/users/{nora}/roles", json={"roles": ["HR read"]}, headers=admin).status_code == 200
    nora_token = auth(token(client, ta, "nora"))
    assert client.get("/api/v1/employees", headers=nora_token).status_code == 200
    assert client.get("/api/v1/alerts", headers=nora_token).status_code == 403


def test_role_manager_cannot_grant_what_they_lack(client: Any, ta: Any) -> None:
    admin = auth(token(client, ta, "alice"))
    client.post("/api/v1/roles", json={"name": "Role manager", "permissions": ["roles:read", "roles:write",
                                                                              "users:read", "users:write"]},
                headers=admin)
    victor = ta.personas["victor"].user_id
    client.put(f"/api/v1/users/{victor}/roles", json={"roles": ["Role manager"]}, headers=admin)
    manager = auth(token(client, ta, "victor"))
    escalate = client.post("/api/v1/roles", json={"name": "Sneaky", "permissions": ["audit:export"]},
                           headers=manager)
    assert escalate.status_code == 403
    promote = client.put(f"/api/v1/users/{victor}/roles", json={"roles": ["Role manager", "Admin"]},
                         headers=manager)
    assert promote.status_code == 403
    fine = client.post("/api/v1/roles", json={"name": "Readers", "permissions": ["roles:read"]}, headers=manager)
    assert fine.status_code == 201


def test_last_admin_cannot_be_disabled_or_demoted(client: Any, ta: Any) -> None:
    admin = auth(token(client, ta, "alice"))
    alice = ta.personas["alice"].user_id
    assert client.put(f"/api/v1/users/{alice}/roles", json={"roles": ["Viewer"]}, headers=admin).status_code == 409
    assert client.put(f"/api/v1/users/{alice}/active", json={"active": False}, headers=admin).status_code == 409


def _employee_with_transaction(ta: Any, name: str, email: str, flagged: bool) -> tuple[int, int]:
    with ta.store.unit_of_work() as session:
        person = employee_service.create(session, name=name, email=email)
        conn = Connection(employee_id=person.id, kind="exchange", venue="kraken", status="active")
        session.add(conn)
        session.flush()
        tx = Transaction(connection_id=conn.id, stream="trades", venue_tx_id=f"T-{person.id}", kind="buy",
                         occurred_at=dt.datetime.now(dt.UTC), asset="BTC", amount=Decimal("0.5"))
        session.add(tx)
        session.flush()
        if flagged:
            alert_service.raise_alert(session, kind="rule_break", title="restricted list", employee_id=person.id)
        return person.id, tx.id


def test_flagged_scope_lists_and_direct_ids(client: Any, ta: Any) -> None:
    flagged, flagged_tx = _employee_with_transaction(ta, "Flag Ged", "flagged@example.com", True)
    clean, clean_tx = _employee_with_transaction(ta, "Clean One", "clean@example.com", False)
    carol = auth(token(client, ta, "carol"))
    ok = client.get(f"/api/v1/employees/{flagged}/transactions", headers=carol)
    assert ok.status_code == 200
    assert [t["id"] for t in ok.get_json()["transactions"]] == [flagged_tx]
    assert client.get(f"/api/v1/employees/{flagged}/transactions/{flagged_tx}", headers=carol).status_code == 200
    hidden = client.get(f"/api/v1/employees/{clean}/transactions", headers=carol)
    missing = client.get("/api/v1/employees/987654/transactions", headers=carol)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.get_json() == missing.get_json()
    direct = client.get(f"/api/v1/employees/{clean}/transactions/{clean_tx}", headers=carol)
    assert direct.status_code == 404
    assert direct.get_json() == missing.get_json()
    assert client.get(f"/api/v1/employees/{clean}/balances", headers=carol).status_code == 404
    admin = auth(token(client, ta, "alice"))
    assert client.get(f"/api/v1/employees/{clean}/transactions", headers=admin).status_code == 200
    with ta.store.unit_of_work() as session:
        for a in alert_service.list_alerts(session, employee_id=flagged):
            alert_service.triage(session, system_actor("t"), a.id, status="resolved", resolution="cleared")
    # Recently resolved alerts still flag the employee (open or recent).
    assert client.get(f"/api/v1/employees/{flagged}/transactions", headers=carol).status_code == 200


def test_viewer_sees_no_financial_detail(client: Any, ta: Any) -> None:
    flagged, _tx = _employee_with_transaction(ta, "Flag Two", "flag2@example.com", True)
    victor = auth(token(client, ta, "victor"))
    assert client.get("/api/v1/employees", headers=victor).status_code == 200
    for suffix in ("transactions", "balances", "predictions"):
        assert client.get(f"/api/v1/employees/{flagged}/{suffix}", headers=victor).status_code == 403
    assert client.get("/api/v1/audit", headers=victor).status_code == 403


def test_scope_is_the_widest_held_whatever_form_the_permission_is_asked_in() -> None:
    from appliance.rbac.actors import user_actor

    actor = user_actor(1, "x", frozenset({"transactions:read:flagged", "balances:read", "balances:read:flagged"}))
    for asked in ("transactions:read", "transactions:read:flagged", "transactions:read:all", " transactions:read"):
        assert actor.scope_for(asked) == "flagged", asked
    for asked in ("balances:read", "balances:read:flagged", "balances:read:all"):
        assert actor.scope_for(asked) == "all", asked
    assert actor.scope_for("predictions:read") is None
    assert actor.scope_for("predictions:read:flagged") is None
