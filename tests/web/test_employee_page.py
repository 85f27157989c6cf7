"""The employee page: value and its history, connections in plain words, transactions paged and filtered, and
why the reader may see the figures."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from sqlalchemy import insert

from appliance.store.base import utcnow
from appliance.store.models import Alert, Connection, Employee, EmployeeValueDay, Transaction
from tests.access.helpers import login_session

NOW = utcnow().replace(microsecond=0)


def seed(ta: Any) -> None:
    now = utcnow().replace(microsecond=0)
    with ta.store.unit_of_work() as session:
        session.execute(insert(Employee), [{"id": 1, "name": "Ada Lovelace", "email": "ada@firm.example"}])
        session.execute(insert(Connection), [
            {"id": 1, "employee_id": 1, "kind": "exchange", "venue": "kraken", "status": "active",
             "last_success_at": now - dt.timedelta(minutes=5)},
            {"id": 2, "employee_id": 1, "kind": "exchange", "venue": "binance", "status": "broken",
             "last_error_class": "authentication", "last_error": '{"code":-2015,"msg":"Invalid API-key"}'}])
        session.execute(insert(Transaction), [{
            "id": n, "connection_id": 1 + n % 2, "stream": "trades", "venue_tx_id": f"t{n}",
            "kind": "buy" if n % 3 else "sell", "asset": "BTC" if n % 4 else "ETH", "amount": Decimal("0.5"),
            "occurred_at": NOW - dt.timedelta(days=120 - n), "provenance": "api"} for n in range(1, 121)])
        session.execute(insert(EmployeeValueDay), [{
            "employee_id": 1, "currency": "USD", "day": NOW.date() - dt.timedelta(days=d),
            "balances": Decimal(10000 + d), "positions": Decimal(0), "balances_unpriced": 0, "positions_unpriced": 0,
            "as_of": NOW} for d in range(5)])


def ids(html: str) -> list[str]:
    table = html[html.index('id="transactions"'):]
    table = table[:table.index("</table>")]
    return re.findall(r"<tr><td><time", table)


def test_transactions_are_paged_and_filtered(client: Any, ta: Any) -> None:
    seed(ta)
    login_session(client, ta, "alice")
    html = client.get("/employees/1").get_data(as_text=True)
    assert len(ids(html)) == 50 and "Older transactions" in html
    older = re.search(r'href="([^"]*before=(\d+)[^"]*)"', html)
    assert older and older.group(2) == "71"  # newest first: 120 .. 71 on the first page
    second = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert len(ids(second)) == 50
    third = client.get("/employees/1?before=21").get_data(as_text=True)
    assert len(ids(third)) == 20 and "Older transactions" not in third

    kraken_eth = client.get("/employees/1?venue=binance&asset=ETH&kind=sell").get_data(as_text=True)
    expected = [n for n in range(1, 121) if n % 2 == 1 and n % 4 == 0 and n % 3 == 0]
    assert len(ids(kraken_eth)) == len(expected)  # binance is connection 2: odd n; none is both odd and % 4
    dated = (NOW - dt.timedelta(days=10)).date().isoformat()
    recent = client.get(f"/employees/1?from={dated}").get_data(as_text=True)
    assert 10 <= len(ids(recent)) <= 11  # the firm's calendar day boundary (UTC here)
    none = client.get("/employees/1?asset=DOGE").get_data(as_text=True)
    assert "No transaction matches these filters" in none
    bad = client.get("/employees/1?from=yesterday")
    assert bad.status_code == 400 and "a day such as" in bad.get_data(as_text=True)


def test_value_history_plain_words_and_the_raw_error_behind_details(client: Any, ta: Any) -> None:
    seed(ta)
    login_session(client, ta, "alice")
    html = client.get("/employees/1").get_data(as_text=True)
    assert '<svg class="chart"' in html and "Value held per day" in html and "10,004.00" in html
    assert "The venue no longer accepts the key" in html
    assert "<details><summary>details</summary>" in html and "Invalid API-key" in html
    assert "5 minutes ago" in html
    assert "Your role sees every employee" in html


def test_a_flagged_reader_is_told_why(client: Any, ta: Any) -> None:
    seed(ta)
    with ta.store.unit_of_work() as session:
        session.execute(insert(Alert), [{"employee_id": 1, "kind": "rule_break", "title": "Restricted asset bought"}])
    login_session(client, ta, "carol")
    html = client.get("/employees/1").get_data(as_text=True)
    why = html[html.index('id="why"'):]
    assert "flagged by" in why[:800] and "Restricted asset bought" in why[:1500]
