"""Employee portal sign-in through the firm's directory: a user name and password checked by an LDAP bind
(POST /me/sign-in/directory), or the OpenID provider's button (GET /me/sign-in/sso, then the dashboard's
callback, which hands a flow the portal began back here: the pending state records which side began it, so an
employee sign-in never opens a dashboard session and a dashboard sign-in never an employee one).

Every refusal (unknown person, wrong password, disabled account, no matching or an offboarded employee) gives
the person the same words and counts against their address like a sign-in link request; the audit trail gets
the true reason. services/directory/portal.py decides who the employee is.
"""

from __future__ import annotations

from typing import Any

from flask import redirect, session
from flask.typing import ResponseReturnValue

from appliance.auth.directory import DirectoryRefused, DirectoryUnavailable
from appliance.boundary.csrf import check_csrf
from appliance.boundary.edge import appliance, state
from appliance.boundary.routes import public
from appliance.boundary.validation import accepts, submitted
from appliance.errors import Invalid, KeyProviderError, NotFound, TooManyRequests
from appliance.services import portal
from appliance.services.directory import portal as directory_portal
from appliance.services.directory import signin as directory_signin
from appliance.web import forms, web_blueprint
from appliance.web.portal import _event, _page, signed_in_response

UNAVAILABLE = "Directory sign-in is unavailable right now; try again later, or ask for a sign-in link."
EMPLOYEE_FLOW = "employee"  # the pending OpenID state's "kind" when the portal began the flow


def _throttled() -> Any | None:
    """The 429 page when this address asked too often (links and directory attempts share the allowance)."""
    try:
        portal.check_throttle(appliance().store, state().transport.client_ip)
    except TooManyRequests as exc:
        response = _page("portal_sign_in.html", 429, error=exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    return None


def _refused(via: str, reason: str, status: int = 401, **detail: Any) -> Any:
    _event("portal.sign_in", outcome="denied", status=status, detail={"via": via, "reason": reason[:300], **detail})
    return _page("portal_sign_in.html", status, error=directory_portal.REFUSED)


def _signed_in(via: str, person: directory_portal.DirectoryPersonRef) -> Any:
    """Match the person to an employee and open the employee session (or refuse, in the same words)."""
    app = appliance()
    try:
        with app.store.unit_of_work() as s:
            employee_id = directory_portal.match_employee(s, app.settings, person)
            row, cookie = portal.open_session(s, app.settings, employee_id)
            _event("portal.sign_in", outcome="success", status=302, employee_id=employee_id,
                   detail={"via": via, "subject": person.subject[:200], "session_id": row.id}, session_=s)
    except directory_portal.PortalRefused as exc:
        return _refused(via, exc.message, subject=person.subject[:200])
    return signed_in_response(cookie)


@web_blueprint.route("/me/sign-in/directory", methods=["POST"])
@public(accepts_data=True, action="portal.sign_in_directory")
@accepts(form=forms.PortalDirectoryForm, in_view=True, media=("text/html",))
def portal_sign_in_directory() -> ResponseReturnValue:
    app = appliance()
    if not directory_portal.enabled(app.settings)[0]:
        raise NotFound("not found")
    if not state().transport.credentials_ok:
        return _page("portal_sign_in.html", 403, error="Passwords are accepted over HTTPS only. Use the "
                                                       "appliance's https:// address.")
    throttled = _throttled()
    if throttled is not None:
        return throttled
    check_csrf()
    portal.count_attempt(app.store, app.settings, state().transport.client_ip)
    try:
        form = submitted(forms.PortalDirectoryForm)
    except Invalid as exc:
        return _page("portal_sign_in.html", 400, error=exc.message)
    login = form.username.strip()
    if not login or not form.password:
        return _page("portal_sign_in.html", 400, error="Enter your directory user name and password.")
    try:
        person = directory_portal.ldap_person(app, login, form.password)
    except directory_portal.PortalRefused as exc:
        return _refused("ldap", exc.message, login=login[:128])
    except (DirectoryUnavailable, KeyProviderError) as exc:
        _event("portal.sign_in", outcome="error", status=503, detail={"via": "ldap", "reason": exc.message[:300]})
        return _page("portal_sign_in.html", 503, error=UNAVAILABLE)
    return _signed_in("ldap", person)


@web_blueprint.route("/me/sign-in/sso", methods=["GET"])
@public(action="portal.sign_in_sso")
@accepts(media=("text/html",))
def portal_sign_in_sso() -> ResponseReturnValue:
    from appliance.web.sso import PENDING

    app = appliance()
    if not directory_portal.enabled(app.settings)[1]:
        raise NotFound("not found")
    if not state().transport.credentials_ok:
        return _page("portal_sign_in.html", 403, error="Single sign-on works over HTTPS only. Use the "
                                                       "appliance's https:// address.")
    throttled = _throttled()
    if throttled is not None:
        return throttled
    try:
        started = directory_signin.oidc_provider(app).authorization()
    except (DirectoryUnavailable, KeyProviderError) as exc:
        _event("portal.sign_in", outcome="error", status=503, detail={"via": "oidc", "reason": exc.message[:300]})
        return _page("portal_sign_in.html", 503, error=UNAVAILABLE)
    session[PENDING] = {"state": started.state, "nonce": started.nonce, "verifier": started.code_verifier,
                        "next": "", "kind": EMPLOYEE_FLOW}
    return redirect(started.url)


def finish_oidc(pending: dict[str, Any], code: str) -> ResponseReturnValue:
    """The provider's callback for a flow the portal began (state already matched by the caller)."""
    app = appliance()
    if not directory_portal.enabled(app.settings)[1]:
        return _refused("oidc", "directory sign-in to the portal is turned off")
    portal.count_attempt(app.store, app.settings, state().transport.client_ip)
    try:
        claims = directory_signin.oidc_provider(app).finish(code=code, code_verifier=str(pending["verifier"]),
                                                            nonce=str(pending["nonce"]))
    except (DirectoryUnavailable, KeyProviderError) as exc:
        _event("portal.sign_in", outcome="error", status=503, detail={"via": "oidc", "reason": exc.message[:300]})
        return _page("portal_sign_in.html", 503, error=UNAVAILABLE)
    except DirectoryRefused as exc:
        return _refused("oidc", exc.message)
    return _signed_in("oidc", directory_portal.oidc_person(app.settings, claims))


def refuse_oidc(reason: str) -> ResponseReturnValue:
    """The provider came back without a code for a portal flow."""
    return _refused("oidc", reason)


__all__ = ["EMPLOYEE_FLOW", "finish_oidc", "refuse_oidc"]
