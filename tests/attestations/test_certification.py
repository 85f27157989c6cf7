"""The employee certifies in the portal, Compliance reviews: declared accounts and manual entries, the typed
name, "nothing to report", a frozen snapshot, another employee's task reading as absent, returning with a
comment and resubmitting, opening a submission flagging the employee for the review."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from appliance.services.attestations.snapshot import digest
from appliance.store.models import Alert, AttestationSubmission, AttestationTask
from tests.attestations.helpers import Dashboard, access_person, portal_get, portal_post, task_of
from tests.portal.conftest import give_records, signed_in


def current_quarter() -> str:
    today = dt.datetime.now(dt.UTC).date()
    return f"{today.year}Q{(today.month - 1) // 3 + 1}"


def _submissions(ta: Any) -> int:
    with ta.store.read() as session:
        return int(session.execute(select(func.count()).select_from(AttestationSubmission)).scalar_one())


def test_certify_review_return_resubmit_approve(client: Any, ta: Any, flask_app: Any) -> None:
    alice, carol = Dashboard(client, ta, "alice"), Dashboard(client, ta, "carol")
    ada_id, frank_id = access_person(alice, "Ada Lovelace"), access_person(alice, "Frank")
    records = give_records(ta, ada_id, "ADACOIN")  # a buy an hour ago: in this quarter
    campaign = carol.post("/campaigns", {"kind": "quarterly_transactions", "period": current_quarter()})
    task_id = task_of(campaign, ada_id)["id"]
    frank_task = task_of(campaign, frank_id)["id"]

    ada = signed_in(flask_app, ta, ada_id)
    assert task_id in [t["id"] for t in portal_get(ada, "/tasks")["tasks"]]
    task = portal_get(ada, f"/tasks/{task_id}")
    assert [r["record"] for r in task["content"]["records"]] == [f"tx:{records['transaction']}"]
    assert task["content"]["accounts"][0]["venue"] == "kraken"
    # Another employee's task reads as absent, on the API and the page.
    assert ada.get(f"/api/v1/me/tasks/{frank_task}").status_code == 404
    assert ada.get(f"/me/tasks/{frank_task}").status_code == 404
    assert ada.get(f"/me/tasks/{task_id}").status_code == 200

    portal_post(ada, f"/tasks/{task_id}/declared", {"venue": "Coinbase", "account": "personal",
                                                    "reason": "no read-only key offered"})
    period_day = dt.datetime.now(dt.UTC).date().isoformat()
    portal_post(ada, f"/tasks/{task_id}/manual", {"asset": "sol", "quantity": "12", "price": "150",
                                                  "principal": "1800", "venue": "Phantom wallet",
                                                  "date": period_day, "nature": "buy"})
    # Bad input is refused by name and changes nothing.
    outside = portal_post(ada, f"/tasks/{task_id}/manual", {"asset": "SOL", "quantity": "1", "venue": "x",
                                                            "date": "2001-01-01", "nature": "buy"}, 400)
    assert "date" in outside["error"]["fields"] and "must fall in" in outside["error"]["message"]
    wrong = portal_post(ada, f"/tasks/{task_id}/certify", {"typed_name": "Ada Byron"}, 400)
    assert "typed_name" in wrong["error"]["fields"] and "your name" in wrong["error"]["message"]
    nothing = portal_post(ada, f"/tasks/{task_id}/certify", {"typed_name": "Ada Lovelace",
                                                             "nothing_to_report": True}, 400)
    assert "nothing to report" in nothing["error"]["message"]
    assert _submissions(ta) == 0 and portal_get(ada, f"/tasks/{task_id}")["status"] == "open"
    assert len(portal_get(ada, f"/tasks/{task_id}")["content"]["manual"]) == 1

    first = portal_post(ada, f"/tasks/{task_id}/certify", {"typed_name": "  ada lovelace "})
    assert first["status"] == "submitted" and first["number"] == 1
    assert portal_post(ada, f"/tasks/{task_id}/declared", {"venue": "X", "reason": "y"}, 409)

    # Carol's scope is flagged: Ada's balances are hidden until she opens the submission for review.
    assert carol.get(f"/employees/{ada_id}/balances", status=404)
    queue = carol.get("/attestations/submissions")["submissions"]
    assert [s["id"] for s in queue] == [first["submission_id"]]
    assert carol.get(f"/attestations/submissions/{first['submission_id']}")["snapshot"] is None
    opened = carol.post(f"/attestations/submissions/{first['submission_id']}/open", None, 200)
    snap = opened["snapshot"]
    assert opened["review_alert_id"] and digest(snap) == opened["snapshot_sha256"] == first["snapshot_sha256"]
    assert snap["manual"][0]["source"] == "manual" and snap["manual"][0]["asset"] == "SOL"
    assert snap["declared_accounts"][0]["venue"] == "Coinbase" and snap["typed_name"] == "ada lovelace"
    assert snap["records"][0]["source"] == "synced"
    assert carol.get(f"/employees/{ada_id}/balances")["balances"]
    with ta.store.read() as session:
        alert = session.get(Alert, opened["review_alert_id"])
        assert alert is not None and alert.kind == "attestation_review" and alert.employee_id == ada_id
        assert "under review" in alert.title

    no_comment = client.post(f"/api/v1/attestations/submissions/{first['submission_id']}/decision",
                             json={"approve": False, "comment": " "}, headers=carol.headers)
    assert no_comment.status_code == 400 and "comment is required" in no_comment.get_json()["error"]["message"]
    returned = carol.post(f"/attestations/submissions/{first['submission_id']}/decision",
                          {"approve": False, "comment": "Add the Ledger wallet you told us about."}, 200)
    assert returned["status"] == "returned"
    again = portal_get(ada, f"/tasks/{task_id}")
    assert again["status"] == "returned" and again["comment"] == "Add the Ledger wallet you told us about."
    assert "Add the Ledger wallet" in ada.get(f"/me/tasks/{task_id}").text
    portal_post(ada, f"/tasks/{task_id}/declared", {"venue": "Ledger", "reason": "hardware wallet"})
    second = portal_post(ada, f"/tasks/{task_id}/certify", {"typed_name": "Ada Lovelace"})
    assert second["number"] == 2 and second["snapshot_sha256"] != first["snapshot_sha256"]
    approved = carol.post(f"/attestations/submissions/{second['submission_id']}/decision",
                          {"approve": True, "comment": ""}, 200)
    assert approved["status"] == "approved"
    assert task_of(carol.get(f"/campaigns/{campaign['id']}"), ada_id)["status"] == "approved"
    with ta.store.read() as session:
        first_row = session.get(AttestationSubmission, first["submission_id"])
        assert first_row is not None and first_row.status == "returned"
        assert len(first_row.snapshot["declared_accounts"]) == 1  # the first certification, as it was
        task = session.get(AttestationTask, task_id)
        assert task is not None and task.status == "approved"
    # Every step is in the audit trail.
    from appliance.store.models import AuditEvent

    with ta.store.read() as session:
        actions = {a for (a,) in session.execute(select(AuditEvent.action))}
    assert {"portal.task_declare", "portal.task_manual", "portal.task_certify", "attestations.submission_open",
            "attestations.review_decide", "attestations.campaign_create"} <= actions


def test_nothing_to_report_and_the_code_of_ethics_acknowledgement(client: Any, ta: Any, flask_app: Any) -> None:
    alice, carol = Dashboard(client, ta, "alice"), Dashboard(client, ta, "carol")
    eve_id = access_person(alice, "Eve")
    campaign = carol.post("/campaigns", {"kind": "quarterly_transactions", "period": current_quarter()})
    eve = signed_in(flask_app, ta, eve_id)
    done = portal_post(eve, f"/tasks/{task_of(campaign, eve_id)['id']}/certify",
                       {"typed_name": "Eve", "nothing_to_report": True})
    assert done["status"] == "submitted"
    code = carol.post("/code-versions", {"title": "Code of Ethics 2026", "text": "1. Report.\n2. Pre-clear.\n"})
    assert code["version"] == 1 and len(code["sha256"]) == 64
    ack = carol.get(f"/campaigns/{code['campaign_id']}")
    assert ack["kind"] == "code_acknowledgement" and ack["code_version"] == 1
    task_id = task_of(ack, eve_id)["id"]
    assert "2. Pre-clear." in eve.get(f"/me/tasks/{task_id}").text
    acknowledged = portal_post(eve, f"/tasks/{task_id}/certify", {"typed_name": "Eve", "confirm": True})
    assert acknowledged["status"] == "approved"
    same = client.post("/api/v1/code-versions", json={"title": "again", "text": "1. Report.\n2. Pre-clear.\n"},
                       headers=carol.headers)
    assert same.status_code == 409
    from appliance.store.models import CodeAcknowledgement

    with ta.store.read() as session:
        (row,) = session.execute(select(CodeAcknowledgement)).scalars()
        assert row.employee_id == eve_id and row.typed_name == "Eve"
