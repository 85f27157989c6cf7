"""CSRF protection for the browser session: a per-session token every state-changing form carries.

The pipeline checks it on every cookie-authenticated state change of a guarded route. Public routes
that take input (sign-in, onboarding) call :func:`check_csrf` themselves, after their own gates (the
onboarding page refuses a non-TLS body before anything reads it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import request, session

from appliance.errors import Forbidden

FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"


def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return str(token)


def employee_csrf_token(session_token: str) -> str:
    """The CSRF token of an employee portal session: derived from its cookie (which a cross-site page
    cannot read), so it works on the API too, where no browser session exists."""
    return hashlib.sha256(b"vigatra-portal-csrf:" + session_token.encode()).hexdigest()[:43]


def check_employee_csrf(session_token: str) -> None:
    sent = request.form.get(FORM_FIELD) or request.headers.get(HEADER, "")
    expected = employee_csrf_token(session_token)
    if sent and hmac.compare_digest(expected, str(sent)):
        return
    check_csrf()


def check_csrf() -> None:
    """Raise Forbidden unless the request carries the session's token (form field or header)."""
    expected = session.get("csrf", "")
    sent = request.form.get(FORM_FIELD) or request.headers.get(HEADER, "")
    if not expected or not sent or not hmac.compare_digest(str(expected), str(sent)):
        raise Forbidden("the form expired or did not come from this site; reload the page and try again")
