"""The request pipeline: authenticate and authorise at the edge, run the view in one unit of work,
record exactly one audit event, commit, and only then let the response leave.

Before the view (no database query on this path):
1. transport facts (client IP from trusted proxies only, TLS);
2. credentials: ``Authorization: Bearer`` (an API key ``vgk_...`` or a JWT), ``X-API-Key``, or the
   browser session cookie — each checked against the in-memory auth state; credentials in a query
   string are refused; an API key that arrived over plain HTTP is refused and revoked;
3. the route's declared permission; CSRF for cookie-authenticated state changes.

After the view: the audit event of an authenticated request is written — in the same transaction
as the change for state-changing methods, through the group committer otherwise — and committed
before the response is returned to the server. If that fails the response is replaced by a 503
that carries no data (fail closed).
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import itertools
import json
import logging
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Request, Response, current_app, has_request_context, request, request_tearing_down, session
from flask.globals import _cv_request
from sqlalchemy.orm import Session

from appliance.audit.writer import AuditRecord, append
from appliance.auth import apikeys
from appliance.auth.jwt import TokenInvalid
from appliance.auth.state import KeyState
from appliance.boundary.headers import API_PREFIX, REQUEST_ID_KEY, TLS_KEY
from appliance.boundary.routes import PUBLIC, SIGNED_IN, RouteSpec, spec_for
from appliance.boundary.transport import Transport, inspect
from appliance.errors import Forbidden, Invalid, Unauthenticated, Unavailable, VigatraError
from appliance.rbac.actors import ANONYMOUS, Actor
from appliance.rbac.permissions import parse
from appliance.services.context import Appliance
from appliance.store.base import utcnow
from appliance.store.session import _begin_immediate

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
QUERY_CREDENTIALS = frozenset({"api_key", "apikey", "key", "token", "access_token", "jwt", "password", "secret"})
# Routes a signed-in user may use while they still owe an MFA enrolment or a password change.
RESTRICTED_ALLOWED = frozenset({"web.account", "web.account_password", "web.account_mfa", "web.logout",
                                "web.account_mfa_confirm", "web.account_mfa_start", "static"})


@dataclass(slots=True)
class RequestState:
    request_id: str
    transport: Transport
    actor: Actor = ANONYMOUS
    credential: str | None = None  # session | jwt | apikey
    spec: RouteSpec | None = None
    db: Session | None = None
    immediate_token: Any = None
    audit_action: str | None = None
    audit_resource_type: str | None = None
    audit_resource_id: str | None = None
    audit_detail: dict[str, Any] | None = None  # made on first use: most requests add no detail
    skip_audit: bool = False
    auth_changed: bool = False
    restricted: str | None = None  # "mfa" | "password" when the user must finish something first


def appliance() -> Appliance:
    found: Appliance = current_app.extensions["vigatra"]
    return found


class EdgeRequest(Request):
    """Flask's request, carrying the edge's state for this request (an attribute of the request object
    rather than ``flask.g``: one context lookup fewer on every access)."""

    edge_state: RequestState | None = None


def state() -> RequestState:
    found = request.edge_state  # type: ignore[attr-defined]
    if found is None:
        raise RuntimeError("no edge state: the request did not pass through the edge")
    return found


def current_state() -> RequestState | None:
    """The edge state when there is a request that passed the edge, else None (templates, errors)."""
    return getattr(request, "edge_state", None) if has_request_context() else None


def db() -> Session:
    """The request's session, opened on first use; committed once by the edge after the view."""
    st = state()
    if st.db is None:
        st.db = appliance().store.sessions()
    return st.db


def audit_detail(**values: Any) -> None:
    st = state()
    if st.audit_detail is None:
        st.audit_detail = {}
    st.audit_detail.update({k: v for k, v in values.items() if v is not None})


def audit_resource(resource_type: str | None = None, resource_id: Any = None, action: str | None = None) -> None:
    st = state()
    if resource_type is not None:
        st.audit_resource_type = resource_type
    if resource_id is not None:
        st.audit_resource_id = str(resource_id)
    if action is not None:
        st.audit_action = action


def auth_changed() -> None:
    """The view changed users, roles, keys or sessions: refresh the in-memory state after commit."""
    state().auth_changed = True


def is_api_request() -> bool:
    return request.path.startswith(API_PREFIX) or request.path == "/metrics"


# -- before ----------------------------------------------------------------------------------------

# Request ids: 32 hex characters, random high 64 bits per process and a counter in the low 64 (unique across
# processes and restarts without a random-number syscall per request; they correlate logs and audit, they are
# no secret). The top bit is set, so every id has all 32 digits; one hex() of one int is half the cost of
# formatting a prefix and a padded counter.
_REQUEST_SEQUENCE = itertools.count(((secrets.randbits(64) | 1 << 63) << 64) + 1)


def _next_request_id() -> str:
    return hex(next(_REQUEST_SEQUENCE))[2:]


def begin(flask_app: EdgeFlask, req: EdgeRequest) -> None:
    """Everything before the view. The app and the request are handed in rather than looked up through
    Flask's context-local proxies: each lookup costs, and this runs on every request (the edge's
    cost is measured: bench/bench_edge.py)."""
    app = flask_app.appliance
    environ = req.environ
    st = RequestState(_next_request_id(), inspect(environ, app.settings.server.trusted_proxies))
    req.edge_state = st
    environ[TLS_KEY] = st.transport.tls  # for the security headers (HSTS over TLS only)
    environ[REQUEST_ID_KEY] = st.request_id  # the X-Request-ID response header, on every answer
    st.spec = flask_app.spec_for(req.endpoint)
    safe = req.method in SAFE_METHODS
    if not safe:
        # SQLite: take the write lock when the transaction starts, not half-way through it.
        st.immediate_token = _begin_immediate.set(app.store.dialect == "sqlite")
    if environ.get("QUERY_STRING"):
        _refuse_query_credentials(app, st)
    _authenticate(app, st, environ)
    _authorise(st)
    # Public routes that take input (login, onboarding) check their own CSRF token after their own
    # gates (the onboarding page refuses a non-TLS body before anything reads it).
    if st.credential == "session" and not safe and (st.spec is None or st.spec.permission != PUBLIC):
        _check_csrf()


def _refuse_query_credentials(app: Appliance, st: RequestState) -> None:
    named = [name for name in request.args if name.lower() in QUERY_CREDENTIALS]
    if not named:
        return
    for name in named:
        value = request.args.get(name, "")
        if apikeys.looks_like_key(value):
            _revoke_leaked_key(app, st, value, "sent in a query string")
    raise Invalid("credentials are never accepted in the query string; send them in a header")


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
                user_agent=_user_agent(request.environ), outcome="denied",
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


def _authenticate(app: Appliance, st: RequestState, environ: dict[str, Any]) -> None:
    header = environ.get("HTTP_AUTHORIZATION", "")
    key_header = environ.get("HTTP_X_API_KEY", "")
    presented = key_header
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("unsupported Authorization header (use Bearer)")
        presented = value.strip()
    if presented:
        if apikeys.looks_like_key(presented):
            _authenticate_api_key(app, st, presented)
        elif key_header:
            raise Unauthenticated("invalid API key")
        else:
            _authenticate_jwt(app, st, presented)
        return
    _authenticate_session(app, st)


def _authenticate_api_key(app: Appliance, st: RequestState, key: str) -> None:
    if not st.transport.tls:
        _revoke_leaked_key(app, st, key, "sent over plain HTTP")
        raise Forbidden("API keys are accepted over TLS only; this key has been revoked. Create a new one and "
                        "use https://")
    found = _presented_key(app, key)
    if found is None:
        raise Unauthenticated("invalid API key")
    known, presented = found
    # The date-time clock is read only for keys that expire or are mid-rotation (most keys: never).
    current = apikeys.matches(presented, known.secret_digest)
    previous = (not current and known.previous_valid_until is not None and known.previous_valid_until > utcnow()
                and apikeys.matches(presented, known.previous_digest))
    owner = app.auth.user(known.user_id)
    if not (current or previous) or known.revoked or owner is None or not owner.active:
        raise Unauthenticated("invalid API key")
    if known.expires_at is not None and known.expires_at <= utcnow():
        raise Unauthenticated("invalid API key")
    # known.permissions is already limited to what the owner holds (computed with the snapshot).
    st.actor = known.actor
    st.credential = "apikey"
    app.auth.note_key_used(known.id)


def _authenticate_jwt(app: Appliance, st: RequestState, token: str) -> None:
    tokens = app.auth.tokens
    try:
        claims = tokens.recall(token)  # a token verified before: no key, no settings needed
        if claims is None:
            settings = app.settings.auth
            claims = tokens.verify(token, app.keys.derive("jwt"), issuer=settings.jwt_issuer,
                                   audience=settings.jwt_audience, max_ttl_seconds=settings.jwt_ttl_hours * 3600)
    except TokenInvalid as exc:
        log.info("access token refused: %s", exc)
        raise Unauthenticated("invalid or expired access token") from None
    user = app.auth.user(claims.user_id)
    if user is None or not user.active or user.epoch != claims.epoch:
        raise Unauthenticated("invalid or expired access token")
    if not st.transport.credentials_ok:
        raise Forbidden("access tokens are accepted over TLS only")
    if app.settings.auth.mfa_required and not user.mfa_enabled:
        raise Forbidden("multi-factor authentication is required: enrol in the web interface first")
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
        session.clear()
        return
    session["seen"] = now
    st.actor = user.actor
    st.credential = "session"
    if user.must_change_password:
        st.restricted = "password"
    elif app.settings.auth.mfa_required and not user.mfa_enabled:
        st.restricted = "mfa"


def _authorise(st: RequestState) -> None:
    spec = st.spec
    if spec is None or spec.permission == PUBLIC:
        return
    if not st.actor.is_authenticated:
        raise Unauthenticated("sign in first")
    if st.restricted and request.endpoint not in RESTRICTED_ALLOWED:
        raise Forbidden("finish setting up your account first"
                        if st.restricted == "mfa" else "change your password first")
    if spec.permission == SIGNED_IN:
        return
    # Holding the permission at any scope passes the guard; the services then apply the scope
    # (a `flagged` holder sees flagged records only, and everything else reads as not found).
    if st.actor.scope_for(spec.permission) is None:
        raise Forbidden("you do not have permission for this")


def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return str(token)


def _check_csrf() -> None:
    expected = session.get("csrf", "")
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    if not expected or not sent or not hmac.compare_digest(str(expected), str(sent)):
        raise Forbidden("the form expired or did not come from this site; reload the page and try again")


def scope_of(permission: str) -> str:
    """'all' or 'flagged' for the current actor (the guard already checked they hold it)."""
    return state().actor.scope_for(parse(permission).base) or "none"


# -- after -----------------------------------------------------------------------------------------

def _user_agent(environ: dict[str, Any]) -> str:
    return (environ.get("HTTP_USER_AGENT") or "")[:300]


def _outcome(status: int) -> str:
    if status in (401, 403):
        return "denied"
    return "success" if status < 400 else "failure"


@functools.lru_cache(maxsize=1024)
def _resource_of(permission: str) -> str:
    """The audit resource_type a route's permission implies ("" for public routes)."""
    if permission == SIGNED_IN:
        return "account"
    return "" if permission == PUBLIC else parse(permission).resource


def _record(st: RequestState, req: Request, response: Response) -> AuditRecord:
    spec = st.spec
    resource_type = st.audit_resource_type
    if resource_type is None and spec is not None:
        resource_type = _resource_of(spec.permission)
    resource_id = st.audit_resource_id
    view_args = req.view_args
    if resource_id is None and view_args:
        arg = spec.resource_arg if spec is not None and spec.resource_arg else None
        if arg is None:
            arg = next((k for k in view_args if k.endswith("_id") or k == "id"), None)
        if arg is not None and arg in view_args:
            resource_id = str(view_args[arg])
    if resource_id is None:
        # A collection (list, create) or the actor's own account: never leave the field empty.
        resource_id = str(st.actor.user_id) if resource_type == "account" else "*"
    environ = req.environ
    detail = st.audit_detail or {}
    if environ.get("QUERY_STRING") and req.args:
        detail = {**detail, "query": sorted(req.args.keys())}  # names only: values may be sensitive
    status = response.status_code
    actor = st.actor
    # Positional, in the record's field order: binding fourteen keywords costs 0.8 µs more, on every
    # request (bench/bench_edge.py). Every field of a request's event is checked, a JWT's by
    # tests/access/test_matrix.py and an API key's by tests/access/test_apikeys.py.
    return AuditRecord(
        st.audit_action or (spec.action if spec is not None and spec.action else req.endpoint or "unknown"),  # action
        actor.kind, actor.user_id, actor.api_key_id,  # actor_type, user_id, api_key_id
        resource_type or "", resource_id or "", st.transport.client_ip,  # resource_type, resource_id, ip_address
        st.request_id, req.method, req.path[:500], status,  # request_id, method, path, status
        _user_agent(environ), _outcome(status),  # user_agent, outcome
        json.dumps(detail, sort_keys=True, default=str) if detail else "")  # detail


def finish(flask_app: EdgeFlask, req: EdgeRequest, response: Response) -> Response:
    st = req.edge_state
    if st is None:
        return response
    app = flask_app.appliance
    audited = st.actor.is_authenticated and not st.skip_audit
    try:
        if req.method not in SAFE_METHODS:
            session_ = db()
            if response.status_code >= 400:
                session_.rollback()
            if audited:
                append(session_, [_record(st, req, response)])
            session_.commit()
        else:
            if st.db is not None:
                if st.db.new or st.db.dirty or st.db.deleted:
                    log.error("GET %s tried to change state; rolled back", req.endpoint)
                st.db.rollback()
            if audited:
                app.audit.record(_record(st, req, response))
    except Exception as exc:  # noqa: BLE001 - whatever failed, the event is not durable: fail closed
        if st.db is not None:
            st.db.rollback()
        log.error("request %s refused: audit record could not be written (%s)", st.request_id,
                  type(exc).__name__)
        return _unavailable()
    if st.auth_changed:
        app.auth.load(app.store)
    return response


def _unavailable() -> Response:
    from appliance.boundary.errors import error_response

    return error_response(Unavailable("the audit trail is unavailable, so this request was refused"))


def cleanup(req: EdgeRequest) -> None:
    st = req.edge_state
    if st is None:
        return
    if st.db is not None:
        st.db.close()
        st.db = None
    if st.immediate_token is not None:
        _begin_immediate.reset(st.immediate_token)
        st.immediate_token = None


_NO_EXCEPTION_GIVEN = object()


class EdgeFlask(Flask):
    """Flask with the edge built into the request cycle rather than registered as hooks.

    :func:`begin` runs before any view, :func:`finish` has the last word on every response (after
    any other after-request function and the session cookie, so the audit record describes the
    response that leaves), :func:`cleanup` runs at teardown. Flask's generic hook dispatch (the
    blueprint chain, a coroutine check and a call per hook, three times a request) is used only when
    something else registered hooks: on an API request that saved about 8 µs, when the whole edge
    cost 20-odd (bench/bench_edge.py). Each step reads the request context once, from its
    context variable, and hands the request on (Flask's proxies cost a lookup per access). Flask also
    asks ``inspect.iscoroutinefunction`` of every view on every request; none here is async, and the
    answer per function is remembered, as is each endpoint's declared route.
    """

    request_class = EdgeRequest

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}
        self._specs: dict[str, RouteSpec | None] = {}
        self._hooks: tuple[bool, bool, bool] | None = None

    @property
    def appliance(self) -> Appliance:
        found: Appliance = self.extensions["vigatra"]
        return found

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        found = self._sync.get(func)
        if found is None:
            found = self._sync[func] = super().ensure_sync(func)
        return found

    def spec_for(self, endpoint: str | None) -> RouteSpec | None:
        """The route's declaration (views are fixed once requests run, so the answer is remembered)."""
        if endpoint is None:
            return None
        try:
            return self._specs[endpoint]
        except KeyError:
            found = self._specs[endpoint] = spec_for(self, endpoint)
            return found

    def _registered(self) -> tuple[bool, bool, bool]:
        """Whether anything registered before-request, after-request and teardown functions. Fixed once
        the first request runs (Flask refuses setup after it), so it is worked out once."""
        found = self._hooks
        if found is None:
            found = self._hooks = (
                any(self.url_value_preprocessors.values()) or any(self.before_request_funcs.values()),
                any(self.after_request_funcs.values()), any(self.teardown_request_funcs.values()))
        return found

    def preprocess_request(self) -> Any:
        req: EdgeRequest = _cv_request.get().request  # type: ignore[assignment]  # request_class
        begin(self, req)
        return super().preprocess_request() if self._registered()[0] else None

    def process_response(self, response: Response) -> Response:
        ctx = _cv_request.get()
        if self._registered()[1] or ctx._after_request_functions:
            response = super().process_response(response)  # the hooks, then the session cookie
        elif not self.session_interface.is_null_session(ctx.session):
            self.session_interface.save_session(self, ctx.session, response)
        req: EdgeRequest = ctx.request  # type: ignore[assignment]
        return finish(self, req, response)

    def do_teardown_request(self, exc: Any = _NO_EXCEPTION_GIVEN) -> None:
        try:
            req: EdgeRequest = _cv_request.get().request  # type: ignore[assignment]
            cleanup(req)
        finally:
            if self._registered()[2]:
                if exc is _NO_EXCEPTION_GIVEN:
                    super().do_teardown_request()
                else:
                    super().do_teardown_request(exc)
            elif request_tearing_down.receivers:
                request_tearing_down.send(self, _async_wrapper=self.ensure_sync,
                                          exc=sys.exc_info()[1] if exc is _NO_EXCEPTION_GIVEN else exc)


def now() -> dt.datetime:
    return utcnow()


__all__ = [
    "EdgeFlask",
    "VigatraError",
    "appliance",
    "audit_detail",
    "audit_resource",
    "auth_changed",
    "begin",
    "csrf_token",
    "db",
    "finish",
    "scope_of",
    "state",
]
