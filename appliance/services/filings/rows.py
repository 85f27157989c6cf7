"""The rule's rows (SEC Rule 204A-1 / 17j-1, COMPLIANCE.md): each transaction of a period and each holding at
a date, per access person, in the fields the rule names; the access-person roster; and the coverage gaps a
report states about itself (accounts red or not covering the period, accounts declared but not connected).

A report row carries the record's provenance (api, chain, csv, statement, manual), so synced and manual data
are told apart; ``price`` is the valuation's price in the base currency (issue 18), ``trade_price`` the
trade's own price in its quote currency."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.rbac.actors import Actor
from appliance.services import records
from appliance.services.employees import RED_STATUSES
from appliance.services.filings import submissions
from appliance.services.filings.holdings import HoldingsReport
from appliance.services.filings.periods import Period
from appliance.services.scope import flagged_employee_ids_query, visible_scope
from appliance.services.valuation import read as valuation
from appliance.settings import Settings
from appliance.store.models import BalanceSnapshot, Connection, CoverageInterval, Employee

UNPRICED = "unpriced"
ACQUIRE = ("buy", "deposit", "transfer_in", "reward", "settlement")
DISPOSE = ("sell", "withdrawal", "transfer_out", "fee")

TRANSACTION_COLUMNS = [
    "employee_external_id", "employee", "access_person", "date", "nature", "kind", "asset", "asset_type",
    "chain_or_contract", "market_id", "quantity", "price", "principal_amount", "currency", "trade_price",
    "trade_currency", "fee", "fee_asset", "venue", "account", "venue_transaction_id", "provenance", "manual",
    "report_submitted_at", "price_source", "unpriced_reason", "coverage_gaps"]
HOLDING_COLUMNS = [
    "employee_external_id", "employee", "access_person", "as_of", "kind", "asset", "asset_type",
    "chain_or_contract", "market_id", "outcome", "quantity", "price", "principal_amount", "currency", "venue",
    "account", "basis", "observed_at", "transactions_applied", "price_source", "unpriced_reason", "report_submitted_at",
    "coverage_gaps"]
ROSTER_COLUMNS = ["employee_external_id", "employee", "email", "department", "status", "access_person_since",
                  "offboarded_at", "accounts_connected", "accounts_red", "venues"]


def nature(kind: str, amount: Any) -> str:
    """The rule's "nature of the transaction": buy, sell, other acquisition or other disposition."""
    if kind in ("buy", "sell"):
        return kind
    if kind in ACQUIRE:
        return "other acquisition"
    if kind in DISPOSE:
        return "other disposition"
    return "other disposition" if amount is not None and amount < 0 else "other acquisition"


def asset_type(connection: Connection) -> str:
    return {"prediction": "prediction market", "wallet": "token"}.get(connection.kind, "crypto asset")


def account_of(connection: Connection) -> str:
    return connection.address or connection.label or connection.venue


def _person(employee: Employee | None) -> list[Any]:
    if employee is None:
        return ["", "", False]
    return [employee.external_id or "", employee.name, bool(employee.access_person)]


@dataclass(frozen=True)
class Gap:
    employee_id: int | None
    connection_id: int | None
    text: str


def coverage_gaps(session: Session, connections: list[Connection], since: dt.datetime | None, until: dt.datetime
                  ) -> list[Gap]:
    """What the report cannot see for the period: red accounts, accounts first read after the period began,
    coverage gaps overlapping it. (Accounts declared but not connected come from the certifications.)"""
    ids = [c.id for c in connections]
    out: list[Gap] = []
    if not ids:
        return out
    firsts = dict(session.execute(select(BalanceSnapshot.connection_id, func.min(BalanceSnapshot.valid_from)).where(
        BalanceSnapshot.connection_id.in_(ids)).group_by(BalanceSnapshot.connection_id)).all())
    stmt = select(CoverageInterval).where(CoverageInterval.connection_id.in_(ids), CoverageInterval.kind == "gap",
                                          CoverageInterval.start_at < until)
    if since is not None:
        stmt = stmt.where((CoverageInterval.end_at.is_(None)) | (CoverageInterval.end_at > since))
    gaps: dict[int, list[CoverageInterval]] = defaultdict(list)
    for gap in session.execute(stmt.order_by(CoverageInterval.start_at)).scalars():
        gaps[gap.connection_id].append(gap)
    for c in connections:
        name = f"{c.label or c.venue} ({c.kind})"
        if c.status in RED_STATUSES:
            out.append(Gap(c.employee_id, c.id, f"{name} is {c.status.replace('_', ' ')}: "
                                                f"{(c.status_reason or c.last_error or '')[:200]}".rstrip(": ")))
        first = firsts.get(c.id)
        if first is None:
            out.append(Gap(c.employee_id, c.id, f"{name} was never read successfully"))
        elif since is not None and first > since:
            out.append(Gap(c.employee_id, c.id, f"{name} first read {first.date().isoformat()}: earlier records "
                                                f"come from the venue's history only"))
        for gap in gaps.get(c.id, []):
            end = f" until {gap.end_at.date().isoformat()}" if gap.end_at else ""
            out.append(Gap(c.employee_id, c.id, f"{name} {gap.stream}: gap from {gap.start_at.date().isoformat()}"
                                                f"{end} ({gap.reason}){': ' + gap.detail[:200] if gap.detail else ''}"))
    return out


def with_declared(session: Session, gaps: list[Gap], employee_ids: set[int] | None) -> list[Gap]:
    """The report's gaps plus the accounts employees declared but did not connect."""
    from appliance.services.filings import submissions

    declared = submissions.declared_accounts(session, employee_ids)
    return gaps + [Gap(employee_id, None, text) for employee_id, texts in sorted(declared.items()) for text in texts]


class GapText:
    """A row's coverage-gap cell: its connection's gaps and its employee's undeclared-connection notes."""

    def __init__(self, gaps: list[Gap]) -> None:
        self.by_connection: dict[int, list[str]] = defaultdict(list)
        self.by_employee: dict[int, list[str]] = defaultdict(list)
        for gap in gaps:
            if gap.connection_id is not None:
                self.by_connection[gap.connection_id].append(gap.text)
            elif gap.employee_id is not None:
                self.by_employee[gap.employee_id].append(gap.text)

    def __call__(self, connection_id: int | None, employee_id: int | None) -> str:
        texts = list(self.by_connection.get(connection_id, [])) if connection_id is not None else []
        texts += self.by_employee.get(employee_id, []) if employee_id is not None else []
        return "; ".join(texts)


def scope_ids(session: Session, actor: Actor, permission: str) -> set[int] | None:
    if visible_scope(actor, permission) == "all":
        return None
    return {int(i) for i in session.execute(flagged_employee_ids_query()).scalars()}


def _employees(session: Session) -> dict[int, Employee]:
    return {e.id: e for e in session.execute(select(Employee)).scalars()}


@dataclass(frozen=True)
class TransactionReport:
    period: Period
    currency: str
    header: list[str]
    rows: list[list[Any]]
    gaps: list[Gap]


def transaction_report(session: Session, actor: Actor, settings: Settings, period: Period) -> TransactionReport:
    """Every completed transaction of the period the actor may export, in the rule's fields, plus the manual
    entries employees certified for it (marked manual)."""
    employees = _employees(session)
    currency = valuation.currency_of(settings)
    stmt = select(Connection)
    if visible_scope(actor, "transactions:export") == "flagged":
        stmt = stmt.where(Connection.employee_id.in_(flagged_employee_ids_query()))
    connections = list(session.execute(stmt.order_by(Connection.id)).scalars())
    gaps = with_declared(session, coverage_gaps(session, connections, period.since, period.until),
                         scope_ids(session, actor, "transactions:export"))
    gap_text = GapText(gaps)
    submitted = submissions.submitted_at(session, "quarterly_transactions", period, None)
    rows: list[list[Any]] = []
    batch: list[tuple[Any, Connection]] = []

    def flush() -> None:
        values = valuation.transaction_values(session, settings, [t for t, _c in batch])
        for tx, c in batch:
            employee = employees.get(c.employee_id)
            value = values[tx.id]
            wallet = c.kind == "wallet"
            rows.append([
                *_person(employee), tx.occurred_at, nature(tx.kind, tx.amount), tx.kind, tx.asset, asset_type(c),
                (f"{c.venue}:{tx.market}" if wallet and tx.market else (c.venue if wallet else "")),
                tx.market if c.kind == "prediction" else "", tx.amount, value.price,
                valuation.rounded(value.value, currency) if value.priced else UNPRICED, currency, tx.price,
                tx.quote_asset, tx.fee_amount, tx.fee_asset, c.label or c.venue, account_of(c), tx.venue_tx_id,
                tx.provenance, tx.provenance == "manual", submitted.get(c.employee_id), value.source,
                "" if value.priced else value.reason, gap_text(c.id, c.employee_id)])
        batch.clear()

    for tx, connection in records.iter_transactions(session, actor, permission="transactions:export",
                                                    since=period.since, until=period.until, completed_only=True):
        batch.append((tx, connection))
        if len(batch) >= 1000:
            flush()
    flush()
    rows.extend(submissions.manual_transaction_rows(session, actor, period, employees, currency, submitted))
    rows.sort(key=lambda r: (str(r[1]), str(r[0]), r[3]))
    return TransactionReport(period, currency, TRANSACTION_COLUMNS, rows, gaps)


def holding_rows(session: Session, actor: Actor, report: HoldingsReport) -> tuple[list[list[Any]], list[Gap]]:
    gaps = with_declared(session, coverage_gaps(session, report.connections, None, report.at),
                         scope_ids(session, actor, "balances:export"))
    gap_text = GapText(gaps)
    submitted = submissions.submitted_at(session, "holdings", None, report.day)
    rows: list[list[Any]] = []
    for h in report.holdings:
        c = h.connection
        wallet = c.kind == "wallet"
        rows.append([
            *_person(h.employee), report.day, h.kind, h.asset,
            "prediction market" if h.kind == "prediction" else asset_type(c),
            f"{c.venue}:{h.contract}" if wallet and h.contract else (c.venue if wallet else ""), h.market_id,
            h.outcome, h.quantity, h.value.price,
            valuation.rounded(h.value.value, report.currency) if h.value.priced else UNPRICED, report.currency,
            c.label or c.venue, account_of(c), h.basis, h.observed_at, h.applied, h.value.source,
            "" if h.value.priced else h.value.reason, submitted.get(c.employee_id), gap_text(c.id, c.employee_id)])
    rows.extend(submissions.manual_holding_rows(session, actor, report.day, _employees(session), report.currency,
                                                submitted))
    return rows, gaps


def roster_rows(session: Session, *, include_former: bool = True) -> list[list[Any]]:
    """The access persons (Rule 204A-1's "access persons"), with the accounts the appliance reads for each."""
    stmt = select(Employee).where(Employee.access_person.is_(True)).order_by(Employee.name, Employee.id)
    if not include_former:
        stmt = stmt.where(Employee.status == "active")
    people = list(session.execute(stmt).scalars())
    accounts: dict[int, list[Connection]] = defaultdict(list)
    if people:
        for c in session.execute(select(Connection).where(
                Connection.employee_id.in_([p.id for p in people])).order_by(Connection.id)).scalars():
            accounts[c.employee_id].append(c)
    rows: list[list[Any]] = []
    for p in people:
        mine = [c for c in accounts[p.id] if c.status != "offboarded"]
        rows.append([p.external_id or "", p.name, p.email, p.department, p.status, p.access_person_since,
                     p.offboarded_at, len(mine), sum(1 for c in mine if c.status in RED_STATUSES),
                     ", ".join(sorted({c.label or c.venue for c in mine}))])
    return rows
