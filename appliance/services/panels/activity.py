"""The firm's activity over the last 30 days, per day of the firm's calendar: transactions recorded (roles that
see everyone's transactions) and alerts raised (roles that see alerts). Each day is counted with a range on an
indexed time column, so the cost does not grow with the history kept."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from sqlalchemy import func, select

from appliance.rbac.actors import Actor
from appliance.services.overview import Context, panel
from appliance.store.models import Alert, Transaction

DAYS = 30


def _transactions(actor: Actor) -> bool:
    return actor.scope_for("transactions:read") == "all"


def _visible(actor: Actor) -> bool:
    return _transactions(actor) or actor.can("alerts:read")


def day_bounds(now: dt.datetime, tz_name: str, days: int = DAYS) -> list[tuple[dt.date, dt.datetime, dt.datetime]]:
    """The last ``days`` days of the firm's calendar (today last), each as [start, end) in UTC."""
    zone = zoneinfo.ZoneInfo(tz_name)
    today = now.astimezone(zone).date()
    out = []
    for back in range(days - 1, -1, -1):
        day = today - dt.timedelta(days=back)
        start = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
        out.append((day, start, end))
    return out


@panel("activity", "Activity, last 30 days", order=50, visible=_visible)
def build(ctx: Context) -> dict[str, Any]:
    session = ctx.session
    show_trades, show_alerts = _transactions(ctx.actor), ctx.actor.can("alerts:read")
    days = []
    for day, start, end in day_bounds(ctx.now, ctx.settings.display.time_zone):
        row: dict[str, Any] = {"day": day.isoformat()}
        if show_trades:
            row["transactions"] = session.execute(select(func.count()).select_from(Transaction).where(
                Transaction.occurred_at >= start, Transaction.occurred_at < end)).scalar_one()
        if show_alerts:
            row["alerts"] = session.execute(select(func.count()).select_from(Alert).where(
                Alert.created_at >= start, Alert.created_at < end)).scalar_one()
        days.append(row)
    totals = {k: sum(d[k] for d in days) for k in ("transactions", "alerts") if days and k in days[0]}
    return {"days": days, "totals": totals}
