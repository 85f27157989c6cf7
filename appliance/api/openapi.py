"""The published contract: an OpenAPI 3.1 document generated from the route table (paths, methods, the
permission each route requires) and each route's declared schemas (``@accepts``: query, body, answers).

Served to any signed-in caller at ``GET /api/v1/openapi.json`` and shipped as ``docs/openapi.json``
(``make openapi`` writes it). tests/api/test_openapi.py fails when a route, its permission or its
schemas and the document disagree, or when the shipped copy is stale; the schema-driven fuzz run
(tests/api/test_fuzz.py) checks every answer of a live server against it.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from flask import Flask, current_app
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from appliance import __version__
from appliance.api import api_blueprint
from appliance.api.common import respond
from appliance.boundary.errors import ErrorAnswer
from appliance.boundary.params import MAX_ID
from appliance.boundary.routes import PUBLIC, RouteRow, route_table, signed_in
from appliance.boundary.validation import JSON, RouteSchema, accepts, schema_of

OPENAPI = "3.1.1"
API_PREFIX = "/api/v1"
# Besides /api/v1: the probes integrations and monitoring call.
EXTRA_PATHS = ("/healthz", "/metrics")
REF = "#/components/schemas/{model}"
_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or API key",
               "description": "An access token from POST /api/v1/auth/token (a JWT, valid 24 hours) or an API key "
                              "(vgk_...), in `Authorization: Bearer ...`. API keys are accepted over TLS only."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "An API key (vgk_...). Never in the query string: a key seen there is revoked."},
}


class OpenApiDocument(BaseModel):
    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


def documented(rule: str) -> bool:
    return rule.startswith(API_PREFIX + "/") or rule in EXTRA_PATHS


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of ``app`` (a plain JSON-able dict, keys in a stable order)."""
    rows = [row for row in route_table(app) if documented(row.rule)]
    declared = {row.endpoint: _declared(app, row) for row in rows}
    models: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ErrorAnswer, "serialization"): None}
    for spec in declared.values():
        if spec.body is not None:
            models[(spec.body, "validation")] = None
        for answer in (spec.returns, *(m for _, m in spec.also)):
            if answer is not None:
                models[(answer, "serialization")] = None
    refs, definitions = models_json_schema(list(models), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for row in rows:
        spec = declared[row.endpoint]
        path = _ARGUMENT.sub(lambda m: "{" + m["name"] + "}", row.rule)
        for method in row.methods:
            paths.setdefault(path, {})[method.lower()] = _operation(app, row, spec, refs)
    return {
        "openapi": OPENAPI,
        "info": {
            "title": "Vigatra appliance API",
            "version": __version__,
            "description": (
                "JSON under /api/v1. Authenticate with `Authorization: Bearer <access token or API key>` "
                "(or `X-API-Key`). Every operation names the permission it requires in "
                "`x-vigatra-permission` (`public`: anyone; `signed-in`: any authenticated caller). Every "
                "authenticated request is audited. Invalid input answers 400 with `error.code` "
                "`invalid_request` and `error.fields` naming each bad field; an id you may not see answers 404 "
                "exactly like one that does not exist."),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(definitions.get("$defs", {}).items())),
            "responses": {name: _error(description) for name, (_, description) in sorted(ERRORS.items())},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _declared(app: Flask, row: RouteRow) -> RouteSchema:
    spec = schema_of(app.view_functions.get(row.endpoint))
    if spec is None:
        raise RuntimeError(f"route {row.rule} declares no schema (@accepts)")
    return spec


def _operation(app: Flask, row: RouteRow, spec: RouteSchema, refs: dict[tuple[Any, Any], Any]) -> dict[str, Any]:
    name = row.endpoint.rsplit(".", 1)[-1]
    doc = (app.view_functions[row.endpoint].__doc__ or "").strip()
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": doc.splitlines()[0] if doc else name.replace("_", " "),
        "tags": [_tag(row)],
        "x-vigatra-permission": row.permission,
        "security": [] if row.permission == PUBLIC else [{"bearer": []}, {"apiKey": []}],
    }
    parameters = _path_parameters(row.rule) + _query_parameters(spec)
    if parameters:
        operation["parameters"] = parameters
    if spec.body is not None:
        schema = spec.body.model_json_schema(ref_template=REF)
        operation["requestBody"] = {
            "required": bool(schema.get("required")),
            "content": {JSON: {"schema": refs[(spec.body, "validation")]}},
        }
    elif spec.raw_body is not None:
        operation["requestBody"] = {"required": True, "content": {spec.raw_body: {"schema": {"type": "string"}}}}
    operation["responses"] = _responses(row, spec, refs)
    return operation


def _tag(row: RouteRow) -> str:
    if row.rule in EXTRA_PATHS:
        return "appliance"
    return row.rule.removeprefix(API_PREFIX + "/").split("/", 1)[0].split(".", 1)[0]


def _path_parameters(rule: str) -> list[dict[str, Any]]:
    out = []
    for match in _ARGUMENT.finditer(rule):
        if match["converter"] == "int":
            schema: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        else:
            schema = {"type": "string"}
        out.append({"name": match["name"], "in": "path", "required": True, "schema": schema})
    return out


def _query_parameters(spec: RouteSchema) -> list[dict[str, Any]]:
    if spec.query is None:
        return []
    schema = spec.query.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    out = []
    for name, found in schema.get("properties", {}).items():
        prop = _given(found)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        description = prop.pop("description", None)
        if description:
            parameter["description"] = description
        parameter["schema"] = prop
        out.append(parameter)
    return out


def _given(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: optional parameters are left out, never null ("X | None = None")."""
    out = dict(schema)
    out.pop("title", None)
    branches = out.get("anyOf")
    if isinstance(branches, list) and {"type": "null"} in branches:
        rest = [b for b in branches if b != {"type": "null"}]
        del out["anyOf"]
        if out.get("default", 0) is None:
            del out["default"]
        out = {**rest[0], **out} if len(rest) == 1 else {**out, "anyOf": rest}
    return out


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": {"$ref": REF.format(model="ErrorAnswer")}}}}


# The error answers, by name in components.responses: (status, description).
ERRORS = {
    "BadRequest": (400, "Invalid input: error.fields names each bad field (invalid_request)."),
    "Unauthorized": (401, "No valid credentials."),
    "Forbidden": (403, "The caller lacks the permission, or credentials came over plain HTTP."),
    "NotFound": (404, "No such record, or one the caller may not see."),
    "Conflict": (409, "The request clashes with the current state (a duplicate, the last admin...)."),
    "TooManyRequests": (429, "Throttled: retry after Retry-After seconds."),
    "Error": (0, "Any other error (405, 413, 503 when the audit trail or the database is unavailable...)."),
}
_BY_STATUS = {status: name for name, (status, _) in ERRORS.items()}


def _responses(row: RouteRow, spec: RouteSchema, refs: dict[tuple[Any, Any], Any]) -> dict[str, Any]:
    content: dict[str, Any] = {}
    for media in spec.media:
        if media == JSON and spec.returns is not None:
            content[media] = {"schema": refs[(spec.returns, "serialization")]}
        else:
            content[media] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {str(spec.status): {"description": HTTPStatus(spec.status).phrase,
                                                    "content": content}}
    for status, model in spec.also:
        responses[str(status)] = {"description": HTTPStatus(status).phrase,
                                  "content": {JSON: {"schema": refs[(model, "serialization")]}}}
    errors = {400, *spec.errors}  # every route refuses unknown query parameters
    if row.permission != PUBLIC:
        errors |= {401, 403}
    if "<" in row.rule:
        errors.add(404)
    for status in sorted(errors - {int(s) for s in responses}):
        responses[str(status)] = {"$ref": f"#/components/responses/{_BY_STATUS[status]}"}
    responses["default"] = {"$ref": "#/components/responses/Error"}
    return responses


def cached_document(app: Flask) -> dict[str, Any]:
    found: dict[str, Any] | None = app.extensions.get("vigatra.openapi")
    if found is None:
        found = app.extensions["vigatra.openapi"] = document(app)
    return found


@api_blueprint.route("/openapi.json", methods=["GET"])
@signed_in(action="openapi.view")
@accepts(returns=OpenApiDocument)
def openapi_document() -> ResponseReturnValue:
    """This document."""
    return respond(cached_document(current_app))


__all__ = ["OPENAPI", "cached_document", "document", "documented"]
