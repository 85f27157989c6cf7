"""Access persons, campaigns and tasks through the API: due dates as the rule says, statuses, bad input
refused by name with nothing changed, the late list, offboarding closing open tasks."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from appliance.store.models import AttestationCampaign, AttestationTask
from tests.attestations.helpers import Dashboard, access_person, task_of


def _count(ta: Any, model: Any) -> int:
    with ta.store.read() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_an_access_person_gets_an_initial_holdings_task_due_ten_days_later(client: Any, ta: Any) -> None:
    alice = Dashboard(client, ta, "alice")
    ada = access_person(alice, "Ada", since="2026-07-01")
    plain = alice.post("/employees", {"name": "Bob", "email": "bob@example.com"})
    assert plain["access_person"] is False and plain["access_person_since"] is None
    assert alice.get(f"/employees/{ada}")["access_person_since"] == "2026-07-01"
    listed = alice.get("/employees?access_person=yes")["employees"]
    assert [e["id"] for e in listed] == [ada]
    assert plain["id"] in [e["id"] for e in alice.get("/employees?access_person=no")["employees"]]
    campaigns = alice.get("/campaigns")["campaigns"]
    assert [c["kind"] for c in campaigns] == ["initial_holdings"]
    campaign = alice.get(f"/campaigns/{campaigns[0]['id']}")
    task = task_of(campaign, ada)
    assert task["due"] == "2026-07-11" and task["as_of"] == "2026-07-01"
    assert task["status"] == "late" and task["days_late"] == (dt.date.today() - dt.date(2026, 7, 11)).days
    # The refused combination changes nothing.
    before = _count(ta, AttestationTask)
    refused = client.post("/api/v1/employees", json={"name": "Cy", "email": "cy@example.com",
                                                     "access_person_since": "2026-07-01"}, headers=alice.headers)
    assert refused.status_code == 400 and "access_person_since" in refused.get_json()["error"]["message"]
    assert _count(ta, AttestationTask) == before


def test_a_quarterly_campaign_gives_each_access_person_a_task_due_30_days_after_quarter_end(
        client: Any, ta: Any) -> None:
    alice, carol = Dashboard(client, ta, "alice"), Dashboard(client, ta, "carol")
    ada, eve = access_person(alice, "Ada"), access_person(alice, "Eve")
    alice.post("/employees", {"name": "Bob", "email": "bob@example.com"})
    created = carol.post("/campaigns", {"kind": "quarterly_transactions", "period": "2026Q3"})
    assert created["due"] == "2026-10-30" and created["period_start"] == "2026-07-01"
    assert created["period_end"] == "2026-09-30"
    assert sorted(t["employee_id"] for t in created["tasks"]) == sorted([ada, eve])
    again = carol.get(f"/campaigns/{created['id']}")
    assert {t["status"] for t in again["tasks"]} <= {"open", "late"}
    annual = carol.post("/campaigns", {"kind": "annual_holdings", "period": "2026"})
    assert annual["as_of"] == "2026-12-31" and annual["due"] == "2027-02-14"
    given = carol.post("/campaigns", {"kind": "quarterly_transactions", "period": "2026Q2", "due": "2026-08-01"})
    assert given["due"] == "2026-08-01" and given["period_end"] == "2026-06-30"
    # Viewers may not start one; unknown kinds, bad periods and bad dates are refused by name.
    victor = Dashboard(client, ta, "victor")
    assert client.post("/api/v1/campaigns", json={"kind": "annual_holdings", "period": "2025"},
                       headers=victor.headers).status_code == 403
    before = _count(ta, AttestationCampaign), _count(ta, AttestationTask)
    for body, field, words in (
            ({"kind": "monthly", "period": "2026Q3"}, "kind", "kind must be one of"),
            ({"kind": "quarterly_transactions", "period": "2026Q5"}, "period", "a quarter such as 2026Q3"),
            ({"kind": "quarterly_transactions", "period": None}, "period", "needs a period"),
            ({"kind": "annual_holdings", "period": "26"}, "period", "a year such as 2026"),
            ({"kind": "initial_holdings", "period": "2026"}, "period", "has no period"),
            ({"kind": "quarterly_transactions", "period": "2026Q1", "due": "2026-13-01"}, "due", "YYYY-MM-DD")):
        response = client.post("/api/v1/campaigns", json=body, headers=carol.headers)
        assert response.status_code == 400, (body, response.get_json())
        error = response.get_json()["error"]
        assert words in error["message"] and field in error["fields"], error
    duplicate = client.post("/api/v1/campaigns", json={"kind": "quarterly_transactions", "period": "2026Q3"},
                            headers=carol.headers)
    assert duplicate.status_code == 409
    assert (_count(ta, AttestationCampaign), _count(ta, AttestationTask)) == before


def test_the_late_list_says_by_how_many_days_and_offboarding_closes_open_tasks(client: Any, ta: Any) -> None:
    alice, carol = Dashboard(client, ta, "alice"), Dashboard(client, ta, "carol")
    today = dt.date.today()
    ada, eve = access_person(alice, "Ada", since=today.isoformat()), access_person(alice, "Eve",
                                                                                   since=today.isoformat())
    due = today - dt.timedelta(days=12)
    campaign = carol.post("/campaigns", {"kind": "quarterly_transactions", "period": "2026Q1",
                                         "due": due.isoformat()})
    late = carol.get("/attestations/late")["late"]
    rows = {(r["task"]["employee_id"], r["campaign_id"]): r for r in late}
    assert rows[(ada, campaign["id"])]["days_late"] == 12 and rows[(ada, campaign["id"])]["outstanding"] is True
    assert rows[(eve, campaign["id"])]["task"]["status"] == "late"
    # The initial-holdings tasks (due in 10 days) are not late.
    assert all(r["campaign_id"] == campaign["id"] for r in late)
    offboarded = alice.post(f"/employees/{eve}/offboard", None, status=200)
    assert offboarded["status"] == "offboarded"
    tasks = {t["employee_id"]: t for t in carol.get(f"/campaigns/{campaign['id']}")["tasks"]}
    assert tasks[eve]["status"] == "closed" and tasks[eve]["closed_reason"] == "offboarded"
    assert tasks[eve]["days_late"] is None
    assert [r["task"]["employee_id"] for r in carol.get("/attestations/late")["late"]] == [ada]
    with ta.store.read() as session:  # kept, not deleted
        assert session.execute(select(func.count()).select_from(AttestationTask).where(
            AttestationTask.employee_id == eve)).scalar_one() == 2


def test_leaving_the_access_person_group_in_the_roster_closes_tasks(client: Any, ta: Any) -> None:
    from appliance.services.roster.plan import RosterRecord, apply, plan

    alice = Dashboard(client, ta, "alice")
    ada = access_person(alice, "Ada")
    email = alice.get(f"/employees/{ada}")["email"]
    with ta.store.unit_of_work() as session:
        records = [RosterRecord(name="Ada", email=email, access_person=False)]
        report = plan(session, records, source=None, whole_roster=False)
        apply(session, report, records, source=None, actor_label="test", via="test")
    with ta.store.read() as session:
        task = session.execute(select(AttestationTask).where(AttestationTask.employee_id == ada)).scalar_one()
        assert (task.status, task.closed_reason) == ("closed", "no_longer_access_person")


def test_a_csv_import_marking_an_access_person_makes_the_initial_task_at_once(client: Any, ta: Any) -> None:
    alice = Dashboard(client, ta, "alice")
    csv = "name,email,department,external_id,access_person\nZed,zed@example.com,Research,HR-9,yes\n"
    response = client.post("/api/v1/employees/import", data=csv.encode(),
                           headers={**alice.headers, "Content-Type": "text/csv"})
    assert response.status_code == 201, response.get_json()
    (zed,) = response.get_json()["ids"]
    assert alice.get(f"/employees/{zed}")["access_person"] is True
    campaign = next(c for c in alice.get("/campaigns")["campaigns"] if c["kind"] == "initial_holdings")
    task = task_of(alice.get(f"/campaigns/{campaign['id']}"), zed)
    assert task["due"] == (dt.date.today() + dt.timedelta(days=10)).isoformat() and task["status"] == "open"
