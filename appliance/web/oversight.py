"""Compliance views: the audit viewer, predictions, reports, the System page (the alert queue and
cases: web/cases.py)."""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Response, render_template, request
from flask.typing import ResponseReturnValue

from appliance.audit.export import CSV_COLUMNS, AuditFilter, escape_cell, newest_first
from appliance.boundary.edge import appliance, audit_detail, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.services import employee_list, identity, records, reports, sync
from appliance.services.valuation import read as valuation
from appliance.web import forms, web_blueprint


@web_blueprint.route("/audit")
@requires("audit:read", action="audit.view")
@accepts(query=forms.AuditQuery, media=("text/html",))
def audit(query: forms.AuditQuery) -> ResponseReturnValue:
    """The trail newest first, 100 a page (``before``: the last id shown), with who did it by name."""
    session = db()
    flt = AuditFilter(since=query.from_, until=query.to, user_id=query.user_id,
                      resource_type=query.resource_type or None, action=query.action or None)
    rows = [dict(zip(CSV_COLUMNS, row, strict=True))
            for row in newest_first(session, flt, before_id=query.before, limit=AUDIT_PAGE)]
    filters = {k: v for k, v in request.args.items() if k != "before" and v}  # as typed, for the form and links
    users = employee_list.user_names(session, (r["user_id"] for r in rows if isinstance(r["user_id"], int)))
    return render_template("audit.html", rows=rows, query=filters, users=users, first_page=query.before is None,
                           everyone=[(u.id, u.username) for u in identity.list_users(session)],
                           next_before=rows[-1]["id"] if len(rows) == AUDIT_PAGE else None)


AUDIT_PAGE = 100


def _employee_names(items: list[Any]) -> dict[int, str]:
    """The employees' names where the reader may see who they are (employees:read); ids otherwise."""
    if not state().actor.can("employees:read"):
        return {}
    return employee_list.employee_names(db(), (getattr(i, "employee_id", None) for i in items))


@web_blueprint.route("/predictions")
@requires("predictions:read", action="predictions.list")
@accepts(media=("text/html",))
def predictions() -> ResponseReturnValue:
    session = db()
    rows = records.current_positions(session, state().actor)
    settings = appliance().settings
    return render_template("predictions.html", rows=rows, currency=valuation.currency_of(settings),
                           names=_employee_names([c for _p, c in rows]),
                           values=valuation.position_values(session, settings, rows))


@web_blueprint.route("/reports")
@requires("reports:read", action="reports.view")
@accepts(media=("text/html",))
def reports_page() -> ResponseReturnValue:
    session = db()
    summary = reports.firm_summary(session)
    actor = state().actor
    totals = None
    if actor.scope_for("balances:read") == "all":  # a firm total is only for those who may see every holding
        totals = valuation.firm_totals(session, appliance().settings,
                                       include_positions=actor.scope_for("predictions:read") == "all")
    from appliance.services.filings.periods import pickers

    return render_template("reports.html", summary=summary, totals=totals, pickers=pickers())


@web_blueprint.route("/reports/holdings.csv")
@requires("reports:export", action="reports.holdings_csv")
@accepts(media=("text/csv",))
def reports_holdings() -> ResponseReturnValue:
    actor = state().actor
    if not actor.can("balances:export:flagged"):
        from appliance.errors import Forbidden

        raise Forbidden("the holdings report needs balances:export")
    with appliance().store.read() as snapshot:  # a report is as of one moment (one read transaction)
        rows = reports.holdings_rows(snapshot, actor, appliance().settings)
    audit_detail(rows=len(rows) - 1)
    return _csv_response(rows, "vigatra-holdings.csv")


@web_blueprint.route("/reports/transactions.csv")
@requires("reports:export", action="reports.transactions_csv")
@accepts(query=forms.PeriodQuery, media=("text/csv",))
def reports_transactions(query: forms.PeriodQuery) -> ResponseReturnValue:
    actor = state().actor
    if not actor.can("transactions:export:flagged"):
        from appliance.errors import Forbidden

        raise Forbidden("the transaction report needs transactions:export")
    # One read transaction: the report is as of one moment, and PostgreSQL streams rows (a server-side
    # cursor) only inside a transaction; the request's own reads autocommit statement by statement.
    with appliance().store.read() as snapshot:
        rows = reports.transaction_rows(snapshot, actor, appliance().settings, since=query.from_, until=query.to)
    audit_detail(rows=len(rows) - 1)
    return _csv_response(rows, "vigatra-transactions.csv")


def _csv_response(rows: list[list[Any]], filename: str) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([escape_cell(v) for v in row])
    response = Response(buffer.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@web_blueprint.route("/system")
@requires("system:read", action="system.view")
@accepts(media=("text/html",))
def system() -> ResponseReturnValue:
    from appliance.services import mailer

    report = sync.status_report(appliance())
    return render_template("system.html", report=report, node=appliance().node_id, mail=mailer.status(db()),
                           relay=appliance().mailer.relay.describe() if appliance().mailer.enabled else None)
