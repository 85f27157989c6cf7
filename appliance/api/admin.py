"""Users, roles and API keys over the API."""

from __future__ import annotations

from typing import Any

from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api.common import body, json_value, respond
from appliance.boundary.edge import appliance, audit_detail, audit_resource, auth_changed, db, state
from appliance.boundary.routes import requires
from appliance.errors import Invalid
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


def _str_list(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"{name} must be a list of strings", field=name)
    return value


@api_blueprint.route("/users", methods=["GET"])
@requires("users:read", action="users.list")
def list_users() -> ResponseReturnValue:
    return respond({"users": [user_json(u) for u in identity.list_users(db())]})


@api_blueprint.route("/users", methods=["POST"])
@requires("users:write", action="users.create")
def create_user() -> ResponseReturnValue:
    data = body()
    user = identity.create_user(
        db(), state().actor, appliance().settings.auth, username=str(data.get("username", "")),
        password=str(data.get("password", "")), roles=_str_list(data, "roles"),
        display_name=str(data.get("display_name", "")), email=str(data.get("email", "")),
        must_change_password=bool(data.get("must_change_password", True)))
    audit_resource("users", user.id)
    audit_detail(username=user.username, roles=_str_list(data, "roles"))
    auth_changed()
    return respond(user_json(user), 201)


@api_blueprint.route("/users/<int:user_id>", methods=["GET"])
@requires("users:read", action="users.view")
def get_user(user_id: int) -> ResponseReturnValue:
    return respond(user_json(identity.get_user(db(), user_id)))


@api_blueprint.route("/users/<int:user_id>/roles", methods=["PUT"])
@requires("users:write", action="users.set_roles")
def set_user_roles(user_id: int) -> ResponseReturnValue:
    roles = _str_list(body(), "roles")
    user = identity.set_roles(db(), state().actor, user_id, roles)
    audit_detail(roles=sorted(roles))
    auth_changed()
    return respond(user_json(user))


@api_blueprint.route("/users/<int:user_id>/active", methods=["PUT"])
@requires("users:write", action="users.set_active")
def set_user_active(user_id: int) -> ResponseReturnValue:
    active = body().get("active")
    if not isinstance(active, bool):
        raise Invalid("active must be true or false", field="active")
    user = identity.set_active(db(), state().actor, user_id, active)
    audit_detail(active=active)
    auth_changed()
    return respond(user_json(user))


@api_blueprint.route("/roles", methods=["GET"])
@requires("roles:read", action="roles.list")
def list_roles() -> ResponseReturnValue:
    return respond({"roles": [role_json(r) for r in identity.list_roles(db())]})


@api_blueprint.route("/roles", methods=["POST"])
@requires("roles:write", action="roles.create")
def create_role() -> ResponseReturnValue:
    data = body()
    role = identity.create_role(db(), state().actor, name=str(data.get("name", "")),
                                permissions=_str_list(data, "permissions"),
                                description=str(data.get("description", "")))
    audit_resource("roles", role.id)
    audit_detail(name=role.name, permissions=sorted(p.permission for p in role.permissions))
    auth_changed()
    return respond(role_json(role), 201)


@api_blueprint.route("/roles/<int:role_id>", methods=["GET"])
@requires("roles:read", action="roles.view")
def get_role(role_id: int) -> ResponseReturnValue:
    return respond(role_json(identity.get_role(db(), role_id)))


@api_blueprint.route("/roles/<int:role_id>", methods=["PUT"])
@requires("roles:write", action="roles.update")
def update_role(role_id: int) -> ResponseReturnValue:
    data = body()
    role = identity.update_role(db(), state().actor, role_id, permissions=_str_list(data, "permissions"),
                                description=data.get("description") if isinstance(data.get("description"), str)
                                else None)
    audit_detail(permissions=sorted(p.permission for p in role.permissions))
    auth_changed()
    return respond(role_json(role))


@api_blueprint.route("/roles/<int:role_id>", methods=["DELETE"])
@requires("roles:write", action="roles.delete")
def delete_role(role_id: int) -> ResponseReturnValue:
    identity.delete_role(db(), state().actor, role_id)
    auth_changed()
    return respond({"deleted": role_id})


@api_blueprint.route("/apikeys", methods=["GET"])
@requires("apikeys:read", action="apikeys.list")
def list_keys() -> ResponseReturnValue:
    return respond({"api_keys": [key_json(k) for k in identity.list_api_keys(db())]})


@api_blueprint.route("/apikeys", methods=["POST"])
@requires("apikeys:write", action="apikeys.create")
def create_key() -> ResponseReturnValue:
    import datetime as dt

    data = body()
    expires = data.get("expires_at")
    expires_at = None
    if expires is not None:
        try:
            expires_at = dt.datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
        except ValueError:
            raise Invalid("expires_at must be an ISO 8601 time", field="expires_at") from None
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=dt.UTC)
    key, plaintext = identity.create_api_key(
        db(), state().actor, username=str(data.get("username", "")), name=str(data.get("name", "")),
        role_name=data.get("role") if isinstance(data.get("role"), str) else None, expires_at=expires_at)
    audit_resource("apikeys", key.id)
    audit_detail(name=key.name, prefix=key.prefix)
    auth_changed()
    return respond({**key_json(key), "api_key": plaintext}, 201)


@api_blueprint.route("/apikeys/<int:key_id>/rotate", methods=["POST"])
@requires("apikeys:write", action="apikeys.rotate")
def rotate_key(key_id: int) -> ResponseReturnValue:
    from flask import request

    data = request.get_json(silent=True) or {}
    overlap = data.get("overlap_hours", 0)
    if not isinstance(overlap, int) or isinstance(overlap, bool):
        raise Invalid("overlap_hours must be a whole number", field="overlap_hours")
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
def revoke_key(key_id: int) -> ResponseReturnValue:
    key = identity.revoke_api_key(db(), state().actor, key_id, reason="revoked through the API")
    auth_changed()
    return respond(key_json(key))
