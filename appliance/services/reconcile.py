"""Reconciliation: a wallet's reported balance against the net of its recorded transfers.

A chain provider that answers inconsistently (a balance that does not match the transfers, a block
it skipped) must not be papered over: the difference opens a coverage gap with reason
``inconsistent_data`` and a warning alert, and both stay until a later sync agrees again.

Only completed transfers count: a pending, failed or cancelled one moved nothing (yet).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.services.alerts import raise_alert
from appliance.store.base import utcnow
from appliance.store.models import Connection, CoverageInterval, Transaction
from appliance.venues.base import Balance, WalletAdapter

INBOUND = ("transfer_in", "deposit")
OUTBOUND = ("transfer_out", "withdrawal")
REASON = "inconsistent_data"


def mismatches(session: Session, connection_id: int, adapter: WalletAdapter, balances: list[Balance]
               ) -> list[dict[str, Any]]:
    held: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for balance in balances:
        held[(balance.asset, balance.account)] += balance.amount
    net: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (asset, market, kind, fee_asset), (amount, fee_amount) in _sums(session, connection_id).items():
        key = (asset, market or "")
        if kind in INBOUND:
            net[key] += Decimal(amount or 0)
        elif kind in OUTBOUND:
            net[key] -= Decimal(amount or 0)
        if fee_amount and fee_asset == asset:
            net[key] -= Decimal(fee_amount)
    out = []
    for key in sorted(set(held) | set(net)):
        if adapter.reconcilable(*key) and held.get(key, Decimal(0)) != net.get(key, Decimal(0)):
            out.append({"asset": key[0], "account": key[1], "balance": _plain(held.get(key, Decimal(0))),
                        "net_of_transfers": _plain(net.get(key, Decimal(0)))})
    return out


_GROUP = (Transaction.asset, Transaction.market, Transaction.kind, Transaction.fee_asset)
Group = tuple[str, str | None, str, str | None]  # asset, market (token contract), kind, fee asset


def _sums(session: Session, connection_id: int) -> dict[Group, tuple[Decimal, Decimal]]:
    """Amount and fee totals per (asset, contract, kind, fee asset), exact, of completed transfers only.

    PostgreSQL stores amounts as NUMERIC and sums them exactly: one row per group, however long the
    history. SQLite stores them as decimal text (Amount), and its SUM() turns text into binary floats
    (0.06250109000000001): a correct wallet would fail to reconcile, raise an alert and flag an
    innocent employee. There the rows are added up here, in Decimal.
    """
    where = (Transaction.connection_id == connection_id, Transaction.orphaned.is_(False),
             Transaction.status == "completed")
    out: dict[Group, tuple[Decimal, Decimal]] = {}
    if session.get_bind().dialect.name == "postgresql":
        summed = select(*_GROUP, func.sum(Transaction.amount), func.sum(Transaction.fee_amount)).where(
            *where).group_by(*_GROUP)
        for asset, market, kind, fee_asset, amount, fee_amount in session.execute(summed):
            out[(asset, market, kind, fee_asset)] = (amount or Decimal(0), fee_amount or Decimal(0))
        return out
    rows = session.execute(select(*_GROUP, Transaction.amount, Transaction.fee_amount).where(*where)
                           .execution_options(yield_per=5000))
    for asset, market, kind, fee_asset, amount, fee_amount in rows:
        group = (asset, market, kind, fee_asset)
        total, fees = out.get(group, (Decimal(0), Decimal(0)))
        out[group] = (total + (amount or 0), fees + (fee_amount or 0))
    return out


def _plain(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


# Gaps that more data does not fill: an inconsistency closes when a reconciliation agrees again; an
# unverified market list stays as long as the venue only answers market by market; a venue limitation (a
# permission the key lacks, a sub-account the venue serves no records to) closes when the stream reads again;
# history the API does not reach (or records it serves that are not read yet) closes only when a statement
# import covers it.
STANDING = (REASON, "unverified_markets", "venue_limitation", "history_limit", "not_read")


def closes(gap: CoverageInterval) -> bool:
    """Whether a page or a successful poll may close this gap (one of the STANDING kinds: never)."""
    return gap.reason not in STANDING


def record(session: Session, connection: Connection, stream: str, found: list[dict[str, Any]]) -> None:
    """Open (or keep) the inconsistency gap and alert; close the gap once balances agree again."""
    open_gap = session.execute(select(CoverageInterval).where(
        CoverageInterval.connection_id == connection.id, CoverageInterval.stream == stream,
        CoverageInterval.kind == "gap", CoverageInterval.reason == REASON,
        CoverageInterval.closed_at.is_(None))).scalars().first()
    now = utcnow()
    if not found:
        if open_gap is not None:
            open_gap.end_at = now
            open_gap.closed_at = now
        return
    text = "; ".join(f"{m['asset']}{' ' + m['account'] if m['account'] else ''}: balance {m['balance']} "
                     f"but transfers net {m['net_of_transfers']}" for m in found)
    if open_gap is not None:
        open_gap.detail = text[:4000]
        return
    session.add(CoverageInterval(connection_id=connection.id, stream=stream, kind="gap", start_at=now,
                                 reason=REASON, detail=text[:4000]))
    raise_alert(session, kind=REASON, severity="warning", employee_id=connection.employee_id,
                connection_id=connection.id, title=f"{connection.label or connection.venue}: the provider's balance "
                "does not match the recorded transfers", detail={"mismatches": found})
    session.flush()
