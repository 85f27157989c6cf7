"""Query-string parsing shared by the API and the UI: whole numbers in range, ISO 8601 times (UTC)."""

from __future__ import annotations

import datetime as dt

from flask import request

from appliance.errors import Invalid


def int_arg(name: str, default: int | None = None, *, low: int = 1, high: int = 10**12) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise Invalid(f"{name} must be a whole number between {low} and {high}", field=name)
    return int(raw)


def time_arg(name: str) -> dt.datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{name} must be an ISO 8601 date or time, e.g. 2026-01-31T00:00:00Z", field=name) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)
