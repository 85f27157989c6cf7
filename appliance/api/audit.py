"""GET /api/v1/audit: the trail as CSV (streamed) or JSON (cursor pages), filtered."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

from flask import Response, request, stream_with_context
from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api import schemas as s
from appliance.api.common import json_value, respond
from appliance.audit.export import CSV_COLUMNS, AuditFilter, export_csv, iter_rows, newest_first
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import JSON, accepts
from appliance.errors import Forbidden, Invalid


def _filter(query: s.AuditQuery) -> AuditFilter:
    return AuditFilter(since=query.from_, until=query.to, user_id=query.user_id,
                       resource_type=query.resource_type or None, action=query.action or None)


def _wants_csv(query: s.AuditQuery) -> bool:
    if query.format:
        return query.format == "csv"
    return request.accept_mimetypes.best_match([JSON, "text/csv"]) == "text/csv"


@api_blueprint.route("/audit", methods=["GET"])
@requires("audit:read", action="audit.list")
@accepts(query=s.AuditQuery, returns=s.AuditPage, media=(JSON, "text/csv"))
def list_audit(query: s.AuditQuery) -> ResponseReturnValue:
    """The audit trail: JSON pages, or every matching event as CSV.

    Order: JSON pages are in id order, oldest first, by default (``next_after`` resumes: an incremental pull
    never misses an event); ``order=newest`` gives them newest first like the dashboard (``next_before``).
    The CSV is always in id order, the order the hash chain is verified in."""
    flt = _filter(query)
    if _wants_csv(query):
        if not state().actor.can("audit:export"):
            raise Forbidden("exporting the audit trail needs the audit:export permission")
        audit_resource(action="audit.export_csv")
        audit_detail(filters={k: v for k, v in request.args.items() if k != "format"})
        store = appliance().store

        def generate() -> Iterator[bytes]:
            # closing(): a client that goes away stops the export's worker processes at once
            with closing(export_csv(store, flt)) as parts:
                for part in parts:
                    yield part.data

        response = Response(stream_with_context(generate()), mimetype="text/csv")
        response.headers["Content-Disposition"] = 'attachment; filename="vigatra-audit.csv"'
        return response
    limit = query.limit
    if query.order == "newest":
        if query.after is not None:
            raise Invalid("after pages order=oldest; with order=newest use before", field="after")
        found = newest_first(db(), flt, before_id=query.before, limit=limit)
        rows = [{name: json_value(value) for name, value in zip(CSV_COLUMNS, row, strict=True)} for row in found]
        return respond({"events": rows, "next_after": None,
                        "next_before": rows[-1]["id"] if len(rows) == limit else None})
    if query.before is not None:
        raise Invalid("before pages order=newest; with order=oldest (the default) use after", field="before")
    page = AuditFilter(flt.since, flt.until, flt.user_id, flt.resource_type, flt.action, query.after)
    rows = []
    for row in iter_rows(db(), page, batch=limit):
        rows.append({name: json_value(value) for name, value in zip(CSV_COLUMNS, row, strict=True)})
        if len(rows) == limit:
            break
    return respond({"events": rows, "next_after": rows[-1]["id"] if len(rows) == limit else None,
                    "next_before": None})
