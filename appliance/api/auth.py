"""POST /api/v1/auth/token: username + password (+ TOTP) -> a 24 h access token."""

from __future__ import annotations

from flask import request
from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api import schemas as s
from appliance.api.common import respond
from appliance.audit.writer import AuditRecord
from appliance.boundary.edge import appliance, state
from appliance.boundary.routes import public
from appliance.boundary.validation import accepts, submitted
from appliance.errors import Forbidden, PasswordChangeRequired, TooManyRequests, Unauthenticated
from appliance.services import login as login_service


def _event(action: str, outcome: str, status: int, *, user_id: int | None = None, username: str = "") -> None:
    st = state()
    appliance().record(AuditRecord(
        action=action, actor_type="user" if user_id else "anonymous", user_id=user_id, resource_type="users",
        resource_id=str(user_id) if user_id else username[:100], ip_address=st.transport.client_ip,
        request_id=st.request_id, method=request.method, path=request.path, status=status,
        user_agent=(request.headers.get("User-Agent") or "")[:300], outcome=outcome))


@api_blueprint.route("/auth/token", methods=["POST"])
@public(accepts_data=True)
@accepts(body=s.TokenRequest, in_view=True, returns=s.Token, errors=(401, 403, 429))
def issue_token() -> ResponseReturnValue:
    """Sign in: username and password (and TOTP) for a 24-hour access token."""
    app = appliance()
    if not state().transport.credentials_ok:
        raise Forbidden("credentials are accepted over TLS only")
    # Parsed only now: credentials that came over plain HTTP are not even read.
    data = submitted(s.TokenRequest)
    username, password, totp = data.username, data.password, data.totp
    try:
        outcome = login_service.login(
            app.store, app.settings.auth, username=username, password=password, ip=state().transport.client_ip,
            totp_code=totp, open_totp_secret=lambda s, user: app.keys.open_text(
                s, user.totp_secret_sealed, table="users", column="totp_secret_sealed", row_id=user.id))
    except login_service.MfaRequired:
        raise
    except Unauthenticated as exc:
        _event("token.failure", "denied", 401, username=username)
        if exc.detail.get("locked"):
            _event("login.lockout", "denied", 401, username=username)
        raise Unauthenticated(login_service.GENERIC_FAILURE) from None
    except TooManyRequests:
        _event("login.throttled", "denied", 429, username=username)
        raise
    app.auth.load(app.store)
    user = app.auth.user(outcome.user_id)
    if user is None:
        raise Unauthenticated(login_service.GENERIC_FAILURE)
    if user.must_change_password:
        # The one-time password proves only that someone read the installer's output or an admin's reset:
        # it buys no token, only the password form.
        _event("token.refused", "denied", 403, user_id=user.id)
        raise PasswordChangeRequired("this password must be changed before it can be used for an access token: "
                                     "sign in to the web interface and choose a new one")
    if app.settings.auth.mfa_required and not user.mfa_enabled:
        raise Forbidden("multi-factor authentication is required: enrol in the web interface first")
    token, ttl = login_service.issue_access_token(app.settings.auth, app.keys.derive("jwt"), user_id=user.id,
                                                  epoch=user.epoch)
    _event("token.issue", "success", 200, user_id=user.id)
    return respond({"access_token": token, "token_type": "Bearer", "expires_in": ttl})
