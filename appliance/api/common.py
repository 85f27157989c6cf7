"""Serialisation and argument parsing shared by the API modules."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from flask import Response, jsonify, request

from appliance.boundary.params import int_arg, time_arg
from appliance.errors import Invalid

__all__ = ["body", "fields", "int_arg", "json_value", "respond", "time_arg"]


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


def fields(data: dict[str, Any], allowed: set[str] | frozenset[str], required: tuple[str, ...] = ()) -> None:
    """Refuse unknown fields and name missing required ones (strict input: nothing is silently ignored)."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise Invalid(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})",
                      field=unknown[0])
    for name in required:
        if data.get(name) is None:
            raise Invalid(f"{name} is required", field=name)
