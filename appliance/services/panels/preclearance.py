"""Pre-clearance requests waiting for a compliance reviewer: how many, how long the oldest has waited, and the
oldest few (the queue itself is /preclearances). Shown to roles that read or decide pre-clearance requests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from appliance.rbac.actors import Actor
from appliance.services.employee_list import employee_names
from appliance.services.overview import Context, panel
from appliance.store.models import PreclearanceRequest

LISTED = 5


def _visible(actor: Actor) -> bool:
    return actor.can("preclearance:read") or actor.can("preclearance:decide")


@panel("preclearance", "Pre-clearance requests waiting", order=25, visible=_visible)
def build(ctx: Context) -> dict[str, Any]:
    session, pending = ctx.session, PreclearanceRequest.status == "pending"
    count, oldest_at = session.execute(select(func.count(), func.min(PreclearanceRequest.created_at))
                                       .where(pending)).one()
    oldest = list(session.execute(select(PreclearanceRequest).where(pending)
                                  .order_by(PreclearanceRequest.created_at, PreclearanceRequest.id).limit(LISTED))
                  .scalars())
    names = employee_names(session, (r.employee_id for r in oldest)) if ctx.actor.can("employees:read") else {}
    return {"preclearance_pending": int(count), "oldest_at": oldest_at,
            "oldest_age_hours": None if oldest_at is None else int((ctx.now - oldest_at).total_seconds() // 3600),
            "can_decide": ctx.actor.can("preclearance:decide"),
            "oldest": [{"id": r.id, "employee_id": r.employee_id, "employee": names.get(r.employee_id),
                        "kind": r.kind, "what": r.asset or r.market_id, "venue": r.venue, "side": r.side,
                        "quantity": r.quantity, "notional": r.notional, "currency": r.currency,
                        "created_at": r.created_at} for r in oldest]}
