"""The periodic refresh of directory users (LDAP): roles from their groups now, and their account status.

Run by the poller every ``directory.ldap.sync_interval_minutes`` (and callable from the CLI or a test). Every
LDAP user here is looked up by their never-changing directory id with the service account:

- still there and enabled: their roles become exactly what ``directory.role_map`` gives their groups now;
- locked / disabled in the directory, no longer matching the user filter, or gone: disabled here, and their
  sessions, access tokens and API keys stop working (their token epoch moves);
- enabled again in the directory after the directory disabled them: enabled again here (an account an admin
  disabled here stays disabled).

One unit of work for the whole run; every change audited in it. When the directory cannot be reached nothing
changes (DirectoryUnavailable): a directory outage never disables everyone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from appliance.services.context import Appliance
from appliance.services.directory.accounts import (
    AccountChange,
    apply_identity,
    audit_change,
    directory_users,
    disable_vanished,
)
from appliance.services.directory.signin import identity_of, ldap_directory

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    checked: int = 0
    changes: list[AccountChange] = field(default_factory=list)

    def line(self) -> str:
        disabled = sum(1 for c in self.changes if c.disabled)
        enabled = sum(1 for c in self.changes if c.enabled)
        roles = sum(1 for c in self.changes if c.roles_added or c.roles_removed)
        return (f"directory users: {self.checked} checked, {roles} with changed roles, {disabled} disabled, "
                f"{enabled} enabled")


def sync_ldap_users(app: Appliance) -> SyncReport:
    """Refresh every LDAP user's roles and status from the directory (see the module docstring)."""
    report = SyncReport()
    if not app.settings.directory.ldap.enabled:
        return report
    directory = ldap_directory(app)
    with app.store.unit_of_work() as session, directory.service() as conn:
        for user in directory_users(session, "ldap"):
            report.checked += 1
            person = directory.lookup(conn, user.directory_id or "")
            if person is None:
                change = disable_vanished(session, user)
            else:
                found, change = apply_identity(session, identity_of(app, person), create=False)
                if found is None:  # cannot happen: the user was found by the same id
                    continue
            audit_change(session, change, source="ldap", via="sync")
            if change.changed:
                report.changes.append(change)
    if report.changes:
        app.auth.load(app.store)
    return report


__all__ = ["SyncReport", "sync_ldap_users"]
