"""Administration pages: users, roles (permission matrix editor), API keys."""

from __future__ import annotations

import datetime as dt

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from appliance.boundary.edge import appliance, audit_detail, audit_resource, auth_changed, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.errors import Invalid
from appliance.rbac.permissions import RESOURCES, SCOPED, catalogue
from appliance.services import identity
from appliance.store.models import ApiKey
from appliance.web import forms, web_blueprint


@web_blueprint.route("/admin/users")
@requires("users:read", action="users.list")
@accepts(media=("text/html",))
def users() -> ResponseReturnValue:
    session_ = db()
    return render_template("users.html", users=identity.list_users(session_), roles=identity.list_roles(session_),
                           min_length=appliance().settings.auth.password_min_length)


@web_blueprint.route("/admin/users", methods=["POST"])
@requires("users:write", action="users.create")
@accepts(form=forms.UserForm, media=("text/html",))
def users_create(form: forms.UserForm) -> ResponseReturnValue:
    user = identity.create_user(
        db(), state().actor, appliance().settings.auth, username=form.username, password=form.password,
        roles=form.roles, display_name=form.display_name, email=form.email, must_change_password=True)
    audit_resource("users", user.id)
    audit_detail(username=user.username, roles=form.roles)
    auth_changed()
    flash(f"User {user.username} created. They must choose a new password at first sign-in.", "ok")
    return redirect(url_for("web.users"))


@web_blueprint.route("/admin/users/<int:user_id>/roles", methods=["POST"])
@requires("users:write", action="users.set_roles")
@accepts(form=forms.UserRolesForm, media=("text/html",))
def users_roles(user_id: int, form: forms.UserRolesForm) -> ResponseReturnValue:
    user = identity.set_roles(db(), state().actor, user_id, form.roles)
    audit_detail(roles=sorted(r.name for r in user.roles))
    auth_changed()
    flash(f"Roles of {user.username} updated.", "ok")
    return redirect(url_for("web.users"))


@web_blueprint.route("/admin/users/<int:user_id>/active", methods=["POST"])
@requires("users:write", action="users.set_active")
@accepts(form=forms.UserActiveForm, media=("text/html",))
def users_active(user_id: int, form: forms.UserActiveForm) -> ResponseReturnValue:
    active = form.active == "1"
    user = identity.set_active(db(), state().actor, user_id, active)
    audit_detail(active=active)
    auth_changed()
    flash(f"{user.username} is now {'enabled' if active else 'disabled'}.", "ok")
    return redirect(url_for("web.users"))


@web_blueprint.route("/admin/users/<int:user_id>/unlock", methods=["POST"])
@requires("users:write", action="users.clear_lockout")
@accepts(form=forms.NoFields, media=("text/html",))
def users_unlock(user_id: int) -> ResponseReturnValue:
    user = identity.clear_lockout(db(), state().actor, user_id)
    flash(f"Lockout of {user.username} cleared.", "ok")
    return redirect(url_for("web.users"))


@web_blueprint.route("/admin/roles")
@requires("roles:read", action="roles.list")
@accepts(media=("text/html",))
def roles() -> ResponseReturnValue:
    return render_template("roles.html", roles=identity.list_roles(db()))


def _matrix_rows() -> list[dict[str, object]]:
    rows = []
    for resource, actions in RESOURCES.items():
        rows.append({"resource": resource, "actions": actions, "scoped": resource in SCOPED})
    return rows


@web_blueprint.route("/admin/roles/new")
@requires("roles:write", action="roles.new_form")
@accepts(media=("text/html",))
def roles_new() -> ResponseReturnValue:
    return render_template("role_edit.html", role=None, granted=set(), rows=_matrix_rows(),
                           all_actions=sorted({a for acts in RESOURCES.values() for a in acts}))


@web_blueprint.route("/admin/roles/<int:role_id>")
@requires("roles:read", action="roles.view")
@accepts(media=("text/html",))
def roles_view(role_id: int) -> ResponseReturnValue:
    role = identity.get_role(db(), role_id)
    return render_template("role_edit.html", role=role, granted={p.permission for p in role.permissions},
                           rows=_matrix_rows(), all_actions=sorted({a for acts in RESOURCES.values() for a in acts}))


def _form_permissions(form: forms.RoleForm) -> list[str]:
    """The matrix posts perm=<resource:action> per ticked cell, and scope_<resource>=all|flagged for the
    resources whose reads and exports can be limited to flagged records."""
    valid = {str(p) for p in catalogue()}
    out = []
    for base in form.perm:
        resource, _, action = base.partition(":")
        scope = getattr(form, f"scope_{resource}", "all") if action in ("read", "export") else "all"
        text = base if scope == "all" else f"{base}:{scope}"
        if text not in valid:
            raise Invalid(f"unknown permission {text!r}", field="perm")
        out.append(text)
    return out


@web_blueprint.route("/admin/roles", methods=["POST"])
@requires("roles:write", action="roles.create")
@accepts(form=forms.NewRoleForm, media=("text/html",))
def roles_create(form: forms.NewRoleForm) -> ResponseReturnValue:
    role = identity.create_role(db(), state().actor, name=form.name, permissions=_form_permissions(form),
                                description=form.description or "")
    audit_resource("roles", role.id)
    audit_detail(name=role.name, permissions=sorted(p.permission for p in role.permissions))
    auth_changed()
    flash(f"Role {role.name} created.", "ok")
    return redirect(url_for("web.roles"))


@web_blueprint.route("/admin/roles/<int:role_id>", methods=["POST"])
@requires("roles:write", action="roles.update")
@accepts(form=forms.RoleForm, media=("text/html",))
def roles_update(role_id: int, form: forms.RoleForm) -> ResponseReturnValue:
    role = identity.update_role(db(), state().actor, role_id, permissions=_form_permissions(form),
                                description=form.description)
    audit_detail(permissions=sorted(p.permission for p in role.permissions))
    auth_changed()
    flash(f"Role {role.name} saved.", "ok")
    return redirect(url_for("web.roles"))


@web_blueprint.route("/admin/roles/<int:role_id>/delete", methods=["POST"])
@requires("roles:write", action="roles.delete")
@accepts(form=forms.NoFields, media=("text/html",))
def roles_delete(role_id: int) -> ResponseReturnValue:
    identity.delete_role(db(), state().actor, role_id)
    auth_changed()
    flash("Role deleted.", "ok")
    return redirect(url_for("web.roles"))


@web_blueprint.route("/admin/apikeys")
@requires("apikeys:read", action="apikeys.list")
@accepts(media=("text/html",))
def apikeys() -> ResponseReturnValue:
    session_ = db()
    return render_template("apikeys.html", keys=_keys_with_status(session_), users=identity.list_users(session_),
                           roles=identity.list_roles(session_), new_key=None)


def _keys_with_status(session_: Session) -> list[tuple[ApiKey, str]]:
    return [(key, identity.key_status(session_, key)) for key in identity.list_api_keys(session_)]


@web_blueprint.route("/admin/apikeys", methods=["POST"])
@requires("apikeys:write", action="apikeys.create")
@accepts(form=forms.ApiKeyForm, media=("text/html",))
def apikeys_create(form: forms.ApiKeyForm) -> ResponseReturnValue:
    session_ = db()
    expires_at = (dt.datetime.now(dt.UTC) + dt.timedelta(days=form.expires_days)) if form.expires_days else None
    key, plaintext = identity.create_api_key(session_, state().actor, username=form.username, name=form.name,
                                             role_name=form.role or None, expires_at=expires_at)
    audit_resource("apikeys", key.id)
    audit_detail(name=key.name, prefix=key.prefix)
    auth_changed()
    return render_template("apikeys.html", keys=_keys_with_status(session_),
                           users=identity.list_users(session_), roles=identity.list_roles(session_),
                           new_key={"name": key.name, "value": plaintext})


@web_blueprint.route("/admin/apikeys/<int:key_id>/rotate", methods=["POST"])
@requires("apikeys:write", action="apikeys.rotate")
@accepts(form=forms.RotateForm, media=("text/html",))
def apikeys_rotate(key_id: int, form: forms.RotateForm) -> ResponseReturnValue:
    session_ = db()
    overlap = form.overlap_hours or 0
    key, plaintext = identity.rotate_api_key(session_, state().actor, key_id, overlap_hours=overlap)
    audit_detail(overlap_hours=overlap)
    auth_changed()
    if plaintext is None:
        flash(f"API key {key.name} rotated: its current secret no longer works. The new secret is shown only to "
              "the key's owner, who rotates the key again to get one.", "ok")
        return redirect(url_for("web.apikeys"))
    return render_template("apikeys.html", keys=_keys_with_status(session_),
                           users=identity.list_users(session_), roles=identity.list_roles(session_),
                           new_key={"name": key.name, "value": plaintext})


@web_blueprint.route("/admin/apikeys/<int:key_id>/revoke", methods=["POST"])
@requires("apikeys:write", action="apikeys.revoke")
@accepts(form=forms.NoFields, media=("text/html",))
def apikeys_revoke(key_id: int) -> ResponseReturnValue:
    key = identity.revoke_api_key(db(), state().actor, key_id, reason="revoked from the dashboard")
    auth_changed()
    flash(f"API key {key.name} revoked. It is refused from the next request on.", "ok")
    return redirect(url_for("web.apikeys"))
