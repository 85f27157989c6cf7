"""What an employee holds follows the balances scope wherever it shows.

Security review, finding 4: a Viewer and a Compliance user outside the flagged scope read wallet
addresses, balance figures and held markets through ``/api/v1/employees/<id>/connections`` (the
address, coverage details such as "BTC: balance …", the ``unverified_markets`` detail) and through
``/api/v1/alerts/<id>`` (the mismatch balances). Now every such field follows the scope of
``balances:read``; outside it, coverage and alert details keep their shape and lose the figures.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from appliance.rbac.actors import system_actor
from appliance.services import alerts as alert_service
from appliance.services import employees as employee_service
from appliance.services import identity
from appliance.store.models import Alert, Connection, CoverageInterval
from tests.access.helpers import auth, login_session, token

ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
# Everything that reveals a holding: the address, the figures, the markets read.
SECRETS = (ADDRESS, "0.51234567", "0.41234567", "ETH/USDT", "SOL/USDC")
MISMATCH = {"asset": "BTC", "account": "", "balance": "0.51234567", "net_of_transfers": "0.41234567"}


def _employee(ta: Any) -> tuple[int, int]:
    """An employee whose only alert was resolved long ago: outside every flagged scope."""
    now = dt.datetime.now(dt.UTC)
    with ta.store.unit_of_work() as session:
        person = employee_service.create(session, name="Quiet Holder", email="quiet@example.com")
        wallet = Connection(employee_id=person.id, kind="wallet", venue="bitcoin", label="cold storage",
                            status="degraded", address=ADDRESS, scope_verified=True,
                            last_error_class="bad_data", last_error=f"the indexer refused {ADDRESS}")
        exchange = Connection(employee_id=person.id, kind="exchange", venue="binance", status="active",
                              scope_verified=True, scope={"read": True, "trade": False, "transfer": False,
                                                          "withdraw": False, "verified": True, "notes": []})
        session.add_all([wallet, exchange])
        session.flush()
        session.add_all([
            CoverageInterval(connection_id=wallet.id, stream="transfers", kind="gap", start_at=now,
                             reason="inconsistent_data", detail="BTC: balance 0.51234567 but transfers net 0.41234567"),
            CoverageInterval(connection_id=exchange.id, stream="trades", kind="complete", start_at=now, end_at=now,
                             detail=json.dumps({"market_list": "derived", "markets": ["ETH/USDT", "SOL/USDC"]})),
            CoverageInterval(connection_id=exchange.id, stream="trades", kind="gap", start_at=now, end_at=now,
                             reason="unverified_markets",
                             detail="trades read for the markets derived from balances and transfers "
                                    "(ETH/USDT, SOL/USDC); a market whose assets were never held at a poll is not "
                                    "asked about"),
        ])
        alert = alert_service.raise_alert(session, kind="inconsistent_data", title="cold storage: the provider's "
                                          "balance does not match the recorded transfers", employee_id=person.id,
                                          connection_id=wallet.id, detail={"mismatches": [MISMATCH]})
        alert_service.triage(session, system_actor("t"), alert.id, status="resolved", resolution="indexer fixed")
        alert.resolved_at = now - dt.timedelta(days=90)
        alert.flagged_until = alert.resolved_at + dt.timedelta(days=30)  # its flag window ended long ago
        return int(person.id), int(alert.id)


def _flag(ta: Any, employee_id: int) -> None:
    with ta.store.unit_of_work() as session:
        alert_service.raise_alert(session, kind="rule_break", title="restricted list", employee_id=employee_id)


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return None


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_connections_hide_holdings_outside_the_balances_scope(client: Any, ta: Any) -> None:
    employee_id, _alert = _employee(ta)
    path = f"/api/v1/employees/{employee_id}/connections"
    full = client.get(path, headers=auth(token(client, ta, "alice")))
    assert full.status_code == 200 and sorted(_leaks(full.text)) == sorted(SECRETS)
    for who in ("victor", "carol"):
        answer = client.get(path, headers=auth(token(client, ta, who)))
        assert answer.status_code == 200, who
        assert _leaks(answer.text) == [], who
        assert _shape(answer.get_json()) == _shape(full.get_json()), who  # same shape, figures gone
        wallet = next(c for c in answer.get_json()["connections"] if c["kind"] == "wallet")
        assert wallet["address"] is None
        assert wallet["coverage"][0]["reason"] == "inconsistent_data"
        assert "does not match the recorded transfers" in wallet["coverage"][0]["detail"]
    _flag(ta, employee_id)
    flagged = client.get(path, headers=auth(token(client, ta, "carol")))
    assert sorted(_leaks(flagged.text)) == sorted(SECRETS)  # flagged: Compliance sees what balances show
    assert _leaks(client.get(path, headers=auth(token(client, ta, "victor"))).text) == []


def test_alert_details_keep_their_shape_and_lose_the_figures(client: Any, ta: Any) -> None:
    employee_id, alert_id = _employee(ta)
    alice = client.get(f"/api/v1/alerts/{alert_id}", headers=auth(token(client, ta, "alice"))).get_json()
    assert alice["detail"] == {"mismatches": [MISMATCH]}
    carol = auth(token(client, ta, "carol"))
    outside = client.get(f"/api/v1/alerts/{alert_id}", headers=carol)
    assert outside.status_code == 200
    assert outside.get_json()["detail"] == {"mismatches": [{k: None for k in MISMATCH}]}
    listed = client.get("/api/v1/alerts?status=resolved", headers=carol)
    assert _leaks(listed.text) == []
    # A role that reads alerts but no balances: hidden even while the alert is open.
    with ta.store.unit_of_work() as session:
        identity.create_role(session, system_actor("t"), name="Alert reader", permissions=["alerts:read"])
        identity.set_roles(session, system_actor("t"), ta.personas["nora"].user_id, ["Alert reader"])
    ta.appliance.auth.load(ta.store)
    _flag(ta, employee_id)
    with ta.store.unit_of_work() as session:
        session.get(Alert, alert_id).status = "open"  # type: ignore[union-attr]
    reader = client.get(f"/api/v1/alerts/{alert_id}", headers=auth(token(client, ta, "nora")))
    assert reader.status_code == 200 and _leaks(reader.text) == []
    assert sorted(_leaks(client.get(f"/api/v1/alerts/{alert_id}", headers=carol).text)) == ["0.41234567",
                                                                                            "0.51234567"]


def test_the_dashboard_pages_follow_the_same_scope(ta: Any, flask_app: Any) -> None:
    employee_id, alert_id = _employee(ta)
    viewer = flask_app.test_client()
    login_session(viewer, ta, "victor")
    page = viewer.get(f"/employees/{employee_id}")
    assert page.status_code == 200 and "cold storage" in page.text
    assert _leaks(page.text) == []
    compliance = flask_app.test_client()
    login_session(compliance, ta, "carol")
    assert _leaks(compliance.get(f"/employees/{employee_id}").text) == []
    alert_page = compliance.get(f"/alerts/{alert_id}")
    assert alert_page.status_code == 200 and "mismatches" in alert_page.text
    assert _leaks(alert_page.text) == []
