"""Cases: manual alerts flag an employee; assignment by name to users who may triage; append-only
notes; evidence links; open -> investigating -> resolved/dismissed with a reason; reopen; a history of
every change; flagged scope from open and recently closed alerts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import update

from appliance.store.models import Alert
from tests.conduct.conftest import QUIET, add_trades, days_ago, sync
from tests.support.sim import RunningSim
from tests.sync.conftest import onboard


def test_manual_alert_flags_an_employee(sta: Any, sim: RunningSim, api: Any) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    add_trades(sim, "kraken", key, [{"base": "BTC", "quote": "USD", "side": "buy", "amount": "0.2", "price": "40000",
                                     "when": days_ago(3)}])
    sync(sta, cid)
    carol, victor = api("carol"), api("victor")
    employee = carol.get("/employees")["employees"][0]["id"]
    carol.get(f"/employees/{employee}/transactions", status=404)
    carol.get(f"/employees/{employee}/balances", status=404)

    missing = carol.post("/alerts", {"employee_id": employee, "title": "Tip-off"}, status=400)
    assert missing["error"]["field"] == "reason" and "reason is required" in missing["error"]["message"]
    carol.post("/alerts", {"employee_id": 987654, "title": "x", "reason": "y"}, status=400)
    victor.post("/alerts", {"employee_id": employee, "title": "x", "reason": "y"}, status=403)
    assert carol.get("/alerts")["alerts"] == []

    alert = carol.post("/alerts", {"employee_id": employee, "title": "Tip-off from the trading desk",
                                   "reason": "A colleague reported trades before the announcement"})
    assert alert["kind"] == "manual" and alert["status"] == "open" and alert["created_by_name"] == "carol"
    assert alert["history"][0]["action"] == "created"
    assert carol.get(f"/employees/{employee}/transactions")["transactions"][0]["asset"] == "BTC"
    assert carol.get(f"/employees/{employee}/balances")["balances"]


def test_case_workflow_with_notes_evidence_and_history(sta: Any, sim: RunningSim, api: Any) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    add_trades(sim, "kraken", key, [{"base": "ETH", "quote": "USD", "side": "sell", "amount": "1", "price": "2000",
                                     "when": days_ago(1)}])
    sync(sta, cid)
    carol, alice, victor = api("carol"), api("alice"), api("victor")
    employee = carol.get("/employees")["employees"][0]["id"]
    alert = carol.post("/alerts", {"employee_id": employee, "title": "Review", "reason": "random check"})
    aid = alert["id"]

    # Assign: only to users who may triage.
    assert carol.post(f"/alerts/{aid}/assign", {"user_id": sta.personas["victor"].user_id}, status=400)
    assigned = carol.post(f"/alerts/{aid}/assign", {"user_id": sta.personas["alice"].user_id}, status=200)
    assert assigned["assigned_to_name"] == "alice"

    carol.post(f"/alerts/{aid}/notes", {"text": ""}, status=400)
    carol.post(f"/alerts/{aid}/notes", {"text": "Called the employee; waiting for statements."})
    alice.post(f"/alerts/{aid}/notes", {"text": "Statements received."})
    victor.post(f"/alerts/{aid}/notes", {"text": "nope"}, status=403)

    tx = carol.get(f"/employees/{employee}/transactions")["transactions"][0]
    carol.post(f"/alerts/{aid}/evidence", {"type": "transaction", "id": tx["id"], "note": "the sale"})
    carol.post(f"/alerts/{aid}/evidence", {"type": "reference", "reference": "TICKET-4711"})
    carol.post(f"/alerts/{aid}/evidence", {"type": "transaction", "id": 987654}, status=400)

    carol.post(f"/alerts/{aid}/status", {"status": "investigating"}, status=200)
    refused = carol.post(f"/alerts/{aid}/status", {"status": "resolved"}, status=400)
    assert refused["error"]["field"] == "reason"
    closed = carol.post(f"/alerts/{aid}/status", {"status": "resolved", "reason": "pre-cleared trade"}, status=200)
    assert closed["status"] == "resolved" and closed["resolution"] == "pre-cleared trade"
    assert closed["flagged_until"] is not None
    carol.post(f"/alerts/{aid}/status", {"status": "open"}, status=400)  # reopen needs a reason
    reopened = carol.post(f"/alerts/{aid}/status", {"status": "open", "reason": "new facts"}, status=200)
    assert reopened["status"] == "open" and reopened["resolved_at"] is None
    carol.post(f"/alerts/{aid}/status", {"status": "dismissed", "reason": "duplicate of another case"}, status=200)

    case = carol.get(f"/alerts/{aid}")
    assert [n["text"] for n in case["notes"]] == ["Called the employee; waiting for statements.",
                                                  "Statements received."]
    assert [n["author"] for n in case["notes"]] == ["carol", "alice"]
    assert [(e["type"], e["ref_id"] or e["reference"]) for e in case["evidence"]] == [
        ("transaction", tx["id"]), ("reference", "TICKET-4711")]
    actions = [(h["action"], h["actor"]) for h in case["history"]]
    assert actions == [("created", "carol"), ("assigned", "carol"), ("note", "carol"), ("note", "alice"),
                       ("evidence", "carol"), ("evidence", "carol"), ("status", "carol"), ("status", "carol"),
                       ("reopened", "carol"), ("status", "carol")]
    assert case["history"][1]["detail"]["to_name"] == "alice"
    assert case["history"][7]["detail"] == {"from": "investigating", "to": "resolved", "reason": "pre-cleared trade"}
    # Notes and history are append-only: no route changes or removes them.
    for method in ("PUT", "PATCH", "DELETE"):
        response = carol.client.open(f"/api/v1/alerts/{aid}/notes", method=method, headers=carol.headers, json={})
        assert response.status_code == 405


def test_flagged_scope_lasts_the_window_after_closing(sta: Any, sim: RunningSim, api: Any) -> None:
    cid, _key = onboard(sta, sim, "kraken", history=QUIET)
    sync(sta, cid)
    carol = api("carol")
    employee = carol.get("/employees")["employees"][0]["id"]
    alert = carol.post("/alerts", {"employee_id": employee, "title": "Check", "reason": "routine"})
    carol.post(f"/alerts/{alert['id']}/status", {"status": "dismissed", "reason": "nothing found"}, status=200)
    carol.get(f"/employees/{employee}/transactions")  # closed, but within the window: still visible
    with sta.store.unit_of_work() as session:
        session.execute(update(Alert).where(Alert.id == alert["id"]).values(
            flagged_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    carol.get(f"/employees/{employee}/transactions", status=404)


def test_old_triage_route_still_works(sta: Any, api: Any) -> None:
    carol = api("carol")
    employee = carol.post("/alerts", {"employee_id": 1, "title": "x", "reason": "y"}, status=400)
    assert employee["error"]["field"] == "employee_id"
    alice = api("alice")
    eid = alice.post("/employees", {"name": "Ann", "email": "ann@example.com"})["id"]
    aid = carol.post("/alerts", {"employee_id": eid, "title": "x", "reason": "y"})["id"]
    taken = carol.post(f"/alerts/{aid}/triage", {"status": "assigned"}, status=200)
    assert taken["status"] == "investigating" and taken["assigned_to_name"] == "carol"
    closed = carol.post(f"/alerts/{aid}/triage", {"status": "resolved", "resolution": "ok"}, status=200)
    assert closed["status"] == "resolved"
