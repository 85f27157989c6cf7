"""`vigatra rules evaluate|list` and `vigatra mail test|status`."""

from __future__ import annotations

import click

from appliance.cli.common import audited, cli_state, echo_table, handle_errors


@click.group()
def rules() -> None:
    """Conduct rules: restricted and watch lists, holding periods, blackouts, thresholds."""


@rules.command("evaluate")
@click.option("--employee", "employee_id", type=int, help="Only this employee's history.")
@click.option("--rule", "rule_id", type=int, help="Only this rule.")
@handle_errors
def rules_evaluate(employee_id: int | None, rule_id: int | None) -> None:
    """Run the enabled rules over the whole history again; one alert per rule and record, never two."""
    from appliance.services import conduct

    app = cli_state().appliance()
    detail = {k: v for k, v in (("employee_id", employee_id), ("rule_id", rule_id)) if v is not None}
    with audited("rules.evaluate", resource_type="rules", resource_id=rule_id or "*", detail=detail) as (
            session, info):
        result = conduct.reevaluate(session, app, rule_ids=[rule_id] if rule_id else None,
                                    employee_ids=[employee_id] if employee_id else None)
        info.update(result.summary())
    for line in result.lines():
        click.echo(line)
    report = app.mailer.deliver_pending()
    if report.sent or report.failed or report.retrying:
        click.echo(f"e-mails: {len(report.sent)} sent, {len(report.retrying)} to retry, {len(report.failed)} failed")


@rules.command("list")
@handle_errors
def rules_list() -> None:
    """The rules, what each checks, and whom it applies to."""
    from sqlalchemy import select

    from appliance.services.rules import catalogue
    from appliance.services.rules.common import describe_audience
    from appliance.store.models import ConductList

    app = cli_state().appliance(open_keys=False)
    with app.store.read() as session:
        names = dict(session.execute(select(ConductList.id, ConductList.name)).all())
        rows = [[r.id, r.name, r.kind, r.severity, "on" if r.enabled else "off", catalogue.describe(r, names),
                 describe_audience(session, r.applies_to)] for r in catalogue.list_rules(session)]
    echo_table(rows, ["id", "name", "kind", "severity", "enabled", "checks", "applies to"])


@click.group()
def mail() -> None:
    """E-mail through the SMTP relay (notifications.smtp.*)."""


@mail.command("test")
@click.option("--to", "to", required=True, help="Address to send a test message to.")
@handle_errors
def mail_test(to: str) -> None:
    """Queue a test message and deliver it now; prints what the relay answered."""
    from appliance.cli.common import fail

    app = cli_state().appliance()
    if not app.mailer.enabled:
        fail("no SMTP relay is configured (notifications.smtp.host)")
    with audited("mail.test", resource_type="mail", detail={"to": to}) as (session, info):
        row = app.mailer.queue(session, to=[to], purpose="test", subject="[Vigatra] test message",
                               text="This is a test message from the Vigatra appliance.\n")
        info["resource_id"] = row.id if row is not None else ""
    report = app.mailer.deliver_pending()
    with app.store.read() as session:
        from appliance.store.models import MailOutbox

        outcome = session.get(MailOutbox, row.id) if row is not None else None
        if outcome is not None and outcome.status != "sent":
            fail(f"not sent: {outcome.last_error}")
    click.echo(f"sent to {to} through {app.mailer.relay.describe()} ({len(report.sent)} message(s) delivered)")


@mail.command("status")
@handle_errors
def mail_status() -> None:
    """The outbox: how many e-mails are pending, sent and failed, and the latest failures."""
    from appliance.services import mailer

    app = cli_state().appliance(open_keys=False)
    with app.store.read() as session:
        report = mailer.status(session)
        failures = [[m.id, m.purpose, m.created_at.isoformat(timespec="seconds"), m.last_error]
                    for m in report["failures"]]
    click.echo("outbox: " + (", ".join(f"{k} {v}" for k, v in sorted(report["counts"].items())) or "empty"))
    if failures:
        echo_table(failures, ["id", "purpose", "queued", "error"])
