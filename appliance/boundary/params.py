"""Value types for the inputs of every route — query strings, HTML forms and JSON bodies alike.

Each type both checks a value and describes itself in JSON Schema, and the OpenAPI document
(appliance/api/openapi.py) publishes exactly that description: the contract and the check are one
declaration. Query strings and forms carry text, so the number and time types parse text with
their own strict rules (ASCII digits only, RFC 3339-style times) instead of pydantic's lax
coercions; a JSON body carries real numbers, which must not be booleans or floats.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated, Any

from flask import Flask
from pydantic import BeforeValidator, GetCoreSchemaHandler, GetJsonSchemaHandler, WithJsonSchema
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema
from werkzeug.routing import IntegerConverter, Map

from appliance.services.text import CONTROL_MESSAGE, NO_CONTROL_PATTERN, has_control_characters

# Ids are BIGINT in both databases: a larger one cannot exist, and must not reach a query.
MAX_ID = 2**63 - 1

# Text without control characters: services/text.py. (JSON bodies with a lone surrogate escape are
# already refused by the JSON parser; forms and query strings decode bytes that are not UTF-8 to U+FFFD.)

_DIGITS = re.compile(r"[0-9]{1,20}")
# RFC 3339 date-time or full-date; also a space for the T, minutes without seconds and no offset (UTC),
# which people type into the UI's filters.
TIME_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
                r"([Zz]|[+-][0-9]{2}:[0-9]{2})?)?$")
_TIME = re.compile(TIME_PATTERN)
TIME_EXAMPLE = "2026-01-31T00:00:00Z"


def _no_control(value: str) -> str:
    if has_control_characters(value):
        raise PydanticCustomError("control_character", CONTROL_MESSAGE)
    return value


@dataclass(frozen=True)
class Text:
    """``Annotated[str, Text(200)]``: at most 200 characters, no control characters."""

    max_length: int
    min_length: int = 0

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            _no_control, core_schema.str_schema(min_length=self.min_length or None, max_length=self.max_length))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        found = handler(schema)
        found["pattern"] = NO_CONTROL_PATTERN
        return found


@dataclass(frozen=True)
class Whole:
    """``Annotated[int, Whole(1, 1000)]``: a whole number in [low, high] — a JSON integer (not a boolean,
    not 1.0), or ASCII digits in a query string or form (not "²", which ``str.isdigit`` accepts)."""

    low: int
    high: int

    def parse(self, value: Any, info: core_schema.ValidationInfo) -> int:
        # Text only where everything is text (query strings, forms); a JSON body has real numbers.
        from_text = not (info.context or {}).get(JSON_CONTEXT)
        if from_text and isinstance(value, str) and _DIGITS.fullmatch(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise PydanticCustomError("whole_number", "must be a whole number between {low} and {high}",
                                      {"low": self.low, "high": self.high})
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.with_info_plain_validator_function(self.parse)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}


Id = Annotated[int, Whole(1, MAX_ID)]
# The validation context of a JSON body (boundary.validation.parse_json_body).
JSON_CONTEXT = "json"


def parse_time(value: Any) -> dt.datetime:
    """An ISO 8601 / RFC 3339 date or time as an aware UTC datetime (no offset: UTC)."""
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        if not isinstance(value, str) or not _TIME.fullmatch(value):
            raise PydanticCustomError("time", "must be an ISO 8601 date or time, e.g. {example}",
                                      {"example": TIME_EXAMPLE})
        try:
            parsed = dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        except ValueError:
            raise PydanticCustomError("time", "must be an ISO 8601 date or time, e.g. {example}",
                                      {"example": TIME_EXAMPLE}) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00, 9999-12-31T23:00-05:00: no such UTC time
        raise PydanticCustomError("time_range", "is outside the years 1 to 9999 once converted to UTC") from None


UtcTime = Annotated[dt.datetime, BeforeValidator(parse_time), WithJsonSchema({
    "type": "string", "pattern": TIME_PATTERN, "examples": [TIME_EXAMPLE],
    "description": "An RFC 3339 date-time or a date (midnight); without an offset it is UTC."})]


class IdConverter(IntegerConverter):
    """``<int:...>`` in every route: ASCII digits only (``\\d`` would take any script's digits) and at most
    MAX_ID, so ``/employees/99999999999999999999`` is an unknown route (404), never an overflowing query."""

    regex = r"[0-9]{1,19}"

    def __init__(self, map: Map, fixed_digits: int = 0, min: int | None = 1, max: int | None = MAX_ID,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def install(app: Flask) -> None:
    """Before any route is added: ids in paths are bounded (see IdConverter)."""
    app.url_map.converters["int"] = IdConverter


# -- types of answers (for the published document; answers are built by the routes' serialisers) ---------

Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
DecimalText = Annotated[str, WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
                                             "description": "A decimal number, exactly as stored."})]
