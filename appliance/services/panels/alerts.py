"""Open alerts by severity and age, and the alerts assigned to the reader (the alert model: open | assigned)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import case, func, select

from appliance.rbac.actors import Actor
from appliance.services.employee_list import OPEN_ALERT_STATUSES, employee_names
from appliance.services.overview import Context, panel
from appliance.store.models import Alert

SEVERITIES = ("critical", "warning", "info")
AGES = (("under a day", dt.timedelta(days=1)), ("1 to 7 days", dt.timedelta(days=7)),
        ("7 to 30 days", dt.timedelta(days=30)), ("over 30 days", None))
LISTED = 5


def _visible(actor: Actor) -> bool:
    return actor.can("alerts:read")


@panel("alerts", "Open alerts", order=10, visible=_visible, headline=("alerts_open",))
def build(ctx: Context) -> dict[str, Any]:
    session, open_ = ctx.session, Alert.status.in_(OPEN_ALERT_STATUSES)
    # One query for both breakdowns: open alerts per (severity, age bucket); bucket -1 is a time after now,
    # counted by severity but in no age.
    bounds = [ctx.now - span for _label, span in AGES if span is not None]
    bucket = case((Alert.created_at > ctx.now, -1),
                  *((Alert.created_at > bound, n) for n, bound in enumerate(bounds)), else_=len(bounds))
    by_severity = dict.fromkeys(SEVERITIES, 0)
    per_age = [0] * len(AGES)
    numbered = select(Alert.severity, bucket.label("bucket")).where(open_).subquery()
    for severity, n_bucket, n in session.execute(select(numbered.c.severity, numbered.c.bucket, func.count())
                                                 .group_by(numbered.c.severity, numbered.c.bucket)):
        by_severity[severity] = by_severity.get(severity, 0) + n
        if n_bucket >= 0:
            per_age[n_bucket] += n
    ages = [{"label": label, "count": n} for (label, _span), n in zip(AGES, per_age, strict=True)]
    oldest = list(session.execute(select(Alert).where(open_).order_by(Alert.created_at, Alert.id).limit(LISTED))
                  .scalars())
    mine: list[Alert] = []
    mine_count = 0
    if ctx.actor.user_id is not None:
        assigned = (Alert.status == "assigned", Alert.assigned_to == ctx.actor.user_id)
        mine_count = session.execute(select(func.count()).select_from(Alert).where(*assigned)).scalar_one()
        mine = list(session.execute(select(Alert).where(*assigned).order_by(Alert.created_at.desc()).limit(LISTED))
                    .scalars())
    names = employee_names(session, (a.employee_id for a in [*oldest, *mine])) if ctx.actor.can("employees:read") \
        else {}
    return {"alerts_open": sum(by_severity.values()), "by_severity": by_severity, "by_age": ages,
            "oldest": [_row(a, names) for a in oldest], "assigned_to_me": mine_count,
            "mine": [_row(a, names) for a in mine]}


def _row(alert: Alert, names: dict[int, str]) -> dict[str, Any]:
    return {"id": alert.id, "title": alert.title, "severity": alert.severity, "status": alert.status,
            "kind": alert.kind, "created_at": alert.created_at, "employee_id": alert.employee_id,
            "employee": names.get(alert.employee_id) if alert.employee_id is not None else None}
