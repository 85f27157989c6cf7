"""`vigatra employee ...` (with `employee portal-link`) and `vigatra onboard link`."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli.common import audited, cli_actor, cli_state, echo_table, handle_errors


@click.group()
def employee() -> None:
    """Monitored employees."""


@employee.command("add")
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.option("--department", default="")
@click.option("--external-id", default=None, help="The employee's id in the HR system.")
@click.option("--access-person", is_flag=True, help="An access person under the code of ethics (SEC Rule 204A-1): "
              "gets an initial-holdings task at once.")
@click.option("--access-person-since", default=None, metavar="YYYY-MM-DD",
              help="The day they became an access person (default: today); the initial report is due 10 days later.")
@handle_errors
def employee_add(name: str, email: str, department: str, external_id: str | None, access_person: bool,
                 access_person_since: str | None) -> None:
    """Add an employee; prints `employee id: <id>`."""
    from appliance.errors import Invalid
    from appliance.services import employees
    from appliance.services.attestations import campaigns

    since = campaigns.parse_day(access_person_since, "--access-person-since")
    if since is not None and not access_person:
        raise Invalid("--access-person-since is only for an access person (add --access-person)")
    settings = cli_state().appliance().settings
    with audited("employees.create", resource_type="employees") as (session, info):
        created = employees.create(session, name=name, email=email, department=department, external_id=external_id)
        if access_person:
            campaigns.set_access_person(session, settings, created, True, since)
        info["resource_id"] = created.id
        info["access_person"] = access_person
    click.echo(f"employee id: {created.id}")


@employee.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@handle_errors
def employee_import(file: Path) -> None:
    """Import employees from a CSV (name,email,department,external_id[,manager_email,access_person]) as an upsert.

    Existing employees are matched by external id, then e-mail, and updated; one line per row (created,
    updated, unchanged, rejected with the reason), then the summary. Exits 1 when a row was rejected (the
    other rows are applied) or the file cannot be read (nothing is)."""
    from appliance.services.roster.sync import import_rows

    # Bytes, not read_text(): the service names the first non-UTF-8 line, and universal-newline
    # decoding would rewrite line ends inside quoted fields.
    data = file.read_bytes()
    with audited("employees.import", resource_type="employees", detail={"file": file.name}) as (session, info):
        report = import_rows(session, data, actor_label=cli_actor().label, via="CLI")
        from appliance.services.attestations.campaigns import ensure_initial_tasks

        ensure_initial_tasks(session, cli_state().appliance().settings)  # new access persons: initial task
        info.update(imported=report.count("created") + report.count("updated"), created=report.count("created"),
                    updated=report.count("updated"), rejected=report.count("rejected"))
    for change in report.changes:
        click.echo(change.line())
    click.echo(report.summary())
    if report.count("rejected"):
        raise SystemExit(1)


@employee.command("list")
@handle_errors
def employee_list() -> None:
    """List employees with their connection health."""
    from appliance.services import employees

    app = cli_state().appliance(open_keys=False)
    with app.store.read() as session:
        rows = [[r.employee.id, r.employee.name, r.employee.email, r.employee.department, r.employee.status,
                 r.connections, "RED" if r.red else "ok"] for r in employees.list_rows(session)]
    echo_table(rows, ["id", "name", "email", "department", "status", "connections", "health"])


@employee.command("offboard")
@click.argument("employee_id", type=int)
@handle_errors
def employee_offboard(employee_id: int) -> None:
    """Stop polling an employee's connections; every record is kept."""
    from appliance.services import employees

    with audited("employees.offboard", resource_type="employees", resource_id=employee_id) as (session, _info):
        employees.offboard(session, employee_id)
    click.echo(f"employee {employee_id} offboarded")


@employee.command("set")
@click.argument("employee_id", type=int)
@click.option("--access-person/--no-access-person", "access_person", default=None,
              help="Make the employee an access person (their initial-holdings task is created at once) or no "
                   "longer one (their open tasks are closed).")
@click.option("--access-person-since", default=None, metavar="YYYY-MM-DD",
              help="The day they became an access person: today or earlier (default: today in display.time_zone).")
@handle_errors
def employee_set(employee_id: int, access_person: bool | None, access_person_since: str | None) -> None:
    """Change an employee; prints what changed."""
    from appliance.errors import Invalid
    from appliance.services import employees
    from appliance.services.attestations import campaigns

    if access_person is None:
        raise Invalid("say what to change: --access-person or --no-access-person")
    since = campaigns.parse_day(access_person_since, "--access-person-since")
    if since is not None and not access_person:
        raise Invalid("--access-person-since is only for an access person (add --access-person)")
    settings = cli_state().appliance().settings
    with audited("employees.update", resource_type="employees", resource_id=employee_id) as (session, info):
        person = employees.get(session, employee_id)
        change = campaigns.set_access_person(session, settings, person, access_person, since)
        since_text = person.access_person_since.isoformat() if person.access_person_since else None
        info.update(access_person=access_person, access_person_since=since_text,
                    tasks_created=[t.id for t in change.created], tasks_closed=change.closed)
    if access_person:
        click.echo(f"employee {employee_id}: access person since {since_text}; "
                   f"{len(change.created)} initial-holdings task(s) created")
    else:
        click.echo(f"employee {employee_id}: not an access person; {change.closed} open task(s) closed")


@employee.command("portal-link")
@click.option("--employee", "employee_id", required=True, type=int)
@handle_errors
def employee_portal_link(employee_id: int) -> None:
    """A one-time sign-in link to the employee portal (15 minutes, one use, bound to the first browser that
    opens it); prints `portal url: <url>`. For sites without e-mail: hand it to the employee yourself."""
    from appliance.services import portal

    settings = cli_state().settings()
    with audited("portal.link_create", resource_type="portal",
                 detail={"employee_id": employee_id, "channel": "printed"}) as (session, info):
        row, token = portal.create_link(session, cli_actor(), settings, employee_id, channel="printed")
        info["resource_id"] = row.id
    click.echo(f"portal url: {portal.link_url(settings, token)}")
    if not settings.server.public_url:
        click.echo("note: set server.public_url so links name the address employees can reach", err=True)


@click.group()
def onboard() -> None:
    """Onboarding links."""


@onboard.command("link")
@click.option("--employee", "employee_id", required=True, type=int)
@click.option("--purpose", type=click.Choice(["initial", "reonboard"]), default="initial", show_default=True)
@handle_errors
def onboard_link(employee_id: int, purpose: str) -> None:
    """Create a one-time link; prints `onboarding url: <url>` (shown once)."""
    from appliance.services import onboarding

    settings = cli_state().settings()
    with audited("onboarding.link_create", resource_type="onboarding",
                 detail={"employee_id": employee_id, "purpose": purpose}) as (session, info):
        row, token = onboarding.create_link(session, cli_actor(), settings, employee_id, purpose=purpose)
        info["resource_id"] = row.id
    click.echo(f"onboarding url: {onboarding.link_url(settings, token)}")
    if not settings.server.public_url:
        click.echo("note: set server.public_url so links name the address employees can reach", err=True)
