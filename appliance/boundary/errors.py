"""One JSON error shape for the API, one error page for the UI; never echo an unexpected exception.

API errors look like ``{"error": {"code": "forbidden", "message": "...", "field": "..."}}``.
Unknown ids and records the caller may not see both answer 404 with the same body.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from appliance.boundary.paths import is_api_path
from appliance.errors import Invalid, TooManyRequests, Unauthenticated, VigatraError

log = logging.getLogger(__name__)


def _wants_json() -> bool:
    return is_api_path(request.path) or request.accept_mimetypes.best == "application/json"


def error_response(exc: VigatraError) -> Response:
    status = exc.http_status
    if _wants_json():
        body: dict[str, object] = {"code": exc.code, "message": exc.message}
        if isinstance(exc, Invalid) and exc.field:
            body["field"] = exc.field
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
        return resp
    return Response(render_template("error.html", status=status, message=message), status=status,
                    mimetype="text/html")


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


def install(app: Flask) -> None:
    app.register_error_handler(VigatraError, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
