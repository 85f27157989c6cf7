"""Serialisation shared by the API modules (input is parsed by each route's declared schema:
appliance/boundary/validation.py and appliance/api/schemas.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from flask import Response, jsonify

__all__ = ["json_value", "respond"]


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
