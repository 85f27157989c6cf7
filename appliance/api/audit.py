"""GET /api/v1/audit: the trail as CSV (streamed) or JSON (cursor pages), filtered."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

from flask import Response, request, stream_with_context
from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api import schemas as s
from appliance.api.common import json_value, respond
from appliance.audit.export import CSV_COLUMNS, AuditFilter, export_csv, iter_rows
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import JSON, accepts
from appliance.errors import Forbidden


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
    """The audit trail: JSON pages, or every matching event as CSV."""
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
    after = query.after
    page = AuditFilter(flt.since, flt.until, flt.user_id, flt.resource_type, flt.action, after)
    rows = []
    for row in iter_rows(db(), page, batch=limit):
        rows.append({name: json_value(value) for name, value in zip(CSV_COLUMNS, row, strict=True)})
        if len(rows) == limit:
            break
    return respond({"events": rows, "next_after": rows[-1]["id"] if len(rows) == limit else None})
