"""Roster changes: what a source's records would change here, shown as a diff, then applied and audited.

- Records are matched to employees by employee number (``external_id``) first, then by e-mail. A record
  whose number and e-mail point at two different employees is rejected (with the reason), as is one that
  repeats an earlier record's number or e-mail, or one with a bad value: the rest still apply.
- ``created`` / ``updated`` (with each changed field, old -> new) / ``unchanged`` / ``rejected`` per record;
  ``offboarded`` for an active employee this source listed before and lists no more (only for a source that
  is the whole roster: the LDAP directory, an HR export; never the CSV import). Offboarding stops polling,
  keeps every record, closes the employee's open onboarding links and raises an info alert.
- The first apply of a source must follow a dry run that showed the same changes (``roster_state``), and a
  run that would offboard more than ``roster.max_departures_percent`` of a source's employees is held back
  unless the admin allows it: an emptied export or a mistyped filter must not offboard the firm.
- Every change is audited in the transaction that makes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appliance.audit.writer import AuditRecord, append
from appliance.errors import Invalid
from appliance.services import alerts, employees
from appliance.store.base import utcnow
from appliance.store.models import Employee, OnboardingToken, RosterState

KINDS = ("created", "updated", "offboarded", "unchanged", "rejected")


@dataclass(frozen=True)
class RosterRecord:
    """One employee as a source lists them. ``access_person`` None: the source does not say."""

    name: str
    email: str
    department: str = ""
    employee_number: str | None = None
    manager_email: str = ""
    access_person: bool | None = None
    where: str = ""  # "line 4", "entry 3", a DN: how the report points at the record
    problem: str = ""  # the source could not read the record whole: it is rejected with this reason


@dataclass(frozen=True)
class RosterChange:
    kind: str
    email: str
    employee_id: int | None = None
    fields: tuple[tuple[str, str, str], ...] = ()  # (field, old, new)
    reason: str = ""
    where: str = ""

    def line(self) -> str:
        at = f"{self.where}: " if self.where else ""
        if self.kind == "rejected":
            return f"rejected  {at}{self.email or '(no e-mail)'}: {self.reason}"
        if self.kind == "updated":
            diff = ", ".join(f"{name} {old!r} -> {new!r}" for name, old, new in self.fields)
            return f"updated   {self.email}: {diff}"
        return f"{self.kind:<9} {self.email}"

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "email": self.email, "employee_id": self.employee_id, "where": self.where,
                "reason": self.reason, "fields": [list(f) for f in self.fields]}


@dataclass
class RosterReport:
    source: str
    changes: list[RosterChange] = field(default_factory=list)
    applied: bool = False
    held_back: str = ""

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind)

    def summary(self) -> str:
        line = (f"roster: {self.count('created')} created, {self.count('updated')} updated, "
                f"{self.count('offboarded')} offboarded, {self.count('unchanged')} unchanged")
        rejected = self.count("rejected")
        return line + (f" ({rejected} rejected)" if rejected else "")

    def lines(self) -> list[str]:
        return [c.line() for c in self.changes if c.kind != "unchanged"]

    def digest(self) -> str:
        """What a dry run showed: the same changes give the same digest (for the first apply's review)."""
        shown = [c.as_dict() for c in self.changes if c.kind in ("created", "updated", "offboarded")]
        return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()


def _text(value: object) -> str:
    return "" if value is None else str(value)


def plan(session: Session, records: Iterable[RosterRecord], *, source: str | None, whole_roster: bool
         ) -> RosterReport:
    """The changes the records would make (nothing is written). ``source`` marks the employees it lists
    (None: the CSV import, which marks nothing and offboards nobody)."""
    report = RosterReport(source or "import")
    by_number = {e.external_id: e for e in session.execute(
        select(Employee).where(Employee.external_id.is_not(None))).scalars() if e.external_id}
    by_email = {e.email: e for e in session.execute(select(Employee)).scalars()}
    seen_numbers: dict[str, str] = {}
    seen_emails: dict[str, str] = {}
    matched: set[int] = set()

    def protect(record: RosterRecord) -> None:
        """A rejected record still names someone: they are not a departure (a typo must not offboard them)."""
        for found in (by_number.get((record.employee_number or "").strip()),
                      by_email.get(record.email.strip().lower())):
            if found is not None:
                matched.add(found.id)

    for record in records:
        if record.problem:
            report.changes.append(RosterChange("rejected", record.email.strip().lower()[:254], reason=record.problem,
                                               where=record.where))
            protect(record)
            continue
        try:
            name, email, department, number = employees.clean_fields(
                record.name, record.email, record.department, record.employee_number)
            manager = record.manager_email.strip().lower()
            if manager and not employees.EMAIL.match(manager):
                raise Invalid(f"the manager's e-mail {manager!r} is not an e-mail address")
        except Invalid as exc:
            report.changes.append(RosterChange("rejected", record.email.strip().lower()[:254], reason=exc.message,
                                               where=record.where))
            protect(record)
            continue
        if email in seen_emails:
            report.changes.append(RosterChange("rejected", email, reason=f"the e-mail repeats {seen_emails[email]}",
                                               where=record.where))
            protect(record)
            continue
        if number and number in seen_numbers:
            report.changes.append(RosterChange("rejected", email, reason=f"employee number {number} repeats "
                                               f"{seen_numbers[number]}", where=record.where))
            protect(record)
            continue
        seen_emails[email] = record.where or email
        if number:
            seen_numbers[number] = record.where or email
        employee = by_number.get(number) if number else None
        other = by_email.get(email)
        if employee is None:
            employee = other
        elif other is not None and other.id != employee.id:
            report.changes.append(RosterChange(
                "rejected", email, reason=f"employee number {number} is employee {employee.id} but the e-mail "
                f"belongs to employee {other.id}", where=record.where))
            protect(record)
            continue
        if employee is not None and number and employee.external_id and employee.external_id != number:
            report.changes.append(RosterChange(
                "rejected", email, reason=f"the e-mail belongs to employee {employee.id}, whose employee number is "
                f"{employee.external_id}, not {number}", where=record.where))
            protect(record)
            continue
        wanted = {"name": name, "email": email, "department": department, "external_id": number or "",
                  "manager_email": manager}
        if record.access_person is not None:
            wanted["access_person"] = "yes" if record.access_person else "no"
        if employee is None:
            report.changes.append(RosterChange("created", email, None, tuple(
                (k, "", v) for k, v in wanted.items() if v and v != "no"), where=record.where))
            continue
        matched.add(employee.id)
        current = {"name": employee.name, "email": employee.email, "department": employee.department,
                   "external_id": employee.external_id or "", "manager_email": employee.manager_email,
                   "access_person": "yes" if employee.access_person else "no"}
        if not number:
            wanted.pop("external_id")  # a record without a number leaves the stored one alone
        diff = tuple((k, current[k], v) for k, v in wanted.items() if current[k] != v)
        report.changes.append(RosterChange("updated" if diff else "unchanged", email, employee.id, diff,
                                           where=record.where))
    if whole_roster and source:
        gone = session.execute(select(Employee).where(Employee.roster_source == source,
                                                      Employee.status != "offboarded").order_by(Employee.id))
        for employee in gone.scalars():
            if employee.id not in matched:
                report.changes.append(RosterChange("offboarded", employee.email, employee.id,
                                                   reason=f"no longer listed by the {source} roster"))
    return report


def apply(session: Session, report: RosterReport, records: Iterable[RosterRecord], *, source: str | None,
          actor_label: str, via: str) -> None:
    """Make the report's changes (the records it was planned from give the new values), audited."""
    by_email = {r.email.strip().lower(): r for r in records}
    now = utcnow()
    events: list[AuditRecord] = []
    for index, change in enumerate(report.changes):
        record = by_email.get(change.email)
        if change.kind == "created" and record is not None:
            employee = employees.create(session, name=record.name, email=record.email, department=record.department,
                                        external_id=record.employee_number)
            _set_roster_fields(session, employee, record, source, now)
            report.changes[index] = RosterChange("created", change.email, employee.id, change.fields,
                                                 where=change.where)
        elif change.kind in ("updated", "unchanged") and record is not None and change.employee_id is not None:
            employee = employees.get(session, change.employee_id)
            if change.kind == "updated":
                employees.update_details(session, employee.id, name=record.name, email=record.email,
                                         department=record.department,
                                         external_id=record.employee_number or employee.external_id)
            _set_roster_fields(session, employee, record, source, now)
        elif change.kind == "offboarded" and change.employee_id is not None:
            offboard(session, change.employee_id, reason=change.reason)
        else:
            continue
        if change.kind != "unchanged":
            events.append(_event(report.changes[index], source=report.source, actor_label=actor_label, via=via))
    session.flush()
    if events:
        append(session, events)
    report.applied = True


def _set_roster_fields(session: Session, employee: Employee, record: RosterRecord, source: str | None,
                       now: dt.datetime) -> None:
    """The roster's fields. Someone who stops being an access person has their outstanding attestation tasks
    closed; a new access person's initial-holdings task is made by the caller that has the settings (the
    roster run, the attestations job)."""
    employee.manager_email = record.manager_email.strip().lower()
    if record.access_person is not None and record.access_person != employee.access_person:
        employee.access_person = record.access_person
        employee.access_person_since = now.date() if record.access_person else None
        if not record.access_person:
            from appliance.services.attestations.campaigns import close_outstanding

            close_outstanding(session, employee.id, "no_longer_access_person")
    if source:
        employee.roster_source = source
        employee.roster_seen_at = now


def offboard(session: Session, employee_id: int, *, reason: str) -> Employee:
    """A departure: polling stops, records stay, open onboarding links close, an info alert says so."""
    employee = employees.offboard(session, employee_id)
    now = utcnow()
    session.execute(update(OnboardingToken).where(
        OnboardingToken.employee_id == employee_id, OnboardingToken.completed_at.is_(None),
        OnboardingToken.expires_at > now).values(expires_at=now))
    alerts.raise_alert(session, kind="employee_departed", severity="info", employee_id=employee_id,
                       title=f"Employee {employee.name} offboarded: {reason}"[:300], detail={"reason": reason})
    return employee


def _event(change: RosterChange, *, source: str, actor_label: str, via: str) -> AuditRecord:
    detail = {"source": source, "fields": [list(f) for f in change.fields], "reason": change.reason}
    return AuditRecord(action=f"roster.{change.kind}", actor_type="system", resource_type="employees",
                       resource_id=str(change.employee_id or ""), ip_address="local", method=via, path="roster",
                       user_agent=actor_label[:300], outcome="success", detail=json.dumps(detail, sort_keys=True))


def state_of(session: Session, source: str) -> RosterState:
    state = session.get(RosterState, source)
    if state is None:
        state = RosterState(source=source, last_summary="")
        session.add(state)
        session.flush()
    return state


def run(session: Session, records: list[RosterRecord], *, source: str, dry_run: bool, max_departures_percent: int,
        allow_mass_departures: bool = False, actor_label: str, via: str, reviewed: str | None = None
        ) -> RosterReport:
    """Plan, then apply unless ``dry_run``; the source's state records what was shown and applied.

    Raises Invalid when the first apply was not reviewed by a dry run showing the same changes, when
    ``reviewed`` (the digest of the dry run a person looked at, as the Roster page sends it) differs from the
    changes the source gives now (the source changed since: nothing applied, review again), or when more than
    ``max_departures_percent`` of the source's employees would be offboarded (unless allowed)."""
    report = plan(session, records, source=source, whole_roster=True)
    state = state_of(session, source)
    state.last_run_at = utcnow()
    state.last_summary = report.summary()[:500]
    if dry_run:
        if via != "job":  # a person saw this diff; the scheduler's dry runs only keep it for them
            state.reviewed_digest, state.reviewed_at = report.digest(), utcnow()
        state.pending = [c.as_dict() for c in report.changes if c.kind not in ("unchanged",)][:1000]
        return report
    if reviewed is not None and reviewed != report.digest():
        raise Invalid(f"the {source} roster changed since the dry run you reviewed: nothing applied; run the dry "
                      "run again and review the new changes", field="digest")
    if state.first_applied_at is None and state.reviewed_digest != report.digest():
        raise Invalid(f"the {source} roster was never applied: review its changes with `vigatra roster sync "
                      "--dry-run` first (the first apply must show the same changes as the last dry run)")
    listed = session.execute(select(Employee.id).where(Employee.roster_source == source,
                                                       Employee.status != "offboarded")).all()
    departures = report.count("offboarded")
    if listed and departures * 100 > max_departures_percent * len(listed) and not allow_mass_departures:
        report.held_back = (f"{departures} of {len(listed)} employees of the {source} roster would be offboarded, "
                            f"more than roster.max_departures_percent ({max_departures_percent}%): nothing applied; "
                            "check the source, or run `vigatra roster sync --allow-mass-departures`")
        raise Invalid(report.held_back)
    apply(session, report, records, source=source, actor_label=actor_label, via=via)
    state.first_applied_at = state.first_applied_at or utcnow()
    state.pending = None
    return report


__all__ = ["KINDS", "RosterChange", "RosterRecord", "RosterReport", "apply", "offboard", "plan", "run"]
