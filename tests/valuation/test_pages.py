"""Values on the employee page (per row and per employee), firm totals for users whose scope covers every
employee, and values in the holdings and transactions reports — "unpriced" with the reason, never 0."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from typing import Any

from tests.access.helpers import login_session
from tests.support.sim import RunningSim
from tests.sync.conftest import https_client, onboard
from tests.valuation.conftest import employee_of, set_balances, sync_and_price

QUIET = {"trades": 0, "deposits": 0, "withdrawals": 0}


def priced_employee(sta: Any, sim: RunningSim) -> tuple[int, int]:
    cid, key = onboard(sta, sim, "kraken", history={"trades": 2, "deposits": 1, "withdrawals": 0})
    set_balances(sim, "kraken", key["api_key"], {"BTC": "1.5", "ADA": "500"})
    sync_and_price(sta, cid)
    return cid, employee_of(sta, cid)


def test_the_employee_page_shows_values_totals_and_unpriced_reasons(sta: Any, sim: RunningSim) -> None:
    _cid, employee_id = priced_employee(sta, sim)
    client = https_client(sta)
    login_session(client, sta, "alice")
    page = client.get(f"/employees/{employee_id}").get_data(as_text=True)
    assert "Value (USD)" in page and "Price (USD)" in page
    table = page.split('id="balances"', 1)[1].split("</table>", 1)[0]
    btc_row = next(row for row in table.split("<tr>") if "<td>BTC</td>" in row)
    value = Decimal(re.search(r'data-value="([0-9.]+)"', btc_row).group(1))  # type: ignore[union-attr]
    shown = f"{value.quantize(Decimal('0.01')):,}"
    assert shown in btc_row, "the value, rounded to cents, with thousands separators"
    ada_row = next(row for row in table.split("<tr>") if "<td>ADA</td>" in row)
    assert "data-unpriced" in ada_row and "no price source lists ADA against USD" in ada_row
    assert re.search(r"Total balances: [0-9,]+\.\d\d USD</strong> — not complete: 1 item\(s\) unpriced", page)
    assert 'data-unpriced' in page.split('id="transactions"', 1)[1] or "data-value" in page.split(
        'id="transactions"', 1)[1], "transactions carry a value or say why not"


def test_firm_totals_only_for_users_whose_scope_covers_every_employee(sta: Any, sim: RunningSim) -> None:
    priced_employee(sta, sim)
    seen = {}
    for persona in ("alice", "carol", "victor"):
        client = https_client(sta)
        login_session(client, sta, persona)
        seen[persona] = client.get("/reports").get_data(as_text=True)
    assert 'id="firm-total"' in seen["alice"] and "Not complete: 1 holding(s) unpriced" in seen["alice"]
    assert 'id="firm-total"' not in seen["carol"], "flagged scope: a firm total would cover employees not shown"
    assert 'id="firm-total"' not in seen["victor"], "no balance permission at all"


def test_reports_export_values_and_unpriced_with_the_reason(sta: Any, sim: RunningSim) -> None:
    priced_employee(sta, sim)
    client = https_client(sta)
    login_session(client, sta, "alice")
    holdings = list(csv.DictReader(io.StringIO(client.get("/reports/holdings.csv").get_data(as_text=True))))
    by_asset = {row["asset"]: row for row in holdings}
    btc, ada = by_asset["BTC"], by_asset["ADA"]
    assert btc["currency"] == "USD" and btc["price_source"] == "kraken" and btc["unpriced_reason"] == ""
    assert Decimal(btc["value"]) == (Decimal(btc["quantity"]) * Decimal(btc["price"])).quantize(Decimal("0.01"))
    assert ada["value"] == "unpriced" and ada["price"] == ""
    assert ada["unpriced_reason"].startswith("no price for ADA in USD")
    report = client.get("/reports/transactions.csv").get_data(as_text=True)
    header = next(csv.reader(io.StringIO(report)))
    assert len(header) == len(set(header)), "no column named twice (the trade's own price is trade_price)"
    transactions = list(csv.DictReader(io.StringIO(report)))
    assert transactions
    for row in transactions:
        if row["value"] == "unpriced":
            assert row["unpriced_reason"], row
        else:
            assert Decimal(row["price"]) > 0 and row["price_source"] and row["unpriced_reason"] == ""
            assert Decimal(row["value"]) == (Decimal(row["quantity"]) * Decimal(row["price"])).quantize(
                Decimal("0.01"))
    assert all(row["currency"] == "USD" for row in transactions)
    trades = [row for row in transactions if row["nature"] in ("buy", "sell")]
    assert trades and all(Decimal(row["trade_price"]) > 0 for row in trades)


def test_the_predictions_page_values_each_position(sta: Any, sim: RunningSim) -> None:
    cid, _key = onboard(sta, sim, "kalshi", history={"positions": 2, "fills": 0, "settlements": 0})
    sync_and_price(sta, cid)
    client = https_client(sta)
    login_session(client, sta, "alice")
    page = client.get("/predictions").get_data(as_text=True)
    assert "Value (USD)" in page and page.count("data-value=") == 2
    holdings = list(csv.DictReader(io.StringIO(client.get("/reports/holdings.csv").get_data(as_text=True))))
    positions = [row for row in holdings if row["kind"] == "prediction"]
    assert len(positions) == 2, "the holdings report carries prediction positions too"
    for row in positions:
        assert row["venue"] and row["market_id"] and row["outcome"] in ("yes", "no")
        assert row["currency"] == "USD" and row["price_source"] == "kalshi"
        assert Decimal(row["value"]) == (Decimal(row["quantity"]) * Decimal(row["price"])).quantize(Decimal("0.01"))
