"""Flagged scope: which employees' financial records an actor with ``...:flagged`` may see.

An employee is *flagged* while they have an open (or assigned) alert, or an alert closed within
the last ``FLAG_WINDOW`` — "an open or recent alert". A record the actor may not see is reported
exactly like a record that does not exist (NotFound), so scope cannot be probed by id.

What an employee holds shows in more places than their balances: a wallet's address, a coverage
gap's detail ("BTC: balance 0.5 but transfers net 0.4"), the markets a venue was asked about, an
alert's mismatch figures. All of them follow the scope of ``balances:read``
(:func:`holdings_visible`); outside it, details keep their shape and lose the figures
(:func:`without_figures`, :func:`without_addresses`).
"""

from __future__ import annotations

import datetime as dt
import re
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


def flagging_alerts(session: Session, employee_id: int) -> list[Alert]:
    """The alerts that make ``employee_id`` flagged now (what a flagged-scope reader is told)."""
    since = utcnow() - FLAG_WINDOW
    return list(session.execute(select(Alert).where(Alert.employee_id == employee_id).where(or_(
        Alert.status.in_(("open", "assigned")), Alert.resolved_at >= since)).order_by(Alert.id.desc()).limit(10))
        .scalars())


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


HOLDINGS = "balances:read"


def holdings_visible(session: Session, actor: Actor, employee_id: int | None) -> bool:
    """Whether ``actor`` may see what the employee holds (addresses, figures, markets): the scope of
    balances:read. Records tied to no employee hold nothing of anyone's."""
    if employee_id is None:
        return True
    if actor.scope_for(HOLDINGS) is None:
        return False
    return employee_visible(session, actor, HOLDINGS, employee_id)


def without_figures(value: Any) -> Any:
    """The same shape with every value dropped: dicts keep their keys and lists their length."""
    if isinstance(value, dict):
        return {k: without_figures(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_figures(v) for v in value]
    return None


# Chain addresses that venue and provider messages may quote: EVM (0x + 40 hex), Bitcoin bech32 and base58.
_ADDRESS = re.compile(r"\b(?:0x[0-9a-fA-F]{40}|(?:bc|tb|bcrt)1[02-9ac-hj-np-z]{8,87}"
                      r"|[13][1-9A-HJ-NP-Za-km-z]{25,34})\b")


def without_addresses(text: str | None) -> str | None:
    return _ADDRESS.sub("<address hidden>", text) if text else text
