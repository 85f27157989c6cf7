"""Pre-clearance requests and decisions: automatic denial naming the rule (never the list's note),
automatic approval where configured, the compliance queue, decisions with comments, windows in the
firm's time zone, strict input, the decision e-mailed to the employee."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.store.models import AuditEvent, MailOutbox
from tests.access.helpers import auth, token
from tests.portal.conftest import browser, csrf_of, new_employee, signed_in
from tests.support.app import build
from tests.support.smtp import MailServer, smtp_server


class Dashboard:
    def __init__(self, client: Any, ta: Any, name: str) -> None:
        self.client, self.headers = client, auth(token(client, ta, name))

    def post(self, path: str, body: Any, status: int = 201) -> Any:
        response = self.client.post(f"/api/v1{path}", json=body, headers=self.headers)
        assert response.status_code == status, response.get_json()
        return response.get_json()

    def get(self, path: str) -> Any:
        response = self.client.get(f"/api/v1{path}", headers=self.headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()


def ask(employee: Any, body: dict[str, Any], status: int = 201) -> Any:
    response = employee.post("/api/v1/me/preclearances", json=body, headers={"X-CSRF-Token": csrf_of(employee)})
    assert response.status_code == status, response.get_json()
    return response.get_json()


def test_a_restricted_asset_is_denied_naming_the_rule_not_the_note(client: Any, ta: Any, flask_app: Any) -> None:
    carol = Dashboard(client, ta, "carol")
    carol.post("/lists", {"name": "Deal Falcon", "kind": "restricted", "entries": [
        {"type": "asset", "value": "SOL", "note": "FALCON-7 acquisition, confidential"}]})
    erin_id = new_employee(ta)
    erin = signed_in(flask_app, ta, erin_id)
    answer = ask(erin, {"asset": "sol", "side": "buy", "quantity": "3"})
    assert answer["status"] == "denied" and answer["expires_at"] is None
    assert "Restricted: Deal Falcon" in answer["reason"] and "restricted list" in answer["reason"]
    assert "FALCON-7" not in json.dumps(answer)
    page = erin.get("/me").text
    assert "Restricted: Deal Falcon" in page and "FALCON-7" not in page
    allowed = ask(erin, {"asset": "BTC", "side": "buy", "quantity": "0.1"})
    assert allowed["status"] == "pending" and allowed["reason"] == "Waiting for a compliance reviewer."


def test_a_blackout_and_a_holding_period_deny(client: Any, ta: Any, flask_app: Any) -> None:
    from tests.portal.conftest import give_records

    carol = Dashboard(client, ta, "carol")
    today = dt.datetime.now(dt.UTC).date()
    carol.post("/rules", {"name": "Q4 results", "kind": "blackout", "params": {
        "start": (today - dt.timedelta(days=1)).isoformat(), "end": (today + dt.timedelta(days=3)).isoformat(),
        "assets": ["ETH"]}})
    carol.post("/rules", {"name": "Hold 30 days", "kind": "holding_period", "params": {"days": 30}})
    erin_id = new_employee(ta)
    give_records(ta, erin_id, "ADA")  # a buy of ADA an hour ago
    erin = signed_in(flask_app, ta, erin_id)
    blackout = ask(erin, {"asset": "ETH", "side": "buy", "quantity": "1"})
    assert blackout["status"] == "denied" and "Q4 results" in blackout["reason"] and "blackout" in blackout["reason"]
    held = ask(erin, {"asset": "ADA", "side": "sell", "quantity": "1"})
    assert held["status"] == "denied" and "Hold 30 days" in held["reason"] and "30 days" in held["reason"]
    assert ask(erin, {"asset": "ADA", "side": "buy", "quantity": "1"})["status"] == "pending"


def test_compliance_decides_with_a_comment_and_the_employee_sees_it(client: Any, ta: Any, flask_app: Any) -> None:
    erin_id = new_employee(ta)
    erin = signed_in(flask_app, ta, erin_id)
    asked = ask(erin, {"asset": "BTC", "side": "buy", "quantity": "0.5", "reason": "long-term savings"})
    carol = Dashboard(client, ta, "carol")
    queue = carol.get("/preclearances?status=pending")["preclearances"]
    assert [r["id"] for r in queue] == [asked["id"]] and queue[0]["request_reason"] == "long-term savings"
    missing = client.post(f"/api/v1/preclearances/{asked['id']}/decision", json={"approve": True},
                          headers=carol.headers)
    assert missing.status_code == 400 and missing.get_json()["error"]["field"] == "comment"
    decided = carol.post(f"/preclearances/{asked['id']}/decision", {"approve": True, "comment": "fine"}, 200)
    assert decided["status"] == "approved" and decided["comment"] == "fine"
    assert decided["expires_at"] and decided["valid_from"]
    twice = client.post(f"/api/v1/preclearances/{asked['id']}/decision", json={"approve": False, "comment": "x"},
                        headers=carol.headers)
    assert twice.status_code == 409
    mine = erin.get(f"/api/v1/me/preclearances/{asked['id']}").get_json()
    assert mine["status"] == "approved" and mine["comment"] == "fine"
    victor = Dashboard(client, ta, "victor")
    refused = client.post(f"/api/v1/preclearances/{asked['id']}/decision", json={"approve": True, "comment": "x"},
                          headers=victor.headers)
    assert refused.status_code == 403
    history = carol.get(f"/preclearances?employee_id={erin_id}")["preclearances"]
    assert [r["status"] for r in history] == ["approved"]
    with ta.store.read() as session:
        actions = [e.action for e in session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()]
    assert "portal.preclearance_create" in actions and actions.count("preclearance.decide") == 4  # 400, 200, 409, 403


def test_on_behalf_of_an_employee_and_the_queue_page(client: Any, ta: Any, flask_app: Any) -> None:
    from tests.access.helpers import login_session

    erin_id = new_employee(ta)
    carol = Dashboard(client, ta, "carol")
    refused = client.post("/api/v1/preclearances", headers=carol.headers, json={
        "employee_id": erin_id, "market_id": "https://polymarket.com.evil.example/event/will-it-rain", "side": "yes",
        "quantity": "100"})  # a lookalike host (Polymarket URLs themselves: tests/portal/test_polymarket_url.py)
    assert refused.status_code == 400 and "polymarket.com or kalshi.com" in refused.get_json()["error"]["message"]
    made = carol.post("/preclearances", {"employee_id": erin_id, "market_id": "https://kalshi.com/markets/kxrain/"
                                         "rain-in-nyc/kxrain-26dec", "side": "yes", "quantity": "100"})
    assert made["status"] == "pending" and made["venue"] == "kalshi" and made["market_id"] == "KXRAIN-26DEC"
    web = browser(flask_app)
    login_session(web, ta, "carol")
    page = web.get("/preclearances")
    assert page.status_code == 200 and "KXRAIN-26DEC" in page.text
    decided = web.post(f"/preclearances/{made['id']}/decision", data={
        "csrf_token": csrf_of(web), "decision": "deny", "comment": "inside information risk"})
    assert decided.status_code == 302
    assert carol.get(f"/preclearances/{made['id']}")["status"] == "denied"


@pytest.mark.parametrize(("body", "field"), [
    ({"asset": "BTC", "market_id": "X", "venue": "kalshi", "side": "buy", "quantity": "1"}, "asset"),
    ({"side": "buy", "quantity": "1"}, "asset"),
    ({"asset": "BTC", "side": "yes", "quantity": "1"}, "side"),
    ({"market_id": "KXRAIN-26", "side": "yes", "quantity": "1"}, "venue"),
    ({"asset": "BTC", "side": "buy", "quantity": "-1"}, "quantity"),
    ({"asset": "BTC", "side": "buy"}, "quantity"),
    ({"asset": "BTC", "side": "buy", "quantity": "1", "notional": "5"}, "quantity"),
    ({"asset": "BTC", "side": "buy", "quantity": "1", "employee_id": 1}, "employee_id"),
    ({"asset": "BTC", "side": "buy", "quantity": "1", "extra": 1}, "extra"),
    ({"asset": "BTC", "side": "buy", "quantity": "1", "venue": "nowhere"}, "venue"),
])
def test_bad_requests_are_refused_by_name_and_store_nothing(ta: Any, flask_app: Any, body: dict[str, Any],
                                                           field: str) -> None:
    erin = signed_in(flask_app, ta, new_employee(ta))
    answer = ask(erin, body, 400)
    assert answer["error"]["field"] == field
    assert erin.get("/api/v1/me/preclearances").get_json()["preclearances"] == []


def test_window_is_the_end_of_the_next_business_day_in_the_firms_time_zone(db_url: str, tmp_path: Path) -> None:
    from appliance.services.preclearance import window_end
    from appliance.settings import settings_from_mapping

    settings = settings_from_mapping({"preclearance": {"time_zone": "America/New_York",
                                                        "holidays": ["2026-12-07"]}}, env={})
    friday_evening = dt.datetime(2026, 12, 4, 22, 0, tzinfo=dt.UTC)  # 17:00 in New York
    # Saturday, Sunday and the Monday holiday are skipped: the end of Tuesday 8 December in New York.
    assert window_end(settings, friday_evening) == dt.datetime(2026, 12, 9, 4, 59, 59, 999999, tzinfo=dt.UTC)
    late = dt.datetime(2026, 12, 3, 4, 30, tzinfo=dt.UTC)  # still Wednesday 2 December in New York
    assert window_end(settings, late) == dt.datetime(2026, 12, 4, 4, 59, 59, 999999, tzinfo=dt.UTC)
    same_day = settings_from_mapping({"preclearance": {"window_business_days": 0}}, env={})
    assert window_end(same_day, late) == dt.datetime(2026, 12, 3, 23, 59, 59, 999999, tzinfo=dt.UTC)
    from appliance.errors import ConfigError

    with pytest.raises(ConfigError, match=r"preclearance\.time_zone"):
        settings_from_mapping({"preclearance": {"time_zone": "Mars/Olympus"}}, env={})


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[MailServer]:
    with smtp_server(tmp_path / "smtp", tls=False) as server:
        yield server


def test_automatic_approval_where_configured_and_the_decision_mailed(db_url: str, tmp_path: Path,
                                                                   relay: MailServer) -> None:
    from appliance.app import create_app

    ta = build(db_url, tmp_path / "data", server={"public_url": "https://vigatra.example.com"},
               preclearance={"auto_approve": True, "auto_approve_below": "1000", "auto_approve_kinds": ["asset"]},
               notifications={"smtp": {"host": relay.host, "port": relay.port, "starttls": False,
                                       "sender": "vigatra@example.com"}})
    try:
        flask_app = create_app(ta.appliance)
        erin = signed_in(flask_app, ta, new_employee(ta))
        small = ask(erin, {"asset": "BTC", "side": "buy", "notional": "500"})
        assert small["status"] == "approved" and "automatically" in small["reason"] and small["expires_at"]
        assert Decimal(small["tolerance_percent"]) == 10
        assert ask(erin, {"asset": "BTC", "side": "buy", "notional": "5000"})["status"] == "pending"
        assert ask(erin, {"asset": "BTC", "side": "buy", "quantity": "1"})["status"] == "pending"  # no price
        market = ask(erin, {"market_id": "KXRAIN-26", "venue": "kalshi", "side": "no", "notional": "10"})
        assert market["status"] == "pending"
        client = flask_app.test_client()
        carol = Dashboard(client, ta, "carol")
        pending = carol.get("/preclearances?status=pending")["preclearances"]
        carol.post(f"/preclearances/{pending[0]['id']}/decision", {"approve": False, "comment": "too large"}, 200)
        with ta.store.read() as session:
            purposes = [m.purpose for m in session.execute(select(MailOutbox)).scalars()]
        assert purposes == ["preclearance"]
        ta.appliance.mailer.deliver_pending()
        (mail,) = relay.messages()
        body = mail.message.get_content()
        assert "was denied" in body and "too large" in body and "https://vigatra.example.com/me" in body
    finally:
        ta.appliance.close()
