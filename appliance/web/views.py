"""Sign-in, sign-out, the start page, the user's own account, and the health probe."""

from __future__ import annotations

import io
import secrets
import time
from typing import Literal
from urllib.parse import urlsplit

import pyotp
from flask import flash, jsonify, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from appliance.audit.writer import AuditRecord
from appliance.auth.directory import DirectoryUnavailable
from appliance.auth.state import UserState, owes_mfa
from appliance.boundary.csrf import check_csrf
from appliance.boundary.edge import appliance, auth_changed, db, state
from appliance.boundary.routes import public, signed_in
from appliance.boundary.validation import Answer, accepts, submitted
from appliance.errors import Invalid, TooManyRequests, Unauthenticated
from appliance.services import identity
from appliance.services import login as login_service
from appliance.services.directory import signin as directory_signin
from appliance.services.directory.signin import failure_detail
from appliance.web import forms, web_blueprint


class Health(Answer):
    status: Literal["ok", "degraded", "unavailable"]
    database: Literal["ok", "unreachable", "not_writable"]
    scheduler: str


@public()
@accepts(returns=Health, also=((503, Health),))
def health() -> ResponseReturnValue:
    """Health for load balancers, monitoring and systemd: no auth, no data.

    ``unavailable`` (503) when the store cannot be written (``database``: ``unreachable`` or
    ``not_writable``): every request would be refused there, so take the node out of service.
    ``degraded`` (503) when the store is fine but the scheduler is not running (no polling)."""
    app = appliance()
    database = app.write_probe.check()
    scheduler = getattr(app, "scheduler_state", lambda: "stopped")()
    if database != "ok":
        status = "unavailable"
    elif scheduler != "running":
        status = "degraded"
    else:
        status = "ok"
    response = jsonify({"status": status, "database": database, "scheduler": scheduler})
    response.status_code = 200 if status == "ok" else 503
    return response


def _safe_next(target: str | None) -> str:
    r"""Where to go after signing in: a path on this site, or the start page.

    Browsers drop tabs and newlines anywhere in a URL, strip leading control characters and spaces,
    and read a backslash as a slash, so ``/\t/evil.example`` or ``/\evil.example`` are
    ``//evil.example`` to them: another site. Those characters are removed first, then only a path
    with no scheme and no host is accepted.
    """
    if not target:
        return url_for("web.home")
    cleaned = "".join(ch for ch in target if ch >= " " and ch not in "\x7f\\")
    parts = urlsplit(cleaned)
    if cleaned.startswith("/") and not cleaned.startswith("//") and not parts.scheme and not parts.netloc:
        return cleaned
    return url_for("web.home")


def _after_sign_in(user: UserState, target: str | None) -> str:
    """A user who owes a password change or an MFA enrolment goes straight to the form for it: every
    other page refuses them until then (the start page included)."""
    if user.must_change_password:
        return url_for("web.account")
    if owes_mfa(appliance().settings, user):
        return url_for("web.account_mfa")
    return _safe_next(target)


def _security_event(action: str, *, outcome: str, user_id: int | None = None, username: str = "",
                    status: int | None = None, detail: str = "") -> None:
    st = state()
    appliance().record(AuditRecord(
        action=action, actor_type="user" if user_id else "anonymous", user_id=user_id, resource_type="users",
        resource_id=str(user_id) if user_id else username[:100], ip_address=st.transport.client_ip,
        request_id=st.request_id, method=request.method, path=request.path, status=status,
        user_agent=(request.headers.get("User-Agent") or "")[:300], outcome=outcome, detail=detail))


@web_blueprint.route("/login", methods=["GET", "POST"])
@public(accepts_data=True)
@accepts(query=forms.LoginQuery, form=forms.LoginForm, in_view=True, media=("text/html",))
def login(query: forms.LoginQuery) -> ResponseReturnValue:
    next_url = query.next
    if request.method == "GET":
        if state().actor.is_authenticated:
            signed_in_as = appliance().auth.user(state().actor.user_id or 0)
            return redirect(_after_sign_in(signed_in_as, next_url) if signed_in_as else _safe_next(next_url))
        return render_template("login.html", next=next_url, error=None, mfa=False, sso_label=_sso_label())
    check_csrf()
    app = appliance()
    st = state()
    if not st.transport.credentials_ok:
        return render_template("login.html", next=next_url, mfa=False,
                               error="Passwords are accepted over HTTPS only. Use the appliance's https:// address."
                               ), 403
    try:
        form = submitted(forms.LoginForm)
    except Invalid as exc:
        return render_template("login.html", next=next_url, mfa=False, error=exc.message), 400
    username = form.username.strip()
    try:
        outcome = directory_signin.sign_in(app, username=username, password=form.password,
                                           ip=st.transport.client_ip, totp_code=form.totp or None)
    except DirectoryUnavailable as exc:
        _security_event("login.failure", outcome="error", username=username, status=503, detail=exc.message)
        return render_template("login.html", next=next_url, username=username, mfa=False,
                               error="The directory cannot be reached right now; try again later (local "
                                     "accounts still sign in)."), 503
    except login_service.MfaRequired:
        return render_template("login.html", next=next_url, username=username, mfa=True,
                               error="Enter the code from your authenticator app."), 401
    except Unauthenticated as exc:
        locked = bool(exc.detail.get("locked"))
        _security_event("login.failure", outcome="denied", username=username, status=401,
                        detail=failure_detail(exc))
        if locked:
            _security_event("login.lockout", outcome="denied", username=username, status=401)
        return render_template("login.html", next=next_url, username=username, mfa=False,
                               error="Invalid username or password."), 401
    except TooManyRequests as exc:
        _security_event("login.throttled", outcome="denied", username=username, status=429)
        return render_template("login.html", next=next_url, username=username, mfa=False, error=exc.message), 429
    user = start_session(outcome.user_id)
    _security_event("login.success", outcome="success", user_id=user.id, status=302)
    return redirect(_after_sign_in(user, next_url))


def _sso_label() -> str | None:
    oidc = appliance().settings.directory.oidc
    return oidc.button_label if oidc.enabled else None


def start_session(user_id: int) -> UserState:
    """A fresh browser session for a user who just proved who they are (a password, or the OpenID provider)."""
    app = appliance()
    user = app.auth.user(user_id)
    if user is None:  # created by another process (or a directory sign-in) a moment ago
        app.auth.load(app.store)
        user = app.auth.user(user_id)
    assert user is not None
    session.clear()  # a fresh session id at every login: no fixation
    now = time.time()
    session.update({"sid": secrets.token_urlsafe(24), "uid": user.id, "ep": user.epoch, "iat": now, "seen": now,
                    "csrf": secrets.token_urlsafe(32)})
    session.permanent = True
    return user


@web_blueprint.route("/logout", methods=["POST"])
@signed_in(action="logout", while_restricted=True)
@accepts(form=forms.NoFields, media=("text/html",))
def logout() -> ResponseReturnValue:
    import datetime as dt

    sid = session.get("sid")
    actor = state().actor
    if sid and actor.user_id is not None:
        expires = dt.datetime.fromtimestamp(float(session.get("iat", time.time())), dt.UTC) + dt.timedelta(
            hours=appliance().settings.auth.session_absolute_hours)
        login_service.revoke_session(db(), session_id=sid, user_id=actor.user_id, expires_at=expires)
        auth_changed()
    session.clear()
    flash("You are signed out.", "ok")
    return redirect(url_for("web.login"))


@web_blueprint.route("/")
@signed_in(action="home.view")
@accepts(media=("text/html",))
def home() -> ResponseReturnValue:
    from appliance.services import overview
    from appliance.services.valuation import read as valuation

    actor = state().actor
    settings = appliance().settings
    built = overview.collect(db(), actor, settings)
    return render_template("home.html", has_any=bool(actor.permissions), panels=built,
                           currency=valuation.currency_of(settings))


@web_blueprint.route("/account")
@signed_in(action="account.view", while_restricted=True)
@accepts(media=("text/html",))
def account() -> ResponseReturnValue:
    user = identity.get_user(db(), state().actor.user_id or 0)
    return render_template("account.html", user=user, restricted=state().restricted,
                           min_length=appliance().settings.auth.password_min_length)


@web_blueprint.route("/account/password", methods=["POST"])
@signed_in(action="account.password_change", while_restricted=True)
@accepts(form=forms.PasswordForm, media=("text/html",))
def account_password(form: forms.PasswordForm) -> ResponseReturnValue:
    from appliance.auth.passwords import verify_password

    app = appliance()
    session_ = db()
    user = identity.get_user(session_, state().actor.user_id or 0)
    ok, _ = verify_password(user.password_hash, form.current_password, app.settings.auth)
    if not ok:
        raise Invalid("the current password is not right", field="current_password")
    new = form.new_password
    if new != form.confirm_password:
        raise Invalid("the two new passwords differ", field="confirm_password")
    identity.set_password(session_, user.id, new, app.settings.auth)
    auth_changed()
    # Changing the password ends every session, this one too: sign in again.
    session.clear()
    flash("Password changed. Sign in with the new password.", "ok")
    return redirect(url_for("web.login"))


@web_blueprint.route("/account/mfa", methods=["GET"])
@signed_in(action="account.mfa_view", while_restricted=True)
@accepts(media=("text/html",))
def account_mfa() -> ResponseReturnValue:
    import segno

    app = appliance()
    session_ = db()
    user = identity.get_user(session_, state().actor.user_id or 0)
    if user.mfa_enabled or user.totp_secret_sealed is None:
        return render_template("mfa.html", user=user, qr_svg=None, secret=None)
    secret = app.keys.open_text(session_, user.totp_secret_sealed, table="users", column="totp_secret_sealed",
                                row_id=user.id)
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name="Vigatra")
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=5, xmldecl=False, title="TOTP QR code")
    return render_template("mfa.html", user=user, qr_svg=buffer.getvalue().decode(), secret=secret)


@web_blueprint.route("/account/mfa/start", methods=["POST"])
@signed_in(action="account.mfa_start", while_restricted=True)
@accepts(form=forms.NoFields, media=("text/html",))
def account_mfa_start() -> ResponseReturnValue:
    app = appliance()
    session_ = db()
    user = identity.get_user(session_, state().actor.user_id or 0)
    if user.mfa_enabled:
        raise Invalid("two-factor authentication is already on")
    # The pending secret is sealed like any other secret; it becomes active only when confirmed.
    user.totp_secret_sealed = app.keys.seal(session_, pyotp.random_base32(), table="users",
                                            column="totp_secret_sealed", row_id=user.id)
    user.totp_last_step = 0
    return redirect(url_for("web.account_mfa"))


@web_blueprint.route("/account/mfa", methods=["POST"])
@signed_in(action="account.mfa_enrol", while_restricted=True)
@accepts(form=forms.MfaCodeForm, media=("text/html",))
def account_mfa_confirm(form: forms.MfaCodeForm) -> ResponseReturnValue:
    from appliance.auth.state import bump_revision

    app = appliance()
    session_ = db()
    user = identity.get_user(session_, state().actor.user_id or 0)
    if user.mfa_enabled or user.totp_secret_sealed is None:
        raise Invalid("start the enrolment first")
    secret = app.keys.open_text(session_, user.totp_secret_sealed, table="users", column="totp_secret_sealed",
                                row_id=user.id)
    if not login_service.verify_totp(session_, user, form.code, secret):
        flash("That code is not right; check the time on your phone and try again.", "error")
        return redirect(url_for("web.account_mfa"))
    user.mfa_enabled = True
    bump_revision(session_)
    auth_changed()
    flash("Two-factor authentication is on.", "ok")
    return redirect(url_for("web.account"))
