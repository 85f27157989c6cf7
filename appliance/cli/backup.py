"""`vigatra backup create|verify|restore|list`: encrypted backups of a running appliance, and restores.

A thin shell over services/backup.py and services/restore.py (STYLE.md habit 11). install.sh calls
``backup create`` before every upgrade and ``backup restore`` on a rollback whose schema moved.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from appliance.cli.common import cli_actor, cli_state, fail, handle_errors


@click.group()
def backup() -> None:
    """Encrypted, signed backups: create (online), verify, restore (appliance stopped), list."""


@backup.command()
@click.option("--dest", required=True, type=click.Path(file_okay=False),
              help="Directory to write the backup into (it must exist, outside the data dir).")
@click.option("--origin", type=click.Choice(["manual", "upgrade"]), default="manual", show_default=True,
              help="Why it is made (install.sh passes upgrade); only scheduled backups are pruned.")
@click.option("--print-path", is_flag=True, help="Print only the backup directory's path (for scripts).")
@handle_errors
def create(dest: str, origin: str, print_path: bool) -> None:
    """Back up the database (online) and the configuration, encrypted under the key provider."""
    from appliance.audit.checkpoints import signer_from
    from appliance.services.backup import create_backup

    state = cli_state()
    # Only the key provider and the store: no data keys or auth state are loaded, so a newer release can
    # back up a database still at an older release's schema (install.sh does, before it migrates).
    app = state.appliance(open_keys=False)
    provider = app.keys.provider
    provider.check()
    result = create_backup(app.store, app.settings, provider, signer_from(provider), dest=dest, origin=origin,
                           actor_label=cli_actor().label)
    click.echo(str(result.path) if print_path else result.line())


@backup.command()
@click.argument("source", type=click.Path(file_okay=False))
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, exists=True),
              help="Without a configuration: require this signing key (the appliance's audit public key PEM).")
@click.option("--without-key", is_flag=True,
              help="Check the signature and hashes only, without the KEK (on a machine that does not hold it).")
@handle_errors
def verify(source: str, public_key: str | None, without_key: bool) -> None:
    """Verify a backup: signature, hashes, and (with the KEK) that every byte decrypts."""
    from appliance.audit.checkpoints import signer_from
    from appliance.crypto import provider_from_settings
    from appliance.services.backup import verify_backup

    pem = Path(public_key).read_text(encoding="ascii", errors="replace") if public_key else None
    provider = None
    if not without_key:
        provider = provider_from_settings(cli_state().settings())
        provider.check()
        pem = pem or signer_from(provider).public_pem
    summary = verify_backup(source, provider=provider, public_key_pem=pem)
    for line in summary.lines():
        click.echo(line)


@backup.command()
@click.argument("source", type=click.Path(file_okay=False))
@click.option("--database-url", help="Connect as this role instead of database.url (PostgreSQL: the owner, "
                                     "which may drop and create the tables; password in ~/.pgpass, not the URL).")
@click.option("--no-keep-replaced", "no_keep", is_flag=True,
              help="PostgreSQL: do not back up the database being replaced first.")
@click.option("--no-upgrade", is_flag=True,
              help="Leave the schema at the backup's revision (install.sh --rollback, for the older release).")
@handle_errors
def restore(source: str, database_url: str | None, no_keep: bool, no_upgrade: bool) -> None:
    """Restore SOURCE into this (stopped) appliance, then verify the audit chain and every sealed value.

    The database being replaced is kept (SQLite: moved aside; PostgreSQL: backed up into the data
    dir). Events after the backup are not in the restored database; the next audit export states that.
    """
    from appliance.crypto import provider_from_settings
    from appliance.services.restore import restore_backup

    settings = cli_state().settings()
    provider = provider_from_settings(settings)
    provider.check()
    report = restore_backup(settings, provider, source, actor_label=cli_actor().label, keep_replaced=not no_keep,
                            database_url=database_url, migrate=not no_upgrade)
    for line in report.lines():
        click.echo(line)
    if report.problems:
        fail(f"restored, but {len(report.problems)} check(s) failed: {report.problems[0]}")
    if settings.database_url.startswith("postgresql") or (database_url or "").startswith("postgresql"):
        click.echo("PostgreSQL: the tables were recreated; run `vigatra db grant-app-role --role <role>` as the "
                   "owner again if the appliance connects as its own role", err=True)


@backup.command("list")
@click.argument("dest", type=click.Path(file_okay=False), required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per backup.")
@handle_errors
def list_command(dest: str | None, as_json: bool) -> None:
    """The backups in DEST (default: backup.dest), oldest first; signatures are not checked here."""
    from appliance.services.backup import MANIFEST_NAME, list_backups

    directory = dest or cli_state().settings().backup.dest
    if not directory:
        fail("give a directory, or set backup.dest")
    for path in list_backups(directory):
        try:
            manifest = json.loads((path / MANIFEST_NAME).read_bytes())
        except (OSError, ValueError):
            click.echo(f"{path}  (unreadable manifest)")
            continue
        if as_json:
            json.dump({"path": str(path), "created_at": manifest.get("created_at"), "origin": manifest.get("origin"),
                       "vigatra_version": manifest.get("vigatra_version"),
                       "schema_revision": (manifest.get("database") or {}).get("schema_revision")}, sys.stdout)
            click.echo("")
        else:
            click.echo(f"{path}  {manifest.get('created_at')}  {manifest.get('origin')}  "
                       f"vigatra {manifest.get('vigatra_version')}")


__all__ = ["backup"]
