"""The transactions report in the rule's fields (synced and certified manual entries), CSV typing and Excel
safety, print-ready HTML, the roster and the late list, bad dates refused, the permissions, the audit."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from appliance.services.attestations.snapshot import manual_json
from appliance.services.sync import run_cycle
from appliance.store.models import (
    Alert,
    AttestationCampaign,
    AttestationDeclaredAccount,
    AttestationManualEntry,
    AttestationSubmission,
    AttestationTask,
    AuditEvent,
    Connection,
    Employee,
)
from tests.reports.conftest import DAY_MS, api, ms
from tests.support.sim import RunningSim
from tests.sync.conftest import onboard, sim_account

FORMULA_NAME = '=HYPERLINK("http://evil.example","click")'
QUIET = {"trades": 0, "deposits": 0, "withdrawals": 0}


def seeded(sta: Any, sim: RunningSim) -> dict[str, Any]:
    """An access person (a formula for a name) with a kraken account: a buy, a sell, a deposit and a withdrawal
    in the last 40 days, a certified manual transaction, an undeclared account, and a late report."""
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    now = dt.datetime.now(dt.UTC)
    venue_sim, account = sim_account(sim, "kraken", key["api_key"])
    with sim.app.state.lock:
        venue_sim.add_trades(account, 0, explicit=[
            {"base": "BTC", "quote": "USD", "side": "buy", "amount": "0.25", "price": "40000", "fee": "1.5",
             "timestamp": ms(now) - 30 * DAY_MS},
            {"base": "ETH", "quote": "USDT", "side": "sell", "amount": "1.5", "price": "2500", "fee": "0.75",
             "timestamp": ms(now) - 20 * DAY_MS}])
        venue_sim.add_deposits(account, 0, explicit=[{"asset": "USD", "amount": "20000",
                                                      "timestamp": ms(now) - 35 * DAY_MS}])
        venue_sim.add_withdrawals(account, 0, explicit=[{"asset": "BTC", "amount": "0.1", "fee": "0.0005",
                                                         "timestamp": ms(now) - 10 * DAY_MS}])
    cycle = run_cycle(sta.appliance, only=cid, force=True)
    assert not cycle.failed, cycle.lines()
    today = now.date()
    with sta.store.unit_of_work() as session:
        connection = session.get(Connection, cid)
        assert connection is not None
        person = session.get(Employee, connection.employee_id)
        assert person is not None
        person.name, person.external_id, person.department = FORMULA_NAME, "@SUM(1)", "+1"
        person.access_person, person.access_person_since = True, today - dt.timedelta(days=100)
        campaign = AttestationCampaign(kind="quarterly_transactions", period="", title="Custom transactions",
                                       period_start=today - dt.timedelta(days=60), period_end=today,
                                       due=today - dt.timedelta(days=12))
        late = AttestationCampaign(kind="annual_holdings", period=str(today.year), title="Annual holdings",
                                   as_of=today - dt.timedelta(days=40), due=today - dt.timedelta(days=12))
        session.add_all([campaign, late])
        session.flush()
        submitted_at = now - dt.timedelta(days=5)
        task = AttestationTask(campaign_id=campaign.id, employee_id=person.id, due=campaign.due, status="submitted",
                               first_submitted_at=submitted_at, submitted_at=submitted_at)
        open_task = AttestationTask(campaign_id=late.id, employee_id=person.id, due=late.due, status="open")
        session.add_all([task, open_task])
        session.flush()
        entry = AttestationManualEntry(task_id=task.id, employee_id=person.id, kind="transaction", asset="XYZ",
                                       identifier="private placement", quantity=Decimal("5"), price=Decimal("20"),
                                       principal=Decimal("100"), currency="USD", venue="Local broker",
                                       occurred_on=today - dt.timedelta(days=15), nature="other_acquisition")
        session.add(entry)
        session.flush()
        # What the employee certified: the frozen snapshot holds the manual entry (the report reads it there).
        session.add(AttestationSubmission(task_id=task.id, employee_id=person.id, number=1,
                                          submitted_at=submitted_at, typed_name="E Mployee",
                                          snapshot={"kind": "quarterly_transactions", "manual": [manual_json(entry)],
                                                    "records": [], "nothing_to_report": False},
                                          snapshot_sha256="0" * 64))
        # A draft changed after the submission is not what was certified: not in the report.
        session.add(AttestationManualEntry(task_id=task.id, employee_id=person.id, kind="transaction", asset="DRAFT",
                                           quantity=Decimal("1"), occurred_on=today - dt.timedelta(days=3),
                                           nature="buy"))
        session.add(AttestationDeclaredAccount(task_id=task.id, employee_id=person.id, venue="Ledger Live",
                                               account="cold wallet", reason="hardware wallet, not connected"))
        employee_id = person.id
    return {"cid": cid, "employee_id": employee_id, "submitted_at": submitted_at, "today": today}


def window(data: dict[str, Any]) -> str:
    return f"from={(data['today'] - dt.timedelta(days=60)).isoformat()}&to={data['today'].isoformat()}"


def test_transactions_report_in_the_rule_fields(sta: Any, sim: RunningSim) -> None:
    data = seeded(sta, sim)
    answer = api(sta, f"/reports/transactions?{window(data)}")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    rows = body["rows"]
    for column in ("asset", "chain_or_contract", "market_id", "kind", "quantity", "price", "principal_amount",
                   "venue", "account", "date", "nature", "report_submitted_at", "trade_price", "provenance"):
        assert column in body["columns"], column
    natures = sorted((r["asset"], r["nature"]) for r in rows)
    assert natures == [("BTC", "buy"), ("BTC", "other disposition"), ("ETH", "sell"), ("USD", "other acquisition"),
                       ("XYZ", "other acquisition")]
    buy = next(r for r in rows if r["nature"] == "buy")
    assert Decimal(buy["quantity"]) == Decimal("0.25") and Decimal(buy["trade_price"]) == 40000
    assert buy["venue"] == "Kraken"
    assert buy["provenance"] == "api" and buy["manual"] is False
    assert buy["report_submitted_at"] == data["submitted_at"].isoformat().replace("+00:00", "Z")
    assert "DRAFT" not in {r["asset"] for r in rows}, "only what the employee certified"
    manual = next(r for r in rows if r["asset"] == "XYZ")
    assert manual["provenance"] == "manual" and manual["manual"] is True and Decimal(manual["principal_amount"]) == 100
    assert any("declared, not connected: Ledger Live cold wallet" in g for g in body["coverage_gaps"])


def test_csv_numbers_dates_and_excel_safety(sta: Any, sim: RunningSim) -> None:
    data = seeded(sta, sim)
    text = api(sta, f"/reports/transactions?{window(data)}&format=csv").get_data(as_text=True)
    assert "\r\n" in text
    parsed = list(csv.reader(io.StringIO(text)))
    header, body = parsed[0], parsed[1:]
    at = {name: i for i, name in enumerate(header)}
    for row in body:
        assert row[at["employee"]] == "'" + FORMULA_NAME, "a formula is neutralised, not run by a spreadsheet"
        assert row[at["employee_external_id"]] == "'@SUM(1)"
        assert re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", row[at["quantity"]]), row[at["quantity"]]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row[at["date"]]), row[at["date"]]
        assert row[at["access_person"]] == "true"
    raw_lines = text.split("\r\n")
    assert all(not re.search(r'"[0-9.]+"', line) for line in raw_lines), "numbers are never quoted"
    holdings = api(sta, f"/reports/holdings?as_of={data['today'].isoformat()}&format=csv").get_data(as_text=True)
    hrows = list(csv.DictReader(io.StringIO(holdings)))
    assert hrows and all(re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", r["quantity"]) for r in hrows)
    assert all(r["as_of"] == data["today"].isoformat() for r in hrows)
    assert all(r["principal_amount"] == "unpriced" or re.fullmatch(r"-?[0-9]+\.[0-9]{2}", r["principal_amount"])
               for r in hrows)


def test_print_pages_repeat_headers_break_pages_and_stay_csp_clean(sta: Any, sim: RunningSim) -> None:
    data = seeded(sta, sim)
    response = api(sta, f"/reports/transactions?{window(data)}&format=html")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<thead>" in page and "report-print.css" in page
    assert "<script" not in page and "style=" not in page and "<style" not in page
    assert "&#34;" in page or "&quot;" in page, "the formula name is escaped in HTML"
    assert "Coverage gaps" in page and "Transactions report" in page
    from appliance.services.filings.document import STYLESHEET

    css = STYLESHEET.read_text()
    assert "table-header-group" in css and "break-after: page" in css


def test_roster_and_late_list(sta: Any, sim: RunningSim) -> None:
    data = seeded(sta, sim)
    roster = api(sta, "/reports/access-persons").get_json()
    assert [r["employee"] for r in roster["rows"]] == [FORMULA_NAME]
    assert roster["rows"][0]["accounts_connected"] == 1
    late = api(sta, "/reports/late").get_json()["rows"]
    assert [(r["kind"], r["days_late"], r["status"]) for r in late] == [
        ("annual_holdings", 12, "late"),  # still open, due 12 days ago
        ("quarterly_transactions", 7, "submitted")]  # submitted 5 days ago, due 12 days ago
    assert data["employee_id"]


@pytest.mark.parametrize("query", [
    "/reports/holdings?as_of=2026-13-01", "/reports/holdings?as_of=yesterday", "/reports/holdings?as_of=1999-01-01",
    "/reports/transactions?period=2026Q5", "/reports/transactions?period=26", "/reports/transactions?from=2026-02-01",
    "/reports/transactions?from=2026-03-01&to=2026-02-01", "/reports/transactions?period=2026Q1&from=2026-01-01",
    "/reports/transactions?from=2026-02-30&to=2026-03-01", "/reports/holdings?format=pdf",
    "/reports/transactions?period=2026Q3&extra=1", "/reports/holdings?as_of=2999-01-01"])
def test_bad_dates_and_periods_are_refused(sta: Any, query: str) -> None:
    response = api(sta, query)
    assert response.status_code in (400, 422), response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["message"]


def test_permissions_and_audit(sta: Any, sim: RunningSim) -> None:
    data = seeded(sta, sim)
    for persona, path, status in [
            ("victor", "/reports/holdings", 403), ("victor", f"/reports/transactions?{window(data)}", 403),
            ("victor", "/reports/access-persons", 200), ("victor", "/reports/late", 200),
            ("carol", f"/reports/transactions?{window(data)}", 200)]:
        assert api(sta, path, persona).status_code == status, (persona, path)
    # Compliance sees flagged employees only: nobody is flagged here, so no synced rows.
    carol = api(sta, f"/reports/transactions?{window(data)}", "carol").get_json()
    assert carol["rows"] == []
    assert api(sta, "/reports/holdings", "carol").get_json()["rows"] == []
    with sta.store.unit_of_work() as session:  # an open alert flags the employee: now in Compliance's scope
        session.add(Alert(employee_id=data["employee_id"], kind="manual", title="Look at this", status="open"))
    carol = api(sta, f"/reports/transactions?{window(data)}", "carol").get_json()
    assert {r["asset"] for r in carol["rows"]} == {"BTC", "ETH", "USD", "XYZ"}
    assert {r["asset"] for r in api(sta, "/reports/holdings", "carol").get_json()["rows"]} >= {"BTC", "ETH"}
    with sta.store.read() as session:
        actions = [a for (a,) in session.execute(select(AuditEvent.action).where(
            AuditEvent.action.like("reports.%")))]
    assert "reports.transactions" in actions and "reports.holdings" in actions


def test_red_and_late_starting_accounts_are_stated_as_coverage_gaps(sta: Any, sim: RunningSim) -> None:
    data = seeded(sta, sim)
    with sta.store.unit_of_work() as session:
        connection = session.get(Connection, data["cid"])
        assert connection is not None
        connection.status, connection.status_reason = "broken", "the key was revoked"
    body = api(sta, f"/reports/transactions?{window(data)}").get_json()
    assert any("is broken: the key was revoked" in g for g in body["coverage_gaps"]), body["coverage_gaps"]
    assert any("first read" in g for g in body["coverage_gaps"]), "read for the first time inside the period"
    assert all("is broken" in r["coverage_gaps"] for r in body["rows"] if r["provenance"] == "api")
