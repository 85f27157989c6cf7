"""Reminder e-mails through the outbox to a real SMTP server (aiosmtpd): one before the due date, one after
it (then every few days), none for closed or certified tasks; a link, no figures."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from appliance.poller.jobs import attestations_tick
from appliance.services.attestations import campaigns, reminders
from appliance.store.models import AttestationTask, AuditEvent, Employee
from tests.support.app import build
from tests.support.smtp import MailServer, smtp_server


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[MailServer]:
    with smtp_server(tmp_path / "smtp", tls=False) as server:
        yield server


def _person(session: Any, name: str) -> Employee:
    employee = Employee(name=name, email=f"{name.lower()}@example.com", access_person=True,
                        access_person_since=dt.date.today())
    session.add(employee)
    session.flush()
    return employee


def test_reminders_before_and_after_the_due_date(db_url: str, tmp_path: Path, relay: MailServer) -> None:
    ta = build(db_url, tmp_path / "data", server={"public_url": "https://vigatra.example.com"},
               attestations={"remind_before_days": 5, "remind_after_days": 3},
               notifications={"smtp": {"host": relay.host, "port": relay.port, "starttls": False,
                                       "sender": "vigatra@example.com"}})
    try:
        today = dt.date.today()
        with ta.store.unit_of_work() as session:
            soon, late, done = _person(session, "Soon"), _person(session, "Late"), _person(session, "Done")
            campaign = campaigns.create(session, ta.settings, None, kind="quarterly_transactions", period="2025Q1",
                                        due=today + dt.timedelta(days=3))
            tasks = {t.employee_id: t for t, _e in campaigns.tasks_of(session, campaign.id)}
            tasks[late.id].due = today - dt.timedelta(days=2)
            tasks[done.id].status = "submitted"
            session.execute(update(AttestationTask).where(AttestationTask.campaign_id != campaign.id).values(
                status="closed", closed_reason="test"))  # the initial-holdings tasks stay out of this test
            ids = {"soon": tasks[soon.id].id, "late": tasks[late.id].id}
        attestations_tick(ta.appliance)
        ta.appliance.mailer.deliver_pending()
        mails = {m.recipients[0]: m for m in relay.messages()}
        assert set(mails) == {"soon@example.com", "late@example.com"}
        before, after = mails["soon@example.com"], mails["late@example.com"]
        due_soon, due_late = today + dt.timedelta(days=3), today - dt.timedelta(days=2)
        assert "Reminder" in before.message["Subject"] and due_soon.isoformat() in before.message["Subject"]
        assert "Overdue" in after.message["Subject"] and due_late.isoformat() in after.message["Subject"]
        for mail, task_id, due in ((before, ids["soon"], due_soon), (after, ids["late"], due_late)):
            link = f"https://vigatra.example.com/me/tasks/{task_id}"
            assert link in mail.body
            # A link and a date, no figure: without them not one digit is left, and no name.
            rest = mail.body.replace(link, "").replace(due.isoformat(), "")
            assert not any(ch.isdigit() for ch in rest), rest
            assert "Soon" not in mail.body and "Late" not in mail.body
        # The run is in the audit trail: one system event naming the tasks (no address, no name).
        with ta.store.read() as session:
            events = session.execute(select(AuditEvent.actor_type, AuditEvent.resource_type, AuditEvent.detail).where(
                AuditEvent.action == "attestations.reminders_sent")).all()
        assert [(e.actor_type, e.resource_type) for e in events] == [("system", "attestations")]
        assert json.loads(events[0].detail) == {"tasks_due_soon": [ids["soon"]], "tasks_late": [ids["late"]]}
        assert "@" not in events[0].detail
        # Run again the same day: nothing more; three days later, the late task is reminded again.
        with ta.store.unit_of_work() as session:
            again = reminders.send_due(session, ta.appliance.mailer, ta.settings)
            assert again.before == [] and again.after == []
            later = reminders.send_due(session, ta.appliance.mailer, ta.settings, on=today + dt.timedelta(days=3))
            assert later.after == [ids["late"]] and later.before == []
        # An offboarded employee's task is closed and never reminded.
        from appliance.services import employees

        with ta.store.unit_of_work() as session:
            employees.offboard(session, late.id)
            row = session.execute(select(AttestationTask).where(AttestationTask.id == ids["late"])).scalar_one()
            assert (row.status, row.closed_reason) == ("closed", "offboarded")
            final = reminders.send_due(session, ta.appliance.mailer, ta.settings, on=today + dt.timedelta(days=9))
            assert ids["late"] not in final.after
    finally:
        ta.appliance.close()
