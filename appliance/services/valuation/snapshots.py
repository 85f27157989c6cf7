"""The holdings of every employee, valued and recorded after each pricing run (store/models/values.py).

One pass over the open balances and prediction positions, valued at the current prices the run just wrote
(the same ``PriceTable`` the pages use, so a recorded figure and a live one agree when nothing moved), then:

- each employee's value now (``employee_values``) and for today (``employee_value_days``);
- the firm's total for today (``firm_value_days``);
- the firm's holdings per asset now (``firm_asset_values``).

"Today" is the firm's local date (``display.time_zone``): the day's last run stands for it. Writes are upserts
in short transactions of ``WRITE_BATCH`` rows. Nothing here is read by the sync engine or the pricing job.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from appliance.services.context import Appliance
from appliance.services.valuation.book import outcome_key
from appliance.services.valuation.read import PriceTable
from appliance.store.base import utcnow
from appliance.store.models import (
    BalanceSnapshot,
    Connection,
    EmployeeValue,
    EmployeeValueDay,
    FirmAssetValue,
    FirmValueDay,
    PredictionPosition,
)

WRITE_BATCH = 2000
PREDICTIONS = "predictions"


@dataclass
class Holdings:
    """One employee's (or the firm's) holdings valued: priced sums and counts of what was left out."""

    balances: Decimal = Decimal(0)
    positions: Decimal = Decimal(0)
    balances_unpriced: int = 0
    positions_unpriced: int = 0

    @property
    def total(self) -> Decimal:
        return self.balances + self.positions

    def row(self) -> dict[str, Any]:
        return {"balances": self.balances, "positions": self.positions,
                "balances_unpriced": self.balances_unpriced, "positions_unpriced": self.positions_unpriced}


@dataclass
class AssetLine:
    amount: Decimal = Decimal(0)
    value: Decimal = Decimal(0)
    unpriced: int = 0
    reason: str = ""
    holders: set[int] = field(default_factory=set)


@dataclass
class Valued:
    by_employee: dict[int, Holdings]
    by_asset: dict[tuple[str, str], AssetLine]  # (kind, asset)
    firm: Holdings


def value_holdings(session: Session, app: Appliance, *, employee_ids: Iterable[int] | None = None,
                   now: dt.datetime | None = None) -> Valued:
    """Every open balance and prediction position (of ``employee_ids``, or everyone's) valued at current prices."""
    ids = None if employee_ids is None else list(employee_ids)
    balances = (select(Connection.employee_id, BalanceSnapshot.asset, BalanceSnapshot.amount)
                .join(Connection, Connection.id == BalanceSnapshot.connection_id)
                .where(BalanceSnapshot.valid_to.is_(None)))
    positions = (select(Connection.employee_id, Connection.venue, PredictionPosition.market_id,
                        PredictionPosition.outcome, PredictionPosition.size)
                 .join(Connection, Connection.id == PredictionPosition.connection_id)
                 .where(PredictionPosition.valid_to.is_(None)))
    if ids is not None:
        balances = balances.where(Connection.employee_id.in_(ids))
        positions = positions.where(Connection.employee_id.in_(ids))
    held: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for employee_id, asset, quantity in session.execute(balances):
        held[(employee_id, asset)] += quantity
    bets: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for employee_id, venue, market_id, outcome, size in session.execute(positions):
        bets[(employee_id, outcome_key(venue, market_id, outcome))] += size
    table = PriceTable(session, app.settings, {a for _e, a in held} | {k for _e, k in bets}, now=now)
    by_employee: dict[int, Holdings] = defaultdict(Holdings)
    by_asset: dict[tuple[str, str], AssetLine] = defaultdict(AssetLine)
    for (employee_id, asset), quantity in held.items():
        if quantity == 0:
            continue
        value = table.value(asset, quantity)
        person, line = by_employee[employee_id], by_asset[("asset", asset)]
        line.amount += quantity
        line.holders.add(employee_id)
        if value.value is None:
            person.balances_unpriced += 1
            line.unpriced += 1
            line.reason = line.reason or value.reason
        else:
            person.balances += value.value
            line.value += value.value
    for (employee_id, key), size in bets.items():
        if size == 0:
            continue
        value = table.value(key, size)
        person, line = by_employee[employee_id], by_asset[(PREDICTIONS, "")]
        line.amount += size
        line.holders.add(employee_id)
        if value.value is None:
            person.positions_unpriced += 1
            line.unpriced += 1
            line.reason = line.reason or value.reason
        else:
            person.positions += value.value
            line.value += value.value
    firm = Holdings()
    for h in by_employee.values():
        firm.balances += h.balances
        firm.positions += h.positions
        firm.balances_unpriced += h.balances_unpriced
        firm.positions_unpriced += h.positions_unpriced
    return Valued(dict(by_employee), dict(by_asset), firm)


def local_day(app: Appliance, when: dt.datetime) -> dt.date:
    return when.astimezone(zoneinfo.ZoneInfo(app.settings.display.time_zone)).date()


@dataclass(frozen=True)
class Recorded:
    employees: int
    assets: int
    firm: Holdings
    day: dt.date


def record_values(app: Appliance, *, now: dt.datetime | None = None) -> Recorded:
    """Value every employee's holdings and record them (the last step of a pricing run)."""
    now = now or utcnow()
    currency = app.settings.valuation.currency
    with app.store.read() as session:
        valued = value_holdings(session, app, now=now)
        previous = set(session.execute(select(EmployeeValue.employee_id).where(
            EmployeeValue.currency == currency)).scalars())
    today = local_day(app, now)
    people = [{"employee_id": e, "currency": currency, "as_of": now, **h.row()}
              for e, h in sorted(valued.by_employee.items())]
    # An employee who held something at the last run and holds nothing now is worth zero now.
    people += [{"employee_id": e, "currency": currency, "as_of": now, **Holdings().row()}
               for e in sorted(previous - set(valued.by_employee))]
    days = [{**row, "day": today} for row in people]
    for start in range(0, len(people), WRITE_BATCH):
        with app.store.queued_unit_of_work() as session:
            upsert(session, EmployeeValue, people[start:start + WRITE_BATCH], ("employee_id", "currency"))
            upsert(session, EmployeeValueDay, days[start:start + WRITE_BATCH], ("employee_id", "currency", "day"))
    with app.store.queued_unit_of_work() as session:
        upsert(session, FirmValueDay, [{"currency": currency, "day": today, "as_of": now,
                                        "employees": len(valued.by_employee), **valued.firm.row()}],
               ("currency", "day"))
        session.execute(delete(FirmAssetValue).where(FirmAssetValue.currency == currency))
        session.add_all(FirmAssetValue(currency=currency, kind=kind, asset=asset, amount=line.amount,
                                       value=line.value, unpriced=line.unpriced, reason=line.reason[:500],
                                       holders=len(line.holders), as_of=now)
                        for (kind, asset), line in sorted(valued.by_asset.items()))
    return Recorded(len(people), len(valued.by_asset), valued.firm, today)


def history(session: Session, employee_id: int, currency: str, days: int = 90) -> list[EmployeeValueDay]:
    """An employee's recorded value per day, the last ``days`` days, oldest first."""
    since = utcnow().date() - dt.timedelta(days=days)
    return list(session.execute(select(EmployeeValueDay).where(
        EmployeeValueDay.employee_id == employee_id, EmployeeValueDay.currency == currency,
        EmployeeValueDay.day >= since).order_by(EmployeeValueDay.day)).scalars())


def upsert(session: Session, model: type[Any], rows: Sequence[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE on either database."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(model)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(model)
    updated = {name: getattr(stmt.excluded, name) for name in rows[0] if name not in keys}
    session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=updated), list(rows))
