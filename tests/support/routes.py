"""Calling every route of the app: URLs with placeholder ids, and who may call what."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.boundary.routes import EMPLOYEE, PUBLIC, SIGNED_IN, RouteRow, route_table
from appliance.rbac.actors import user_actor
from appliance.rbac.permissions import BUILTIN_ROLES

MISSING_ID = 987654


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    row: RouteRow


def calls(app: Any) -> list[Call]:
    out = []
    for row in route_table(app):
        if row.endpoint == "static":
            continue
        path = row.rule
        for part in ("<int:", "<"):
            while part in path:
                start = path.index(part)
                end = path.index(">", start)
                value = str(MISSING_ID) if part == "<int:" or "id" in path[start:end] else "x" * 43
                path = path[:start] + value + path[end + 1:]
        for method in row.methods:
            out.append(Call(method, path, row))
    return out


def persona_permissions(roles: tuple[str, ...]) -> frozenset[str]:
    perms: set[str] = set()
    for role in roles:
        perms |= set(BUILTIN_ROLES[role][1])
    return frozenset(perms)


def allowed(row: RouteRow, roles: tuple[str, ...] | None) -> bool:
    """Whether an actor with ``roles`` (None: anonymous) passes the route's guard."""
    if row.permission == PUBLIC:
        return True
    if roles is None or row.permission == EMPLOYEE:  # the employee portal takes no dashboard credential
        return False
    if row.permission == SIGNED_IN:
        return True
    return user_actor(1, "x", persona_permissions(roles)).scope_for(row.permission) is not None
