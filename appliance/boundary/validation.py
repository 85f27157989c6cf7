"""Every input of every route is checked against a declared schema before the route's body runs.

``@accepts(query=..., body=..., form=..., returns=...)`` declares what a route takes and answers;
the declaration is kept on the view (``vigatra_schema``) for the OpenAPI document
(appliance/api/openapi.py) and for the start-up check that no route goes without one. The wrapper
parses the query string, the JSON body and the form with their pydantic models and hands the
results to the view as its ``query``, ``body`` and ``form`` arguments (those it takes). A route with no query model
takes no query parameters at all.

Schemas are pydantic v2 models in strict mode that forbid unknown fields: a dict is never turned
into a string, a float never into a whole number. Whatever is wrong is reported at once, one entry
per field, as ``Invalid`` (400, ``{"error": {"code": "invalid_request", "message", "fields"}}``),
and the route's body never runs, so nothing changes. Input values are never echoed (they can be
passwords or keys); unknown field names are, cut short.

Public routes that must not read their input before their own gates (the onboarding page and sign-in
refuse a plain-HTTP submission before parsing it) declare their body or form with ``in_view=True`` and
call :func:`submitted` at the right moment.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from flask import Flask, request
from pydantic import BaseModel, ConfigDict, ValidationError
from werkzeug.datastructures import FileStorage, MultiDict

from appliance.boundary.params import JSON_CONTEXT
from appliance.errors import Invalid

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)

JSON = "application/json"
MAX_REPORTED_FIELDS = 20  # in the message
MAX_FIELDS = 100  # in ``fields``: a body of ten thousand unknown keys gets an answer of bounded size
_MAX_NAME = 64


class Schema(BaseModel):
    """Base of every input schema: strict types, unknown fields refused, values hidden from error reprs."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True,
                              arbitrary_types_allowed=True)
    # A query parameter given empty (``?to=``) is checked as the empty string it is, except in the query
    # strings of the UI's filter forms, which send every field and mean "not given" by an empty one.
    blank_means_absent: ClassVar[bool] = False


class Answer(BaseModel):
    """Base of every answer schema (documentation: answers are built by the routes' serialisers). Every
    field is always present, and nothing else is."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class NoInput(Schema):
    """A route that takes no body (or an empty JSON object)."""


@dataclass(frozen=True)
class RouteSchema:
    query: type[Schema] | None = None
    body: type[Schema] | None = None  # a JSON body
    raw_body: str | None = None  # a non-JSON body of this media type, handed over as bytes (CSV import)
    form: type[Schema] | None = None
    in_view: bool = False  # the view parses its body or form itself, with submitted()
    returns: type[BaseModel] | None = None
    status: int = 200
    media: tuple[str, ...] = (JSON,)
    errors: tuple[int, ...] = ()  # error statuses the route answers besides the ones every route of its kind can
    also: tuple[tuple[int, type[BaseModel]], ...] = ()  # other answers that are not errors (healthz's 503)


def accepts(*, query: type[Schema] | None = None, body: type[Schema] | None = None, raw_body: str | None = None,
            form: type[Schema] | None = None, in_view: bool = False, returns: type[BaseModel] | None = None,
            status: int = 200, media: tuple[str, ...] = (JSON,), errors: Iterable[int] = (),
            also: Iterable[tuple[int, type[BaseModel]]] = ()) -> Callable[[F], F]:
    spec = RouteSchema(query, body, raw_body, form, in_view, returns, status, media, tuple(errors), tuple(also))
    query_model = query or NoInput

    def mark(fn: F) -> F:
        # What the view takes is handed over; what it does not (an empty body, a form that is only the
        # CSRF token) is still checked.
        wanted = set(inspect.signature(fn).parameters)
        # Most requests carry no query string: its parse is done once, here (models are frozen, so one
        # instance serves every request).
        empty_query = _without_input(query_model)

        @functools.wraps(fn)
        def view(**kwargs: Any) -> Any:
            query_string = request.environ.get("QUERY_STRING")
            parsed: dict[str, Any] = {
                "query": empty_query if empty_query is not None and not query_string else parse_query(query_model)}
            if not in_view:
                if body is not None:
                    parsed["body"] = parse_json_body(body)
                elif raw_body is not None:
                    parsed["body"] = _raw_body(raw_body)
                if form is not None:
                    parsed["form"] = parse_form(form)
            kwargs.update((name, value) for name, value in parsed.items() if name in wanted)
            return fn(**kwargs)

        view.vigatra_schema = spec  # type: ignore[attr-defined]
        return typing.cast(F, view)

    return mark


def _without_input(model: type[M]) -> M | None:
    """The model as an empty query string gives it, when that is valid."""
    try:
        return model.model_validate({})
    except ValidationError:
        return None


def schema_of(view: Any) -> RouteSchema | None:
    found = getattr(view, "vigatra_schema", None)
    return found if isinstance(found, RouteSchema) else None


class UnvalidatedRoute(RuntimeError):
    pass


def check_validated(app: Flask, exempt: Iterable[str] = ("static",)) -> None:
    """Refuse to start when a route does not declare its input (like routes.check_declared for permissions)."""
    skip = set(exempt)
    missing = sorted(rule.rule for rule in app.url_map.iter_rules()
                     if rule.endpoint not in skip and schema_of(app.view_functions.get(rule.endpoint)) is None)
    if missing:
        raise UnvalidatedRoute(f"routes without a declared input schema (@accepts): {', '.join(missing)}")


def submitted(model: type[M]) -> M:
    """The current route's declared body or form, parsed now (routes that declared ``in_view=True``)."""
    spec = schema_of(_current_view())
    if spec is not None and spec.body is model:
        return parse_json_body(model)
    if spec is not None and spec.form is model:
        return parse_form(model)
    raise RuntimeError(f"the route does not declare {model.__name__} as its body or form")


def _current_view() -> Any:
    from flask import current_app

    return current_app.view_functions.get(request.endpoint or "")


# -- parsing -------------------------------------------------------------------------------------------------

def parse_json_body(model: type[M]) -> M:
    raw = request.get_data(cache=True)
    if not raw.strip():
        raw = b"{}"  # no body: an empty object (the model says whether that is enough)
    elif not request.is_json:
        raise Invalid("send a JSON object (Content-Type: application/json)",
                      fields={"body": "must be a JSON object sent with Content-Type: application/json"})
    try:
        return model.model_validate_json(raw, context={JSON_CONTEXT: True})
    except ValidationError as exc:
        raise invalid(exc, root="body") from None


def _raw_body(media: str) -> bytes:
    if request.mimetype != media:
        what = "CSV" if media == "text/csv" else "data"
        raise Invalid(f"send the {what} as the request body with Content-Type: {media}",
                      fields={"body": f"must be sent with Content-Type: {media}"})
    return request.get_data(cache=True)


def parse_query(model: type[M]) -> M:
    drop_empty = issubclass(model, Schema) and model.blank_means_absent
    return _validate(model, request.args, root="query", drop_empty=drop_empty)


def parse_form(model: type[M]) -> M:
    values: MultiDict[str, Any] = MultiDict(request.form)
    for name, upload in request.files.items(multi=True):
        values.add(name, upload)
    return _validate(model, values, root="form", drop_empty=False)


def _validate(model: type[M], values: MultiDict[str, Any], *, root: str, drop_empty: bool) -> M:
    lists = _list_fields(model)
    data: dict[str, Any] = {}
    repeated: dict[str, str] = {}
    for name in values:
        given = [v for v in values.getlist(name) if not (drop_empty and v == "")]
        if not given:
            continue
        if name in lists:
            data[name] = given
        elif len(given) > 1:
            repeated[_shown(name)] = "is given more than once"
        else:
            data[name] = given[0]
    if repeated:
        raise Invalid(_sentence(repeated), fields=repeated)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, root=root) from None


@functools.cache
def _list_fields(model: type[BaseModel]) -> frozenset[str]:
    names = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if typing.get_origin(annotation) in (list, tuple) or (
                annotation in (list, tuple)) or _is_optional_list(annotation):
            names.add(field.alias or name)
    return frozenset(names)


def _is_optional_list(annotation: Any) -> bool:
    return any(typing.get_origin(arg) in (list, tuple) for arg in typing.get_args(annotation))


# -- errors ------------------------------------------------------------------------------------------------

_PHRASES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "literal_error": "must be one of {expected}",
    "string_too_long": "must be at most {max_length} characters",
    "string_too_short": "must be at least {min_length} characters",
    "too_long": "must have at most {max_length} items",
    "too_short": "must have at least {min_length} items",
    "is_instance_of": "must be a file",
}


def invalid(exc: ValidationError, *, root: str) -> Invalid:
    """One Invalid naming every bad field of a pydantic error (values are never repeated back)."""
    fields: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        name = ".".join(_shown(str(part)) for part in loc) if loc else root
        if name in fields:
            continue
        if len(fields) == MAX_FIELDS:
            break
        kind = error["type"]
        phrase = _PHRASES.get(kind)
        ctx = error.get("ctx") or {}
        if kind == "json_invalid":
            phrase = "is not valid JSON: " + str(ctx.get("error", "")).removeprefix("Invalid JSON: ")
        elif phrase is None:
            msg = error["msg"]
            phrase = msg[:1].lower() + msg[1:]
        else:
            with contextlib.suppress(KeyError, IndexError):
                phrase = phrase.format(**ctx)
        fields[name] = phrase
    return Invalid(_sentence(fields, root=root), fields=fields)


def _sentence(fields: dict[str, str], *, root: str = "") -> str:
    shown = list(fields.items())[:MAX_REPORTED_FIELDS]
    parts = [f"the request {root} {phrase}" if name == root else f"{name} {phrase}" for name, phrase in shown]
    if len(fields) > MAX_REPORTED_FIELDS:
        parts.append(f"and {len(fields) - MAX_REPORTED_FIELDS} more")
    return "; ".join(parts)


def _shown(name: str) -> str:
    """A client-chosen field name, cut short (it is repeated in the error)."""
    return name if len(name) <= _MAX_NAME else name[:_MAX_NAME] + "…"


__all__ = [
    "JSON", "Answer", "FileStorage", "NoInput", "RouteSchema", "Schema", "accepts", "check_validated", "invalid",
    "parse_form", "parse_json_body", "parse_query", "schema_of", "submitted",
]
