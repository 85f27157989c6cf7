"""Employees: the list with red badges, details (connections, coverage, holdings under scope),
onboarding links, CSV import, offboarding, "sync now"."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal
from typing import Any

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.errors import Invalid, VigatraError
from appliance.services import alerts as alert_service
from appliance.services import connections as connection_service
from appliance.services import employee_list, notifications, onboarding, records, statements, sync
from appliance.services import employees as employee_service
from appliance.services.roster import sync as roster_sync
from appliance.services.rules import groups
from appliance.services.scope import employee_visible, flagging_alerts, holdings_visible
from appliance.services.valuation import read as valuation
from appliance.services.valuation.snapshots import history as valuation_history
from appliance.web import coverage as coverage_view
from appliance.web import forms, web_blueprint


@web_blueprint.route("/employees")
@requires("employees:read", action="employees.list")
@accepts(query=forms.EmployeesQuery, media=("text/html",))
def employees(query: forms.EmployeesQuery) -> ResponseReturnValue:
    session = db()
    currency = valuation.currency_of(appliance().settings)
    reader = employee_list.reader_for(state().actor, currency)
    search = employee_list.Search(q=query.q, status=query.status, red=query.red, alerts=query.alerts,
                                  group=query.group, sort=query.sort, access_person=query.access_person)
    page = employee_list.list_page(session, search, reader, page=query.page, after=query.after)
    return render_template("employees.html", page=page, search=search, reader=reader, currency=currency,
                           red_total=employee_list.red_count(session),
                           groups=employee_list.group_choices(session) if reader.groups else [],
                           filtered=search != employee_list.Search(sort=search.sort))


@web_blueprint.route("/employees", methods=["POST"])
@requires("employees:write", action="employees.create")
@accepts(form=forms.EmployeeForm, media=("text/html",))
def employees_create(form: forms.EmployeeForm) -> ResponseReturnValue:
    from appliance.services.attestations import campaigns

    if form.access_person_since is not None and form.access_person != "yes":
        raise Invalid("access person since is only for an access person", field="access_person_since")
    employee = employee_service.create(db(), name=form.name, email=form.email, department=form.department,
                                       external_id=form.external_id or None)
    if form.access_person == "yes":
        campaigns.set_access_person(db(), appliance().settings, employee, True, form.access_person_since)
    audit_resource("employees", employee.id)
    audit_detail(access_person=form.access_person == "yes")
    flash(f"{employee.name} added.", "ok")
    return redirect(url_for("web.employee", employee_id=employee.id))


@web_blueprint.route("/employees/import", methods=["POST"])
@requires("employees:write", action="employees.import")
@accepts(form=forms.ImportForm, media=("text/html",))
def employees_import(form: forms.ImportForm) -> ResponseReturnValue:
    upload = form.file
    if upload is None or not upload.filename:
        raise Invalid("choose a CSV file", field="file")
    report = roster_sync.import_rows(db(), upload.read(), actor_label=state().actor.label, via="web")
    from appliance.services.attestations.campaigns import ensure_initial_tasks

    ensure_initial_tasks(db(), appliance().settings)  # new access persons get their initial-holdings task
    audit_detail(created=report.count("created"), updated=report.count("updated"),
                 rejected=report.count("rejected"))
    flash(f"{report.count('created')} employee(s) imported, {report.count('updated')} updated, "
          f"{report.count('unchanged')} unchanged.", "ok")
    rejected = [c for c in report.changes if c.kind == "rejected"]
    if rejected:
        listing = "; ".join(f"{c.where}: {c.reason}" for c in rejected[:50])
        more = f" (and {len(rejected) - 50} more)" if len(rejected) > 50 else ""
        flash(f"{len(rejected)} row(s) rejected: {listing}{more}", "error")
    return redirect(url_for("web.employees"))


TRANSACTIONS_PAGE = 50


def render_employee(employee_id: int, *, query: forms.EmployeePageQuery | None = None, flag_form: Any = None,
                    flag_error: VigatraError | None = None, status: int = 200) -> ResponseReturnValue:
    """The employee page. It says why the reader sees the employee's financial records when their
    role limits them to flagged employees (the alerts that flag them, and until when)."""
    query = query or forms.EmployeePageQuery()
    session = db()
    actor = state().actor
    settings = appliance().settings
    person = employee_service.get(session, employee_id)
    conns = connection_service.list_for_employee(session, employee_id) if actor.can("connections:read") else []
    holdings = holdings_visible(session, actor, employee_id)
    views = connection_service.connections_json(session, conns, holdings=holdings)
    balances = transactions = positions = None
    since, until = _days(query.from_, query.to, settings.display.time_zone)
    if actor.can("balances:read:flagged") and employee_visible(session, actor, "balances:read", employee_id):
        balances = records.current_balances(session, actor, employee_id=employee_id)
    if actor.can("transactions:read:flagged") and employee_visible(session, actor, "transactions:read",
                                                                  employee_id):
        transactions = records.transactions(session, actor, employee_id=employee_id, limit=TRANSACTIONS_PAGE,
                                            before_id=query.before, since=since, until=until, venue=query.venue,
                                            asset=query.asset, kind=query.kind)
    if actor.can("predictions:read:flagged") and employee_visible(session, actor, "predictions:read", employee_id):
        positions = records.current_positions(session, actor, employee_id=employee_id)
    alerts = alert_service.list_alerts(session, employee_id=employee_id, limit=20) if actor.can("alerts:read") \
        else []
    flagged_scope = any(actor.scope_for(p) == "flagged" for p in
                        ("balances:read", "transactions:read", "predictions:read"))
    flagging = flagging_alerts(session, employee_id) if flagged_scope else []
    links = onboarding.list_links(session, employee_id) if actor.can("onboarding:write") else []
    memberships = groups.groups_for(session, employee_id) if actor.can("groups:read") else []
    values = _values(session, balances, transactions, positions)
    if balances is not None:  # holdings by value, the largest first; unpriced ones last
        order = sorted(range(len(balances)), key=lambda i: (values["balances"][i].value is None,
                                                             -(values["balances"][i].value or 0)))
        balances = [balances[i] for i in order]
        values["balances"] = [values["balances"][i] for i in order]
    filters = {k: v for k, v in (("venue", query.venue), ("asset", query.asset), ("kind", query.kind),
                                 ("from", query.from_), ("to", query.to)) if v}
    return render_template("employee.html", person=person, connections=views, balances=balances,
                           transactions=transactions, positions=positions, alerts=alerts,
                           names=alert_service.names_for(session, alerts + flagging), flagging=flagging,
                           flagged_scope=flagged_scope, memberships=memberships,
                           links=[(link, onboarding.link_state(link)) for link in links],
                           mail_enabled=appliance().mailer.enabled, flag_form=flag_form or {},
                           flag_error=flag_error, values=values,
                           history=_history(session, settings, employee_id, balances, positions),
                           why=_why(session, actor, employee_id), filters=filters,
                           more=transactions is not None and len(transactions) == TRANSACTIONS_PAGE,
                           venues=sorted({c.venue for c in conns}),
                           coverage=coverage_view.timeline(views, settings.display.time_zone)), status


@web_blueprint.route("/employees/<int:employee_id>")
@requires("employees:read", action="employees.view")
@accepts(query=forms.EmployeePageQuery, media=("text/html",))
def employee(employee_id: int, query: forms.EmployeePageQuery) -> ResponseReturnValue:
    return render_employee(employee_id, query=query)


def _days(first: str | None, last: str | None, tz_name: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The transaction filter's days (the firm's calendar, both included) as a UTC range."""
    zone = zoneinfo.ZoneInfo(tz_name)
    out: list[dt.datetime | None] = []
    for name, text, extra in (("from", first, 0), ("to", last, 1)):
        if not text:
            out.append(None)
            continue
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise Invalid(f"{name}: a day such as 2026-12-01, got {text!r}", field=name) from None
        out.append(dt.datetime.combine(day + dt.timedelta(days=extra), dt.time(), zone).astimezone(dt.UTC))
    return out[0], out[1]


def _history(session: Any, settings: Any, employee_id: int, balances: list[Any] | None,
             positions: list[Any] | None) -> list[tuple[str, Decimal]]:
    """The employee's recorded value per day (the chart in the header), for readers of their balances."""
    if balances is None:
        return []
    rows = valuation_history(session, employee_id, valuation.currency_of(settings))
    return [(r.day.isoformat(), r.balances + (r.positions if positions is not None else 0)) for r in rows]


def _why(session: Any, actor: Any, employee_id: int) -> dict[str, Any]:
    """Why the reader sees this employee's finances: their role covers everyone, or the employee is flagged by
    these alerts (open, or closed within the flag window)."""
    scope = actor.scope_for("balances:read") or actor.scope_for("transactions:read")
    if scope != "flagged":
        return {"scope": scope}
    return {"scope": scope, "alerts": flagging_alerts(session, employee_id)}



def _values(session: Any, balances: list[Any] | None, transactions: list[Any] | None,
            positions: list[Any] | None) -> dict[str, Any]:
    """Per-row values and totals in the firm's currency for the rows the page shows (absent: not shown)."""
    settings = appliance().settings
    out: dict[str, Any] = {"currency": valuation.currency_of(settings)}
    if balances is not None:
        out["balances"] = valuation.balance_values(session, settings, [b for b, _c in balances])
        out["balances_total"] = valuation.total(out["balances"])
    if positions is not None:
        out["positions"] = valuation.position_values(session, settings, positions)
        out["positions_total"] = valuation.total(out["positions"])
    if transactions is not None:
        by_id = valuation.transaction_values(session, settings, [t for t, _c in transactions])
        out["transactions"] = [by_id[t.id] for t, _c in transactions]
    return out


@web_blueprint.route("/employees/<int:employee_id>/offboard", methods=["POST"])
@requires("employees:write", action="employees.offboard")
@accepts(form=forms.NoFields, media=("text/html",))
def employee_offboard(employee_id: int) -> ResponseReturnValue:
    person = employee_service.offboard(db(), employee_id)
    flash(f"{person.name} offboarded: polling stopped, records kept.", "ok")
    return redirect(url_for("web.employee", employee_id=employee_id))


@web_blueprint.route("/employees/<int:employee_id>/access-person", methods=["POST"])
@requires("employees:write", action="employees.update")
@accepts(form=forms.AccessPersonForm, media=("text/html",))
def employee_access_person(employee_id: int, form: forms.AccessPersonForm) -> ResponseReturnValue:
    """Make the employee an access person (initial-holdings task at once) or no longer one."""
    from appliance.services.attestations import campaigns

    person = employee_service.get(db(), employee_id)
    audit_resource("employees", person.id)
    flag = form.access_person == "yes"
    change = campaigns.set_access_person(db(), appliance().settings, person, flag, form.access_person_since)
    since = person.access_person_since.isoformat() if person.access_person_since else None
    audit_detail(access_person=flag, access_person_since=since, tasks_created=[t.id for t in change.created],
                 tasks_closed=change.closed)
    if flag:
        made = "; initial-holdings task created" if change.created else ""
        flash(f"{person.name} is an access person since {since}{made}.", "ok")
    else:
        flash(f"{person.name} is no longer an access person; {change.closed} open task(s) closed.", "ok")
    return redirect(url_for("web.employee", employee_id=employee_id))


@web_blueprint.route("/employees/<int:employee_id>/links", methods=["POST"])
@requires("onboarding:write", action="onboarding.link_create")
@accepts(form=forms.LinkForm, media=("text/html",))
def employee_link(employee_id: int, form: forms.LinkForm) -> ResponseReturnValue:
    app = appliance()
    session = db()
    purpose = form.purpose
    row, token = onboarding.create_link(session, state().actor, app.settings, employee_id, purpose=purpose)
    url = onboarding.link_url(app.settings, token)
    audit_resource("onboarding", row.id)
    audit_detail(employee_id=employee_id, purpose=purpose, expires_at=row.expires_at.isoformat())
    if form.deliver == "email":
        person = employee_service.get(session, employee_id)
        notifications.onboarding_link(session, app.mailer, app.settings, to=person.email, name=person.name, url=url,
                                      expires_at=row.expires_at, purpose=purpose)
        audit_detail(emailed=True)
        if state().actor.can("employees:read"):
            flash(f"Onboarding link e-mailed to {person.name} ({person.email}); it leaves once this is saved.", "ok")
            return redirect(url_for("web.employee", employee_id=employee_id))
        # onboarding:write alone shows no employee detail (not even where the mail went).
        return render_template("onboarding_link.html", link=None, expires_at=row.expires_at, purpose=purpose,
                               employee_id=employee_id)
    # The link and nothing else: creating one needs onboarding:write only, which shows no employee detail.
    return render_template("onboarding_link.html", link=url, expires_at=row.expires_at, purpose=purpose,
                           employee_id=employee_id)


@web_blueprint.route("/employees/<int:employee_id>/links/<int:link_id>/revoke", methods=["POST"])
@requires("onboarding:write", action="onboarding.link_revoke", resource_arg="link_id")
@accepts(form=forms.NoFields, media=("text/html",))
def employee_link_revoke(employee_id: int, link_id: int) -> ResponseReturnValue:
    onboarding.revoke_link(db(), link_id)
    flash("Link revoked.", "ok")
    return redirect(url_for("web.employee", employee_id=employee_id))


@web_blueprint.route("/connections/<int:connection_id>/statements", methods=["POST"])
@requires("connections:write", action="statements.import", resource_arg="connection_id")
@accepts(form=forms.StatementForm, media=("text/html",))
def connection_statement(connection_id: int, form: forms.StatementForm) -> ResponseReturnValue:
    """A statement export (CSV) uploaded for one exchange connection; larger files: ``vigatra import statement``."""
    upload = form.file
    if upload is None or not upload.filename:
        raise Invalid("choose the statement file (CSV) exported from the venue", field="file")
    result = statements.import_statement(
        db(), connection_id, upload.read(), file_name=upload.filename, imported_by=state().actor.label,
        covered_from=_day_bound(form.covered_from, end=False), covered_to=_day_bound(form.covered_to, end=True))
    row = result.statement_import
    audit_resource("connections", connection_id)
    audit_detail(statement_import=row.id, format=row.format, added=result.added, duplicates=result.duplicates,
                 gaps_closed=result.gaps_closed)
    flash(" ".join(result.lines()), "ok")
    return redirect(url_for("web.employee", employee_id=result.employee_id))


def _day_bound(day: dt.date | None, *, end: bool) -> dt.datetime | None:
    """The start or the end (to the second) of a UTC day."""
    if day is None:
        return None
    moment = dt.datetime.combine(day, dt.time.max if end else dt.time.min, dt.UTC)
    return moment.replace(microsecond=0) if end else moment


@web_blueprint.route("/connections/<int:connection_id>/sync", methods=["POST"])
@requires("connections:write", action="connections.sync_now")
@accepts(form=forms.NoFields, media=("text/html",))
def connection_sync(connection_id: int) -> ResponseReturnValue:
    connection = sync.request_sync(db(), connection_id)
    flash("The connection will be polled at the next tick.", "ok")
    return redirect(url_for("web.employee", employee_id=connection.employee_id))
