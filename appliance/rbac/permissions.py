"""The permission catalogue: ``resource:action[:scope]``.

Resources are the six data resources every role is defined over (employees, balances,
transactions, predictions, alerts, audit) plus the administrative ones. A permission without
scope means scope ``all``; ``flagged`` limits a read to records tied to an open or recent alert.

Default roles (built in, cannot be deleted):
- Admin: everything.
- Compliance: works the alert queue (alerts read + triage) and raises alerts by hand (alerts:write:
  how an employee is flagged), manages the restricted and watch lists, the conduct rules and the
  employee groups they apply to, sees every employee's name and
  connection health (and may ask for a connection to be synced now), sees balances / transactions /
  predictions only where flagged, runs and exports reports, generates onboarding links, and reads
  and exports the whole audit trail, and works the pre-clearance queue (requests on an employee's
  behalf, decisions), and runs the code-of-ethics and certification campaigns (attestations: create,
  follow, review) —
  compliance officers are the people who hand the trail to a regulator, and the trail holds no
  financial data. They do not manage users, roles, keys or settings.
- Viewer: read-only summaries: employee list with connection status, firm-wide reports and which
  conduct rules exist; no personal financial detail, no audit, no alerts, and not the lists (a
  restricted list names deals before they are public).
"""

from __future__ import annotations

from dataclasses import dataclass

RESOURCES: dict[str, tuple[str, ...]] = {
    "employees": ("read", "write", "export"),
    "balances": ("read", "export"),
    "transactions": ("read", "export"),
    "predictions": ("read", "export"),
    "alerts": ("read", "triage", "write"),
    "lists": ("read", "write"),
    "rules": ("read", "write"),
    "groups": ("read", "write"),
    "audit": ("read", "export"),
    "users": ("read", "write"),
    "roles": ("read", "write"),
    "apikeys": ("read", "write"),
    "settings": ("read", "write"),
    "connections": ("read", "write"),
    "onboarding": ("write",),
    "reports": ("read", "export"),
    "system": ("read",),
    "preclearance": ("read", "write", "decide"),
    "attestations": ("read", "write", "review"),
}
# Resources whose reads can be limited to flagged records.
SCOPED = frozenset({"balances", "transactions", "predictions"})


@dataclass(frozen=True, order=True)
class Permission:
    resource: str
    action: str
    scope: str = "all"

    def __str__(self) -> str:
        return f"{self.resource}:{self.action}" + (f":{self.scope}" if self.scope != "all" else "")

    @property
    def base(self) -> str:
        return f"{self.resource}:{self.action}"


def parse(text: str) -> Permission:
    """Parse and validate ``resource:action[:scope]``; raises ValueError with the reason."""
    parts = text.strip().split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"permission {text!r} must look like resource:action or resource:action:scope")
    resource, action = parts[0], parts[1]
    scope = parts[2] if len(parts) == 3 else "all"
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r} in {text!r}")
    if action not in RESOURCES[resource]:
        raise ValueError(f"{resource} has no action {action!r} (known: {', '.join(RESOURCES[resource])})")
    if scope not in ("all", "flagged"):
        raise ValueError(f"unknown scope {scope!r} in {text!r} (all or flagged)")
    if scope == "flagged" and (resource not in SCOPED or action not in ("read", "export")):
        raise ValueError(f"{resource}:{action} cannot be limited to flagged records")
    return Permission(resource, action, scope)


def catalogue() -> list[Permission]:
    """Every grantable permission, in a stable order (the role editor's matrix)."""
    out: list[Permission] = []
    for resource, actions in RESOURCES.items():
        for action in actions:
            out.append(Permission(resource, action))
            if resource in SCOPED and action in ("read", "export"):
                out.append(Permission(resource, action, "flagged"))
    return out


ADMIN = "Admin"
COMPLIANCE = "Compliance"
VIEWER = "Viewer"

BUILTIN_ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    ADMIN: ("Everything, including users, roles, keys and settings.",
            tuple(str(p) for p in catalogue() if p.scope == "all")),
    COMPLIANCE: ("Works the alert queue; sees flagged activity; runs reports; exports the audit trail.", (
        "alerts:read", "alerts:triage", "alerts:write", "lists:read", "lists:write", "rules:read", "rules:write",
        "groups:read", "groups:write", "employees:read", "connections:read", "connections:write", "onboarding:write",
        "balances:read:flagged", "transactions:read:flagged", "predictions:read:flagged",
        "balances:export:flagged", "transactions:export:flagged", "predictions:export:flagged",
        "reports:read", "reports:export", "audit:read", "audit:export", "system:read",
        "preclearance:read", "preclearance:write", "preclearance:decide",
        "attestations:read", "attestations:write", "attestations:review",
    )),
    VIEWER: ("Read-only summaries: employee list and status, firm-wide reports, the conduct rules.", (
        "employees:read", "connections:read", "reports:read", "rules:read",
    )),
}
