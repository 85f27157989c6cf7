"""Who is acting: a logged-in user, an API key, the system (poller, CLI), or nobody.

Actors are plain immutable values built from the in-memory auth state, so a permission check
never needs the database.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from appliance.rbac.permissions import Permission, parse


@functools.lru_cache(maxsize=4096)
def _grants(permissions: frozenset[str]) -> dict[str, str]:
    """base permission -> widest scope held (cached: actors are built on every request)."""
    out: dict[str, str] = {}
    for text in permissions:
        perm = parse(text)
        if out.get(perm.base) != "all":
            out[perm.base] = perm.scope
    return out


@functools.lru_cache(maxsize=1024)
def _parsed(permission: str) -> Permission:
    return parse(permission)


def _base(permission: str) -> str:
    return _parsed(permission).base


@dataclass(frozen=True)
class Actor:
    kind: str  # user | apikey | system | anonymous | employee
    label: str
    user_id: int | None = None
    api_key_id: int | None = None
    permissions: frozenset[str] = frozenset()
    employee_id: int | None = None  # an employee signed in to the portal (never with a permission)
    _grants: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_grants", _grants(self.permissions))

    def scope_for(self, permission: str) -> str | None:
        """'all', 'flagged', or None when the actor does not hold ``resource:action`` at all."""
        # A route's permission is usually a base already ("employees:read"): one dict read answers it.
        found = self._grants.get(permission)
        return found if found is not None else self._grants.get(_base(permission))

    def can(self, permission: str) -> bool:
        wanted = _parsed(permission)
        held = self._grants.get(wanted.base)
        if held is None:
            return False
        return held == "all" or wanted.scope == "flagged"

    @property
    def is_authenticated(self) -> bool:
        return self.kind in ("user", "apikey", "system")


def user_actor(user_id: int, username: str, permissions: frozenset[str]) -> Actor:
    return Actor("user", username, user_id=user_id, permissions=permissions)


def api_key_actor(key_id: int, name: str, user_id: int, permissions: frozenset[str]) -> Actor:
    return Actor("apikey", f"apikey:{name}", user_id=user_id, api_key_id=key_id, permissions=permissions)


def system_actor(label: str) -> Actor:
    """The poller, the CLI run by the appliance's operator: trusted, everything."""
    from appliance.rbac.permissions import catalogue

    return Actor("system", label, permissions=frozenset(str(p) for p in catalogue() if p.scope == "all"))


ANONYMOUS = Actor("anonymous", "anonymous")


def employee_actor(employee_id: int) -> Actor:
    """An employee on their onboarding page: no permissions, identified by the link."""
    return Actor("employee", f"employee:{employee_id}")


def portal_actor(employee_id: int, session_id: int) -> Actor:
    """An employee signed in to the portal: a kind of its own, with no permission at all (a dashboard
    route's guard refuses it; only routes marked ``@employee_portal`` accept it)."""
    return Actor("employee", f"employee:{employee_id}:session:{session_id}", employee_id=employee_id)


__all__ = ["ANONYMOUS", "Actor", "Permission", "api_key_actor", "employee_actor", "portal_actor", "system_actor",
           "user_actor"]
