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
from appliance.services.filings import exports
from appliance.services.filings.document import html
from appliance.services.filings.exports import Export

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


def answer(export: Export, fmt: str | None) -> ResponseReturnValue:
    doc, filename = export.document, export.filename
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


@api_blueprint.route("/reports/holdings", methods=["GET"])
@requires("reports:export", action="reports.holdings")
@accepts(query=HoldingsQuery, returns=ReportAnswer, media=MEDIA)
def holdings_report(query: HoldingsQuery) -> ResponseReturnValue:
    """Holdings as of the end of a day, reconstructed from balance observations and transactions."""
    return answer(exports.holdings(appliance(), state().actor, query.as_of), query.format)


@api_blueprint.route("/reports/transactions", methods=["GET"])
@requires("reports:export", action="reports.transactions")
@accepts(query=TransactionsQuery, returns=ReportAnswer, media=MEDIA)
def transactions_report(query: TransactionsQuery) -> ResponseReturnValue:
    """Transactions of a period (a quarter, a year, or from/to days) in the rule's fields."""
    return answer(exports.transactions(appliance(), state().actor, query.period, query.from_, query.to),
                  query.format)


@api_blueprint.route("/reports/access-persons", methods=["GET"])
@requires("reports:read", action="reports.roster")
@accepts(query=ListQuery, returns=ReportAnswer, media=MEDIA)
def roster_report(query: ListQuery) -> ResponseReturnValue:
    """The access-person roster."""
    return answer(exports.roster(appliance(), state().actor), query.format)


@api_blueprint.route("/reports/late", methods=["GET"])
@requires("reports:read", action="reports.late")
@accepts(query=ListQuery, returns=ReportAnswer, media=MEDIA)
def late_report(query: ListQuery) -> ResponseReturnValue:
    """Reports still late, and reports submitted late, with the days late."""
    return answer(exports.late(appliance(), state().actor), query.format)
