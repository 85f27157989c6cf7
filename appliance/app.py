"""create_app: the Flask application (UI + JSON API). Runs no query and starts no thread."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSessionInterface

from appliance.boundary import edge, errors, headers, params, pipeline
from appliance.boundary.paths import is_api_path
from appliance.boundary.routes import check_declared
from appliance.boundary.validation import check_validated
from appliance.services.context import Appliance

SESSION_COOKIE = "__Host-vigatra"


class BrowserSessions(SecureCookieSessionInterface):
    """Cookie sessions for the browser UI only: the API is bearer-authenticated and never reads or sets
    a session cookie (which also spares it the cookie signing on every request). A request the edge
    refused after its view ran (its audit record could not be written) keeps none of the view's session
    changes either."""

    def open_session(self, app: Flask, request: Request) -> Any:
        if is_api_path(request.path):
            return self.null_session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        if self.is_null_session(session):
            return
        st = edge.current_state()
        if st is not None and st.refused:
            return
        super().save_session(app, session, response)


def create_app(appliance: Appliance) -> Flask:
    app = Flask(__name__, template_folder="web/templates", static_folder="web/static")
    app.extensions["vigatra"] = appliance
    pipeline.install(app)  # first: its checks run before, and its audit record after, any other hook
    params.install(app)  # before any route: bounded ids in paths
    app.session_interface = BrowserSessions()
    settings = appliance.settings
    app.config.update(
        SECRET_KEY=appliance.keys.derive("web-session"),
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_DOMAIN=None,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.auth.session_absolute_hours),
        SESSION_REFRESH_EACH_REQUEST=True,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        JSON_SORT_KEYS=False,
        TEMPLATES_AUTO_RELOAD=False,
    )
    headers.install(app)
    errors.install(app)

    from appliance.api import api_blueprint
    from appliance.web import web_blueprint

    app.register_blueprint(web_blueprint)
    app.register_blueprint(api_blueprint, url_prefix="/api/v1")

    from appliance.api.oversight import prometheus
    from appliance.web.views import health

    app.add_url_rule("/healthz", "healthz", health)
    app.add_url_rule("/metrics", "metrics", prometheus)
    check_declared(app)
    check_validated(app)
    return app
