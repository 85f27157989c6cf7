"""Flagged scope: which employees' financial records an actor with ``...:flagged`` may see.

An employee is *flagged* while they have an open (or assigned) alert, or an alert closed within
the last ``FLAG_WINDOW`` — "an open or recent alert". A record the actor may not see is reported
exactly like a record that does not exist (NotFound), so scope cannot be probed by id.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from appliance.errors import NotFound
from appliance.rbac.actors import Actor
from appliance.store.base import utcnow
from appliance.store.models import Alert

FLAG_WINDOW = dt.timedelta(days=30)


def flagged_employee_ids_query() -> Select[Any]:
    since = utcnow() - FLAG_WINDOW
    return (select(Alert.employee_id).where(Alert.employee_id.is_not(None)).where(or_(
        Alert.status.in_(("open", "assigned")), Alert.resolved_at >= since)).distinct())


def visible_scope(actor: Actor, permission: str) -> str:
    """'all' or 'flagged'; raises NotFound when the actor holds neither (callers guard earlier)."""
    scope = actor.scope_for(permission)
    if scope is None:
        raise NotFound("not found")
    return scope


def employee_visible(session: Session, actor: Actor, permission: str, employee_id: int) -> bool:
    scope = visible_scope(actor, permission)
    if scope == "all":
        return True
    return session.execute(
        flagged_employee_ids_query().where(Alert.employee_id == employee_id)).first() is not None


def require_employee_visible(session: Session, actor: Actor, permission: str, employee_id: int) -> None:
    if not employee_visible(session, actor, permission, employee_id):
        raise NotFound("not found")
