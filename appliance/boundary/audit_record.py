"""The audit event of one authenticated request, made from its request state and its final response.

The fields (DESIGN.md promise 3): who (actor type, user, API key), what (action, resource type and id),
from where (client IP, user agent), and the request itself (id, method, path, status, outcome). The
action defaults to the route's declared action or its endpoint; the resource type to the resource of
the route's permission; the resource id to the view argument the route names (or any ``*_id``), to the
actor's own id on account pages, and to ``*`` for collections. Query parameter names (never their
values) go into the detail.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from flask import Request

from appliance.audit.writer import AuditRecord
from appliance.boundary.edge import RequestState
from appliance.boundary.routes import EMPLOYEE, PUBLIC, SIGNED_IN
from appliance.rbac.permissions import parse

USER_AGENT_LIMIT = 300
PATH_LIMIT = 500


def user_agent(environ: dict[str, Any]) -> str:
    return (environ.get("HTTP_USER_AGENT") or "")[:USER_AGENT_LIMIT]


def outcome_of(status: int) -> str:
    if status in (401, 403):
        return "denied"
    return "success" if status < 400 else "failure"


@functools.lru_cache(maxsize=1024)
def resource_of(permission: str) -> str:
    """The audit resource_type a route's permission implies ("" for public routes)."""
    if permission == SIGNED_IN:
        return "account"
    if permission == EMPLOYEE:
        return "portal"
    return "" if permission == PUBLIC else parse(permission).resource


def _resource_id(st: RequestState, req: Request, resource_type: str) -> str:
    if st.audit_resource_id is not None:
        return st.audit_resource_id
    view_args = req.view_args
    if view_args:
        arg = st.spec.resource_arg if st.spec is not None else None
        if arg is None:
            arg = next((k for k in view_args if k.endswith("_id") or k == "id"), None)
        if arg is not None and arg in view_args:
            return str(view_args[arg])
    # A collection (list, create) or the actor's own account: never leave the field empty.
    if resource_type == "portal" and st.actor.employee_id is not None:
        return str(st.actor.employee_id)
    return str(st.actor.user_id) if resource_type == "account" else "*"


def request_record(st: RequestState, req: Request, status: int) -> AuditRecord:
    spec = st.spec
    resource_type = st.audit_resource_type
    if resource_type is None:
        resource_type = resource_of(spec.permission) if spec is not None else ""
    action = st.audit_action or (spec.action if spec is not None else None) or req.endpoint or "unknown"
    detail = st.audit_detail or {}
    if st.actor.employee_id is not None:
        detail = {**detail, "employee_id": st.actor.employee_id}
    if req.args:
        detail = {**detail, "query": sorted(req.args.keys())}  # names only: values may be sensitive
    actor = st.actor
    actor_type, user_id, api_key_id, outcome = actor.kind, actor.user_id, actor.api_key_id, outcome_of(status)
    refusal = st.refusal
    if refusal is not None:
        # The refused credential's event: whoever it named (when known), never the credential itself.
        detail = {**detail, "refused": {"credential": refusal.credential, "reason": refusal.reason,
                                        **({"fingerprint": refusal.fingerprint} if refusal.fingerprint else {})}}
        outcome = "denied"
        if not actor.is_authenticated:
            user_id, api_key_id = refusal.user_id, refusal.api_key_id
            actor_type = "apikey" if api_key_id is not None else "user" if user_id is not None else "anonymous"
    return AuditRecord(
        action=action,
        actor_type=actor_type,
        user_id=user_id,
        api_key_id=api_key_id,
        resource_type=resource_type,
        resource_id=_resource_id(st, req, resource_type),
        ip_address=st.transport.client_ip,
        request_id=st.request_id,
        method=req.method,
        path=req.path[:PATH_LIMIT],
        status=status,
        user_agent=user_agent(req.environ),
        outcome=outcome,
        detail=json.dumps(detail, sort_keys=True, default=str) if detail else "",
    )
