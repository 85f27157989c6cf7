"""Certifications: submissions waiting for review, outstanding reports past their due date, and the due
dates coming up (services/attestations)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from appliance.rbac.actors import Actor
from appliance.services.attestations import review
from appliance.services.attestations.campaigns import OUTSTANDING
from appliance.services.overview import Context, panel
from appliance.store.models import AttestationTask

SOON_DAYS = 7


def _visible(actor: Actor) -> bool:
    return actor.can("attestations:read")


@panel("certifications", "Certifications", order=35, visible=_visible)
def build(ctx: Context) -> dict[str, Any]:
    session = ctx.session
    today = ctx.now.date()
    due_soon = session.execute(select(func.count()).select_from(AttestationTask).where(
        AttestationTask.status.in_(OUTSTANDING), AttestationTask.due >= today,
        AttestationTask.due <= today + dt.timedelta(days=SOON_DAYS))).scalar_one()
    late = [r for r in review.late_list(session, on=today, include_filed=False)]
    return {"pending_reviews": review.awaiting_count(session) if ctx.actor.can("attestations:review") else None,
            "late": len(late), "due_soon": due_soon,
            "most_late": [{"employee": r.employee.name, "title": r.campaign.title, "days": r.days,
                           "campaign_id": r.campaign.id} for r in late[:5]]}
