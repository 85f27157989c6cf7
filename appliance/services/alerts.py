"""Alerts and cases: raised by the sync engine, the rules and by hand; worked by compliance; nothing
disappears.

A case is an alert being worked: it is assigned to a user who may triage, collects append-only notes
and evidence links, and moves open -> investigating -> resolved or dismissed (closing needs a reason),
and may be reopened (with a reason). Every change is a row of its history: who, when, what.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.errors import Invalid, NotFound
from appliance.rbac.actors import Actor
from appliance.services.scope import employee_visible, holdings_visible, without_addresses, without_figures
from appliance.store.base import utcnow
from appliance.store.models import (
    Alert,
    AlertEvent,
    AlertEvidence,
    AlertNote,
    BalanceSnapshot,
    Connection,
    Employee,
    PredictionPosition,
    Role,
    RolePermission,
    Transaction,
    User,
    UserRole,
)

STATUSES = ("open", "investigating", "resolved", "dismissed")
ACTIVE = ("open", "investigating")
CLOSED = ("resolved", "dismissed")
SEVERITIES = ("info", "warning", "critical")
EVIDENCE_TYPES = ("transaction", "position", "balance", "alert", "reference", "preclearance")
MAX_NOTE = 10000
DEFAULT_FLAG_WINDOW_DAYS = 30


def _event(session: Session, alert: Alert, actor: Actor | None, action: str, detail: dict[str, Any] | None = None,
           *, label: str | None = None) -> AlertEvent:
    event = AlertEvent(alert_id=alert.id, at=utcnow(), actor_id=actor.user_id if actor is not None else None,
                       actor_label=(label or (actor.label if actor is not None else "system"))[:200], action=action,
                       detail=detail or {})
    session.add(event)
    return event


def raise_alert(session: Session, *, kind: str, title: str, severity: str = "warning",
                employee_id: int | None = None, connection_id: int | None = None,
                detail: dict[str, Any] | None = None, dedupe: bool = True) -> Alert:
    """Open an alert; with ``dedupe`` an identical open alert is returned instead of a second one."""
    if severity not in SEVERITIES:
        raise Invalid(f"unknown severity {severity!r}")
    if dedupe:
        existing = session.execute(select(Alert).where(
            Alert.kind == kind, Alert.connection_id == connection_id, Alert.employee_id == employee_id,
            Alert.status.in_(ACTIVE))).scalars().first()
        if existing is not None:
            return existing
    alert = Alert(kind=kind, title=title[:300], severity=severity, employee_id=employee_id,
                  connection_id=connection_id, detail=detail or {})
    session.add(alert)
    session.flush()
    _event(session, alert, None, "created", {"kind": kind}, label="system")
    return alert


def raise_manual(session: Session, actor: Actor, *, employee_id: Any, title: Any, reason: Any,
                 severity: Any = "warning") -> Alert:
    """An alert raised by hand on an employee: how compliance flags someone. The reason is required."""
    if isinstance(employee_id, bool) or not isinstance(employee_id, int):
        raise Invalid("employee_id is required (the employee's id)", field="employee_id")
    if session.get(Employee, employee_id) is None:
        raise Invalid(f"no employee with id {employee_id}", field="employee_id")
    if not isinstance(title, str) or not title.strip():
        raise Invalid("title is required: say in a few words what this is about", field="title")
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("reason is required: say why this employee is being flagged", field="reason")
    if severity not in SEVERITIES:
        raise Invalid(f"severity must be one of {', '.join(SEVERITIES)}", field="severity")
    if len(title.strip()) > 300:
        raise Invalid("title is at most 300 characters", field="title")
    if len(reason.strip()) > MAX_NOTE:
        raise Invalid(f"reason is at most {MAX_NOTE} characters", field="reason")
    alert = Alert(kind="manual", title=" ".join(title.split()), severity=str(severity), employee_id=employee_id,
                  detail={}, created_by=actor.user_id, reason=reason.strip())
    session.add(alert)
    session.flush()
    _event(session, alert, actor, "created", {"kind": "manual", "reason": alert.reason})
    return alert


def list_alerts(session: Session, *, status: str | None = None, employee_id: int | None = None,
                kind: str | None = None, rule_id: int | None = None, assigned_to: int | None = None,
                limit: int = 200, before_id: int | None = None) -> list[Alert]:
    """``status`` is one of STATUSES, or ``active`` (open and investigating)."""
    stmt = select(Alert).order_by(Alert.id.desc()).limit(min(max(limit, 1), 1000))
    if status:
        if status == "active":
            stmt = stmt.where(Alert.status.in_(ACTIVE))
        elif status == "assigned":  # the old name of investigating
            stmt = stmt.where(Alert.status == "investigating")
        elif status not in STATUSES:
            raise Invalid(f"unknown status {status!r} (one of {', '.join(STATUSES)}, active)", field="status")
        else:
            stmt = stmt.where(Alert.status == status)
    if employee_id is not None:
        stmt = stmt.where(Alert.employee_id == employee_id)
    if kind:
        stmt = stmt.where(Alert.kind == kind)
    if rule_id is not None:
        stmt = stmt.where(Alert.rule_id == rule_id)
    if assigned_to is not None:
        stmt = stmt.where(Alert.assigned_to == assigned_to)
    if before_id is not None:
        stmt = stmt.where(Alert.id < before_id)
    return list(session.execute(stmt).scalars())


def get(session: Session, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound("not found")
    return alert


# -- who may work a case -----------------------------------------------------------------------------

def triagers(session: Session) -> list[User]:
    """Active users whose roles grant alerts:triage: the people a case can be assigned to."""
    stmt = (select(User).join(UserRole, UserRole.user_id == User.id).join(Role, Role.id == UserRole.role_id)
            .join(RolePermission, RolePermission.role_id == Role.id)
            .where(User.is_active.is_(True), RolePermission.permission == "alerts:triage")
            .order_by(User.display_name, User.username).distinct())
    return list(session.execute(stmt).scalars())


def display_name(user: User | None) -> str:
    if user is None:
        return ""
    return user.display_name or user.username


def assign(session: Session, actor: Actor, alert_id: int, user_id: Any) -> Alert:
    """Assign the case to a user who may triage (None: unassign)."""
    alert = get(session, alert_id)
    if user_id is not None and (isinstance(user_id, bool) or not isinstance(user_id, int)):
        raise Invalid("user_id must be the id of a user who may triage alerts (or null to unassign)", field="user_id")
    if user_id is not None and user_id not in {u.id for u in triagers(session)}:
        raise Invalid("that user cannot be assigned: assign someone active who may triage alerts", field="user_id")
    if alert.assigned_to == user_id:
        return alert
    before = alert.assigned_to
    alert.assigned_to = user_id
    alert.updated_at = utcnow()
    session.flush()
    names = _names(session, [before, user_id])
    _event(session, alert, actor, "assigned", {"from": before, "to": user_id, "from_name": names.get(before or 0, ""),
                                               "to_name": names.get(user_id or 0, "")})
    return alert


def add_note(session: Session, actor: Actor, alert_id: int, text: Any) -> AlertNote:
    alert = get(session, alert_id)
    if not isinstance(text, str) or not text.strip():
        raise Invalid("text is required: write the note", field="text")
    if len(text) > MAX_NOTE:
        raise Invalid(f"a note is at most {MAX_NOTE} characters", field="text")
    note = AlertNote(alert_id=alert.id, author_id=actor.user_id, author_label=actor.label[:200], text=text.strip())
    session.add(note)
    alert.updated_at = utcnow()
    session.flush()
    _event(session, alert, actor, "note", {"note_id": note.id})
    return note


def set_status(session: Session, actor: Actor, alert_id: int, status: Any, reason: Any = "", *,
               flag_window_days: int = DEFAULT_FLAG_WINDOW_DAYS) -> Alert:
    """open -> investigating -> resolved | dismissed (a reason is required to close), and back to open
    (reopen, a reason is required too)."""
    alert = get(session, alert_id)
    if status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}", field="status")
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise Invalid("reason must be text", field="reason")
    reason = reason.strip()
    if len(reason) > MAX_NOTE:
        raise Invalid(f"reason is at most {MAX_NOTE} characters", field="reason")
    current = alert.status
    if status == current:
        raise Invalid(f"the alert is already {current}", field="status")
    now = utcnow()
    if status in CLOSED:
        if not reason:
            raise Invalid(f"say why the alert is {status}: a reason is required to close it", field="reason")
        alert.resolved_at = now
        alert.resolved_by = actor.user_id
        alert.resolution = reason
        alert.flagged_until = now + dt.timedelta(days=flag_window_days)
    elif status == "investigating":
        if current in CLOSED:
            raise Invalid("reopen the alert first (status open, with a reason)", field="status")
    elif status == "open":
        if current not in CLOSED:
            raise Invalid("an alert being investigated is already open; close it or keep investigating",
                          field="status")
        if not reason:
            raise Invalid("say why the alert is reopened: a reason is required", field="reason")
        alert.resolved_at = None
        alert.resolved_by = None
        alert.flagged_until = None
    alert.status = status
    alert.updated_at = now
    session.flush()
    _event(session, alert, actor, "reopened" if status == "open" else "status",
           {"from": current, "to": status, **({"reason": reason} if reason else {})})
    return alert


def add_evidence(session: Session, actor: Actor, alert_id: int, *, type: Any, ref_id: Any = None,
                 reference: Any = "", note: Any = "") -> AlertEvidence:
    """Link a transaction, position, balance or another alert by id (of the same employee), or a
    reference outside the appliance (a ticket, a document number)."""
    alert = get(session, alert_id)
    if type not in EVIDENCE_TYPES:
        raise Invalid(f"type must be one of {', '.join(EVIDENCE_TYPES)}", field="type")
    if not isinstance(note, str) or len(note) > 500:
        raise Invalid("note must be text of at most 500 characters", field="note")
    if type == "reference":
        if not isinstance(reference, str) or not reference.strip() or len(reference) > 500:
            raise Invalid("reference is required: the ticket, document or URL (up to 500 characters)",
                          field="reference")
        ref = None
    else:
        if isinstance(ref_id, bool) or not isinstance(ref_id, int) or ref_id < 1:
            raise Invalid(f"id is required: the {type}'s id", field="id")
        if not _belongs(session, alert, type, ref_id):
            raise Invalid(f"no {type} {ref_id} of this alert's employee", field="id")
        ref, reference = ref_id, ""
    evidence = AlertEvidence(alert_id=alert.id, type=type, ref_id=ref, reference=str(reference).strip(),
                             note=note.strip(), added_by=actor.user_id, added_label=actor.label[:200])
    session.add(evidence)
    alert.updated_at = utcnow()
    session.flush()
    _event(session, alert, actor, "evidence", {"evidence_id": evidence.id, "type": type, "ref_id": ref})
    return evidence


def _belongs(session: Session, alert: Alert, kind: str, ref_id: int) -> bool:
    if kind == "alert":
        other = session.get(Alert, ref_id)
        return other is not None and other.id != alert.id and (
            alert.employee_id is None or other.employee_id == alert.employee_id)
    if kind == "preclearance":
        from appliance.store.models import PreclearanceRequest

        request = session.get(PreclearanceRequest, ref_id)
        return request is not None and (alert.employee_id is None or request.employee_id == alert.employee_id)
    model: Any = {"transaction": Transaction, "position": PredictionPosition, "balance": BalanceSnapshot}[kind]
    row = session.execute(select(Connection.employee_id).join(model, model.connection_id == Connection.id).where(
        model.id == ref_id)).scalar_one_or_none()
    return row is not None and (alert.employee_id is None or row == alert.employee_id)


def notes(session: Session, alert_id: int) -> list[AlertNote]:
    return list(session.execute(select(AlertNote).where(AlertNote.alert_id == alert_id).order_by(
        AlertNote.id)).scalars())


def history(session: Session, alert_id: int) -> list[AlertEvent]:
    return list(session.execute(select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(
        AlertEvent.id)).scalars())


def evidence(session: Session, alert_id: int) -> list[AlertEvidence]:
    return list(session.execute(select(AlertEvidence).where(AlertEvidence.alert_id == alert_id).order_by(
        AlertEvidence.id)).scalars())


def _names(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return {u.id: display_name(u) for u in session.execute(select(User).where(User.id.in_(wanted))).scalars()}


def names_for(session: Session, alerts: Iterable[Alert]) -> dict[str, dict[int, str]]:
    """The names the UI shows instead of ids: employees, users (assignees, raisers), rules."""
    from appliance.store.models import Rule

    rows = list(alerts)
    employees = {i for a in rows if (i := a.employee_id)}
    users = {i for a in rows for i in (a.assigned_to, a.created_by, a.resolved_by) if i}
    rules = {i for a in rows if (i := a.rule_id)}
    out: dict[str, dict[int, str]] = {"employees": {}, "users": _names(session, users), "rules": {}}
    if employees:
        out["employees"] = dict(session.execute(select(Employee.id, Employee.name).where(
            Employee.id.in_(employees))).all())
    if rules:
        out["rules"] = dict(session.execute(select(Rule.id, Rule.name).where(Rule.id.in_(rules))).all())
    return out


def triage(session: Session, actor: Actor, alert_id: int, *, status: str, resolution: str = "",
           flag_window_days: int = DEFAULT_FLAG_WINDOW_DAYS) -> Alert:
    """The first version's one-step triage: ``assigned`` takes the case (assigned to the caller,
    investigating); ``resolved`` / ``dismissed`` close it with a reason."""
    if status == "assigned":
        alert = get(session, alert_id)
        if actor.user_id is not None and alert.assigned_to != actor.user_id:
            if actor.user_id not in {u.id for u in triagers(session)}:
                raise Invalid("you cannot be assigned alerts", field="status")
            assign(session, actor, alert_id, actor.user_id)
        if alert.status == "open":
            set_status(session, actor, alert_id, "investigating")
        return alert
    if status not in CLOSED:
        raise Invalid("the new status is assigned, resolved or dismissed", field="status")
    return set_status(session, actor, alert_id, status, resolution, flag_window_days=flag_window_days)


def open_count(session: Session) -> int:
    from sqlalchemy import func

    return int(session.execute(select(func.count()).select_from(Alert).where(Alert.status.in_(ACTIVE))).scalar_one())


# Detail keys that never name what an employee holds. Every other key keeps its place but loses its
# values for a caller outside the employee's balances scope (fail closed: a new kind of detail with
# figures is hidden until it is listed here). "message" is a venue's words: shown without addresses.
# "rule" and "list" name the conduct rule and list that raised the alert (never the listed entry, the
# records or a figure).
PLAIN_DETAIL = frozenset({"venue", "error_class", "granted", "fingerprint", "table", "column", "row", "reason",
                          "rule", "list"})
TEXT_DETAIL = frozenset({"message"})
# A trade's or transfer's value (threshold rules): the employee's transaction figures, shown only to a
# caller who may also read the employee's transactions.
TRANSACTION_FIGURES = frozenset({"value", "value_source"})
TRANSACTIONS = "transactions:read"


def visible_details(session: Session, actor: Actor, alerts: list[Alert]) -> dict[int, dict[str, Any]]:
    """Each alert's detail as ``actor`` may see it (scope.holdings_visible; transaction values also need
    the transactions scope), by alert id."""
    visible: dict[int | None, bool] = {}
    trades: dict[int | None, bool] = {}
    out: dict[int, dict[str, Any]] = {}
    for alert in alerts:
        employee_id = alert.employee_id
        if employee_id not in visible:
            visible[employee_id] = holdings_visible(session, actor, employee_id)
        detail = dict(alert.detail or {})
        if not visible[employee_id]:
            detail = {k: v if k in PLAIN_DETAIL else without_addresses(v) if k in TEXT_DETAIL and isinstance(v, str)
                      else without_figures(v) for k, v in detail.items()}
        elif employee_id is not None and not TRANSACTION_FIGURES.isdisjoint(detail):
            if employee_id not in trades:
                trades[employee_id] = actor.scope_for(TRANSACTIONS) is not None and employee_visible(
                    session, actor, TRANSACTIONS, employee_id)
            if not trades[employee_id]:
                detail.update((k, None) for k in TRANSACTION_FIGURES if k in detail)
        out[alert.id] = detail
    return out
