"""Single sign-on through the firm's OpenID provider: /login/oidc sends the browser there, /login/oidc/callback
takes it back (services/directory/oidc.py checks everything; these views keep the state between the two).
A flow the employee portal began (/me/sign-in/sso) comes back to the same callback, which hands it to
web/portal_directory.py: its pending state says so, and it never opens a dashboard session."""

from __future__ import annotations

import secrets
import time

from flask import redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from appliance.auth.directory import DirectoryRefused, DirectoryUnavailable
from appliance.boundary.csrf import check_csrf
from appliance.boundary.edge import appliance, state
from appliance.boundary.routes import public
from appliance.boundary.validation import accepts, submitted
from appliance.errors import Invalid, KeyProviderError, NotFound, TooManyRequests, Unauthenticated
from appliance.services.directory import signin as directory_signin
from appliance.web import forms, portal_directory, web_blueprint
from appliance.web.views import _after_sign_in, _safe_next, _security_event, start_session

PENDING = "oidc_pending"  # the session key holding state, nonce, PKCE verifier and next until the callback
TOTP_PENDING = "oidc_totp"  # the session key holding the user the provider vouched for, until their TOTP code
TOTP_STEP_SECONDS = 300


def _failed(message: str, status: int, *, next_url: str | None = None) -> ResponseReturnValue:
    sso_label = appliance().settings.directory.oidc.button_label
    return render_template("login.html", next=next_url, error=message, mfa=False, sso_label=sso_label), status


@web_blueprint.route("/login/oidc")
@public()
@accepts(query=forms.LoginQuery, media=("text/html",))
def login_oidc(query: forms.LoginQuery) -> ResponseReturnValue:
    app = appliance()
    if not app.settings.directory.oidc.enabled:
        raise NotFound("not found")
    if not state().transport.credentials_ok:
        return _failed("Single sign-on works over HTTPS only. Use the appliance's https:// address.", 403)
    try:
        request_ = directory_signin.oidc_provider(app).authorization()
    except (DirectoryUnavailable, KeyProviderError) as exc:
        _security_event("login.failure", outcome="error", status=503, detail=exc.message[:300])
        return _failed("Single sign-on is unavailable right now; try again later (local accounts still sign in).",
                       503, next_url=query.next)
    session[PENDING] = {"state": request_.state, "nonce": request_.nonce, "verifier": request_.code_verifier,
                        "next": query.next or ""}
    return redirect(request_.url)


@web_blueprint.route("/login/oidc/callback")
@public(accepts_data=True)
@accepts(query=forms.OidcCallbackQuery, media=("text/html",))
def login_oidc_callback(query: forms.OidcCallbackQuery) -> ResponseReturnValue:
    app = appliance()
    if not app.settings.directory.oidc.enabled:
        raise NotFound("not found")
    pending = session.pop(PENDING, None)
    if not isinstance(pending, dict) or not query.state or not secrets.compare_digest(
            str(pending.get("state", "")), query.state):
        _security_event("login.failure", outcome="denied", status=400, detail="oidc: unknown or replayed state")
        return _failed("That sign-in link has expired or was already used; sign in again.", 400)
    if pending.get("kind") == portal_directory.EMPLOYEE_FLOW:  # the employee portal began this flow
        if query.error or not query.code:
            return portal_directory.refuse_oidc(f"the provider answered {query.error or 'without a code'}")
        return portal_directory.finish_oidc(pending, query.code)
    next_url = str(pending.get("next") or "") or None
    if query.error or not query.code:
        why = f"oidc: the provider answered {query.error or 'without a code'}"
        _security_event("login.failure", outcome="denied", status=401, detail=why[:300])
        return _failed("Single sign-on did not complete.", 401, next_url=next_url)
    st = state()
    try:
        claims = directory_signin.oidc_provider(app).finish(code=query.code, code_verifier=str(pending["verifier"]),
                                                            nonce=str(pending["nonce"]))
        outcome = directory_signin.sign_in_oidc(app, claims, ip=st.transport.client_ip)
    except (DirectoryUnavailable, KeyProviderError) as exc:
        _security_event("login.failure", outcome="error", status=503, detail=exc.message[:300])
        return _failed("Single sign-on is unavailable right now; try again later.", 503, next_url=next_url)
    except DirectoryRefused as exc:
        _security_event("login.failure", outcome="denied", status=401, detail=f"oidc: {exc.message}"[:300])
        return _failed("Single sign-on was refused.", 401, next_url=next_url)
    except directory_signin.OidcTotpRequired as exc:
        # The second step: short-lived, used once (popped at the first try; stale once any code is accepted),
        # and held in this browser's own session, so it cannot be finished from another browser.
        session[TOTP_PENDING] = {"uid": exc.user_id, "step": exc.step, "exp": time.time() + TOTP_STEP_SECONDS,
                                 "next": next_url or ""}
        return redirect(url_for("web.login_oidc_code"))
    except Unauthenticated as exc:
        _security_event("login.failure", outcome="denied", status=401, detail=directory_signin.failure_detail(exc))
        return _failed("Your account may not use Vigatra (no role is mapped to your groups).", 401, next_url=next_url)
    user = start_session(outcome.user_id)
    _security_event("login.success", outcome="success", user_id=user.id, status=302, detail='{"via": "oidc"}')
    return redirect(_after_sign_in(user, _safe_next(next_url)))


@web_blueprint.route("/login/oidc/code", methods=["GET", "POST"])
@public(accepts_data=True, action="login.oidc_code")
@accepts(form=forms.OidcCodeForm, in_view=True, media=("text/html",))
def login_oidc_code() -> ResponseReturnValue:
    """The TOTP code of a user the provider just vouched for (directory.oidc.ask_totp)."""
    app = appliance()
    if not app.settings.directory.oidc.enabled:
        raise NotFound("not found")
    pending = session.get(TOTP_PENDING)
    if not isinstance(pending, dict) or float(pending.get("exp", 0)) < time.time():
        session.pop(TOTP_PENDING, None)
        return _failed("That sign-in has expired; sign in again.", 400)
    next_url = str(pending.get("next") or "") or None
    if request.method != "POST":
        return render_template("login_code.html", error=None), 200
    check_csrf()
    session.pop(TOTP_PENDING, None)  # one try: a wrong code sends the person back through the provider
    try:
        form = submitted(forms.OidcCodeForm)
    except Invalid as exc:
        return _failed(exc.message, 400, next_url=next_url)
    st = state()
    try:
        outcome = directory_signin.finish_oidc_totp(app, user_id=int(pending["uid"]), step=int(pending["step"]),
                                                    code=form.totp, ip=st.transport.client_ip)
    except TooManyRequests as exc:
        _security_event("login.throttled", outcome="denied", status=429, detail='{"via": "oidc"}')
        return _failed(exc.message, 429, next_url=next_url)
    except Unauthenticated as exc:
        _security_event("login.failure", outcome="denied", status=401, detail=directory_signin.failure_detail(exc))
        return _failed("Wrong or expired code; sign in again.", 401, next_url=next_url)
    user = start_session(outcome.user_id)
    _security_event("login.success", outcome="success", user_id=user.id, status=302,
                    detail='{"via": "oidc", "totp": true}')
    return redirect(_after_sign_in(user, _safe_next(next_url)))
