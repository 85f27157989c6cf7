"""`vigatra audit verify|export|purge|checkpoint|public-key`: the operator's and the regulator's tools.

A thin shell over appliance.audit (STYLE.md habit 11). ``verify DIR`` needs no configuration, no
database and no key provider, so a regulator can run it on another machine with only the export
(and, to pin the key, the appliance's public key PEM). Everything else reads --config. Exit 0
means valid/done; 1 prints one line with the reason.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from appliance.cli.common import cli_actor, cli_state, fail, handle_errors


def _parse_time(_ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    """ISO 8601 date or date-time; naive values are UTC."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or date-time (e.g. 2026-01-31 or "
                                 "2026-01-31T12:00:00Z)", param=param) from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _read_public_key(path: str | None) -> str | None:
    if path is None:
        return None
    from appliance.crypto import load_public_key

    pem = Path(path).read_text(encoding="ascii", errors="replace")
    try:
        load_public_key(pem)
    except ValueError as exc:
        fail(f"--public-key {path}: {exc}")
    return pem


def _cli_record(action: str) -> Any:
    from appliance.audit.writer import AuditRecord

    return AuditRecord(action=action, actor_type="system", ip_address="local", method="CLI",
                       path=f"audit {action.rsplit('.', maxsplit=1)[-1]}", user_agent=cli_actor().label)


@click.group()
def audit() -> None:
    """The audit trail: verify it, export it to removable media, purge expired events."""


@audit.command()
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, exists=True),
              help="The appliance's public key PEM: require that the export (or the checkpoints) be signed by it.")
@click.option("--workers", type=click.IntRange(1, 64),
              help="Processes for a large database chain (default: the CPU count).")
@handle_errors
def verify(path: str | None, public_key: str | None, workers: int | None) -> None:
    """Verify the chain in the database, or the export(s) in PATH (offline: no --config needed).

    Without PATH: every event's hash and link, every signed checkpoint, purges; prints the first
    broken link by event id. With PATH: one export directory, or a directory holding a series.
    """
    pem = _read_public_key(public_key)
    if path is not None:
        from appliance.audit.media import verify_media

        report = verify_media(path, public_key_pem=pem)
        if pem is None:
            click.echo("note: the signing key was not pinned; pass --public-key with the appliance's key to check "
                       "who signed", err=True)
        for line in report.lines():
            click.echo(line)
        return
    from appliance.audit.checkpoints import signer_for
    from appliance.audit.verify import verify_database

    state = cli_state()
    settings = state.settings()
    app = state.appliance(open_keys=False)
    result = verify_database(app.store, appliance_id=settings.appliance_id,
                             public_key_pem=pem or signer_for(app).public_pem, workers=workers)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    for warning in result.warnings():
        click.echo(f"warning: {warning}", err=True)
    click.echo(result.summary())


@audit.command()
@click.option("--dest", required=True, type=click.Path(file_okay=False),
              help="Directory on the removable medium (must exist, outside the data dir).")
@click.option("--from", "since", callback=_parse_time, help="Only events from this time (ISO 8601, UTC if no zone).")
@click.option("--to", "until", callback=_parse_time, help="Only events before this time (ISO 8601).")
@handle_errors
def export(dest: str, since: dt.datetime | None, until: dt.datetime | None) -> None:
    """Export the audit trail with a signed manifest to DEST, verify it, and record the export.

    Without --from/--to the export is incremental: everything since the previous such export,
    so the exports on a medium form a series that `vigatra audit verify DIR` checks for gaps.
    """
    from appliance.audit.checkpoints import signer_for
    from appliance.audit.media import export_to_media

    state = cli_state()
    settings = state.settings()
    app = state.appliance(open_keys=False)
    result = export_to_media(app.store, signer_for(app), appliance_id=settings.appliance_id,
                             data_dir=settings.data_dir, dest=dest, since=since, until=until,
                             record=_cli_record("audit.export"))
    span = (f"events {result.first_event_id}..{result.last_event_id}" if result.rows else "no new events")
    click.echo(f"exported {result.rows} events ({span}, {result.mode}) to {result.path}")
    click.echo(f"manifest sha256 {result.manifest_sha256}; verified; recorded as checkpoint #{result.checkpoint_id}")


@audit.command()
@click.option("--before", required=True, callback=_parse_time,
              help="Remove events older than this (ISO 8601); must be beyond audit.retention_days.")
@click.option("--database-url", help="Connect as the database owner (PostgreSQL: the application's role may not "
                                     "delete). Keep the password in ~/.pgpass or PGPASSWORD, not in the URL.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def purge(before: dt.datetime, database_url: str | None, yes: bool) -> None:
    """Remove audit events older than the retention period, leaving a signed record of what went."""
    from appliance.audit.chain import format_timestamp
    from appliance.audit.checkpoints import signer_for
    from appliance.audit.purge import check_retention, plan_purge, purge_before
    from appliance.store.session import Store, make_engine

    state = cli_state()
    settings = state.settings()
    days = settings.audit.retention_days
    check_retention(before, days)
    app = state.appliance(open_keys=False)
    store = Store(make_engine(database_url, busy_timeout_ms=settings.database.busy_timeout_ms)) \
        if database_url else app.store
    try:
        with store.read() as session:
            plan = plan_purge(session, before)
        if plan.count == 0:
            click.echo(f"nothing to purge: no event before {format_timestamp(before)} remains")
            return
        if not yes:
            click.confirm(f"Permanently remove {plan.count} audit events (ids {plan.from_id}..{plan.through_id}, "
                          f"older than {format_timestamp(before)})?", abort=True)
        result = purge_before(store, signer_for(app), appliance_id=settings.appliance_id, before=before, days=days,
                              record=_cli_record("audit.purge"))
    finally:
        if store is not app.store:
            store.dispose()
    if result.removed == 0:
        click.echo("nothing to purge")
        return
    click.echo(f"purged {result.removed} events ({result.from_id}..{result.through_id}); signed purge record "
               f"checkpoint #{result.checkpoint_id}")


@audit.command()
@handle_errors
def checkpoint() -> None:
    """Write a signed checkpoint of the chain now (the scheduler does this periodically)."""
    from appliance.audit.checkpoints import periodic_checkpoint

    checkpoint_id = periodic_checkpoint(cli_state().appliance(open_keys=False))
    click.echo(f"checkpoint #{checkpoint_id} written")


@audit.command("public-key")
@handle_errors
def public_key() -> None:
    """Print the audit signing public key (PEM) to give to whoever verifies exports."""
    from appliance.audit.checkpoints import signer_for

    signer = signer_for(cli_state().appliance(open_keys=False))
    click.echo(signer.public_pem, nl=False)
    click.echo(f"key id {signer.key_id}", err=True)
