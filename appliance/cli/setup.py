"""`vigatra init`, `vigatra doctor`, `vigatra db ...`: what install.sh and IT run."""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path
from typing import Any

import click
import yaml

from appliance.cli.common import audited, cli_state, fail, handle_errors

PROVIDERS = ("file", "env", "systemd", "keyring", "pkcs11")


def key_options(fn: Any) -> Any:
    """The key-provider flags shared by `init` and `keys rewrap`."""
    options = [
        click.option("--key-provider", type=click.Choice(PROVIDERS), default="file", show_default=True,
                     help="Where the key-encryption key comes from."),
        click.option("--key-file", type=click.Path(dir_okay=False),
                     help="file: KEK path (default: <data-dir>-kek.key next to the data dir; created 0400)."),
        click.option("--key-env", default="VIGATRA_KEK", show_default=True, help="env: variable holding the KEK."),
        click.option("--systemd-credential", default="vigatra-kek", show_default=True,
                     help="systemd: credential name in $CREDENTIALS_DIRECTORY."),
        click.option("--keyring-service", default="vigatra", show_default=True, help="keyring: service name."),
        click.option("--pkcs11-module", type=click.Path(dir_okay=False), help="pkcs11: the PKCS#11 library."),
        click.option("--pkcs11-token", default="vigatra", show_default=True, help="pkcs11: token label."),
        click.option("--pkcs11-key-label", default="vigatra-kek", show_default=True, help="pkcs11: key label."),
        click.option("--pkcs11-pin-file", type=click.Path(dir_okay=False), help="pkcs11: file holding the user PIN."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def keys_section(data_dir: Path, opts: dict[str, Any]) -> dict[str, Any]:
    provider = opts["key_provider"]
    section: dict[str, Any] = {"provider": provider}
    if provider == "file":
        default = data_dir.parent / f"{data_dir.name}-kek.key"
        section["file_path"] = str(Path(opts.get("key_file") or default).absolute())
    elif provider == "env":
        section["env_var"] = opts["key_env"]
    elif provider == "systemd":
        section["systemd_credential"] = opts["systemd_credential"]
    elif provider == "keyring":
        section["keyring_service"] = opts["keyring_service"]
    elif provider == "pkcs11":
        if opts.get("pkcs11_module"):
            section["pkcs11_module"] = str(Path(opts["pkcs11_module"]).absolute())
        section["pkcs11_token_label"] = opts["pkcs11_token"]
        section["pkcs11_key_label"] = opts["pkcs11_key_label"]
        if opts.get("pkcs11_pin_file"):
            section["pkcs11_pin_file"] = str(Path(opts["pkcs11_pin_file"]).absolute())
    return section


def generate_password() -> str:
    """A one-time password well over the minimum length, from the OS CSPRNG."""
    return "-".join(secrets.token_urlsafe(6) for _ in range(4))


@click.command()
@click.option("--data-dir", required=True, type=click.Path(file_okay=False), help="Directory for the data.")
@click.option("--database-url", help="Database URL (default: SQLite in the data dir).")
@click.option("--admin-username", default="admin", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="server.host to write.")
@click.option("--port", default=8080, show_default=True, type=int, help="server.port to write.")
@click.option("--public-url", default=None,
              help="server.public_url to write: the https:// address employees and users reach the appliance at "
                   "(onboarding links name it). Default: https:// and this machine's fully qualified name; asked "
                   "for when run in a terminal without --yes.")
@key_options
@click.option("--yes", is_flag=True, help="Do not ask anything (install.sh).")
@handle_errors
def init(data_dir: str, database_url: str | None, admin_username: str, host: str, port: int, public_url: str | None,
         yes: bool, **key_opts: Any) -> None:
    """Create the configuration, the data dir, the database, the keys and the first admin."""
    from appliance.rbac.actors import system_actor
    from appliance.services import identity
    from appliance.services.context import Appliance
    from appliance.settings import settings_from_mapping
    from appliance.store.migrate import upgrade
    from appliance.store.models import User
    from appliance.store.session import Store, engine_from_settings

    directory = Path(data_dir).absolute()
    config_path = directory / "vigatra.yaml"
    if config_path.exists():
        fail(f"{directory} is already initialised ({config_path} exists); nothing was changed")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = directory / f".write-test-{uuid.uuid4().hex}"
        probe.touch(mode=0o600)
        probe.unlink()
    except OSError as exc:
        fail(f"cannot use data dir {directory}: {exc.strerror}")
    public_url = _public_url(public_url, ask=not yes)
    raw: dict[str, Any] = {
        "data_dir": str(directory),
        "appliance_id": str(uuid.uuid4()),
        "server": {"host": host, "port": port, "public_url": public_url},
        "keys": keys_section(directory, key_opts),
    }
    if database_url:
        raw["database"] = {"url": database_url}
    settings = settings_from_mapping(raw, env=os.environ, source=str(config_path))
    engine = engine_from_settings(settings)
    try:
        from sqlalchemy import func, inspect, select

        if "users" in inspect(engine).get_table_names():
            with engine.connect() as conn:
                if conn.execute(select(func.count()).select_from(User.__table__)).scalar_one():
                    fail("the database already holds an appliance (users exist); nothing was changed")
        upgrade(engine)
    finally:
        engine.dispose()
    app = Appliance(settings, store=Store.from_settings(settings))
    try:
        created = ""
        provider = app.keys.provider
        if provider.name in ("file", "keyring", "pkcs11") and not _provider_has_key(provider):
            created = provider.create()
        provider.check()
        password = generate_password()
        with app.store.unit_of_work() as session:
            app.keys.create_first(session)
            identity.ensure_builtin_roles(session)
            identity.create_user(session, system_actor("init"), settings.auth, username=admin_username,
                                 password=password, roles=["Admin"], must_change_password=True)
            from appliance.audit.writer import AuditRecord, append

            append(session, [AuditRecord(action="appliance.init", actor_type="system", resource_type="settings",
                                         ip_address="local", method="CLI", path="init", outcome="success",
                                         detail=f'{{"admin": "{admin_username}", "key_provider": "{provider.name}"}}')])
    finally:
        app.close()
    text = "# Written by `vigatra init`. See config/vigatra.example.yaml for every key.\n" + yaml.safe_dump(
        raw, sort_keys=False)
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    click.echo(f"configuration: {config_path}")
    click.echo(f"public url: {public_url} (onboarding links name it; change server.public_url if employees reach "
               "the appliance at another address)")
    if created:
        click.echo(created)
    click.echo(f"admin username: {admin_username}")
    click.echo(f"admin password: {password}")
    click.echo("This password is shown once; the admin must change it at first sign-in.", err=True)


def _public_url(given: str | None, *, ask: bool) -> str:
    """server.public_url for a new install: as given, else asked for in a terminal, else this machine's name.
    Onboarding links are built from it and never from a request's Host header."""
    import sys

    from appliance.services.onboarding import default_public_url

    if given is not None:
        value = given
    elif ask and sys.stdin.isatty():
        value = click.prompt("The https:// address users and employees reach the appliance at",
                             default=default_public_url())
    else:
        value = default_public_url()
    value = value.strip().rstrip("/")
    if not value:
        fail("--public-url: give the https:// address users and employees reach the appliance at")
    return value


def _provider_has_key(provider: Any) -> bool:
    from appliance.errors import KeyProviderError

    try:
        provider.check()
        return True
    except KeyProviderError:
        return False


@click.group()
def db() -> None:
    """Database schema: upgrade, current revision, check."""


@db.command()
@handle_errors
def upgrade() -> None:
    """Migrate the database to the newest schema."""
    from appliance.store.migrate import current_revision, head_revision
    from appliance.store.migrate import upgrade as do_upgrade
    from appliance.store.session import engine_from_settings

    engine = engine_from_settings(cli_state().settings())
    try:
        before = current_revision(engine)
        do_upgrade(engine)
        click.echo(f"database upgraded: {before or 'empty'} -> {head_revision()}")
    finally:
        engine.dispose()


@db.command()
@handle_errors
def current() -> None:
    """Print the database's schema revision."""
    from appliance.store.migrate import current_revision, head_revision
    from appliance.store.session import engine_from_settings

    engine = engine_from_settings(cli_state().settings())
    try:
        rev = current_revision(engine)
        head = head_revision()
        click.echo(f"current: {rev or 'none'} (head: {head}{', up to date' if rev == head else ''})")
    finally:
        engine.dispose()


@db.command()
@handle_errors
def check() -> None:
    """Exit 0 when the schema is at head and matches the models, 1 otherwise."""
    from appliance.store.migrate import current_revision, head_revision, schema_drift
    from appliance.store.session import engine_from_settings

    engine = engine_from_settings(cli_state().settings())
    try:
        rev, head = current_revision(engine), head_revision()
        if rev != head:
            fail(f"schema revision {rev or 'none'} is not the newest ({head}): run `vigatra db upgrade`")
        drift = schema_drift(engine)
        if drift:
            fail(f"schema differs from the models in {len(drift)} place(s), first: {drift[0]}")
        click.echo(f"database ok: revision {rev}, schema matches")
    finally:
        engine.dispose()


@db.command("grant-app-role")
@click.option("--role", required=True, help="The PostgreSQL role the appliance connects as (database.url).")
@handle_errors
def grant_app_role(role: str) -> None:
    """PostgreSQL: give the application's role what it needs and no more. Run as the owner
    (database.url pointing at the owner) after every `db upgrade`.

    The audit tables get SELECT and INSERT only, so even with the triggers dropped the appliance's
    own role cannot update or delete an audit event; purging is an owner's job (`audit purge`).
    """
    import re

    from sqlalchemy import text

    from appliance.store.session import engine_from_settings

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        fail("role names are lower-case letters, digits and underscores")
    engine = engine_from_settings(cli_state().settings())
    try:
        if engine.dialect.name != "postgresql":
            fail("grant-app-role is for PostgreSQL; on SQLite the file's owner is the only role")
        audit_tables = ("audit_events", "audit_checkpoints")
        with engine.begin() as conn:
            conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
            conn.execute(text(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"'))
            conn.execute(text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"'))
            for table in audit_tables:
                conn.execute(text(f'REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM "{role}"'))
            conn.execute(text(f'REVOKE UPDATE, DELETE, TRUNCATE ON alembic_version FROM "{role}"'))
        click.echo(f"granted {role}: read/write on the appliance's tables; SELECT and INSERT only on "
                   f"{', '.join(audit_tables)}")
    finally:
        engine.dispose()


__all__ = ["audited", "db", "init"]
