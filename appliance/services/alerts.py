"""Alerts: raised by the sync engine and the rules, worked by compliance; nothing disappears."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.errors import Invalid, NotFound
from appliance.rbac.actors import Actor
from appliance.services.scope import holdings_visible, without_addresses, without_figures
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


# Detail keys that never name what an employee holds. Every other key keeps its place but loses its
# values for a caller outside the employee's balances scope (fail closed: a new kind of detail with
# figures is hidden until it is listed here). "message" is a venue's words: shown without addresses.
PLAIN_DETAIL = frozenset({"venue", "error_class", "granted", "fingerprint", "table", "column", "row", "reason"})
TEXT_DETAIL = frozenset({"message"})


def visible_details(session: Session, actor: Actor, alerts: list[Alert]) -> dict[int, dict[str, Any]]:
    """Each alert's detail as ``actor`` may see it (scope.holdings_visible), by alert id."""
    visible: dict[int | None, bool] = {}
    out: dict[int, dict[str, Any]] = {}
    for alert in alerts:
        if alert.employee_id not in visible:
            visible[alert.employee_id] = holdings_visible(session, actor, alert.employee_id)
        detail = dict(alert.detail or {})
        if not visible[alert.employee_id]:
            detail = {k: v if k in PLAIN_DETAIL else without_addresses(v) if k in TEXT_DETAIL and isinstance(v, str)
                      else without_figures(v) for k, v in detail.items()}
        out[alert.id] = detail
    return out
