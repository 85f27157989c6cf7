"""Alerts: raised by the sync engine and the rules, worked by compliance; nothing disappears."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.errors import Invalid, NotFound
from appliance.rbac.actors import Actor
from appliance.store.base import utcnow
from appliance.store.models import Alert

STATUSES = ("open", "assigned", "resolved", "dismissed")
SEVERITIES = ("info", "warning", "critical")


def raise_alert(session: Session, *, kind: str, title: str, severity: str = "warning",
                employee_id: int | None = None, connection_id: int | None = None,
                detail: dict[str, Any] | None = None, dedupe: bool = True) -> Alert:
    """Open an alert; with ``dedupe`` an identical open alert is returned instead of a second one."""
    if severity not in SEVERITIES:
        raise Invalid(f"unknown severity {severity!r}")
    if dedupe:
        existing = session.execute(select(Alert).where(
            Alert.kind == kind, Alert.connection_id == connection_id, Alert.employee_id == employee_id,
            Alert.status.in_(("open", "assigned")))).scalars().first()
        if existing is not None:
            return existing
    alert = Alert(kind=kind, title=title[:300], severity=severity, employee_id=employee_id,
                  connection_id=connection_id, detail=detail or {})
    session.add(alert)
    session.flush()
    return alert


def list_alerts(session: Session, *, status: str | None = None, employee_id: int | None = None,
                limit: int = 200, before_id: int | None = None) -> list[Alert]:
    stmt = select(Alert).order_by(Alert.id.desc()).limit(min(max(limit, 1), 1000))
    if status:
        if status not in STATUSES:
            raise Invalid(f"unknown status {status!r}", field="status")
        stmt = stmt.where(Alert.status == status)
    if employee_id is not None:
        stmt = stmt.where(Alert.employee_id == employee_id)
    if before_id is not None:
        stmt = stmt.where(Alert.id < before_id)
    return list(session.execute(stmt).scalars())


def get(session: Session, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound("not found")
    return alert


def triage(session: Session, actor: Actor, alert_id: int, *, status: str, resolution: str = "",
           assign_to: int | None = None) -> Alert:
    """Assign, resolve or dismiss. Closing needs a reason; a closed alert stays on record."""
    alert = get(session, alert_id)
    if status not in STATUSES or status == "open":
        raise Invalid("the new status is assigned, resolved or dismissed", field="status")
    if status in ("resolved", "dismissed"):
        if not resolution.strip():
            raise Invalid("say why the alert is being closed", field="resolution")
        alert.resolved_at = utcnow()
        alert.resolved_by = actor.user_id
        alert.resolution = resolution.strip()[:5000]
    if status == "assigned":
        alert.assigned_to = assign_to if assign_to is not None else actor.user_id
    alert.status = status
    session.flush()
    return alert
