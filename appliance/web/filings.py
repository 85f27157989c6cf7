"""The Rule 204A-1 report pages: holdings as of a day, transactions of a period (quarter, year or custom
days), the access-person roster and the late-report list, each as a print-ready page or CSV, opened from the
Reports page's period pickers (templates/reports.html). Same services, permissions and scope as the API's
/api/v1/reports (api/reports.py); every view is audited by the edge like everything else."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import Response, url_for
from flask.typing import ResponseReturnValue
from pydantic import Field

from appliance.boundary.edge import appliance, audit_detail, state
from appliance.boundary.params import Text
from appliance.boundary.routes import requires
from appliance.boundary.validation import Schema, accepts
from appliance.services.filings import exports
from appliance.services.filings.document import html
from appliance.services.filings.exports import Export
from appliance.web import web_blueprint

Format = Literal["html", "csv"]


class Filters(Schema):
    blank_means_absent = True


class HoldingsFilter(Filters):
    as_of: Annotated[str, Text(10)] | None = None
    format: Format = "html"


class PeriodFilter(Filters):
    period: Annotated[str, Text(6)] | None = None
    from_: Annotated[str, Text(10)] | None = Field(default=None, alias="from")
    to: Annotated[str, Text(10)] | None = None
    format: Format = "html"


class ListFilter(Filters):
    format: Format = "html"


def _out(export: Export, fmt: str) -> ResponseReturnValue:
    doc = export.document
    audit_detail(rows=len(doc.rows), format=fmt, period=doc.period)
    if fmt == "csv":
        response = Response(doc.csv(), mimetype="text/csv")
        response.headers["Content-Disposition"] = f'attachment; filename="{export.filename}.csv"'
        return response
    return Response(html(doc, stylesheet_url=url_for("static", filename="report-print.css"),
                         back_url=url_for("web.reports_page")), mimetype="text/html")


@web_blueprint.route("/reports/holdings")
@requires("reports:export", action="reports.holdings")
@accepts(query=HoldingsFilter, media=("text/html", "text/csv"))
def reports_holdings_as_of(query: HoldingsFilter) -> ResponseReturnValue:
    return _out(exports.holdings(appliance(), state().actor, query.as_of), query.format)


@web_blueprint.route("/reports/transactions")
@requires("reports:export", action="reports.transactions")
@accepts(query=PeriodFilter, media=("text/html", "text/csv"))
def reports_transactions_period(query: PeriodFilter) -> ResponseReturnValue:
    return _out(exports.transactions(appliance(), state().actor, query.period, query.from_, query.to), query.format)


@web_blueprint.route("/reports/access-persons")
@requires("reports:read", action="reports.roster")
@accepts(query=ListFilter, media=("text/html", "text/csv"))
def reports_roster(query: ListFilter) -> ResponseReturnValue:
    return _out(exports.roster(appliance(), state().actor), query.format)


@web_blueprint.route("/reports/late")
@requires("reports:read", action="reports.late")
@accepts(query=ListFilter, media=("text/html", "text/csv"))
def reports_late(query: ListFilter) -> ResponseReturnValue:
    return _out(exports.late(appliance(), state().actor), query.format)
