"""Making an existing employee an access person, or no longer one: `PATCH /api/v1/employees/<id>`, the toggle on
the employee page and `vigatra employee set`. Becoming one creates the initial-holdings task at once; leaving
closes the open tasks (reason no_longer_access_person); bad input is refused by name and changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select

from appliance.services.attestations.campaigns import firm_today
from appliance.store.models import AttestationTask, AuditEvent, Employee
from tests.access.helpers import csrf_of, login_session
from tests.attestations.helpers import Dashboard
from tests.onboarding.conftest import cli_config, ota, run_cli  # noqa: F401  (fixtures)


def _patch(client: Any, who: Dashboard, employee_id: int, body: Any) -> Any:
    return client.patch(f"/api/v1/employees/{employee_id}", json=body, headers=who.headers)


def _state(ta: Any, employee_id: int) -> tuple[bool, dt.date | None, list[tuple[str, str | None]]]:
    with ta.store.read() as session:
        person = session.get(Employee, employee_id)
        assert person is not None
        tasks = [(t.status, t.closed_reason) for t in session.execute(select(AttestationTask).where(
            AttestationTask.employee_id == employee_id).order_by(AttestationTask.id)).scalars()]
        return bool(person.access_person), person.access_person_since, tasks


def test_patch_makes_an_employee_an_access_person_and_back(client: Any, ta: Any) -> None:
    alice = Dashboard(client, ta, "alice")
    bob = alice.post("/employees", {"name": "Bob Byte", "email": "bob@example.com"})["id"]
    assert _state(ta, bob) == (False, None, [])
    # Bad input is refused by name and changes nothing.
    tomorrow = (firm_today(ta.settings) + dt.timedelta(days=1)).isoformat()
    for body, status, words in (({"access_person": True, "access_person_since": tomorrow}, 400, "in the future"),
                                ({"access_person": True, "access_person_since": "2026-02-30"}, 400, "YYYY-MM-DD"),
                                ({"access_person": False, "access_person_since": "2026-07-01"}, 400,
                                 "only for an access person"),
                                ({"access_person": "maybe"}, 400, "access_person"),
                                ({}, 400, "access_person"),
                                ({"access_person": True, "colour": "red"}, 400, "colour")):
        refused = _patch(client, alice, bob, body)
        assert refused.status_code == status, (body, refused.get_json())
        assert words in json.dumps(refused.get_json()), (body, refused.get_json())
        assert _state(ta, bob) == (False, None, [])
    # A viewer may not; an unknown employee is 404.
    assert _patch(client, Dashboard(client, ta, "victor"), bob, {"access_person": True}).status_code == 403
    assert _patch(client, alice, 999999, {"access_person": True}).status_code == 404
    assert _state(ta, bob) == (False, None, [])
    # Becoming one: the initial-holdings task at once, due 10 days after the day given.
    answer = _patch(client, alice, bob, {"access_person": True, "access_person_since": "2026-07-01"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["access_person"] is True and answer.get_json()["access_person_since"] == "2026-07-01"
    with ta.store.read() as session:
        task = session.execute(select(AttestationTask).where(AttestationTask.employee_id == bob)).scalar_one()
        assert task.due == dt.date(2026, 7, 11) and task.as_of == dt.date(2026, 7, 1) and task.status == "open"
    # Saying it again creates no second task.
    assert _patch(client, alice, bob, {"access_person": True}).get_json()["access_person_since"] == "2026-07-01"
    assert _state(ta, bob)[2] == [("open", "")]
    # Correcting the day moves the task nothing was submitted for: holdings as of the new day, due 10 days on.
    moved = _patch(client, alice, bob, {"access_person": True, "access_person_since": "2026-06-15"})
    assert moved.status_code == 200 and moved.get_json()["access_person_since"] == "2026-06-15"
    with ta.store.read() as session:
        task = session.execute(select(AttestationTask).where(AttestationTask.employee_id == bob)).scalar_one()
        assert (task.due, task.as_of, task.status) == (dt.date(2026, 6, 25), dt.date(2026, 6, 15), "open")
    # Leaving closes the open task with its reason (kept, not deleted).
    left = _patch(client, alice, bob, {"access_person": False})
    assert left.status_code == 200 and left.get_json()["access_person"] is False
    assert _state(ta, bob) == (False, None, [("closed", "no_longer_access_person")])
    # Becoming one again without a date: since today in the firm's time zone.
    again = _patch(client, alice, bob, {"access_person": True}).get_json()
    assert again["access_person_since"] == firm_today(ta.settings).isoformat()
    with ta.store.read() as session:
        events = session.execute(select(AuditEvent).where(AuditEvent.action == "employees.update",
                                                          AuditEvent.outcome == "success")
                                 .order_by(AuditEvent.id)).scalars().all()
        assert len(events) >= 4 and all(e.resource_id == str(bob) for e in events)
        assert '"tasks_closed": 1' in events[-2].detail.replace(":1", ": 1")


def test_offboarded_employee_cannot_become_one(client: Any, ta: Any) -> None:
    alice = Dashboard(client, ta, "alice")
    bob = alice.post("/employees", {"name": "Bob Byte", "email": "bob@example.com"})["id"]
    alice.post(f"/employees/{bob}/offboard", None, status=200)
    refused = _patch(client, alice, bob, {"access_person": True})
    assert refused.status_code == 409 and "offboarded" in refused.get_json()["error"]["message"]
    assert _state(ta, bob) == (False, None, [])


def test_the_employee_page_toggle(client: Any, ta: Any) -> None:
    alice = Dashboard(client, ta, "alice")
    bob = alice.post("/employees", {"name": "Bob Byte", "email": "bob@example.com"})["id"]
    login_session(client, ta, "alice")
    page = client.get(f"/employees/{bob}").get_data(as_text=True)
    assert 'id="access-person-form"' in page and "Make an access person" in page
    url = f"/employees/{bob}/access-person"
    refused = client.post(url, data={"csrf_token": csrf_of(client), "access_person": "yes",
                                     "access_person_since": "2026-13-01"})
    assert refused.status_code == 400
    assert _state(ta, bob) == (False, None, [])
    made = client.post(url, data={"csrf_token": csrf_of(client), "access_person": "yes",
                                  "access_person_since": "2026-07-01"})
    assert made.status_code == 302
    assert _state(ta, bob) == (True, dt.date(2026, 7, 1), [("open", "")])
    page = client.get(f"/employees/{bob}").get_data(as_text=True)
    assert "initial-holdings task created" in page and "No longer an access person" in page
    assert client.post(url, data={"csrf_token": csrf_of(client)}).status_code == 302
    assert _state(ta, bob) == (False, None, [("closed", "no_longer_access_person")])


def test_the_toggle_is_for_employees_write_only(client: Any, ta: Any) -> None:
    bob = Dashboard(client, ta, "alice").post("/employees", {"name": "Bob Byte", "email": "bob@example.com"})["id"]
    login_session(client, ta, "victor")
    page = client.get(f"/employees/{bob}").get_data(as_text=True)
    assert 'id="access-person-form"' not in page
    refused = client.post(f"/employees/{bob}/access-person", data={"csrf_token": csrf_of(client),
                                                                   "access_person": "yes"})
    assert refused.status_code == 403
    assert _state(ta, bob) == (False, None, [])


def test_cli_employee_set(ota: Any, cli_config: Path) -> None:  # noqa: F811
    added = run_cli(cli_config, "employee", "add", "--name", "Bob Byte", "--email", "bob@example.com")
    match = re.fullmatch(r"employee id: (\d+)\n", added.output)
    assert match, added.output
    bob = match.group(1)
    for args, words in ((["--access-person", "--access-person-since", "2026-02-30"], "YYYY-MM-DD"),
                        (["--no-access-person", "--access-person-since", "2026-07-01"], "only for an access person"),
                        (["--access-person", "--access-person-since", "2999-01-01"], "in the future"),
                        ([], "--access-person or --no-access-person")):
        refused = run_cli(cli_config, "employee", "set", bob, *args)
        assert refused.exit_code == 1 and words in refused.output, (args, refused.output)
        assert _state(ota, int(bob)) == (False, None, [])
    assert run_cli(cli_config, "employee", "set", "999999", "--access-person").exit_code == 1
    made = run_cli(cli_config, "employee", "set", bob, "--access-person", "--access-person-since", "2026-07-01")
    assert made.exit_code == 0, made.output
    assert "access person since 2026-07-01; 1 initial-holdings task(s) created" in made.output
    assert _state(ota, int(bob)) == (True, dt.date(2026, 7, 1), [("open", "")])
    left = run_cli(cli_config, "employee", "set", bob, "--no-access-person")
    assert left.exit_code == 0 and "1 open task(s) closed" in left.output, left.output
    assert _state(ota, int(bob)) == (False, None, [("closed", "no_longer_access_person")])
    with ota.store.read() as session:
        actions = list(session.execute(select(AuditEvent.action).where(
            AuditEvent.action == "employees.update")).scalars())
        assert len(actions) == 2
