"""Who is calling: the request's credential checked against the in-memory auth state (no query).

Credentials come as ``Authorization: Bearer`` (an API key ``vgk_...`` or a JWT), ``X-API-Key``, or the
browser session cookie. Credentials in a query string are refused; an API key that travelled where it
could be read (plain HTTP, a URL) is refused and revoked at once. Every refusal of a presented
credential is noted on the request state (:class:`~appliance.boundary.edge.Refusal`) and audited by
the pipeline, with the user and key when they are known: a forged token, a revoked key or a replayed
session leaves a trace even though nobody is signed in.
"""

from __future__ import annotations

import json
import logging
import time

from flask import request, session

from appliance.audit.writer import AuditRecord, append
from appliance.auth import apikeys
from appliance.auth.jwt import TokenInvalid
from appliance.auth.state import KeyState, owes_mfa
from appliance.boundary.audit_record import user_agent
from appliance.boundary.edge import Refusal, RequestState
from appliance.errors import Forbidden, Invalid, Unauthenticated, VigatraError
from appliance.services.context import Appliance
from appliance.store.base import utcnow

log = logging.getLogger(__name__)

# The employee portal's session cookie: its own cookie, never the dashboard's session.
EMPLOYEE_COOKIE = "__Host-vigatra-employee"
QUERY_CREDENTIALS = frozenset({"api_key", "apikey", "key", "token", "access_token", "jwt", "password", "secret"})


def refuse_query_credentials(app: Appliance, st: RequestState) -> None:
    """Invalid when a query parameter is named like a credential (a key found there is revoked)."""
    named = [name for name in request.args if name.lower() in QUERY_CREDENTIALS]
    if not named:
        return
    for name in named:
        value = request.args.get(name, "")
        if apikeys.looks_like_key(value):
            _revoke_leaked_key(app, st, value, "sent in a query string")
    raise _refused(st, Invalid("credentials are never accepted in the query string; send them in a header"),
                   "query", f"credential-named query parameter(s): {', '.join(sorted(set(named)))}",
                   user_id=st.actor.user_id, api_key_id=st.actor.api_key_id)


def _refused(st: RequestState, exc: VigatraError, credential: str, reason: str, *, user_id: int | None = None,
             api_key_id: int | None = None, value: str = "") -> VigatraError:
    """Note the refusal on the request (the pipeline audits it) and hand back the error to raise."""
    st.refusal = Refusal(credential, reason, user_id, api_key_id, apikeys.fingerprint(value) if value else "")
    return exc


def authenticate(app: Appliance, st: RequestState) -> None:
    """Set the request's actor and credential from what it presents (anonymous when it presents
    nothing); Unauthenticated or Forbidden when what it presents must be refused."""
    environ = request.environ
    header = environ.get("HTTP_AUTHORIZATION", "")
    key_header = environ.get("HTTP_X_API_KEY", "")
    presented = key_header
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _refused(st, Unauthenticated("unsupported Authorization header (use Bearer)"), "authorization",
                           "not a Bearer credential")
        presented = value.strip()
    if presented:
        if apikeys.looks_like_key(presented):
            _authenticate_api_key(app, st, presented)
        elif key_header:
            raise _refused(st, Unauthenticated("invalid API key"), "apikey", "not shaped like a key",
                           value=presented)
        else:
            _authenticate_jwt(app, st, presented)
        return
    _authenticate_session(app, st)
    if st.actor.kind == "anonymous" and request.cookies.get(EMPLOYEE_COOKIE):
        _authenticate_employee(app, st, request.cookies[EMPLOYEE_COOKIE])


def _authenticate_employee(app: Appliance, st: RequestState, token: str) -> None:
    """An employee's portal session (one indexed read; ended sessions and offboarded employees fail)."""
    from appliance.rbac.actors import portal_actor
    from appliance.services import portal

    found = portal.session_for(app.store, app.settings, token)
    if found is None:
        return
    if not st.transport.credentials_ok:
        raise Forbidden("the employee portal is served over TLS only")
    st.actor = portal_actor(found.employee_id, found.session_id)
    st.credential = "employee_session"


def _revoke_leaked_key(app: Appliance, st: RequestState, key: str, why: str) -> None:
    """A key that travelled where it could be read (plain HTTP, a URL) is dead from now on."""
    from appliance.rbac.actors import system_actor
    from appliance.services import identity

    found = _presented_key(app, key)
    known, presented = found if found else (None, b"")
    if known is not None and (apikeys.matches(presented, known.secret_digest)
                              or apikeys.matches(presented, known.previous_digest)):
        with app.store.unit_of_work() as s:
            identity.revoke_api_key(s, system_actor("edge"), known.id, reason=f"leaked: {why}")
            append(s, [AuditRecord(
                action="apikey.revoke_leaked", actor_type="apikey", user_id=known.user_id, api_key_id=known.id,
                resource_type="apikeys", resource_id=str(known.id), ip_address=st.transport.client_ip,
                request_id=st.request_id, method=request.method, path=request.path, status=403,
                user_agent=user_agent(request.environ), outcome="denied",
                detail=json.dumps({"fingerprint": apikeys.fingerprint(key), "reason": why}))])
        app.auth.load(app.store)
    log.warning("API key %s refused: %s", apikeys.fingerprint(key), why)


def _presented_key(app: Appliance, key: str) -> tuple[KeyState, bytes] | None:
    """The known key a presented one names by its prefix, and the presented secret's digest (None when
    the string is not shaped like a key or names no known key)."""
    parts = apikeys.split(key)
    known = app.auth.key(parts[0]) if parts else None
    if parts is None or known is None:
        return None
    return known, apikeys.digest(parts[1])


def _key_refused(st: RequestState, found: tuple[KeyState, bytes] | None, key: str, exc: VigatraError,
                 reason: str) -> VigatraError:
    """A refused API key, naming the key and its owner when its prefix names a known key."""
    known = found[0] if found else None
    return _refused(st, exc, "apikey", reason, value=key, user_id=known.user_id if known else None,
                    api_key_id=known.id if known else None)


def _authenticate_api_key(app: Appliance, st: RequestState, key: str) -> None:
    found = _presented_key(app, key)
    if not st.transport.tls:
        _revoke_leaked_key(app, st, key, "sent over plain HTTP")
        raise _key_refused(st, found, key, Forbidden(
            "API keys are accepted over TLS only; this key has been revoked. Create a new one and use https://"),
            "sent over plain HTTP")
    if found is None:
        raise _key_refused(st, found, key, Unauthenticated("invalid API key"), "unknown key")
    known, presented = found
    current = apikeys.matches(presented, known.secret_digest)
    previous = (not current and known.previous_valid_until is not None and known.previous_valid_until > utcnow()
                and apikeys.matches(presented, known.previous_digest))
    owner = app.auth.user(known.user_id)
    if not (current or previous):
        raise _key_refused(st, found, key, Unauthenticated("invalid API key"), "wrong secret")
    if known.revoked or owner is None or not owner.active:
        raise _key_refused(st, found, key, Unauthenticated("invalid API key"),
                           "revoked, or its owner's credentials changed or were disabled")
    if known.expires_at is not None and known.expires_at <= utcnow():
        raise _key_refused(st, found, key, Unauthenticated("invalid API key"), "expired")
    # known.permissions is already limited to what the owner holds (computed with the snapshot).
    st.actor = known.actor
    st.credential = "apikey"
    app.auth.note_key_used(known.id)


def _authenticate_jwt(app: Appliance, st: RequestState, token: str) -> None:
    settings = app.settings.auth
    try:
        claims = app.auth.tokens.verify(token, app.keys.derive("jwt"), issuer=settings.jwt_issuer,
                                        audience=settings.jwt_audience,
                                        max_ttl_seconds=settings.jwt_ttl_hours * 3600)
    except TokenInvalid as exc:
        log.info("access token refused: %s", exc)
        raise _refused(st, Unauthenticated("invalid or expired access token"), "jwt", str(exc)[:200],
                       value=token) from None
    user = app.auth.user(claims.user_id)
    if user is None or not user.active or user.epoch != claims.epoch:
        raise _refused(st, Unauthenticated("invalid or expired access token"), "jwt",
                       "the user is unknown or disabled, or their credentials changed since it was issued",
                       user_id=claims.user_id, value=token)
    if not st.transport.credentials_ok:
        raise _refused(st, Forbidden("access tokens are accepted over TLS only"), "jwt", "not over TLS",
                       user_id=user.id, value=token)
    if owes_mfa(app.settings, user):
        raise _refused(st, Forbidden("multi-factor authentication is required: enrol in the web interface first"),
                       "jwt", "multi-factor authentication not enrolled", user_id=user.id, value=token)
    st.actor = user.actor
    st.credential = "jwt"


def _authenticate_session(app: Appliance, st: RequestState) -> None:
    sid = session.get("sid")
    if not sid:
        return
    user = app.auth.user(int(session.get("uid", 0)))
    now = time.time()
    settings = app.settings.auth
    expired = (now - float(session.get("seen", 0)) > settings.session_idle_minutes * 60
               or now - float(session.get("iat", 0)) > settings.session_absolute_hours * 3600)
    if (user is None or not user.active or user.epoch != session.get("ep") or app.auth.session_revoked(sid)
            or expired):
        # Not an error: the request goes on anonymous (a page then asks to sign in). Still a refused credential.
        why = ("expired" if expired and user is not None and user.active and user.epoch == session.get("ep")
               and not app.auth.session_revoked(sid) else "revoked, or the user's credentials changed or were "
               "disabled")
        _refused(st, Unauthenticated(why), "session", why, user_id=user.id if user is not None else None,
                 value=str(sid))
        session.clear()
        return
    session["seen"] = now
    st.actor = user.actor
    st.credential = "session"
    if user.must_change_password:
        st.restricted = "password"
    elif owes_mfa(app.settings, user):
        st.restricted = "mfa"
