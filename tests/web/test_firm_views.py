"""Firm-wide views: holdings by asset (with each asset's holders) and recent large trades, as pages and through
/api/v1 — scope respected (Compliance, whose role sees flagged employees only, sees the flagged employee's
records and nobody else's), newest first, paged, bad input refused by name."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from sqlalchemy import insert

from appliance.store.base import utcnow
from appliance.store.models import (
    Alert,
    BalanceSnapshot,
    Connection,
    CurrentPrice,
    Employee,
    FirmAssetValue,
    Transaction,
    TransactionValue,
)
from tests.access.helpers import auth, login_session, token

FLAGGED = 2  # the employee with an open alert: the only one Compliance sees


def seed(ta: Any) -> None:
    now = utcnow()
    with ta.store.unit_of_work() as session:
        session.execute(insert(Employee), [{"id": n, "name": f"Employee {n}", "email": f"e{n}@firm.example"}
                                           for n in (1, 2, 3, 4)])
        session.execute(insert(Connection), [
            {"id": n, "employee_id": n, "kind": "exchange", "venue": venue, "label": venue.title(), "status": "active"}
            for n, venue in ((1, "kraken"), (2, "binance"), (3, "coinbase"))])
        session.execute(insert(Alert), [{"employee_id": FLAGGED, "kind": "manual", "title": "Look at this",
                                         "severity": "warning", "created_at": now}])
        session.execute(insert(BalanceSnapshot), [
            {"connection_id": c, "asset": asset, "amount": Decimal(amount), "valid_from": now - dt.timedelta(days=9),
             "observed_until": now}
            for c, asset, amount in ((1, "BTC", "1.0"), (2, "BTC", "0.5"), (2, "ETH", "10"), (3, "SOL", "100"),
                                     (3, "BTC", "0"))])
        session.execute(insert(CurrentPrice), [
            {"asset": "BTC", "currency": "USD", "price": Decimal("100000"), "source": "kraken", "priced_at": now},
            {"asset": "ETH", "currency": "USD", "price": Decimal("3000"), "source": "kraken", "priced_at": now}])
        session.execute(insert(FirmAssetValue), [
            {"currency": "USD", "kind": "asset", "asset": "BTC", "amount": Decimal("1.5"), "value": Decimal("150000"),
             "unpriced": 0, "reason": "", "holders": 2, "as_of": now},
            {"currency": "USD", "kind": "asset", "asset": "ETH", "amount": Decimal("10"), "value": Decimal("30000"),
             "unpriced": 0, "reason": "", "holders": 1, "as_of": now},
            {"currency": "USD", "kind": "asset", "asset": "SOL", "amount": Decimal("100"), "value": Decimal("0"),
             "unpriced": 1, "reason": "no price", "holders": 1, "as_of": now},
            {"currency": "USD", "kind": "predictions", "asset": "", "amount": Decimal("5"), "value": Decimal("3"),
             "unpriced": 0, "reason": "", "holders": 1, "as_of": now}])
        trades = [  # id, connection, kind, asset, amount, value, hours ago
            (1, 1, "buy", "BTC", "0.2", "20000", 24), (2, 2, "sell", "BTC", "0.15", "15000", 2),
            (3, 2, "buy", "ETH", "1", "3000", 1), (4, 3, "buy", "SOL", "50", "12000.50", 72),
            (5, 1, "deposit", "BTC", "1", "100000", 3), (6, 1, "buy", "BTC", "0.1", "10000", 48),
            (7, 1, "buy", "BTC", "0.0999", "9999.99", 49), (8, 2, "buy", "BTC", "0.3", "30000", 100)]
        session.execute(insert(Transaction), [
            {"id": i, "connection_id": c, "stream": "trades", "venue_tx_id": f"t{i}", "kind": kind, "asset": asset,
             "amount": Decimal(amount), "occurred_at": now - dt.timedelta(hours=hours), "provenance": "api"}
            for i, c, kind, asset, amount, _v, hours in trades])
        session.execute(insert(TransactionValue), [
            {"transaction_id": i, "currency": "USD", "value": Decimal(value), "price": Decimal(value) / Decimal(amount),
             "source": "kraken", "priced_at": now} for i, _c, _k, _a, amount, value, _h in trades])


def _get(client: Any, ta: Any, persona: str, path: str) -> Any:
    return client.get(path, headers=auth(token(client, ta, persona)))


def test_holdings_by_asset_follow_the_scope(client: Any, ta: Any) -> None:
    seed(ta)
    admin = _get(client, ta, "alice", "/api/v1/holdings/by-asset").get_json()
    assert admin["scope"] == "all" and admin["currency"] == "USD"
    assert [(a["asset"], a["holders"], a["value"]) for a in admin["assets"]] == [
        ("BTC", 2, "150000"), ("ETH", 1, "30000"), ("SOL", 1, None)]  # the prediction line is not an asset
    assert Decimal(admin["value_total"]) == Decimal("180000") and admin["assets"][2]["unpriced"] == 1

    carol = _get(client, ta, "carol", "/api/v1/holdings/by-asset").get_json()
    assert carol["scope"] == "flagged" and carol["as_of"] is None
    assert [(a["asset"], a["holders"], Decimal(a["amount"]), Decimal(a["value"])) for a in carol["assets"]] == [
        ("BTC", 1, Decimal("0.5"), Decimal("50000")), ("ETH", 1, Decimal("10"), Decimal("30000"))]

    assert _get(client, ta, "victor", "/api/v1/holdings/by-asset").status_code == 403


def test_the_holders_of_an_asset_largest_first_under_scope(client: Any, ta: Any) -> None:
    seed(ta)
    admin = _get(client, ta, "alice", "/api/v1/holdings/by-asset/BTC").get_json()
    assert [(h["employee"], Decimal(h["value"])) for h in admin["holders"]] == [
        ("Employee 1", Decimal("100000")), ("Employee 2", Decimal("50000"))]  # a zero balance holds nothing
    assert admin["total"] == 2 and Decimal(admin["amount"]) == Decimal("1.5") and admin["holders"][0]["venues"] == [
        "kraken"]
    carol = _get(client, ta, "carol", "/api/v1/holdings/by-asset/BTC").get_json()
    assert [h["employee_id"] for h in carol["holders"]] == [FLAGGED]
    assert _get(client, ta, "carol", "/api/v1/holdings/by-asset/SOL").get_json()["holders"] == []
    sol = _get(client, ta, "alice", "/api/v1/holdings/by-asset/SOL").get_json()["holders"][0]
    assert sol["value"] is None and sol["unpriced_reason"]  # unpriced, with why; never a zero


def test_recent_large_trades_newest_first_paged_and_scoped(client: Any, ta: Any) -> None:
    seed(ta)
    first = _get(client, ta, "alice", "/api/v1/transactions/large?limit=2").get_json()
    assert first["min_value"] == "10000"
    ids = [t["id"] for t in first["trades"]]
    cursor = first["next_cursor"]
    while cursor:
        page = _get(client, ta, "alice", f"/api/v1/transactions/large?limit=2&cursor={cursor}").get_json()
        ids += [t["id"] for t in page["trades"]]
        cursor = page["next_cursor"]
    # buys and sells of 10,000 USD or more (the deposit is not a trade; 9,999.99 is under), newest first
    assert ids == [2, 1, 6, 4, 8]
    assert first["trades"][0]["employee"] == "Employee 2" and first["trades"][0]["value"] == "15000"
    bigger = _get(client, ta, "alice", "/api/v1/transactions/large?min_value=15000").get_json()
    assert [t["id"] for t in bigger["trades"]] == [2, 1, 8]
    carol = _get(client, ta, "carol", "/api/v1/transactions/large").get_json()
    assert [t["id"] for t in carol["trades"]] == [2, 8]  # the flagged employee's only
    assert _get(client, ta, "victor", "/api/v1/transactions/large").status_code == 403


def test_bad_input_is_refused_by_name(client: Any, ta: Any) -> None:
    seed(ta)
    for query, field in (("min_value=abc", "min_value"), ("min_value=-5", "min_value"), ("cursor=xyz", "cursor"),
                         ("limit=0", "limit")):
        response = _get(client, ta, "alice", f"/api/v1/transactions/large?{query}")
        assert response.status_code == 400, query
        assert field in response.get_data(as_text=True), query


def test_the_pages_per_role(client: Any, ta: Any) -> None:
    seed(ta)
    login_session(client, ta, "alice")
    html = client.get("/holdings").get_data(as_text=True)
    assert re.findall(r'data-asset="(\w+)"', html) == ["BTC", "ETH", "SOL"]
    assert 'href="/holdings/BTC"' in html and "Recent large trades" in html  # the firm-wide sub-menu
    holders = client.get("/holdings/BTC").get_data(as_text=True)
    assert holders.index("Employee 1") < holders.index("Employee 2")
    trades = client.get("/trades/large").get_data(as_text=True)
    assert re.findall(r'data-transaction-id="(\d+)"', trades) == ["2", "1", "6", "4", "8"]
    assert client.get("/trades/large?min_value=nope").status_code == 400
    login_session(client, ta, "carol")
    html = client.get("/holdings").get_data(as_text=True)
    assert "flagged employees" in html and "SOL" not in html
    trades = client.get("/trades/large").get_data(as_text=True)
    assert re.findall(r'data-transaction-id="(\d+)"', trades) == ["2", "8"]
    login_session(client, ta, "victor")
    assert client.get("/holdings").status_code == 403 and client.get("/trades/large").status_code == 403


def test_a_page_that_looks_far_enough_stops_and_says_how_far(client: Any, ta: Any, monkeypatch: Any) -> None:
    from appliance.services import firm

    seed(ta)
    monkeypatch.setattr(firm, "SCAN_BATCH", 2)
    monkeypatch.setattr(firm, "MAX_SCANNED", 3)  # trades 3, 2, 1 (newest first) looked at, then the page stops
    first = _get(client, ta, "alice", "/api/v1/transactions/large?min_value=25000").get_json()
    assert first["trades"] == [] and first["searched_back_to"] is not None and first["next_cursor"]
    ids: list[int] = []
    cursor = first["next_cursor"]
    while cursor:
        page = _get(client, ta, "alice", f"/api/v1/transactions/large?min_value=25000&cursor={cursor}").get_json()
        ids += [t["id"] for t in page["trades"]]
        cursor = page["next_cursor"]
    assert ids == [8]  # found further back, nothing skipped or repeated
    login_session(client, ta, "alice")
    html = client.get("/trades/large?min_value=25000").get_data(as_text=True)
    assert 'id="searched-back-to"' in html and 'rel="next"' in html
