"""Red connections (broken, or waiting for the employee to re-onboard) and coverage health: connections with an
open gap in their records, the last polling cycle, and the last one in which every poll worked."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from appliance.rbac.actors import Actor
from appliance.services.employee_list import employee_names
from appliance.services.employees import RED_STATUSES
from appliance.services.overview import Context, panel
from appliance.store.models import Connection, CoverageInterval, PollCycle

LISTED = 10


def _visible(actor: Actor) -> bool:
    return actor.can("connections:read")


def _names(ctx: Context, ids: list[int]) -> dict[int, str]:
    return employee_names(ctx.session, ids) if ctx.actor.can("employees:read") else {}


@panel("connections", "Red connections", order=20, visible=_visible, headline=("connections_red",))
def red(ctx: Context) -> dict[str, Any]:
    session = ctx.session
    by_status = {s: n for s, n in session.execute(select(Connection.status, func.count()).group_by(Connection.status))}
    listed = list(session.execute(select(Connection).where(Connection.status.in_(RED_STATUSES))
                                  .order_by(Connection.updated_at.desc(), Connection.id.desc()).limit(LISTED))
                  .scalars())
    names = _names(ctx, [c.employee_id for c in listed])
    return {"connections_red": sum(by_status.get(s, 0) for s in RED_STATUSES),
            "connections_total": sum(by_status.values()), "by_status": by_status,
            "red": [{"id": c.id, "employee_id": c.employee_id, "employee": names.get(c.employee_id),
                     "venue": c.venue, "label": c.label, "status": c.status, "reason": c.status_reason,
                     "last_success_at": c.last_success_at, "last_error_class": c.last_error_class}
                    for c in listed]}


@panel("coverage", "Coverage health", order=30, visible=_visible)
def coverage(ctx: Context) -> dict[str, Any]:
    session = ctx.session
    gap_open = (CoverageInterval.kind == "gap", CoverageInterval.closed_at.is_(None))
    with_gaps = session.execute(select(func.count(func.distinct(CoverageInterval.connection_id)))
                                .where(*gap_open)).scalar_one()
    gaps = list(session.execute(
        select(CoverageInterval, Connection.employee_id, Connection.venue)
        .join(Connection, Connection.id == CoverageInterval.connection_id).where(*gap_open)
        .order_by(CoverageInterval.start_at.desc(), CoverageInterval.id.desc()).limit(LISTED)).all())
    names = _names(ctx, [employee_id for _g, employee_id, _v in gaps])
    cycle = session.execute(select(PollCycle).where(PollCycle.finished_at.is_not(None))
                            .order_by(PollCycle.finished_at.desc()).limit(1)).scalar_one_or_none()
    last_success = session.execute(select(func.max(Connection.last_success_at))).scalar_one()
    # The last cycle in which every connection polled worked (the latest one may have had failures).
    clean = session.execute(select(PollCycle.finished_at).where(
        PollCycle.finished_at.is_not(None), PollCycle.polled > 0, PollCycle.succeeded == PollCycle.polled)
        .order_by(PollCycle.finished_at.desc()).limit(1)).scalar_one_or_none()
    return {"connections_with_gaps": with_gaps, "last_success_at": last_success, "last_successful_cycle_at": clean,
            "last_cycle": None if cycle is None else {
                "node": cycle.node, "finished_at": cycle.finished_at, "polled": cycle.polled,
                "succeeded": cycle.succeeded, "failed": cycle.polled - cycle.succeeded},
            "gaps": [{"connection_id": g.connection_id, "employee_id": employee_id, "employee": names.get(employee_id),
                      "venue": venue, "stream": g.stream, "from": g.start_at, "reason": g.reason}
                     for g, employee_id, venue in gaps]}
