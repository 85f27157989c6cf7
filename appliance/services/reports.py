"""Reports compliance officers file and examiners ask for (COMPLIANCE.md): holdings and
transactions per employee and venue, each row carrying its provenance, and the coverage gaps of
the period stated on the report itself — a missing week is visible, never silent. Holdings and transactions
carry their value in the firm's currency (``valuation.currency``), rounded to its minor unit, with the price, its
source and the time it is for; a value that could not be established reads "unpriced", with the reason."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.rbac.actors import Actor
from appliance.services import records
from appliance.services.valuation import read as valuation
from appliance.settings import Settings
from appliance.store.models import Alert, Connection, CoverageInterval, Employee

UNPRICED = "unpriced"
VALUE_COLUMNS = ["currency", "price", "value", "price_source", "price_route", "priced_at", "unpriced_reason"]


def _value_cells(value: valuation.Value, currency: str) -> list[Any]:
    if not value.priced:
        return [currency, value.price, UNPRICED, value.source, value.route, value.priced_at, value.reason]
    return [currency, value.price, valuation.rounded(value.value, currency), value.source, value.route,
            value.priced_at, ""]


@dataclass(frozen=True)
class FirmSummary:
    employees: int
    offboarded: int
    connections: dict[str, int]
    open_gaps: int
    open_alerts: int


def firm_summary(session: Session) -> FirmSummary:
    """Counts only: what a Viewer may see without any personal financial detail."""
    employees = dict(session.execute(select(Employee.status, func.count()).group_by(Employee.status)).all())
    connections = dict(session.execute(select(Connection.status, func.count()).group_by(Connection.status)).all())
    gaps = session.execute(select(func.count()).select_from(CoverageInterval).where(
        CoverageInterval.kind == "gap", CoverageInterval.closed_at.is_(None))).scalar_one()
    alerts = session.execute(select(func.count()).select_from(Alert).where(
        Alert.status.in_(("open", "investigating")))).scalar_one()
    return FirmSummary(int(employees.get("active", 0)), int(employees.get("offboarded", 0)),
                       {str(k): int(v) for k, v in connections.items()}, int(gaps), int(alerts))


def _employees(session: Session) -> dict[int, Employee]:
    return {e.id: e for e in session.execute(select(Employee)).scalars()}


def _gaps(session: Session) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for gap in session.execute(select(CoverageInterval).where(
            CoverageInterval.kind == "gap", CoverageInterval.closed_at.is_(None))).scalars():
        start = gap.start_at.isoformat(timespec="minutes")
        if gap.reason == "unverified_markets":
            text = f"{gap.stream} since {start}: {gap.detail}"
        elif gap.reason == "inconsistent_data":
            text = f"{gap.stream} inconsistent since {start}: {gap.detail}"
        elif gap.reason in ("venue_limitation", "history_limit", "not_read"):
            until = f" until {gap.end_at.isoformat(timespec='minutes')}" if gap.end_at else ""
            text = f"{gap.stream} not readable from {start}{until}: {gap.detail}"
        else:
            text = f"{gap.stream} missing since {start} ({gap.reason})"
        out.setdefault(gap.connection_id, []).append(text)
    return out


def holdings_rows(session: Session, actor: Actor, settings: Settings) -> list[list[Any]]:
    """Every current balance and, for a caller who may export them, every open prediction-market position
    (``kind`` says which; a position's asset is its market's title, with its market id and outcome)."""
    employees = _employees(session)
    gaps = _gaps(session)
    currency = valuation.currency_of(settings)
    rows: list[list[Any]] = [["employee_external_id", "employee", "department", "kind", "venue", "account", "asset",
                              "market_id", "outcome", "quantity", "as_of", "provenance", *VALUE_COLUMNS,
                              "coverage_gaps"]]

    def who(connection: Connection) -> list[Any]:
        employee = employees.get(connection.employee_id)
        return [employee.external_id if employee else "", employee.name if employee else "",
                employee.department if employee else ""]

    balances = records.current_balances(session, actor, permission="balances:export")
    values = valuation.balance_values(session, settings, [b for b, _c in balances])
    for (balance, connection), value in zip(balances, values, strict=True):
        rows.append([*who(connection), "balance", connection.label or connection.venue,
                     connection.address or balance.account, balance.asset, "", "", balance.amount,
                     balance.observed_until, balance.provenance, *_value_cells(value, currency),
                     "; ".join(gaps.get(connection.id, []))])
    if actor.scope_for("predictions:export") is None:
        return rows
    positions = records.current_positions(session, actor, permission="predictions:export")
    for (position, connection), value in zip(positions, valuation.position_values(session, settings, positions),
                                             strict=True):
        rows.append([*who(connection), "prediction", connection.label or connection.venue,
                     connection.address or "", position.market_title or position.market_id, position.market_id,
                     position.outcome, position.size, position.observed_until, "api",
                     *_value_cells(value, currency), "; ".join(gaps.get(connection.id, []))])
    return rows


def transaction_rows(session: Session, actor: Actor, settings: Settings, *, since: dt.datetime | None,
                     until: dt.datetime | None) -> list[list[Any]]:
    """Completed transactions only: a pending, failed or cancelled transfer moved nothing (the API and the
    employee page list them with their status)."""
    employees = _employees(session)
    gaps = _gaps(session)
    currency = valuation.currency_of(settings)
    rows: list[list[Any]] = [["employee_external_id", "employee", "date", "venue", "nature", "instrument",
                              "quantity", "trade_price", "principal_amount", "quote_asset", "fee", "fee_asset",
                              "venue_transaction_id", "provenance", "orphaned", *VALUE_COLUMNS, "coverage_gaps"]]
    batch: list[tuple[Any, Connection]] = []

    def flush() -> None:
        values = valuation.transaction_values(session, settings, [t for t, _c in batch])
        for tx, connection in batch:
            employee = employees.get(connection.employee_id)
            rows.append([employee.external_id if employee else "", employee.name if employee else "",
                         tx.occurred_at, connection.label or connection.venue, tx.kind, tx.market or tx.asset,
                         tx.amount, tx.price, tx.quote_amount, tx.quote_asset, tx.fee_amount, tx.fee_asset,
                         tx.venue_tx_id, tx.provenance, tx.orphaned, *_value_cells(values[tx.id], currency),
                         "; ".join(gaps.get(connection.id, []))])
        batch.clear()

    for tx, connection in records.iter_transactions(session, actor, permission="transactions:export",
                                                    since=since, until=until, completed_only=True):
        batch.append((tx, connection))
        if len(batch) >= 1000:
            flush()
    flush()
    return rows
