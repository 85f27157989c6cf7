"""The request pipeline: authenticate and authorise before the view, run the view in one unit of work,
record exactly one audit event, commit, and only then let the response leave.

Installed on Flask's public hooks (:func:`install`), before anything else registers any:

- ``before_request`` (first to run): transport facts (client IP from trusted proxies only, TLS), the
  credential (:mod:`~appliance.boundary.authentication`, no database query), the route's declared
  permission, CSRF for cookie-authenticated state changes (:mod:`~appliance.boundary.csrf`);
- ``after_request`` (last to run: Flask runs an app's after-request functions in the reverse order of
  registration, after ``after_this_request`` ones): the audit event of an authenticated request, or of
  one whose credential was refused (:mod:`~appliance.boundary.audit_record`), is written — in the same
  transaction as the change for state-changing methods, through the group committer otherwise — and is
  durable before the response is handed back to the server. If that fails the response is replaced by a
  503 that carries no data (fail closed), and the browser session is not saved either;
- ``teardown_request``: the request's session is closed.
"""

from __future__ import annotations

import itertools
import logging
import secrets

from flask import Flask, Response, current_app, g, request

from appliance.audit.writer import append
from appliance.boundary import authentication
from appliance.boundary.audit_record import request_record
from appliance.boundary.csrf import check_csrf, check_employee_csrf
from appliance.boundary.edge import SAFE_METHODS, RequestState, appliance, current_state
from appliance.boundary.headers import REQUEST_ID_KEY, TLS_KEY
from appliance.boundary.routes import EMPLOYEE, PUBLIC, SIGNED_IN, spec_for
from appliance.boundary.transport import inspect
from appliance.crypto import register_request_id_tag
from appliance.errors import Forbidden, Unauthenticated, Unavailable

log = logging.getLogger(__name__)

# Request ids: 32 hex characters, random high 64 bits per process and a counter in the low 64: unique
# across processes and restarts; they correlate logs and the audit trail, they are no secret (the log
# filter keeps ids that carry this process's tag, so a log line can be matched to X-Request-ID).
_REQUEST_TAG = secrets.randbits(64) | 1 << 63
register_request_id_tag(f"{_REQUEST_TAG:016x}")
_REQUEST_SEQUENCE = itertools.count((_REQUEST_TAG << 64) + 1)


def _next_request_id() -> str:
    return f"{next(_REQUEST_SEQUENCE):032x}"


def install(app: Flask) -> None:
    """Register the pipeline on ``app``. Call before anything else registers request hooks, so that the
    edge's checks run first and its audit record describes the response that finally leaves."""
    app.before_request(_begin)
    app.after_request(_finish)
    app.teardown_request(_cleanup)


def _begin() -> None:
    app = appliance()
    environ = request.environ
    st = RequestState(_next_request_id(), inspect(environ, app.settings.server.trusted_proxies),
                      write=request.method not in SAFE_METHODS)
    g.vigatra_request = st
    environ[TLS_KEY] = st.transport.tls  # for the security headers (HSTS over TLS only)
    environ[REQUEST_ID_KEY] = st.request_id  # the X-Request-ID response header, on every answer
    st.spec = spec_for(current_app, request.endpoint)
    authentication.authenticate(app, st)
    if request.args:  # after authenticating: the refusal's audit event names the caller when it can
        authentication.refuse_query_credentials(app, st)
    _authorise(st)
    # Public routes that take input (sign-in, onboarding) check their own CSRF token after their own gates.
    if st.credential == "session" and st.write and (st.spec is None or st.spec.permission != PUBLIC):
        check_csrf()
    elif st.credential == "employee_session" and st.write and (st.spec is None or st.spec.permission != PUBLIC):
        check_employee_csrf(request.cookies.get(authentication.EMPLOYEE_COOKIE, ""))


def _authorise(st: RequestState) -> None:
    spec = st.spec
    if spec is None or spec.permission == PUBLIC:
        return
    if spec.permission == EMPLOYEE:
        # The portal takes an employee session only; the dashboard takes none.
        if st.actor.employee_id is None:
            if st.actor.is_authenticated:
                raise Forbidden("this is the employee portal: dashboard credentials are not accepted here")
            raise Unauthenticated("sign in to the portal with the link you were sent")
        return
    if st.actor.employee_id is not None:
        raise Forbidden("an employee portal session cannot use the dashboard")
    if not st.actor.is_authenticated:
        raise Unauthenticated("sign in first")
    if st.restricted and not spec.while_restricted:
        raise Forbidden("finish setting up your account first"
                        if st.restricted == "mfa" else "change your password first")
    if spec.permission == SIGNED_IN:
        return
    # Holding the permission at any scope passes the guard; the services then apply the scope
    # (a `flagged` holder sees flagged records only, and everything else reads as not found).
    if st.actor.scope_for(spec.permission) is None:
        raise Forbidden("you do not have permission for this")


def _finish(response: Response) -> Response:
    st = current_state()
    if st is None:  # the request failed before the edge began (no state to audit)
        return response
    app = appliance()
    # An authenticated request, and any request whose credential was refused (a forged token, a revoked
    # key, a replayed session, a credential in the URL): one event each, the refusal as outcome "denied".
    # Employee sessions are audited like users on every route they reach (their own, or a refusal).
    audited = st.actor.is_authenticated or st.refusal is not None or (
        st.actor.employee_id is not None and st.spec is not None and st.spec.permission != PUBLIC)
    try:
        if st.write:
            session = st.db
            if session is None:
                session = st.db = app.store.session(write=True)
            if response.status_code >= 400:
                session.rollback()
            if audited:
                append(session, [request_record(st, request, response.status_code)])
            session.commit()
        else:
            if st.db is not None:  # a reader: nothing to roll back; give its connection back before waiting
                if st.db.new or st.db.dirty or st.db.deleted:
                    log.error("%s %s tried to change state; discarded", request.method, request.endpoint)
                st.db.close()
                st.db = None
            if audited:
                app.audit.record(request_record(st, request, response.status_code))
    except Exception as exc:  # noqa: BLE001 - whatever failed, the event is not durable: fail closed
        if st.db is not None:
            st.db.rollback()
        log.error("request %s refused: audit record could not be written (%s)", st.request_id,
                  type(exc).__name__)
        st.refused = True
        return _unavailable()
    if st.auth_changed:
        app.auth.load(app.store)
    return response


def _unavailable() -> Response:
    from appliance.boundary.errors import error_response

    return error_response(Unavailable("the audit trail is unavailable, so this request was refused"))


def _cleanup(_exc: BaseException | None) -> None:
    st = current_state()
    if st is not None and st.db is not None:
        st.db.close()
        st.db = None
