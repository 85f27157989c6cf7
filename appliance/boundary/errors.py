"""One JSON error shape for the API, one error page for the UI; never echo an unexpected exception.

API errors look like ``{"error": {"code": "forbidden", "message": "..."}}``; invalid input answers 400 with
``{"error": {"code": "invalid_request", "message": "...", "field": "<first>", "fields": {"<field>": "<what is
wrong>", ...}}}`` naming every bad field (appliance/boundary/validation.py).
Unknown ids and records the caller may not see both answer 404 with the same body.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, redirect, render_template, request, url_for
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from appliance.boundary.paths import is_api_path
from appliance.errors import Invalid, TooManyRequests, Unauthenticated, Unavailable, VigatraError
from appliance.store.session import describe_db_error

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="invalid_request, unauthenticated, forbidden, not_found, conflict, "
                                  "too_many_requests, unavailable, ...")
    message: str
    field: str | None = Field(default=None, description="The first bad field (invalid_request).")
    fields: dict[str, str] | None = Field(default=None, description="Each bad field and what is wrong with it "
                                                                    "(invalid_request).")
    errors: list[dict[str, object]] | None = Field(default=None, description="Every bad row (CSV import).")


class ErrorAnswer(BaseModel):
    """Every error the API answers (the OpenAPI document publishes it as ErrorAnswer)."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


# The health probe answers JSON (the API and /metrics: paths.is_api_path), its errors too.
_JSON_PROBES = frozenset({"/healthz"})


def _wants_json() -> bool:
    return (is_api_path(request.path) or request.path in _JSON_PROBES
            or request.accept_mimetypes.best == "application/json")


def error_response(exc: VigatraError) -> Response:
    status = exc.http_status
    if _wants_json():
        body: dict[str, object] = {"code": exc.code, "message": exc.message}
        if isinstance(exc, Invalid):
            if exc.field:
                body["field"] = exc.field  # the first bad field (older clients read this one)
            body["fields"] = exc.fields
        if isinstance(exc, Invalid) and isinstance(exc.detail.get("errors"), list):
            body["errors"] = exc.detail["errors"]  # e.g. CSV import: every bad row with its line number
        resp = jsonify({"error": body})
        resp.status_code = status
    else:
        if isinstance(exc, Unauthenticated) and request.method == "GET":
            if request.path == "/me" or request.path.startswith("/me/"):
                return redirect(url_for("web.portal_sign_in"))  # type: ignore[return-value]
            return redirect(url_for("web.login", next=request.path))  # type: ignore[return-value]
        resp = Response(render_template("error.html", status=status, message=exc.message), status=status,
                        mimetype="text/html")
    if isinstance(exc, TooManyRequests):
        resp.headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthenticated) and _wants_json():
        resp.headers["WWW-Authenticate"] = 'Bearer realm="vigatra"'
    return resp


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = {404: "not found", 405: "method not allowed", 413: "request too large"}.get(status, exc.name)
    if _wants_json():
        resp = jsonify({"error": {"code": exc.name.lower().replace(" ", "_"), "message": message}})
        resp.status_code = status
    else:
        resp = Response(render_template("error.html", status=status, message=message), status=status,
                        mimetype="text/html")
    # The exception's own headers, bar its body's type: Allow on a 405 (RFC 9110 requires it).
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            resp.headers[name] = value
    return resp


def _unexpected(exc: Exception) -> Response:
    # The route pattern, not the path: a path can carry a token (/onboard/<token>).
    rule = request.url_rule.rule if request.url_rule is not None else "<no route>"
    log.exception("unexpected error while serving %s %s", request.method, rule)
    if _wants_json():
        resp = jsonify({"error": {"code": "internal_error", "message": "internal error"}})
        resp.status_code = 500
        return resp
    return Response(render_template("error.html", status=500, message="internal error"), status=500,
                    mimetype="text/html")


# PostgreSQL SQLSTATEs of a database that cannot take the work now: connection exception, insufficient
# resources (disk full), operator intervention (shutdown, failover), a read-only transaction (a standby).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57", "25006")


def _database_error(exc: DBAPIError) -> Response:
    # A database that cannot take the work (full, read-only, unreachable, locked): refused with 503 like a
    # request whose audit record cannot be written, not answered as a server error. Sign-in writes its
    # throttle counters before any audit record, so it meets a full disk here.
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    if not isinstance(exc, OperationalError) and not sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return _unexpected(exc)
    log.warning("request refused: the database is unavailable (%s)", describe_db_error(exc))
    return error_response(Unavailable("the database is unavailable; try again later"))


def install(app: Flask) -> None:
    app.register_error_handler(VigatraError, error_response)
    app.register_error_handler(DBAPIError, _database_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
