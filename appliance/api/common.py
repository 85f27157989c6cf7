"""Serialisation and argument parsing shared by the API modules."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from flask import Response, jsonify, request

from appliance.boundary.params import int_arg, time_arg
from appliance.errors import Invalid

__all__ = ["body", "int_arg", "json_value", "respond", "time_arg"]


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
