"""The overview (``/`` and ``/api/v1/overview``): each role sees its panels only, the page shows the numbers the
API gives, and the numbers are the seeded ones."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from sqlalchemy import insert

from appliance.services import overview
from appliance.store.base import utcnow
from appliance.store.models import (
    Alert,
    Connection,
    CoverageInterval,
    Employee,
    FirmAssetValue,
    FirmValueDay,
    Transaction,
)
from tests.access.helpers import auth, login_session, token


def seed(ta: Any) -> None:
    now = utcnow()
    with ta.store.unit_of_work() as session:
        session.execute(insert(Employee), [{"id": n, "name": f"Employee {n}", "email": f"e{n}@firm.example"}
                                           for n in (1, 2, 3)])
        session.execute(insert(Connection), [
            {"id": 1, "employee_id": 1, "kind": "exchange", "venue": "kraken", "status": "active"},
            {"id": 2, "employee_id": 2, "kind": "exchange", "venue": "binance", "status": "broken",
             "status_reason": "the key was revoked"},
            {"id": 3, "employee_id": 3, "kind": "wallet", "venue": "ethereum", "status": "reonboarding_required"}])
        session.execute(insert(Alert), [
            {"employee_id": 1, "kind": "rule_break", "title": "Restricted asset traded", "severity": "critical",
             "created_at": now - dt.timedelta(days=3)},
            {"employee_id": 2, "kind": "connection_broken", "title": "Connection broken", "severity": "warning",
             "created_at": now - dt.timedelta(hours=2)},
            {"employee_id": 2, "kind": "sync_gap", "title": "Gap", "severity": "warning", "status": "assigned",
             "assigned_to": ta.personas["carol"].user_id, "created_at": now - dt.timedelta(days=40)},
            {"employee_id": 3, "kind": "sync_gap", "title": "Old", "severity": "info", "status": "resolved",
             "created_at": now - dt.timedelta(days=5)}])
        session.execute(insert(CoverageInterval), [{"connection_id": 2, "stream": "trades", "kind": "gap",
                                                    "start_at": now - dt.timedelta(days=1), "reason": "auth"}])
        session.execute(insert(Transaction), [{
            "connection_id": 1, "stream": "trades", "venue_tx_id": f"t{n}", "kind": "buy", "asset": "BTC",
            "amount": Decimal("0.1"), "occurred_at": now - dt.timedelta(days=n % 40), "provenance": "api"}
            for n in range(100)])
        session.execute(insert(FirmAssetValue), [
            {"currency": "USD", "kind": "asset", "asset": "BTC", "amount": Decimal("1.5"), "value": Decimal("150000"),
             "unpriced": 0, "reason": "", "holders": 2, "as_of": now},
            {"currency": "USD", "kind": "asset", "asset": "ETH", "amount": Decimal("10"), "value": Decimal("35000.5"),
             "unpriced": 0, "reason": "", "holders": 1, "as_of": now},
            {"currency": "USD", "kind": "predictions", "asset": "", "amount": Decimal("500"),
             "value": Decimal("250"), "unpriced": 0, "reason": "", "holders": 1, "as_of": now}])
        session.execute(insert(FirmValueDay), [{
            "currency": "USD", "day": now.date() - dt.timedelta(days=n), "balances": Decimal(180000 + n * 100),
            "positions": Decimal(250), "balances_unpriced": 0, "positions_unpriced": 0, "employees": 3,
            "as_of": now} for n in range(10)])


def test_each_role_gets_its_panels_and_the_headline(client: Any, ta: Any) -> None:
    seed(ta)
    admin = client.get("/api/v1/overview", headers=auth(token(client, ta, "alice"))).get_json()
    assert set(admin["panels"]) == {"alerts", "preclearance", "connections", "coverage", "certifications", "holdings",
                                    "activity"}
    assert admin["alerts_open"] == 3 and admin["connections_red"] == 2
    assert Decimal(admin["value_total"]) == Decimal("185250.5")
    alerts = admin["panels"]["alerts"]
    assert alerts["by_severity"] == {"critical": 1, "warning": 2, "info": 0}
    assert [a["count"] for a in alerts["by_age"]] == [1, 1, 0, 1]
    assert alerts["oldest"][0]["title"] == "Gap" and alerts["oldest"][0]["employee"] == "Employee 2"
    assert admin["panels"]["coverage"]["connections_with_gaps"] == 1
    activity = admin["panels"]["activity"]
    assert len(activity["days"]) == 30 and activity["totals"]["transactions"] == 80  # n % 40 < 30: 20 x 3 + 10 x 2
    assert activity["totals"]["alerts"] == 3  # raised in the last 30 days, whatever their status now

    carol = client.get("/api/v1/overview", headers=auth(token(client, ta, "carol"))).get_json()
    assert "holdings" not in carol["panels"] and carol["value_total"] is None  # flagged scope: no firm total
    assert carol["panels"]["alerts"]["assigned_to_me"] == 1
    assert "transactions" not in carol["panels"]["activity"]["days"][0]

    victor = client.get("/api/v1/overview", headers=auth(token(client, ta, "victor"))).get_json()
    assert victor["alerts_open"] is None and "alerts" not in victor["panels"]
    assert victor["connections_red"] == 2

    nora = client.get("/api/v1/overview", headers=auth(token(client, ta, "nora"))).get_json()
    assert nora["panels"] == {} and nora["alerts_open"] is None


def test_the_page_shows_what_the_api_returns(client: Any, ta: Any) -> None:
    seed(ta)
    for persona in ("alice", "carol", "victor"):
        api = client.get("/api/v1/overview", headers=auth(token(client, ta, persona))).get_json()
        login_session(client, ta, persona)
        html = client.get("/").get_data(as_text=True)
        assert sorted(re.findall(r'data-panel="(\w+)"', html)) == sorted(api["panels"]), persona
        for figure in ("alerts_open", "connections_red"):
            shown = re.search(rf'data-figure="{figure}"[^>]*>([\d,]+)<', html)
            assert (shown and int(shown.group(1).replace(",", ""))) == api[figure] or \
                (shown is None and api[figure] is None), (persona, figure)
        if api["value_total"] is not None:
            assert re.search(r'data-figure="value_total" data-value="([\d.]+)"', html).group(1) == api["value_total"]
            assert '<svg class="chart"' in html and "<title id=" in html
        client.post("/logout", data={"csrf_token": _csrf(client)})


def _csrf(client: Any) -> str:
    with client.session_transaction() as s:
        return str(s["csrf"])


def test_a_later_feature_adds_a_panel_without_touching_the_overview(client: Any, ta: Any) -> None:
    registry = overview.load_panels()
    try:
        @overview.panel("waiting", "Requests waiting", order=15, visible=lambda actor: actor.can("alerts:read"),
                        headline=("requests_waiting",))
        def waiting(_ctx: overview.Context) -> dict[str, Any]:
            return {"requests_waiting": 4}

        body = client.get("/api/v1/overview", headers=auth(token(client, ta, "carol"))).get_json()
        assert body["panels"]["waiting"] == {"requests_waiting": 4}
        login_session(client, ta, "carol")
        html = client.get("/").get_data(as_text=True)
        assert 'data-panel="waiting"' in html and "Requests waiting" in html  # the generic template
        assert client.get("/api/v1/overview", headers=auth(token(client, ta, "victor"))).get_json()["panels"].get(
            "waiting") is None
    finally:
        registry.pop("waiting", None)
