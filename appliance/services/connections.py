"""Connections as the dashboard and the API show them: status, health, coverage."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session, aliased

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


def _coverage_json(r: CoverageInterval, holdings: bool) -> dict[str, Any]:
    return {"stream": r.stream, "kind": r.kind, "from": _iso(r.start_at), "to": _iso(r.end_at),
            "reason": r.reason, "detail": _coverage_detail(r, holdings), "closed_at": _iso(r.closed_at)}


def _coverages(session: Session, ids: list[int], *, holdings: bool) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for r in session.execute(select(CoverageInterval).where(CoverageInterval.connection_id.in_(ids)).order_by(
            CoverageInterval.connection_id, CoverageInterval.stream, CoverageInterval.start_at)).scalars():
        out[r.connection_id].append(_coverage_json(r, holdings))
    return out


def _progresses(session: Session, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Streams still in a long walk (a first sync over history windows): windows read out of planned."""
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    rows = session.execute(select(SyncCursor.connection_id, SyncCursor.stream, SyncCursor.progress).where(
        SyncCursor.connection_id.in_(ids), SyncCursor.progress.is_not(None))
        .order_by(SyncCursor.connection_id, SyncCursor.stream)).all()
    for connection_id, stream, value in rows:
        if not isinstance(value, dict) or not value.get("total"):
            continue
        done, total = int(value.get("done", 0)), int(value["total"])
        out[connection_id].append({"stream": stream, "done": done, "total": total,
                                   "percent": min(100, done * 100 // total), "at": value.get("at")})
    return out


def _statement_imports(session: Session, ids: list[int], *, holdings: bool,
                       limit: int = 10) -> dict[int, list[dict[str, Any]]]:
    """The latest statement imports of each connection. The uploaded file's name may name an asset or a market,
    so a caller outside the balances scope reads the same rows without it."""
    newest = func.row_number().over(partition_by=StatementImport.connection_id,
                                    order_by=StatementImport.id.desc()).label("n")
    latest = select(StatementImport.id, newest).where(StatementImport.connection_id.in_(ids)).subquery()
    rows = session.execute(select(StatementImport).join(latest, latest.c.id == StatementImport.id)
                           .where(latest.c.n <= limit)
                           .order_by(StatementImport.connection_id, StatementImport.id.desc())).scalars()
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for r in rows:
        out[r.connection_id].append({
            "id": r.id, "format": r.format, "file_name": r.file_name if holdings else None,
            "covered_from": _iso(r.covered_from), "covered_to": _iso(r.covered_to), "rows": r.rows,
            "added": r.added, "duplicates": r.duplicates, "created_at": _iso(r.created_at)})
    return out


def connection_json(session: Session, c: Connection, *, holdings: bool) -> dict[str, Any]:
    """Everything about a connection except its credentials (which never leave the sealed columns).

    ``holdings``: whether the caller may see what the employee holds (scope.holdings_visible). Without
    it the answer has the same shape, with no address, and details that name no figure or market.
    """
    return connections_json(session, [c], holdings=holdings)[0]


def connections_json(session: Session, connections: list[Connection], *, holdings: bool) -> list[dict[str, Any]]:
    """:func:`connection_json` of each connection, their coverage, progress and statement imports read in one
    query each (an employee page's five connections: 3 queries instead of 15)."""
    def text(value: str | None) -> str | None:
        return value if holdings else without_addresses(value)

    ids = [c.id for c in connections]
    if not ids:
        return []
    coverages, progresses = _coverages(session, ids, holdings=holdings), _progresses(session, ids)
    imports = _statement_imports(session, ids, holdings=holdings)
    return [{
        "id": c.id, "employee_id": c.employee_id, "kind": c.kind, "venue": c.venue, "label": c.label,
        "status": c.status, "status_reason": text(c.status_reason),
        "address": (c.address or None) if holdings else None,
        "key_fingerprint": c.key_fingerprint or None, "scope_verified": c.scope_verified,
        "scope": {k: v for k, v in (c.scope or {}).items() if k != "evidence"},
        "scope_label": scope_label(c),
        "scope_checked_at": _iso(c.scope_checked_at), "last_success_at": _iso(c.last_success_at),
        "last_attempt_at": _iso(c.last_attempt_at), "last_error_class": c.last_error_class,
        "last_error": text(c.last_error), "consecutive_failures": c.consecutive_failures,
        "created_at": _iso(c.created_at), "coverage": coverages[c.id],
        "progress": progresses[c.id],
        "statement_imports": imports[c.id],
        "accepts_statements": c.kind == "exchange" and c.venue in STATEMENT_VENUES,
    } for c in connections]


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


# -- one account, several connections ---------------------------------------------------------------------
# Re-onboarding stores a new key to the same account as a new connection and supersedes the employee's
# earlier keys to that venue and address (services/onboarding.py). The records the earlier connections read
# stay theirs: the new one does not store them again (sync/writes.py), and holdings as of a day read the
# earlier ones for the days before it (filings/holdings.py).

def _replaced(later: type[Connection], earlier: type[Connection]) -> ColumnElement[bool]:
    """``earlier`` is a connection ``later`` replaced: the same employee's superseded key to the same venue and
    address, stored before it."""
    return and_(earlier.employee_id == later.employee_id, earlier.venue == later.venue,
                earlier.address == later.address, earlier.id < later.id, earlier.status == "superseded")


def account_lineage(session: Session, connection_id: int) -> list[int]:
    """The connection and the earlier connections to the same account it replaced."""
    later = aliased(Connection)
    return [connection_id, *session.execute(select(Connection.id).join(later, later.id == connection_id).where(
        _replaced(later, Connection))).scalars()]


def successors(session: Session, connection_ids: Sequence[int]) -> set[int]:
    """Those of ``connection_ids`` that replaced an earlier connection to the same account."""
    if not connection_ids:
        return set()
    earlier = aliased(Connection)
    return set(session.execute(select(Connection.id).join(earlier, _replaced(Connection, earlier)).where(
        Connection.id.in_(list(connection_ids))).distinct()).scalars())
