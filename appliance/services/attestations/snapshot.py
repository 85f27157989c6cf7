"""What a task shows and what a certification freezes.

A quarterly task shows the employee's synced transactions of the quarter (values in the base currency as
priced when each was stored); a holdings task the holdings of each listed connection at the end of its
``as_of`` day, reconstructed and valued by the holdings report's method (services/filings/holdings.py: one
definition of "holdings as of a day"; each record says its ``basis`` and ``priced_at``). Both
list the connected accounts, the accounts the employee declared and the manual entries they added
(``source: manual``). :func:`freeze` turns that into the JSON stored with a submission, with its SHA-256:
later syncs write new rows elsewhere and never touch it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from appliance.services.context import Appliance
from appliance.services.filings import holdings
from appliance.services.valuation import read as valuation
from appliance.settings import Settings
from appliance.store.models import (
    AttestationCampaign,
    AttestationDeclaredAccount,
    AttestationManualEntry,
    AttestationTask,
    Connection,
    Employee,
    Transaction,
)

NATURE = {"buy": "buy", "sell": "sell", "deposit": "other_acquisition", "transfer_in": "other_acquisition",
          "withdrawal": "other_disposition", "transfer_out": "other_disposition", "fee": "other_disposition"}
HIDDEN_CONNECTIONS = ("superseded", "rejected")


def _n(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def day_end(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


@dataclass(frozen=True)
class View:
    """A task's content as shown to the employee (and frozen on submission)."""

    connections: list[dict[str, Any]]
    records: list[dict[str, Any]]
    declared: list[AttestationDeclaredAccount]
    manual: list[AttestationManualEntry]
    currency: str
    basis: str  # transactions | holdings | code
    method: str = ""  # holdings: how they were reconstructed (filings.holdings.method_text)


def _connections(session: Session, employee_id: int) -> list[Connection]:
    return list(session.execute(select(Connection).where(
        Connection.employee_id == employee_id, Connection.status.not_in(HIDDEN_CONNECTIONS)).order_by(
        Connection.id)).scalars())


def connection_json(c: Connection) -> dict[str, Any]:
    return {"id": c.id, "venue": c.venue, "kind": c.kind, "label": c.label, "address": c.address,
            "status": c.status, "last_success_at": c.last_success_at.isoformat() if c.last_success_at else None}


def _in_period(employee_id: int, start: dt.date, end: dt.date) -> tuple[ColumnElement[bool], ...]:
    """An employee's transactions of the days start..end (UTC), orphans left out: what a period's report lists."""
    return (Connection.employee_id == employee_id, Transaction.orphaned.is_(False),
            Transaction.occurred_at >= dt.datetime.combine(start, dt.time(0), tzinfo=dt.UTC),
            Transaction.occurred_at < day_end(end))


def period_transactions(session: Session, employee_id: int, start: dt.date, end: dt.date
                        ) -> list[tuple[Transaction, Connection]]:
    return [(t, c) for t, c in session.execute(select(Transaction, Connection).join(
        Connection, Connection.id == Transaction.connection_id).where(
        *_in_period(employee_id, start, end)).order_by(Transaction.occurred_at, Transaction.id)).all()]


def period_transaction_ids(session: Session, employee_id: int, start: dt.date, end: dt.date) -> list[int]:
    """The ids of period_transactions, without loading the rows (compared after every sync)."""
    return list(session.execute(select(Transaction.id).join(Connection, Connection.id == Transaction.connection_id)
                                .where(*_in_period(employee_id, start, end)).order_by(Transaction.id)).scalars())


def _transactions(session: Session, settings: Settings, employee_id: int, start: dt.date, end: dt.date,
                  currency: str) -> list[dict[str, Any]]:
    rows = period_transactions(session, employee_id, start, end)
    values = valuation.transaction_values(session, settings, [t for t, _c in rows])
    out = []
    for t, c in rows:
        v = values[t.id]
        out.append({"record": f"tx:{t.id}", "source": "synced", "provenance": t.provenance, "kind": t.kind,
                    "nature": NATURE.get(t.kind, "other"), "date": t.occurred_at.isoformat(), "asset": t.asset,
                    "identifier": t.market or "", "quantity": _n(t.amount), "price": _n(v.price or t.price),
                    "principal": _n(valuation.rounded(v.value, currency)), "currency": currency,
                    "venue": c.venue, "account": c.label or c.address, "connection_id": c.id,
                    "unpriced_reason": v.reason if v.value is None else ""})
    return out


def _holdings(session: Session, app: Appliance, employee_id: int, as_of: dt.date, currency: str
              ) -> tuple[list[dict[str, Any]], str]:
    """The holdings at the end of ``as_of`` by the reports' method (filings.holdings: observed, observed plus
    transactions, or rolled back), valued at that day's price; with the method's text. Every connection of the
    employee is read, a replaced one too: its observations are the account's holdings until it was replaced."""
    employee = session.get(Employee, employee_id)
    assert employee is not None
    report = holdings.employee_holdings_as_of(session, app, employee, as_of)
    out = []
    for h in report.holdings:
        if h.quantity == 0:
            continue
        c, v = h.connection, h.value
        prediction = h.kind == "prediction"
        out.append({"record": (f"position:{c.id}:{h.market_id}:{h.outcome}" if prediction
                               else f"holding:{c.id}:{h.asset}:{h.contract}"),
                    "source": "synced", "provenance": "api" if prediction else "reconstructed",
                    "kind": h.kind, "asset": h.asset,
                    "identifier": f"{h.market_id} {h.outcome}".strip() if prediction else h.contract,
                    "quantity": _n(h.quantity), "price": _n(v.price),
                    "principal": _n(valuation.rounded(v.value, currency)), "currency": currency,
                    "priced_at": v.priced_at.isoformat() if v.priced_at else None, "venue": c.venue,
                    "account": c.label or c.address, "connection_id": c.id, "date": as_of.isoformat(),
                    "unpriced_reason": v.reason if v.value is None else "",
                    "basis": h.basis, "observed_at": h.observed_at.isoformat() if h.observed_at else None,
                    "transactions_applied": h.applied, "price_source": v.source})
    return out, report.method


def declared_of(session: Session, task_id: int) -> list[AttestationDeclaredAccount]:
    return list(session.execute(select(AttestationDeclaredAccount).where(
        AttestationDeclaredAccount.task_id == task_id, AttestationDeclaredAccount.removed_at.is_(None)).order_by(
        AttestationDeclaredAccount.id)).scalars())


def manual_of(session: Session, task_id: int) -> list[AttestationManualEntry]:
    return list(session.execute(select(AttestationManualEntry).where(
        AttestationManualEntry.task_id == task_id, AttestationManualEntry.removed_at.is_(None)).order_by(
        AttestationManualEntry.id)).scalars())


def view(session: Session, app: Appliance, task: AttestationTask, campaign: AttestationCampaign) -> View:
    settings = app.settings
    currency = valuation.currency_of(settings)
    accounts = _connections(session, task.employee_id)
    connections = [connection_json(c) for c in accounts]
    method = ""
    if campaign.kind == "quarterly_transactions":
        assert campaign.period_start is not None and campaign.period_end is not None
        records = _transactions(session, settings, task.employee_id, campaign.period_start, campaign.period_end,
                                currency)
        basis = "transactions"
    elif campaign.kind in ("initial_holdings", "annual_holdings"):
        records, method = _holdings(session, app, task.employee_id,
                                    task.as_of or campaign.as_of or task.due, currency)
        basis = "holdings"
    else:
        records, basis = [], "code"
    return View(connections, records, declared_of(session, task.id), manual_of(session, task.id), currency, basis,
                method)


def declared_json(row: AttestationDeclaredAccount) -> dict[str, Any]:
    return {"id": row.id, "venue": row.venue, "account": row.account, "reason": row.reason,
            "created_at": row.created_at.isoformat()}


def manual_json(row: AttestationManualEntry) -> dict[str, Any]:
    return {"id": row.id, "source": "manual", "kind": row.kind, "asset": row.asset, "identifier": row.identifier,
            "quantity": _n(row.quantity), "price": _n(row.price), "principal": _n(row.principal),
            "currency": row.currency, "venue": row.venue,
            "date": row.occurred_on.isoformat() if row.occurred_on else None, "nature": row.nature,
            "note": row.note}


def freeze(task: AttestationTask, campaign: AttestationCampaign, employee: Employee, content: View, *,
           nothing_to_report: bool, typed_name: str, submitted_at: dt.datetime,
           extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """The submission's JSON and its SHA-256 (over the canonical JSON: sorted keys, no spaces)."""
    as_of = task.as_of or campaign.as_of
    doc: dict[str, Any] = {
        "format": 1, "task_id": task.id, "campaign_id": campaign.id, "kind": campaign.kind, "period": campaign.period,
        "period_start": campaign.period_start.isoformat() if campaign.period_start else None,
        "period_end": campaign.period_end.isoformat() if campaign.period_end else None,
        "as_of": as_of.isoformat() if as_of else None,
        "due": task.due.isoformat(), "base_currency": content.currency, "basis": content.basis,
        "employee": {"id": employee.id, "name": employee.name},
        "accounts": content.connections, "records": content.records,
        "manual": [manual_json(m) for m in content.manual],
        "declared_accounts": [declared_json(d) for d in content.declared],
        "nothing_to_report": nothing_to_report, "typed_name": typed_name, "submitted_at": submitted_at.isoformat(),
        **({"holdings_method": content.method} if content.method else {}),
        **(extra or {}),
    }
    return doc, digest(doc)


def digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()
