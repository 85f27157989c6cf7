"""Connections as the dashboard and the API show them: status, health, coverage."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.services import reconcile
from appliance.services.scope import without_addresses
from appliance.store.models import Connection, CoverageInterval, StatementImport, SyncCursor
from appliance.venues.statements import VENUES as STATEMENT_VENUES

STATUSES = ("pending", "active", "degraded", "rejected", "broken", "reonboarding_required", "offboarded")


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def list_for_employee(session: Session, employee_id: int) -> list[Connection]:
    return list(session.execute(
        select(Connection).where(Connection.employee_id == employee_id).order_by(Connection.id)).scalars())


# Coverage details that name holdings: what a caller outside the balances scope reads instead.
FIGURES_HIDDEN = "figures hidden: outside your balances scope"
_HIDDEN_DETAIL = {
    reconcile.REASON: f"the provider's balance does not match the recorded transfers ({FIGURES_HIDDEN})",
    "unverified_markets": "trades were read only for the markets derived from balances and transfers "
                          "(markets hidden: outside your balances scope)",
}


def _coverage_detail(r: CoverageInterval, holdings: bool) -> str:
    if holdings or not r.detail:
        return r.detail
    if r.kind == "complete":
        return ""  # the venue's notes on the pages: the markets read, among others
    return _HIDDEN_DETAIL.get(r.reason or "") or without_addresses(r.detail) or ""


def coverage(session: Session, connection_id: int, *, holdings: bool) -> list[dict[str, Any]]:
    rows = session.execute(select(CoverageInterval).where(CoverageInterval.connection_id == connection_id)
                           .order_by(CoverageInterval.stream, CoverageInterval.start_at)).scalars()
    return [{"stream": r.stream, "kind": r.kind, "from": _iso(r.start_at), "to": _iso(r.end_at),
             "reason": r.reason, "detail": _coverage_detail(r, holdings), "closed_at": _iso(r.closed_at)}
            for r in rows]


def progress(session: Session, connection_id: int) -> list[dict[str, Any]]:
    """Streams still in a long walk (a first sync over history windows): windows read out of planned."""
    rows = session.execute(select(SyncCursor.stream, SyncCursor.progress).where(
        SyncCursor.connection_id == connection_id, SyncCursor.progress.is_not(None))
        .order_by(SyncCursor.stream)).all()
    out = []
    for stream, value in rows:
        if not isinstance(value, dict) or not value.get("total"):
            continue
        done, total = int(value.get("done", 0)), int(value["total"])
        out.append({"stream": stream, "done": done, "total": total, "percent": min(100, done * 100 // total),
                    "at": value.get("at")})
    return out


def statement_imports(session: Session, connection_id: int, *, holdings: bool,
                      limit: int = 10) -> list[dict[str, Any]]:
    """The latest statement imports. The uploaded file's name may name an asset or a market, so a caller
    outside the balances scope reads the same rows without it."""
    rows = session.execute(select(StatementImport).where(StatementImport.connection_id == connection_id)
                           .order_by(StatementImport.id.desc()).limit(limit)).scalars()
    return [{"id": r.id, "format": r.format, "file_name": r.file_name if holdings else None,
             "covered_from": _iso(r.covered_from), "covered_to": _iso(r.covered_to), "rows": r.rows,
             "added": r.added, "duplicates": r.duplicates, "created_at": _iso(r.created_at)} for r in rows]


def connection_json(session: Session, c: Connection, *, holdings: bool) -> dict[str, Any]:
    """Everything about a connection except its credentials (which never leave the sealed columns).

    ``holdings``: whether the caller may see what the employee holds (scope.holdings_visible). Without
    it the answer has the same shape, with no address, and details that name no figure or market.
    """
    def text(value: str | None) -> str | None:
        return value if holdings else without_addresses(value)

    return {
        "id": c.id, "employee_id": c.employee_id, "kind": c.kind, "venue": c.venue, "label": c.label,
        "status": c.status, "status_reason": text(c.status_reason),
        "address": (c.address or None) if holdings else None,
        "key_fingerprint": c.key_fingerprint or None, "scope_verified": c.scope_verified,
        "scope": {k: v for k, v in (c.scope or {}).items() if k != "evidence"},
        "scope_label": scope_label(c),
        "scope_checked_at": _iso(c.scope_checked_at), "last_success_at": _iso(c.last_success_at),
        "last_attempt_at": _iso(c.last_attempt_at), "last_error_class": c.last_error_class,
        "last_error": text(c.last_error), "consecutive_failures": c.consecutive_failures,
        "created_at": _iso(c.created_at), "coverage": coverage(session, c.id, holdings=holdings),
        "progress": progress(session, c.id),
        "statement_imports": statement_imports(session, c.id, holdings=holdings),
        "accepts_statements": c.kind == "exchange" and c.venue in STATEMENT_VENUES,
    }


def scope_label(c: Connection) -> str:
    """What the key's probe found, in the dashboard's words: "read-only, verified"; "rejected: trade,
    withdraw" when a dangerous permission was present (whatever the connection's state now); or what
    kept it from being verified."""
    if c.kind == "wallet":
        return "read-only (an address, no key)"
    scope = c.scope or {}
    granted = [name for name in ("trade", "transfer", "withdraw") if scope.get(name)]
    if granted:
        return "rejected: " + ", ".join(granted)
    if not scope.get("verified"):
        return "unverified"
    if scope.get("read") is not True:
        return "verified: no read permission"
    if any(scope.get(name) is not False for name in ("trade", "transfer", "withdraw")):
        return "verified: some rights unknown"
    return "read-only, verified"
