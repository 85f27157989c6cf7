"""Transfer status through the real path (onboard, poll, API, reports), on both databases: a pending deposit
is shown as pending and completes on the next poll, once; failed and cancelled transfers are recorded with
their status and never counted; a Coinbase key revoked with its documented error body is red in one cycle; the
venue limitations of findings 3 and 5 are standing coverage gaps."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from appliance.rbac.actors import system_actor
from appliance.services import reports
from appliance.services.sync import run_cycle
from appliance.store.models import CoverageInterval, Transaction
from tests.access.helpers import auth, login_session, token
from tests.support.sim import RunningSim
from tests.sync.conftest import connection, detached, https_client, make_due, onboard

EMPTY = {"trades": 0, "deposits": 0, "withdrawals": 0}


def stored(sta: Any, connection_id: int, stream: str) -> list[Transaction]:
    with sta.store.read() as session:
        return detached(session, list(session.execute(select(Transaction).where(
            Transaction.connection_id == connection_id, Transaction.stream == stream)
            .order_by(Transaction.id)).scalars()))


def gaps(sta: Any, connection_id: int) -> list[CoverageInterval]:
    with sta.store.read() as session:
        return detached(session, list(session.execute(select(CoverageInterval).where(
            CoverageInterval.connection_id == connection_id, CoverageInterval.kind == "gap",
            CoverageInterval.closed_at.is_(None))).scalars()))


def test_a_pending_deposit_is_shown_pending_and_completes_on_the_next_poll(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "binance", history=EMPTY)
    made = sim.control("POST", f"binance/keys/{key['api_key']}/deposits", {"deposits": [
        {"asset": "BTC", "amount": "0.75", "status": "pending"}]})
    assert run_cycle(sta.appliance).outcomes[0].ok
    (row,) = stored(sta, cid, "deposits")
    assert (row.status, row.status_changed_at) == ("pending", None)

    client = https_client(sta)
    bearer = token(client, sta, "alice")
    employee_id = connection(sta, cid).employee_id
    listed = client.get(f"/api/v1/employees/{employee_id}/transactions", headers=auth(bearer)).get_json()
    assert [t["status"] for t in listed["transactions"]] == ["pending"]
    login_session(client, sta, "alice")
    page = client.get(f"/employees/{employee_id}").get_data(as_text=True)
    assert 'data-tx-status="pending"' in page

    sim.control("POST", f"binance/keys/{key['api_key']}/transfers/{made['ids'][0]}", {"status": "ok"})
    make_due(sta, cid)
    assert run_cycle(sta.appliance).outcomes[0].ok
    (row,) = stored(sta, cid, "deposits")  # the same row, updated: no second record
    assert row.status == "completed"
    assert row.status_changed_at is not None
    listed = client.get(f"/api/v1/employees/{employee_id}/transactions", headers=auth(bearer)).get_json()
    assert [t["status"] for t in listed["transactions"]] == ["completed"]


def test_failed_and_cancelled_transfers_are_recorded_but_not_counted(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "okx", history=EMPTY)
    sim.control("POST", f"okx/keys/{key['api_key']}/withdrawals", {"withdrawals": [
        {"asset": "ETH", "amount": "1.25", "status": "ok"}, {"asset": "ETH", "amount": "9", "status": "failed"},
        {"asset": "ETH", "amount": "7", "status": "cancelled"}, {"asset": "ETH", "amount": "5", "status": "pending"}]})
    assert run_cycle(sta.appliance).outcomes[0].ok
    rows = stored(sta, cid, "withdrawals")
    assert sorted((r.amount, r.status) for r in rows) == [
        (Decimal("1.25"), "completed"), (Decimal("5"), "pending"), (Decimal("7"), "cancelled"),
        (Decimal("9"), "failed")]
    with sta.store.read() as session:
        report = reports.transaction_rows(session, system_actor("t"), sta.settings, since=None, until=None)
    header = report[0]
    amounts = [line[header.index("quantity")] for line in report[1:]
               if line[header.index("nature")] == "withdrawal"]
    assert amounts == [Decimal("1.25")]  # reports count what moved


def test_a_revoked_coinbase_key_with_the_documented_body_is_red_in_one_cycle(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "coinbase", history={"trades": 2, "deposits": 1, "withdrawals": 0})
    assert run_cycle(sta.appliance).outcomes[0].ok
    sim.control("POST", f"coinbase/keys/{key['api_key']}/revoke")
    make_due(sta, cid)
    outcome = run_cycle(sta.appliance).outcomes[0]
    assert (outcome.ok, outcome.error_class) == (False, "authentication")
    row = connection(sta, cid)
    assert row.status == "broken" and row.consecutive_failures == 1


def test_kraken_recipe_key_syncs_trades_and_records_the_ledger_gap(sta: Any, sim: RunningSim) -> None:
    key = sim.create_key("kraken", ["read"], history={"trades": 2, "deposits": 1, "withdrawals": 1})
    sim.control("POST", f"kraken/keys/{key['api_key']}/permission_strings",
                {"permissions": ["query-funds", "query-open-trades", "query-closed-trades"]})
    cid, _ = onboard(sta, sim, "kraken", key=key)
    outcome = run_cycle(sta.appliance).outcomes[0]
    assert outcome.ok and connection(sta, cid).status == "active"
    assert len(stored(sta, cid, "trades")) == 2
    open_gaps = {(g.stream, g.reason) for g in gaps(sta, cid)}
    assert open_gaps == {("deposits", "venue_limitation"), ("withdrawals", "venue_limitation")}
    # The employee adds Query Ledger Entries: the next poll reads the ledger and the gaps close.
    sim.control("POST", f"kraken/keys/{key['api_key']}/permission_strings",
                {"permissions": ["query-funds", "query-open-trades", "query-closed-trades", "query-ledger"]})
    make_due(sta, cid)
    assert run_cycle(sta.appliance).outcomes[0].ok
    assert gaps(sta, cid) == []
    assert len(stored(sta, cid, "deposits")) == 1 and len(stored(sta, cid, "withdrawals")) == 1


def test_bybit_sub_account_withdrawals_are_a_standing_gap(sta: Any, sim: RunningSim) -> None:
    key = sim.create_key("bybit", ["read"], history={"trades": 1, "deposits": 1, "withdrawals": 1})
    sim.control("POST", f"bybit/keys/{key['api_key']}/sub_account", {"sub": True})
    sim.control("POST", f"bybit/keys/{key['api_key']}/deposits", {"deposits": [
        {"asset": "USDT", "amount": "10", "internal": True}]})
    cid, _ = onboard(sta, sim, "bybit", key=key)
    assert run_cycle(sta.appliance).outcomes[0].ok
    assert connection(sta, cid).status == "active"
    assert [(g.stream, g.reason) for g in gaps(sta, cid) if g.reason == "venue_limitation"] == [
        ("withdrawals", "venue_limitation")]
    assert [r.amount for r in stored(sta, cid, "internal_deposits")] == [Decimal("10")]
    make_due(sta, cid)
    assert run_cycle(sta.appliance).outcomes[0].ok  # the gap stands, the poll is still a success
    assert [g.stream for g in gaps(sta, cid) if g.reason == "venue_limitation"] == ["withdrawals"]
    assert connection(sta, cid).last_success_at is not None
    assert dt.datetime.now(dt.UTC) - connection(sta, cid).last_success_at < dt.timedelta(minutes=5)  # type: ignore[operator]


def test_a_first_sync_over_many_windows_reports_its_progress(sta_factory: Any, sim: RunningSim) -> None:
    """Binance serves deposits 90 days a request since 2017: a first sync cut short (one page a stream per poll
    here) shows how far it got on the employee page and in the API, and the next polls go on from there."""
    sta = sta_factory(poller={"max_pages_per_sync": 1})
    cid, key = onboard(sta, sim, "binance", history={"trades": 0, "deposits": 2, "withdrawals": 0})
    assert run_cycle(sta.appliance).outcomes[0].ok
    client = https_client(sta)
    employee_id = connection(sta, cid).employee_id
    listed = client.get(f"/api/v1/employees/{employee_id}/connections",
                        headers=auth(token(client, sta, "alice"))).get_json()["connections"][0]
    progress = {p["stream"]: (p["done"], p["total"]) for p in listed["progress"]}
    assert progress["deposits"][0] == 16 and progress["deposits"][1] > 16
    login_session(client, sta, "alice")
    page = client.get(f"/employees/{employee_id}").get_data(as_text=True)
    assert 'class="help sync-progress" data-stream="deposits"' in page
    for _ in range(5):
        make_due(sta, cid)
        assert run_cycle(sta.appliance).outcomes[0].ok
    listed = client.get(f"/api/v1/employees/{employee_id}/connections",
                        headers=auth(token(client, sta, "alice"))).get_json()["connections"][0]
    assert listed["progress"] == []
    assert len(stored(sta, cid, "deposits")) == 2
    assert key["api_key"]
