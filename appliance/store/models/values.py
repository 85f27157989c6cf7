"""What the firm's employees hold, valued: recorded by the pricing job after each run, read by the dashboard.

Valuing every holding of every employee takes seconds at 10,000 employees (docs/PERFORMANCE.md), too long for a
page, so the pricing job records the result once per run and pages read it:

- ``EmployeeValue``: each employee's holdings now — balances and prediction positions apart, so a page shows
  only what the reader's scope covers — with how many holdings were left out for want of a price. The
  employees list sorts on it.
- ``EmployeeValueDay``: the same figure per day (the firm's local date), the last run of the day standing for
  it: the employee page's value-over-time chart. History starts when the appliance first valued the holdings.
- ``FirmValueDay``: the firm's total per day (the overview's chart).
- ``FirmAssetValue``: the firm's holdings per asset now (balances), and all prediction positions as one line
  (``kind`` ``predictions``, empty ``asset``), with the number of employees holding each.

Derived data: a later run rewrites it; nothing here is a record of its own.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Amount, Base, UTCDateTime, utcnow
from appliance.store.models.prices import PRICE_KEY_LENGTH


class EmployeeValue(Base):
    __tablename__ = "employee_values"

    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(64), primary_key=True)
    balances: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    positions: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    balances_unpriced: Mapped[int] = mapped_column(Integer, default=0)
    positions_unpriced: Mapped[int] = mapped_column(Integer, default=0)
    as_of: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class EmployeeValueDay(Base):
    __tablename__ = "employee_value_days"

    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    balances: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    positions: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    balances_unpriced: Mapped[int] = mapped_column(Integer, default=0)
    positions_unpriced: Mapped[int] = mapped_column(Integer, default=0)
    as_of: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class FirmValueDay(Base):
    __tablename__ = "firm_value_days"

    currency: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    balances: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    positions: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    balances_unpriced: Mapped[int] = mapped_column(Integer, default=0)
    positions_unpriced: Mapped[int] = mapped_column(Integer, default=0)
    employees: Mapped[int] = mapped_column(Integer, default=0)
    as_of: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class FirmAssetValue(Base):
    __tablename__ = "firm_asset_values"
    currency: Mapped[str] = mapped_column(String(64), primary_key=True)
    # asset | predictions
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    asset: Mapped[str] = mapped_column(String(PRICE_KEY_LENGTH), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    value: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    # Holdings of this asset left out of ``value`` for want of a price, and why (the first reason met).
    unpriced: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(String(500), default="")
    holders: Mapped[int] = mapped_column(Integer, default=0)
    as_of: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
