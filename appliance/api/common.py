"""Serialisation and argument parsing shared by the API modules."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from flask import Response, jsonify, request

from appliance.errors import Invalid


def json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return value


def respond(data: Any, status: int = 200) -> Response:
    response = jsonify(data)
    response.status_code = status
    return response


def body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise Invalid("send a JSON object (Content-Type: application/json)")
    return data


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
