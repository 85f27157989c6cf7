"""Directory users here: created at their first sign-in, their roles and status kept in step with the directory.

- A directory user's roles are exactly those ``directory.role_map`` gives their groups: a group removed in
  the directory removes its role here at the next sign-in or sync, and moves their token epoch, so their
  sessions, access tokens and API keys stop working at once (in every process).
- A disabled or vanished directory account is disabled here (``disabled_by = "directory"``), with the same
  effect; when the directory enables it again, so does the next sync. An account an admin disabled here
  stays disabled whatever the directory says.
- Local accounts are never touched by the directory, and a directory name never takes over a local
  account (or one of the other directory source): such a sign-in is refused.
- Directory users have no password here (``password_hash`` is a marker no password matches) and their
  roles cannot be edited by hand: they would be overwritten at the next sync.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from appliance.audit.writer import AuditRecord, append
from appliance.auth.directory import DirectoryRefused
from appliance.auth.directory.ldap import normalise_dn
from appliance.auth.state import bump_revision
from appliance.services.identity import USERNAME
from appliance.store.base import utcnow
from appliance.store.models import Role, User, UserRole

log = logging.getLogger(__name__)

NO_PASSWORD = "!directory"  # noqa: S105 - not an encoded hash: verify_password never matches it


@dataclass(frozen=True)
class DirectoryIdentity:
    """A person as a directory vouches for them, whichever directory it is."""

    source: str  # ldap | oidc
    directory_id: str
    login: str
    email: str
    name: str
    roles: frozenset[str]
    disabled: bool = False
    dn: str | None = None


@dataclass(frozen=True)
class AccountChange:
    user_id: int | None
    username: str
    created: bool = False
    roles_added: tuple[str, ...] = ()
    roles_removed: tuple[str, ...] = ()
    disabled: bool = False
    enabled: bool = False

    @property
    def changed(self) -> bool:
        return self.created or bool(self.roles_added or self.roles_removed) or self.disabled or self.enabled


def roles_for(role_map: Mapping[str, Iterable[str]], *, ldap_groups: Iterable[str] = (),
              claim_groups: Iterable[str] = ()) -> frozenset[str]:
    """The role names the groups give. LDAP groups (normalised DNs) match the keys that are DNs, compared
    normalised; OIDC claim values match keys exactly (a claim value is never read as a DN, so a group
    named like another OU's DN gains nothing)."""
    ldap = set(ldap_groups)
    claims = {str(g) for g in claim_groups}
    out: set[str] = set()
    for key, roles in role_map.items():
        if (ldap and "=" in key and normalise_dn(key) in ldap) or key in claims:
            out.update(roles)
    return frozenset(out)


def _username(login: str) -> str:
    name = login.strip().lower()
    if not USERNAME.match(name):
        raise DirectoryRefused(f"the directory name {name[:64]!r} cannot be a user name here (2-64 lower-case "
                               "letters, digits and . _ @ -)")
    return name


def _find(session: Session, identity: DirectoryIdentity) -> User | None:
    return session.execute(select(User).where(User.source == identity.source,
                                              User.directory_id == identity.directory_id)).scalar_one_or_none()


def apply_identity(session: Session, identity: DirectoryIdentity, *, create: bool) -> tuple[User | None, AccountChange]:
    """Bring the user of a directory identity in step with it (create it when ``create`` and it has a role).

    Returns the user (None when none exists and none was created) and what changed. Raises
    DirectoryRefused when the identity collides with an account of another source.
    """
    user = _find(session, identity)
    if user is None:
        username = _username(identity.login)
        taken = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
        if taken is not None:
            raise DirectoryRefused(f"the name {username!r} belongs to a {taken.source} account here; a directory "
                                   "account never takes over another account")
        if not create or not identity.roles or identity.disabled:
            return None, AccountChange(None, username)
        user = User(username=username, password_hash=NO_PASSWORD, source=identity.source,
                    directory_id=identity.directory_id, display_name=identity.name[:200],
                    email=identity.email[:254], directory_dn=identity.dn)
        session.add(user)
        session.flush()
        created = True
    else:
        created = False
    change = _sync(session, user, identity)
    if created:
        change = AccountChange(user.id, user.username, True, change.roles_added, (), False, False)
        bump_revision(session)
    return user, change


def _sync(session: Session, user: User, identity: DirectoryIdentity) -> AccountChange:
    wanted = {r.name: r for r in session.execute(select(Role).where(Role.name.in_(sorted(identity.roles)))).scalars()}
    for missing in sorted(identity.roles - set(wanted)):
        log.warning("directory.role_map names role %r, which does not exist; it is not granted", missing)
    current = {r.name: r for r in user.roles}
    added = sorted(set(wanted) - set(current))
    removed = sorted(set(current) - set(wanted))
    if added or removed:
        session.execute(delete(UserRole).where(UserRole.user_id == user.id))
        for role in wanted.values():
            session.add(UserRole(user_id=user.id, role_id=role.id))
        session.flush()
        session.expire(user, ["roles"])
    disabled = enabled = False
    if (identity.disabled or not wanted) and user.is_active:
        user.is_active = False
        user.disabled_by = "directory"
        disabled = True
    elif not identity.disabled and wanted and not user.is_active and user.disabled_by == "directory":
        user.is_active = True
        user.disabled_by = None
        enabled = True
    if removed or disabled:
        user.token_epoch += 1  # sessions, tokens and API keys die with the role or the account
    user.display_name = identity.name[:200] or user.display_name
    user.email = identity.email[:254] or user.email
    if identity.dn:
        user.directory_dn = identity.dn
    user.directory_synced_at = utcnow()
    session.flush()
    if added or removed or disabled or enabled:
        bump_revision(session)
    return AccountChange(user.id, user.username, False, tuple(added), tuple(removed), disabled, enabled)


def disable_vanished(session: Session, user: User) -> AccountChange:
    """The directory no longer has (or no longer lets in) this account: disabled here, its credentials dead."""
    if not user.is_active:
        return AccountChange(user.id, user.username)
    user.is_active = False
    user.disabled_by = "directory"
    user.token_epoch += 1
    user.directory_synced_at = utcnow()
    session.flush()
    bump_revision(session)
    return AccountChange(user.id, user.username, disabled=True)


def audit_change(session: Session, change: AccountChange, *, source: str, via: str) -> None:
    """One audit event for a directory account that changed (in the transaction of the change)."""
    if not change.changed:
        return
    detail = {"source": source, "via": via, "created": change.created, "roles_added": list(change.roles_added),
              "roles_removed": list(change.roles_removed), "disabled": change.disabled, "enabled": change.enabled}
    append(session, [AuditRecord(action="directory.account_sync", actor_type="system", user_id=change.user_id,
                                 resource_type="users", resource_id=str(change.user_id or change.username),
                                 ip_address="local", method=via, path="directory", user_agent=f"directory:{source}",
                                 outcome="success", detail=json.dumps(detail, sort_keys=True))])


def directory_users(session: Session, source: str) -> list[User]:
    return list(session.execute(select(User).where(User.source == source).order_by(User.id)).scalars())


__all__ = ["NO_PASSWORD", "AccountChange", "DirectoryIdentity", "apply_identity", "audit_change", "directory_users",
           "disable_vanished", "roles_for"]
