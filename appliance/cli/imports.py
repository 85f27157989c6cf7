"""`vigatra import statement`: a venue's statement export (CSV) for one connection."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from appliance.cli.common import audited, cli_actor, handle_errors


@click.group("import")
def import_group() -> None:
    """Import records the venues' APIs cannot give."""


def _when(value: str | None, option: str, *, end: bool) -> dt.datetime | None:
    """A UTC date (the whole day) or a date and time with its offset; anything else is a usage error."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime.combine(day, dt.time.max if end else dt.time.min, dt.UTC)
            return moment.replace(microsecond=0) if end else moment
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD) or a date and time with its offset "
                                 "(2024-01-31T12:00:00Z)", param_hint=option) from None
    if moment.tzinfo is None:
        raise click.BadParameter("give the time zone (Z for UTC)", param_hint=option)
    return moment.astimezone(dt.UTC)


@import_group.command("statement")
@click.option("--connection", "connection_id", type=click.IntRange(min=1), required=True,
              help="The exchange connection (id) the statement belongs to.")
@click.option("--from", "covered_from", default=None,
              help="Start of the period the export was generated for (default: its first row).")
@click.option("--to", "covered_to", default=None,
              help="End of the period the export was generated for (default: its last row).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@handle_errors
def import_statement(connection_id: int, covered_from: str | None, covered_to: str | None, file: Path) -> None:
    """Import a Coinbase, Kraken or Binance statement export (CSV) into a connection's records.

    Records already recorded (synced from the API, or imported before) are skipped; the rest are recorded
    with provenance "statement". Coverage gaps the statement covers are closed. All rows or none."""
    from appliance.errors import Invalid
    from appliance.services import statements
    from appliance.venues.statements import MAX_BYTES

    start = _when(covered_from, "--from", end=False)
    end = _when(covered_to, "--to", end=True)
    if file.stat().st_size > MAX_BYTES:
        raise click.BadParameter(f"larger than {MAX_BYTES // (1024 * 1024)} MB", param_hint="FILE")
    data = file.read_bytes()
    try:
        with audited("statements.import", resource_type="connections", resource_id=connection_id,
                     detail={"file": file.name}) as (session, info):
            result = statements.import_statement(session, connection_id, data, file_name=file.name,
                                                 imported_by=cli_actor().label, covered_from=start, covered_to=end)
            info.update(statement_import=result.statement_import.id, format=result.statement_import.format,
                        added=result.added, duplicates=result.duplicates, gaps_closed=result.gaps_closed)
    except Invalid as exc:
        errors = exc.detail.get("errors")
        if isinstance(errors, list):
            click.echo(f"vigatra: {exc.message}", err=True)
            for item in errors:
                click.echo(f"  line {item['line']}: {item['message']}", err=True)
            raise SystemExit(1) from None
        raise
    for line in result.lines():
        click.echo(line)
