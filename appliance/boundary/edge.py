"""What a view knows about its request: who is calling, how, and what the audit record should say.

The pipeline (:mod:`appliance.boundary.pipeline`) fills a :class:`RequestState` before the view runs
and turns it into the request's audit event afterwards. Views read it through :func:`state`, work in
the request's one unit of work through :func:`db`, and add to the audit record through
:func:`audit_resource` and :func:`audit_detail`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, g, has_request_context
from sqlalchemy.orm import Session

from appliance.boundary.routes import RouteSpec
from appliance.boundary.transport import Transport
from appliance.rbac.actors import ANONYMOUS, Actor
from appliance.rbac.permissions import parse
from appliance.services.context import Appliance

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Refusal:
    """A credential the request presented and the edge refused: an audit event of its own, whoever it
    names (the user and the key when they are known; a forged token names nobody)."""

    credential: str  # apikey | jwt | session | authorization | query
    reason: str
    user_id: int | None = None
    api_key_id: int | None = None
    fingerprint: str = ""  # of the presented value (never the value)


@dataclass(slots=True)
class RequestState:
    request_id: str
    transport: Transport
    write: bool  # a state-changing method: its unit of work takes the write lock up front
    actor: Actor = ANONYMOUS
    credential: str | None = None  # session | jwt | apikey
    spec: RouteSpec | None = None
    db: Session | None = None
    audit_action: str | None = None
    audit_resource_type: str | None = None
    audit_resource_id: str | None = None
    audit_detail: dict[str, Any] | None = None
    auth_changed: bool = False
    restricted: str | None = None  # "mfa" | "password" when the user must finish something first
    refused: bool = False  # the response was replaced by the fail-closed 503: nothing of the view's stays
    refusal: Refusal | None = None  # a presented credential was refused (audited even without an actor)


def appliance() -> Appliance:
    found: Appliance = current_app.extensions["vigatra"]
    return found


def state() -> RequestState:
    found: RequestState | None = g.get("vigatra_request")
    if found is None:
        raise RuntimeError("no request state: the request did not pass through the edge")
    return found


def current_state() -> RequestState | None:
    """The request state when there is a request that passed the edge, else None (templates, errors)."""
    return g.get("vigatra_request") if has_request_context() else None


def db() -> Session:
    """The request's session, opened on first use; a state-changing request's is committed once by the
    pipeline after the view."""
    st = state()
    if st.db is None:
        store = appliance().store
        # A request that only reads needs no transaction: its statements autocommit (Store.reader).
        st.db = store.session(write=True) if st.write else store.reader()
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


def scope_of(permission: str) -> str:
    """'all' or 'flagged' for the current actor (the guard already checked they hold it)."""
    return state().actor.scope_for(parse(permission).base) or "none"


__all__ = [
    "SAFE_METHODS",
    "Refusal",
    "RequestState",
    "appliance",
    "audit_detail",
    "audit_resource",
    "auth_changed",
    "current_state",
    "db",
    "scope_of",
    "state",
]
