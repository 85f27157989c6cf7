"""Users, roles and API keys over the API."""

from __future__ import annotations

from typing import Any

from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api import schemas as s
from appliance.api.common import json_value, respond
from appliance.boundary.edge import appliance, audit_detail, audit_resource, auth_changed, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import NoInput, accepts
from appliance.services import identity
from appliance.store.models import ApiKey, Role, User


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id, "username": user.username, "display_name": user.display_name, "email": user.email,
        "active": user.is_active, "roles": sorted(r.name for r in user.roles), "mfa_enabled": user.mfa_enabled,
        "last_login_at": json_value(user.last_login_at), "created_at": json_value(user.created_at),
        "locked_until": json_value(user.locked_until),
    }


def role_json(role: Role) -> dict[str, Any]:
    return {"id": role.id, "name": role.name, "description": role.description, "builtin": role.builtin,
            "permissions": sorted(p.permission for p in role.permissions)}


def key_json(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "prefix": key.prefix, "user_id": key.user_id, "role_id": key.role_id,
            "created_at": json_value(key.created_at), "expires_at": json_value(key.expires_at),
            "last_used_at": json_value(key.last_used_at), "rotated_at": json_value(key.rotated_at),
            "revoked_at": json_value(key.revoked_at), "status": identity.key_status(db(), key)}


@api_blueprint.route("/users", methods=["GET"])
@requires("users:read", action="users.list")
@accepts(returns=s.UserList)
def list_users() -> ResponseReturnValue:
    """Every appliance user."""
    return respond({"users": [user_json(u) for u in identity.list_users(db())]})


@api_blueprint.route("/users", methods=["POST"])
@requires("users:write", action="users.create")
@accepts(body=s.UserCreate, returns=s.UserOut, status=201, errors=(409,))
def create_user(body: s.UserCreate) -> ResponseReturnValue:
    """Create a user (with roles the caller may grant)."""
    user = identity.create_user(
        db(), state().actor, appliance().settings.auth, username=body.username, password=body.password,
        roles=body.roles, display_name=body.display_name, email=body.email,
        must_change_password=body.must_change_password)
    audit_resource("users", user.id)
    audit_detail(username=user.username, roles=body.roles)
    auth_changed()
    return respond(user_json(user), 201)


@api_blueprint.route("/users/<int:user_id>", methods=["GET"])
@requires("users:read", action="users.view")
@accepts(returns=s.UserOut)
def get_user(user_id: int) -> ResponseReturnValue:
    """One user."""
    return respond(user_json(identity.get_user(db(), user_id)))


@api_blueprint.route("/users/<int:user_id>/roles", methods=["PUT"])
@requires("users:write", action="users.set_roles")
@accepts(body=s.UserRoles, returns=s.UserOut, errors=(409,))
def set_user_roles(user_id: int, body: s.UserRoles) -> ResponseReturnValue:
    """Replace a user's roles."""
    roles = body.roles
    user = identity.set_roles(db(), state().actor, user_id, roles)
    audit_detail(roles=sorted(roles))
    auth_changed()
    return respond(user_json(user))


@api_blueprint.route("/users/<int:user_id>/active", methods=["PUT"])
@requires("users:write", action="users.set_active")
@accepts(body=s.UserActive, returns=s.UserOut, errors=(409,))
def set_user_active(user_id: int, body: s.UserActive) -> ResponseReturnValue:
    """Enable or disable a user (their tokens, sessions and keys die with it)."""
    active = body.active
    user = identity.set_active(db(), state().actor, user_id, active)
    audit_detail(active=active)
    auth_changed()
    return respond(user_json(user))


@api_blueprint.route("/roles", methods=["GET"])
@requires("roles:read", action="roles.list")
@accepts(returns=s.RoleList)
def list_roles() -> ResponseReturnValue:
    """Every role with its permissions."""
    return respond({"roles": [role_json(r) for r in identity.list_roles(db())]})


@api_blueprint.route("/roles", methods=["POST"])
@requires("roles:write", action="roles.create")
@accepts(body=s.RoleCreate, returns=s.RoleOut, status=201, errors=(409,))
def create_role(body: s.RoleCreate) -> ResponseReturnValue:
    """Create a custom role."""
    role = identity.create_role(db(), state().actor, name=body.name, permissions=body.permissions,
                                description=body.description)
    audit_resource("roles", role.id)
    audit_detail(name=role.name, permissions=sorted(p.permission for p in role.permissions))
    auth_changed()
    return respond(role_json(role), 201)


@api_blueprint.route("/roles/<int:role_id>", methods=["GET"])
@requires("roles:read", action="roles.view")
@accepts(returns=s.RoleOut)
def get_role(role_id: int) -> ResponseReturnValue:
    """One role."""
    return respond(role_json(identity.get_role(db(), role_id)))


@api_blueprint.route("/roles/<int:role_id>", methods=["PUT"])
@requires("roles:write", action="roles.update")
@accepts(body=s.RoleUpdate, returns=s.RoleOut)
def update_role(role_id: int, body: s.RoleUpdate) -> ResponseReturnValue:
    """Replace a custom role's permissions (and its description)."""
    role = identity.update_role(db(), state().actor, role_id, permissions=body.permissions,
                                description=body.description)
    audit_detail(permissions=sorted(p.permission for p in role.permissions))
    auth_changed()
    return respond(role_json(role))


@api_blueprint.route("/roles/<int:role_id>", methods=["DELETE"])
@requires("roles:write", action="roles.delete")
@accepts(body=NoInput, returns=s.RoleDeleted, errors=(409,))
def delete_role(role_id: int) -> ResponseReturnValue:
    """Delete a custom role."""
    identity.delete_role(db(), state().actor, role_id)
    auth_changed()
    return respond({"deleted": role_id})


@api_blueprint.route("/apikeys", methods=["GET"])
@requires("apikeys:read", action="apikeys.list")
@accepts(returns=s.ApiKeyList)
def list_keys() -> ResponseReturnValue:
    """Every API key (never the secret)."""
    return respond({"api_keys": [key_json(k) for k in identity.list_api_keys(db())]})


@api_blueprint.route("/apikeys", methods=["POST"])
@requires("apikeys:write", action="apikeys.create")
@accepts(body=s.ApiKeyCreate, returns=s.ApiKeyWithSecret, status=201, errors=(409,))
def create_key(body: s.ApiKeyCreate) -> ResponseReturnValue:
    """Create an API key; the key is in this answer only."""
    key, plaintext = identity.create_api_key(db(), state().actor, username=body.username, name=body.name,
                                             role_name=body.role, expires_at=body.expires_at)
    audit_resource("apikeys", key.id)
    audit_detail(name=key.name, prefix=key.prefix)
    auth_changed()
    return respond({**key_json(key), "api_key": plaintext}, 201)


@api_blueprint.route("/apikeys/<int:key_id>/rotate", methods=["POST"])
@requires("apikeys:write", action="apikeys.rotate")
@accepts(body=s.ApiKeyRotate, returns=s.ApiKeyRotated, errors=(409,))
def rotate_key(key_id: int, body: s.ApiKeyRotate) -> ResponseReturnValue:
    """A new secret for a key, the old one valid for overlap_hours more."""
    overlap = body.overlap_hours
    key, plaintext = identity.rotate_api_key(db(), state().actor, key_id, overlap_hours=overlap)
    audit_detail(overlap_hours=overlap)
    auth_changed()
    if plaintext is None:  # rotated by someone other than the owner: the new secret is the owner's alone
        return respond({**key_json(key), "api_key": None,
                        "message": "the key's current secret no longer works; the new secret is shown only to the "
                                   "key's owner, who rotates the key again to get one"})
    return respond({**key_json(key), "api_key": plaintext})


@api_blueprint.route("/apikeys/<int:key_id>/revoke", methods=["POST"])
@requires("apikeys:write", action="apikeys.revoke")
@accepts(body=NoInput, returns=s.ApiKeyOut)
def revoke_key(key_id: int) -> ResponseReturnValue:
    """Revoke a key: refused from the next request on."""
    key = identity.revoke_api_key(db(), state().actor, key_id, reason="revoked through the API")
    auth_changed()
    return respond(key_json(key))
