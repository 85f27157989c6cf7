"""`vigatra user|role|apikey ...`."""

from __future__ import annotations

import datetime as dt
import sys

import click

from appliance.cli.common import audited, cli_actor, cli_state, echo_table, fail, handle_errors


@click.group()
def user() -> None:
    """Appliance users (people who sign in to the dashboard)."""


@user.command("create")
@click.option("--username", required=True)
@click.option("--role", "roles", multiple=True, help="Role name (repeat for several).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--display-name", default="")
@click.option("--email", default="")
@handle_errors
def user_create(username: str, roles: tuple[str, ...], password_stdin: bool, display_name: str, email: str) -> None:
    """Create a user. Without --password-stdin a one-time password is generated and printed."""
    from appliance.cli.setup import generate_password
    from appliance.services import identity

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("no password on standard input")
        must_change = False
    else:
        password = generate_password()
        must_change = True
    settings = cli_state().settings()
    with audited("users.create", resource_type="users") as (session, info):
        created = identity.create_user(session, cli_actor(), settings.auth, username=username, password=password,
                                       roles=roles, display_name=display_name, email=email,
                                       must_change_password=must_change)
        info.update(resource_id=created.id, username=created.username, roles=list(roles))
    click.echo(f"user id: {created.id}")
    if not password_stdin:
        click.echo(f"password: {password}")


@user.command("list")
@handle_errors
def user_list() -> None:
    """List users with their roles and status."""
    from appliance.services import identity

    app = cli_state().appliance(open_keys=False)
    with app.store.read() as session:
        rows = [[u.id, u.username, ",".join(sorted(r.name for r in u.roles)) or "-",
                 "active" if u.is_active else "disabled", "on" if u.mfa_enabled else "off",
                 u.last_login_at.isoformat(timespec="minutes") if u.last_login_at else "never"]
                for u in identity.list_users(session)]
    echo_table(rows, ["id", "username", "roles", "status", "2fa", "last sign-in"])


def _set_active(username: str, active: bool) -> None:
    from appliance.services import identity

    with audited("users.set_active", resource_type="users", detail={"active": active}) as (session, info):
        target = identity.user_by_name(session, username)
        identity.set_active(session, cli_actor(), target.id, active)
        info["resource_id"] = target.id
    click.echo(f"{username} {'enabled' if active else 'disabled'}")


@user.command("disable")
@click.argument("username")
@handle_errors
def user_disable(username: str) -> None:
    """Disable a user: their sessions, tokens and API keys stop working at once."""
    _set_active(username, False)


@user.command("enable")
@click.argument("username")
@handle_errors
def user_enable(username: str) -> None:
    """Enable a disabled user."""
    _set_active(username, True)


@user.command("unlock")
@click.argument("username")
@handle_errors
def user_unlock(username: str) -> None:
    """Clear a login lockout."""
    from appliance.services import identity

    with audited("users.clear_lockout", resource_type="users") as (session, info):
        target = identity.user_by_name(session, username)
        identity.clear_lockout(session, cli_actor(), target.id)
        info["resource_id"] = target.id
    click.echo(f"{username} unlocked")


@user.command("set-roles")
@click.argument("username")
@click.option("--role", "roles", multiple=True, help="Role name (repeat); none removes every role.")
@handle_errors
def user_set_roles(username: str, roles: tuple[str, ...]) -> None:
    """Replace a user's roles."""
    from appliance.services import identity

    with audited("users.set_roles", resource_type="users", detail={"roles": sorted(roles)}) as (session, info):
        target = identity.user_by_name(session, username)
        identity.set_roles(session, cli_actor(), target.id, roles)
        info["resource_id"] = target.id
    click.echo(f"{username}: {', '.join(sorted(roles)) or 'no role'}")


@user.command("reset-password")
@click.argument("username")
@handle_errors
def user_reset_password(username: str) -> None:
    """Set a new one-time password (printed once); the user must change it at next sign-in."""
    from appliance.cli.setup import generate_password
    from appliance.services import identity

    password = generate_password()
    settings = cli_state().settings()
    with audited("users.reset_password", resource_type="users") as (session, info):
        target = identity.user_by_name(session, username)
        identity.reset_password(session, cli_actor(), target.id, password, settings.auth)
        info["resource_id"] = target.id
    click.echo(f"password: {password}")


@click.group()
def role() -> None:
    """Roles and their permissions."""


@role.command("list")
@handle_errors
def role_list() -> None:
    """List roles and their permissions."""
    from appliance.services import identity

    app = cli_state().appliance(open_keys=False)
    with app.store.read() as session:
        rows = [[r.id, r.name, "yes" if r.builtin else "no", " ".join(sorted(p.permission for p in r.permissions))]
                for r in identity.list_roles(session)]
    echo_table(rows, ["id", "name", "built-in", "permissions"])


@role.command("create")
@click.option("--name", required=True)
@click.option("--permission", "permissions", multiple=True, help="resource:action[:scope] (repeat).")
@click.option("--description", default="")
@handle_errors
def role_create(name: str, permissions: tuple[str, ...], description: str) -> None:
    """Create a custom role."""
    from appliance.services import identity

    with audited("roles.create", resource_type="roles", detail={"name": name, "permissions": sorted(permissions)}
                 ) as (session, info):
        created = identity.create_role(session, cli_actor(), name=name, permissions=permissions,
                                       description=description)
        info["resource_id"] = created.id
    click.echo(f"role id: {created.id}")


@click.group()
def apikey() -> None:
    """API keys for integrations (SIEM, reporting)."""


@apikey.command("create")
@click.option("--username", required=True, help="The key's owner.")
@click.option("--name", required=True, help="A unique name for the key.")
@click.option("--role", "role_name", help="Role the key is bound to (default: the owner's only role).")
@click.option("--expires-days", type=click.IntRange(1, 3650), help="Expire after this many days.")
@handle_errors
def apikey_create(username: str, name: str, role_name: str | None, expires_days: int | None) -> None:
    """Create a key; it is printed once on a line `api key: <key>`."""
    from appliance.services import identity

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_days) if expires_days else None
    with audited("apikeys.create", resource_type="apikeys", detail={"name": name}) as (session, info):
        key, plaintext = identity.create_api_key(session, cli_actor(), username=username, name=name,
                                                 role_name=role_name, expires_at=expires)
        info.update(resource_id=key.id, prefix=key.prefix)
    click.echo(f"api key id: {key.id}")
    click.echo(f"api key: {plaintext}")


@apikey.command("revoke")
@click.argument("name_or_id")
@handle_errors
def apikey_revoke(name_or_id: str) -> None:
    """Revoke a key: refused by every process within a second."""
    from appliance.services import identity

    with audited("apikeys.revoke", resource_type="apikeys") as (session, info):
        key = identity.revoke_api_key(session, cli_actor(), name_or_id, reason="revoked from the CLI")
        info["resource_id"] = key.id
    click.echo(f"api key {key.name} revoked")


@apikey.command("rotate")
@click.argument("name_or_id")
@click.option("--overlap-hours", default=0, type=click.IntRange(0, 168), show_default=True,
              help="Keep the old secret working this long.")
@handle_errors
def apikey_rotate(name_or_id: str, overlap_hours: int) -> None:
    """Issue a new secret under the same key id; the client swaps one header value."""
    from appliance.services import identity

    with audited("apikeys.rotate", resource_type="apikeys", detail={"overlap_hours": overlap_hours}
                 ) as (session, info):
        key, plaintext = identity.rotate_api_key(session, cli_actor(), name_or_id, overlap_hours=overlap_hours)
        info["resource_id"] = key.id
    click.echo(f"api key: {plaintext}")


@apikey.command("list")
@handle_errors
def apikey_list() -> None:
    """List keys (never their secrets)."""
    from appliance.services import identity

    app = cli_state().appliance(open_keys=False)
    with app.store.read() as session:
        rows = [[k.id, k.name, f"vgk_{k.prefix}_…", k.user_id, identity.key_status(session, k),
                 k.expires_at.isoformat(timespec="minutes") if k.expires_at else "never",
                 k.last_used_at.isoformat(timespec="minutes") if k.last_used_at else "never"]
                for k in identity.list_api_keys(session)]
    echo_table(rows, ["id", "name", "prefix", "owner id", "status", "expires", "last used"])
