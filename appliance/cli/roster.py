"""`vigatra roster sync`: the employee roster from the directory and HR export files."""

from __future__ import annotations

import click

from appliance.cli.common import cli_actor, cli_state, handle_errors


@click.group()
def roster() -> None:
    """The employee roster (roster.ldap, roster.files)."""


@roster.command("sync")
@click.option("--dry-run", is_flag=True, help="Show the changes; change nothing. The first apply of a source must "
                                              "follow a dry run showing the same changes.")
@click.option("--source", "only", type=click.Choice(["ldap", "files"]), default=None,
              help="One source (default: every configured one).")
@click.option("--allow-mass-departures", is_flag=True,
              help="Apply even when more than roster.max_departures_percent of a source's employees would leave.")
@handle_errors
def roster_sync(dry_run: bool, only: str | None, allow_mass_departures: bool) -> None:
    """Bring the employees in step with the roster sources: one line per change, then
    `roster: N created, N updated, N offboarded, N unchanged`."""
    from appliance.errors import Invalid
    from appliance.services.roster.plan import RosterReport
    from appliance.services.roster.sync import configured_sources, sync_source

    app = cli_state().appliance()
    wanted = [only] if only else configured_sources(app)
    if not wanted:
        raise Invalid("no roster source is configured (roster.ldap.enabled, roster.files.directory)")
    total = RosterReport("all")
    for source in wanted:
        report, read = sync_source(app, source, dry_run=dry_run, allow_mass_departures=allow_mass_departures,
                                   actor_label=cli_actor().label, via="CLI")
        click.echo(f"{source}: {read}" + (" (dry run: nothing changed)" if dry_run else ""))
        for line in report.lines():
            click.echo(line)
        total.changes.extend(report.changes)
    click.echo(total.summary())
