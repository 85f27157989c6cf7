"""Prices and the values computed from them.

- ``PriceObservation``: one price of one pair at one time from one source — a venue's ticker or
  candle, a prediction market's own price, or a row of `vigatra prices import`. A cache with a
  retention setting: observations are deleted ``valuation.retention_days`` after they were stored.
- ``PriceCandleDay``: a (source, pair, timeframe, UTC day) whose candles were fetched, complete or not,
  so a day is asked of a venue once (a venue that has nothing for that day is not asked again either).
- ``CurrentPrice``: an asset's current price in a base currency, resolved by the pricing job (direct,
  or crossed through a bridge asset: the route says which), or why it could not be.
- ``TransactionValue``: a transaction's value in a base currency at its own time, or why it has none.

Values are derived data: a balance's value is its amount times the current price, read when shown.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Amount, Base, Id, UTCDateTime, utcnow

# An asset code (BTC), or a prediction outcome's key (kalshi:<ticker>:yes, polymarket:<condition>:<outcome>).
PRICE_KEY_LENGTH = 340


class PriceObservation(Base):
    __tablename__ = "price_observations"
    __table_args__ = (
        UniqueConstraint("kind", "source", "asset", "currency", "timeframe", "at"),
        Index("ix_price_observations_pair", "asset", "currency", "at"),
        Index("ix_price_observations_fetched", "fetched_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # ticker | candle | market (a prediction market's own price) | import
    kind: Mapped[str] = mapped_column(String(16))
    # The venue id, or ``import:<the source named in the file>``.
    source: Mapped[str] = mapped_column(String(100))
    asset: Mapped[str] = mapped_column(String(PRICE_KEY_LENGTH))
    currency: Mapped[str] = mapped_column(String(64))
    # Candles: 1m, 1h...; empty for the other kinds.
    timeframe: Mapped[str] = mapped_column(String(8), default="")
    # The time the price is for: a ticker's time, a candle's open time, an imported row's time.
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    price: Mapped[Decimal] = mapped_column(Amount)
    fetched_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PriceCandleDay(Base):
    __tablename__ = "price_candle_days"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    asset: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str] = mapped_column(String(64), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(8), primary_key=True)
    day: Mapped[dt.datetime] = mapped_column(UTCDateTime, primary_key=True)  # midnight UTC
    candles: Mapped[int] = mapped_column(Integer, default=0)
    # The day had ended when it was fetched: nothing more will come (else it is asked again when needed).
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    fetched_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CurrentPrice(Base):
    __tablename__ = "current_prices"

    asset: Mapped[str] = mapped_column(String(PRICE_KEY_LENGTH), primary_key=True)
    currency: Mapped[str] = mapped_column(String(64), primary_key=True)
    price: Mapped[Decimal | None] = mapped_column(Amount, default=None)
    source: Mapped[str] = mapped_column(String(200), default="")
    route: Mapped[str] = mapped_column(String(500), default="")
    priced_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # Why there is no price (empty when there is one).
    reason: Mapped[str] = mapped_column(String(500), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class TransactionValue(Base):
    __tablename__ = "transaction_values"
    __table_args__ = (Index("ix_transaction_values_retry", "currency", "retry_at"),)

    transaction_id: Mapped[int] = mapped_column(ForeignKey("transactions.id", ondelete="CASCADE"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Decimal | None] = mapped_column(Amount, default=None)
    price: Mapped[Decimal | None] = mapped_column(Amount, default=None)
    source: Mapped[str] = mapped_column(String(200), default="")
    route: Mapped[str] = mapped_column(String(500), default="")
    priced_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    reason: Mapped[str] = mapped_column(String(500), default="")
    # Unpriced: when to try again (None once priced).
    retry_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
