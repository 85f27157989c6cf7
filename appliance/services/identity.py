"""Users, roles and API keys: the administrative rules.

- Deny by default; nobody grants a permission they do not hold (a custom-role manager cannot
  promote themselves), and an API key never carries more than its owner holds.
- Built-in roles cannot be deleted or edited; the last active Admin cannot be disabled or demoted.
- Nobody acts on a user or key that holds more than they do: disabling, enabling, setting the roles
  of, resetting the password of or unlocking a user needs every permission that user holds; rotating
  or revoking a key is for its owner or a caller holding every permission the key grants, and a
  rotated secret is shown to the owner only (the operator's CLI aside): a key acts as its owner.
- Anything that changes who may do what bumps the auth revision in the same transaction; disabling
  a user, changing their password or taking a role away also bumps their token epoch, which kills
  their sessions, JWTs and API keys in every process (a key remembers the epoch it was issued
  under, ``ApiKey.owner_epoch``; rotating it re-arms it under the current one).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from appliance.auth import apikeys
from appliance.auth.passwords import check_password_rules, hash_password
from appliance.auth.state import bump_revision
from appliance.errors import Conflict, Forbidden, Invalid, NotFound
from appliance.rbac.actors import Actor
from appliance.rbac.permissions import ADMIN, BUILTIN_ROLES, parse
from appliance.settings import AuthSettings
from appliance.store.base import utcnow
from appliance.store.models import ApiKey, Role, RolePermission, User, UserRole

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
ROLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{1,63}$")


# -- roles --------------------------------------------------------------------------------------

def ensure_builtin_roles(session: Session) -> None:
    """Create the built-in roles, and bring their permissions up to this version's definition."""
    for name, (description, permissions) in BUILTIN_ROLES.items():
        role = session.execute(select(Role).where(Role.name == name)).scalar_one_or_none()
        if role is None:
            role = Role(name=name, description=description, builtin=True)
            session.add(role)
            session.flush()
        role.builtin = True
        role.description = description
        wanted = set(permissions)
        current = {p.permission for p in role.permissions}
        if wanted != current:
            role.permissions = [RolePermission(permission=p) for p in sorted(wanted)]
            bump_revision(session)
    session.flush()


def role_by_name(session: Session, name: str) -> Role:
    role = session.execute(select(Role).where(Role.name == name)).scalar_one_or_none()
    if role is None:
        raise NotFound(f"no role named {name!r}")
    return role


def get_role(session: Session, role_id: int) -> Role:
    role = session.get(Role, role_id)
    if role is None:
        raise NotFound("no such role")
    return role


def list_roles(session: Session) -> list[Role]:
    return list(session.execute(select(Role).order_by(Role.builtin.desc(), Role.name)).scalars())


def _validated_permissions(permissions: Iterable[str]) -> list[str]:
    out = set()
    for text in permissions:
        try:
            out.add(str(parse(text)))
        except ValueError as exc:
            raise Invalid(str(exc), field="permissions") from None
    return sorted(out)


def _require_grantable(actor: Actor, permissions: Iterable[str], what: str) -> None:
    missing = sorted(p for p in permissions if not actor.can(p))
    if missing:
        raise Forbidden(f"you cannot grant {what} permissions you do not hold: {', '.join(missing)}")


def permissions_of(user: User) -> set[str]:
    return {p.permission for r in user.roles for p in r.permissions}


def require_manageable(actor: Actor, user: User, what: str) -> None:
    """A caller never acts on a user holding a permission the caller lacks (scopes included: a holder
    of ``balances:read:flagged`` does not hold ``balances:read``)."""
    missing = sorted(p for p in permissions_of(user) if not actor.can(p))
    if missing:
        raise Forbidden(f"you cannot {what} {user.username}: they hold permissions you do not "
                        f"({', '.join(missing)})")


def create_role(session: Session, actor: Actor, *, name: str, permissions: Iterable[str],
                description: str = "") -> Role:
    name = name.strip()
    if not ROLE_NAME.match(name):
        raise Invalid("role names are 2-64 letters, digits, spaces, dots, dashes or underscores", field="name")
    if session.execute(select(Role.id).where(func.lower(Role.name) == name.lower())).first():
        raise Conflict(f"a role named {name!r} already exists")
    perms = _validated_permissions(permissions)
    _require_grantable(actor, perms, "the role")
    role = Role(name=name, description=description.strip()[:500], builtin=False,
                permissions=[RolePermission(permission=p) for p in perms])
    session.add(role)
    session.flush()
    bump_revision(session)
    return role


def update_role(session: Session, actor: Actor, role_id: int, *, permissions: Iterable[str],
                description: str | None = None) -> Role:
    role = get_role(session, role_id)
    if role.builtin:
        raise Forbidden("built-in roles cannot be changed; create a custom role instead")
    perms = _validated_permissions(permissions)
    old = {p.permission for p in role.permissions}
    # Adding or removing a permission is granting or taking it: both need the actor to hold it.
    _require_grantable(actor, set(perms) ^ old, "the role")
    role.permissions = [RolePermission(permission=p) for p in perms]
    if description is not None:
        role.description = description.strip()[:500]
    if old - set(perms):
        _bump_epochs(session, _users_with_role(session, role.id))
    session.flush()
    bump_revision(session)
    return role


def delete_role(session: Session, actor: Actor, role_id: int) -> None:
    role = get_role(session, role_id)
    if role.builtin:
        raise Forbidden("built-in roles cannot be deleted")
    if session.execute(select(func.count()).select_from(ApiKey).where(
            ApiKey.role_id == role.id, ApiKey.revoked_at.is_(None))).scalar_one():
        raise Conflict("API keys are still bound to this role; revoke them first")
    holders = _users_with_role(session, role.id)
    _require_grantable(actor, {p.permission for p in role.permissions}, "the role's")
    session.execute(delete(UserRole).where(UserRole.role_id == role.id))
    _bump_epochs(session, holders)
    session.delete(role)
    session.flush()
    bump_revision(session)


def _users_with_role(session: Session, role_id: int) -> list[int]:
    return list(session.execute(select(UserRole.user_id).where(UserRole.role_id == role_id)).scalars())


def _bump_epochs(session: Session, user_ids: Iterable[int]) -> None:
    for user_id in user_ids:
        user = session.get(User, user_id)
        if user is not None:
            user.token_epoch += 1


# -- users --------------------------------------------------------------------------------------

def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    return user


def user_by_name(session: Session, username: str) -> User:
    user = session.execute(select(User).where(User.username == username.strip().lower())).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.execute(select(User).order_by(User.username)).scalars())


def _active_admin_ids(session: Session) -> set[int]:
    stmt = (select(User.id).join(UserRole, UserRole.user_id == User.id).join(Role, Role.id == UserRole.role_id)
            .where(Role.name == ADMIN, User.is_active.is_(True)))
    return set(session.execute(stmt).scalars())


def create_user(session: Session, actor: Actor, settings: AuthSettings, *, username: str, password: str,
                roles: Iterable[str] = (), display_name: str = "", email: str = "",
                must_change_password: bool = False) -> User:
    username = username.strip().lower()
    if not USERNAME.match(username):
        raise Invalid("usernames are 2-64 characters: lower-case letters, digits, and . _ @ -", field="username")
    if session.execute(select(User.id).where(User.username == username)).first():
        raise Conflict(f"a user named {username!r} already exists")
    check_password_rules(password, settings=settings, username=username)
    role_rows = [role_by_name(session, name) for name in roles]
    for role in role_rows:
        _require_grantable(actor, {p.permission for p in role.permissions}, f"role {role.name!r}:")
    user = User(username=username, display_name=display_name.strip()[:200], email=email.strip()[:254],
                password_hash=hash_password(password, settings), must_change_password=must_change_password)
    session.add(user)
    session.flush()
    for role in role_rows:
        session.add(UserRole(user_id=user.id, role_id=role.id))
    session.flush()
    bump_revision(session)
    return user


def set_roles(session: Session, actor: Actor, user_id: int, role_names: Iterable[str]) -> User:
    user = get_user(session, user_id)
    require_manageable(actor, user, "change the roles of")
    wanted = {role_by_name(session, name) for name in role_names}
    current = set(user.roles)
    changed = wanted ^ current
    for role in changed:
        _require_grantable(actor, {p.permission for p in role.permissions}, f"role {role.name!r}:")
    losing_admin = any(r.name == ADMIN for r in current - wanted)
    if losing_admin and _active_admin_ids(session) == {user.id}:
        raise Conflict("this is the last active Admin; make someone else Admin first")
    if actor.user_id == user.id and any(r not in current for r in wanted):
        raise Forbidden("you cannot give yourself a role")
    session.execute(delete(UserRole).where(UserRole.user_id == user.id))
    for role in wanted:
        session.add(UserRole(user_id=user.id, role_id=role.id))
    if current - wanted:
        user.token_epoch += 1
    session.flush()
    session.expire(user, ["roles"])
    bump_revision(session)
    return user


def set_active(session: Session, actor: Actor, user_id: int, active: bool) -> User:
    user = get_user(session, user_id)
    require_manageable(actor, user, "enable or disable")
    if not active and user.is_active and _active_admin_ids(session) == {user.id}:
        raise Conflict("this is the last active Admin; it cannot be disabled")
    if not active and actor.user_id == user.id:
        raise Conflict("you cannot disable yourself")
    if user.is_active != active:
        user.is_active = active
        user.token_epoch += 1
        bump_revision(session)
    session.flush()
    return user


def set_password(session: Session, user_id: int, new_password: str, settings: AuthSettings, *,
                 must_change: bool = False) -> User:
    """The user's own password change (the caller proved the current one). Setting someone else's
    password is :func:`reset_password`."""
    user = get_user(session, user_id)
    check_password_rules(new_password, settings=settings, username=user.username)
    user.password_hash = hash_password(new_password, settings)
    user.password_changed_at = utcnow()
    user.must_change_password = must_change
    user.token_epoch += 1
    session.flush()
    bump_revision(session)
    return user


def reset_password(session: Session, actor: Actor, user_id: int, new_password: str, settings: AuthSettings
                   ) -> User:
    """A one-time password for someone else, to be changed at their next sign-in."""
    require_manageable(actor, get_user(session, user_id), "reset the password of")
    return set_password(session, user_id, new_password, settings, must_change=True)


def clear_lockout(session: Session, actor: Actor, user_id: int) -> User:
    from appliance.services.login import clear_throttle

    user = get_user(session, user_id)
    require_manageable(actor, user, "unlock")
    user.failed_logins = 0
    user.locked_until = None
    clear_throttle(session, user.username)
    session.flush()
    return user


# -- API keys -----------------------------------------------------------------------------------

def get_api_key(session: Session, key_ref: str | int) -> ApiKey:
    key: ApiKey | None = None
    if isinstance(key_ref, int) or str(key_ref).isdigit():
        key = session.get(ApiKey, int(key_ref))
    if key is None:
        key = session.execute(select(ApiKey).where(
            (ApiKey.name == str(key_ref)) | (ApiKey.prefix == str(key_ref)))).scalar_one_or_none()
    if key is None:
        raise NotFound("no such API key")
    return key


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.execute(select(ApiKey).order_by(ApiKey.created_at.desc())).scalars())


def key_status(session: Session, key: ApiKey) -> str:
    """revoked | expired | stale (its owner's epoch moved: rotate it) | active."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= utcnow():
        return "expired"
    owner = session.get(User, key.user_id)
    if owner is None or not owner.is_active or owner.token_epoch != key.owner_epoch:
        return "stale"
    return "active"


def create_api_key(session: Session, actor: Actor, *, username: str, name: str, role_name: str | None = None,
                   expires_at: dt.datetime | None = None) -> tuple[ApiKey, str]:
    """Returns the key row and the plaintext key, which is shown once and never stored."""
    name = name.strip()
    if not 2 <= len(name) <= 100:
        raise Invalid("API key names are 2-100 characters", field="name")
    if session.execute(select(ApiKey.id).where(ApiKey.name == name)).first():
        raise Conflict(f"an API key named {name!r} already exists")
    owner = user_by_name(session, username)
    if not owner.is_active:
        raise Conflict("the key's owner is disabled")
    if role_name is None:
        if len(owner.roles) != 1:
            raise Invalid("choose the role the key is bound to (the owner has several or none)", field="role")
        role = owner.roles[0]
    else:
        role = role_by_name(session, role_name)
    role_perms = {p.permission for p in role.permissions}
    owner_perms = permissions_of(owner)
    if not role_perms <= owner_perms and not _covered(role_perms, owner_perms):
        raise Forbidden("an API key cannot carry permissions its owner does not hold")
    _require_grantable(actor, role_perms, "the key")
    if actor.user_id != owner.id:
        require_manageable(actor, owner, "create an API key for")
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid("the expiry must be in the future", field="expires_at")
    prefix, secret = apikeys.new_prefix(), apikeys.new_secret()
    key = ApiKey(name=name, prefix=prefix, secret_hash=apikeys.hash_secret(secret), user_id=owner.id,
                 role_id=role.id, created_by=actor.user_id, expires_at=expires_at, owner_epoch=owner.token_epoch)
    session.add(key)
    session.flush()
    bump_revision(session)
    return key, apikeys.compose(prefix, secret)


def _covered(wanted: set[str], held: set[str]) -> bool:
    from appliance.rbac.actors import Actor as _Actor

    probe = _Actor("user", "owner", permissions=frozenset(held))
    return all(probe.can(p) for p in wanted)


def key_permissions(session: Session, key: ApiKey) -> set[str]:
    """What the key grants: its role's permissions (what it may carry, whatever its owner holds now)."""
    return {p.permission for p in get_role(session, key.role_id).permissions}


def require_key_manageable(session: Session, actor: Actor, key: ApiKey, what: str) -> None:
    """Acting on a key is for its owner, or for a caller holding every permission the key grants. The owner
    signed in, that is: another of their keys acts with its own permissions only, so a narrow key cannot
    rotate its owner's wider one and receive that secret."""
    if actor.kind == "user" and actor.user_id is not None and actor.user_id == key.user_id:
        return
    missing = sorted(p for p in key_permissions(session, key) if not actor.can(p))
    if missing:
        raise Forbidden(f"only the key's owner, or someone holding every permission it grants, may {what} it "
                        f"(you lack {', '.join(missing)})")


def secret_shown_to(actor: Actor, key: ApiKey) -> bool:
    """A key acts as its owner, so a new secret is shown to the owner only; and to the operator's CLI,
    which holds the KEK and the database anyway."""
    return actor.kind == "system" or (actor.user_id is not None and actor.user_id == key.user_id)


def rotate_api_key(session: Session, actor: Actor, key_ref: str | int, *, overlap_hours: int = 0
                   ) -> tuple[ApiKey, str | None]:
    """New secret under the same id and prefix; the old one keeps working for ``overlap_hours``.

    Returns the key and the new plaintext key, or None when the caller is not the owner (see
    :func:`secret_shown_to`): rotated by someone else, the key's current secret dies and its owner
    rotates it again to get one. A key dead because its owner's epoch moved (password change, role
    removed, disabled) is re-armed under the current epoch, without an overlap: its old secret is
    exactly what the epoch change killed.
    """
    key = get_api_key(session, key_ref)
    require_key_manageable(session, actor, key, "rotate")
    if key.revoked_at is not None:
        raise Conflict("a revoked key cannot be rotated; create a new one")
    if not 0 <= overlap_hours <= 168:
        raise Invalid("the overlap is 0 to 168 hours", field="overlap_hours")
    owner = get_user(session, key.user_id)
    secret = apikeys.new_secret()
    if overlap_hours and key.owner_epoch == owner.token_epoch:
        key.previous_secret_hash = key.secret_hash
        key.previous_valid_until = utcnow() + dt.timedelta(hours=overlap_hours)
    else:
        key.previous_secret_hash = None
        key.previous_valid_until = None
    key.secret_hash = apikeys.hash_secret(secret)
    key.owner_epoch = owner.token_epoch
    key.rotated_at = utcnow()
    session.flush()
    bump_revision(session)
    return key, apikeys.compose(key.prefix, secret) if secret_shown_to(actor, key) else None


def revoke_api_key(session: Session, actor: Actor, key_ref: str | int, *, reason: str = "revoked") -> ApiKey:
    key = get_api_key(session, key_ref)
    require_key_manageable(session, actor, key, "revoke")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        key.revoked_reason = reason[:200]
        session.flush()
        bump_revision(session)
    return key


def record_key_usage(session: Session, usage: dict[int, dt.datetime]) -> None:
    for key_id, when in usage.items():
        key = session.get(ApiKey, key_id)
        if key is not None and (key.last_used_at is None or key.last_used_at < when):
            key.last_used_at = when
    session.flush()
