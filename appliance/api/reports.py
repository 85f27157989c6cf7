"""Rule 204A-1 reports under /api/v1/reports: holdings as of a day, transactions of a period, the access-person
roster and the late-report list — JSON, CSV (``format=csv``) or print-ready HTML (``format=html``).

Each report reads in one read transaction (one moment; PostgreSQL streams rows only inside one). Holdings
and transactions name employees' financial records: they need ``reports:export`` and the export permission
of the records (``balances:export``, ``transactions:export``), and honour its scope (all or flagged)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from flask import Response, url_for
from flask.typing import ResponseReturnValue
from pydantic import Field

from appliance.api import api_blueprint
from appliance.api.common import json_value, respond
from appliance.boundary.edge import appliance, audit_detail, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import JSON, Answer, Schema, accepts
from appliance.errors import Forbidden
from appliance.services.filings import pack as documents
from appliance.services.filings import periods
from appliance.services.filings.document import Document, html
from appliance.store.base import utcnow

Format = Literal["json", "csv", "html"]
DayText = Annotated[str, Field(max_length=10, description="A day, YYYY-MM-DD (UTC).", examples=["2026-09-30"],
                                         pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
PeriodText = Annotated[str, Field(max_length=6, description="A quarter (2026Q3) or a year (2026).",
                                           examples=["2026Q3"], pattern=r"^[0-9]{4}(Q[1-4])?$")]
MEDIA = (JSON, "text/csv", "text/html")


class HoldingsQuery(Schema):
    as_of: DayText | None = Field(default=None, description="Holdings at the end of this day (default: today).")
    format: Format | None = None


class TransactionsQuery(Schema):
    from_: DayText | None = Field(default=None, alias="from", description="First day (inclusive).")
    to: DayText | None = Field(default=None, description="Last day (inclusive).")
    period: PeriodText | None = None
    format: Format | None = None


class ListQuery(Schema):
    format: Format | None = None


class ReportAnswer(Answer):
    title: str
    firm: str
    period: str
    generated_at: str
    notes: list[str]
    coverage_gaps: list[str]
    columns: list[str]
    rows: list[dict[str, Any]]


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return json_value(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def answer(doc: Document, fmt: str | None, filename: str) -> ResponseReturnValue:
    audit_detail(rows=len(doc.rows), format=fmt or "json", period=doc.period)
    if fmt == "csv":
        response = Response(doc.csv(), mimetype="text/csv")
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
        return response
    if fmt == "html":
        return Response(html(doc, stylesheet_url=url_for("static", filename="report-print.css")),
                        mimetype="text/html")
    return respond({"title": doc.title, "firm": doc.firm, "period": doc.period,
                    "generated_at": json_value(doc.generated_at), "notes": doc.notes, "coverage_gaps": doc.gaps,
                    "columns": doc.header,
                    "rows": [{k: _plain(v) for k, v in zip(doc.header, row, strict=True)} for row in doc.rows]})


def require_export(permission: str, what: str) -> None:
    if not state().actor.can(f"{permission}:flagged"):
        raise Forbidden(f"the {what} report needs {permission}")


@api_blueprint.route("/reports/holdings", methods=["GET"])
@requires("reports:export", action="reports.holdings")
@accepts(query=HoldingsQuery, returns=ReportAnswer, media=MEDIA)
def holdings_report(query: HoldingsQuery) -> ResponseReturnValue:
    """Holdings as of the end of a day, reconstructed from balance observations and transactions."""
    require_export("balances:export", "holdings")
    day = periods.parse_day(query.as_of, "as_of") if query.as_of else utcnow().date()
    app = appliance()
    with app.store.read() as snapshot:
        doc = documents.holdings_document(snapshot, state().actor, app, day)
    return answer(doc, query.format, f"vigatra-holdings-{day.isoformat()}")


@api_blueprint.route("/reports/transactions", methods=["GET"])
@requires("reports:export", action="reports.transactions")
@accepts(query=TransactionsQuery, returns=ReportAnswer, media=MEDIA)
def transactions_report(query: TransactionsQuery) -> ResponseReturnValue:
    """Transactions of a period (a quarter, a year, or from/to days) in the rule's fields."""
    require_export("transactions:export", "transaction")
    period = periods.resolve(query.period, query.from_, query.to)
    app = appliance()
    with app.store.read() as snapshot:
        doc = documents.transactions_document(snapshot, state().actor, app, period)
    return answer(doc, query.format, f"vigatra-transactions-{period.slug.replace('..', '_')}")


@api_blueprint.route("/reports/access-persons", methods=["GET"])
@requires("reports:read", action="reports.roster")
@accepts(query=ListQuery, returns=ReportAnswer, media=MEDIA)
def roster_report(query: ListQuery) -> ResponseReturnValue:
    """The access-person roster."""
    if not state().actor.can("employees:read"):
        raise Forbidden("the access-person roster needs employees:read")
    app = appliance()
    with app.store.read() as snapshot:
        doc = documents.roster_document(snapshot, app)
    return answer(doc, query.format, "vigatra-access-persons")


@api_blueprint.route("/reports/late", methods=["GET"])
@requires("reports:read", action="reports.late")
@accepts(query=ListQuery, returns=ReportAnswer, media=MEDIA)
def late_report(query: ListQuery) -> ResponseReturnValue:
    """Reports still late, and reports submitted late, with the days late."""
    if not state().actor.can("employees:read"):
        raise Forbidden("the late-report list needs employees:read")
    app = appliance()
    with app.store.read() as snapshot:
        doc = documents.late_document(snapshot, app)
    return answer(doc, query.format, "vigatra-late-reports")
