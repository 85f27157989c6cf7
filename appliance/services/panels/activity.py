"""The firm's activity over the last 30 days, per day of the firm's calendar: transactions recorded (roles that
see everyone's transactions) and alerts raised (roles that see alerts). One query per kind reads the 30 days'
rows through the index on their time column and counts them per day (a CASE numbers the days), so the cost does
not grow with the history kept; at two million transactions a year that is still ~165,000 rows, so the counts of
the days before today are kept in this process for ``PAST_DAYS_FOR`` (a backfill of an old day shows within it)
and only today's are counted on every request."""

from __future__ import annotations

import datetime as dt
import threading
import zoneinfo
from typing import Any

from sqlalchemy import ColumnElement, case, func, select

from appliance.rbac.actors import Actor
from appliance.services.overview import Context, panel
from appliance.store.models import Alert, Transaction

DAYS = 30
PAST_DAYS_FOR = dt.timedelta(minutes=10)
# (database, what, time zone, first day, today) -> (counts of the days before today, until when they stand)
_past: dict[tuple[str, str, str, dt.date, dt.date], tuple[list[int], dt.datetime]] = {}
_lock = threading.Lock()


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
    bounds = day_bounds(ctx.now, ctx.settings.display.time_zone)
    days: list[dict[str, Any]] = [{"day": day.isoformat()} for day, _s, _e in bounds]
    counted = [("transactions", Transaction.__table__.c.occurred_at, _transactions(ctx.actor)),
               ("alerts", Alert.__table__.c.created_at, ctx.actor.can("alerts:read"))]
    for name, column, shown in counted:
        if shown:
            for row, n in zip(days, _cached_per_day(ctx, name, column, bounds), strict=True):
                row[name] = n
    totals = {k: sum(d[k] for d in days) for k in ("transactions", "alerts") if days and k in days[0]}
    return {"days": days, "totals": totals}


def _cached_per_day(ctx: Context, name: str, column: ColumnElement[dt.datetime],
                    bounds: list[tuple[dt.date, dt.datetime, dt.datetime]]) -> list[int]:
    """The days before today from this process's cache (counted again once stale), today's counted now."""
    database = ctx.session.get_bind().engine.url.render_as_string(hide_password=True)
    key = (database, name, ctx.settings.display.time_zone, bounds[0][0], bounds[-1][0])
    with _lock:
        held = _past.get(key)
    if held is None or held[1] <= ctx.now:
        past = _per_day(ctx, column, bounds[:-1])
        with _lock:
            for stale in [k for k, (_c, until) in _past.items() if until <= ctx.now]:
                del _past[stale]
            _past[key] = (past, ctx.now + PAST_DAYS_FOR)
    else:
        past = held[0]
    _day, start, end = bounds[-1]
    today = ctx.session.execute(select(func.count()).where(column >= start, column < end)).scalar_one()
    return [*past, int(today)]


def _per_day(ctx: Context, column: ColumnElement[dt.datetime],
             bounds: list[tuple[dt.date, dt.datetime, dt.datetime]]) -> list[int]:
    """Rows per day: each row of the window numbered by its day (one CASE), then counted per number."""
    day_of = case(*((column < end, n) for n, (_day, _start, end) in enumerate(bounds)), else_=len(bounds))
    numbered = select(day_of.label("n")).where(column >= bounds[0][1], column < bounds[-1][2]).subquery()
    counts: dict[int, int] = {}
    for n, count in ctx.session.execute(select(numbered.c.n, func.count()).group_by(numbered.c.n)):
        counts[n] = count
    return [int(counts.get(n, 0)) for n in range(len(bounds))]
