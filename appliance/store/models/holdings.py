"""What employees hold and did: balance observations, transactions, prediction positions.

All three are append-only for the sync engine: a sync adds rows and advances validity times,
it never deletes. The one field a later sync changes is a transfer's ``status``: a pending deposit or
withdrawal is updated when the venue reports its outcome (completed, failed or cancelled), once.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Amount, Base, Id, UTCDateTime, utcnow


class BalanceSnapshot(Base):
    """One observed balance of one asset, valid from ``valid_from`` until superseded (``valid_to``).

    A new row is written only when the amount changes; ``observed_until`` moves forward on every
    successful poll ("still true as of").
    """

    __tablename__ = "balance_snapshots"
    __table_args__ = (
        Index("ix_balance_snapshots_current", "connection_id", "asset", "valid_to"),
        # Who holds an asset now (the firm's holdings by asset).
        Index("ix_balance_snapshots_asset", "asset", "valid_to"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="RESTRICT"))
    asset: Mapped[str] = mapped_column(String(64))
    # Sub-account or wallet part the amount belongs to (spot, funding, token contract...).
    account: Mapped[str] = mapped_column(String(100), default="")
    amount: Mapped[Decimal] = mapped_column(Amount)
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    valid_to: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    observed_until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    provenance: Mapped[str] = mapped_column(String(16), default="api")


class Transaction(Base):
    """A trade, deposit, withdrawal, transfer or ledger entry, idempotent on (connection, stream, venue id)."""

    __tablename__ = "transactions"
    __table_args__ = (
        UniqueConstraint("connection_id", "stream", "venue_tx_id"),
        Index("ix_transactions_connection_time", "connection_id", "occurred_at"),
        # The firm's activity per day and its recent large trades (the overview, firm-wide views).
        Index("ix_transactions_occurred", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="RESTRICT"))
    stream: Mapped[str] = mapped_column(String(64))
    venue_tx_id: Mapped[str] = mapped_column(String(200))
    # buy | sell | deposit | withdrawal | transfer_in | transfer_out | fee | other
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    asset: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Amount)
    market: Mapped[str] = mapped_column(String(100), default="")
    quote_asset: Mapped[str | None] = mapped_column(String(64), default=None)
    quote_amount: Mapped[Decimal | None] = mapped_column(Amount, default=None)
    price: Mapped[Decimal | None] = mapped_column(Amount, default=None)
    fee_asset: Mapped[str | None] = mapped_column(String(64), default=None)
    fee_amount: Mapped[Decimal | None] = mapped_column(Amount, default=None)
    # api | chain | csv | manual | statement (imported from a venue's statement export: see statement_import_id)
    provenance: Mapped[str] = mapped_column(String(16), default="api")
    # completed | pending | failed | cancelled (TRANSFER_STATUSES). Only completed rows count in balances,
    # reconciliation and reports; a pending row is updated when the venue reports its outcome.
    status: Mapped[str] = mapped_column(String(16), default="completed", server_default="completed")
    status_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    statement_import_id: Mapped[int | None] = mapped_column(
        ForeignKey("statement_imports.id", ondelete="RESTRICT"), default=None)
    # Chains: the block the row came from; set orphaned when a reorg drops it (never rewritten).
    block_number: Mapped[int | None] = mapped_column(Id, default=None)
    block_hash: Mapped[str | None] = mapped_column(String(80), default=None)
    orphaned: Mapped[bool] = mapped_column(Boolean, default=False)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


TRANSFER_STATUSES = ("completed", "pending", "failed", "cancelled")
# The only transition a sync makes: from pending to an outcome (a venue that reports a final status never
# reports another one for the same record; if it does, the first outcome stays and the sync says so).
FINAL_STATUSES = ("completed", "failed", "cancelled")


class StatementImport(Base):
    """One statement file imported for a connection: what it was, who imported it, what it added.

    The records it added carry ``provenance = "statement"`` and point here; records it held that were
    already stored (synced from the API, or an earlier import) were skipped and counted."""

    __tablename__ = "statement_imports"
    __table_args__ = (Index("ix_statement_imports_connection", "connection_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="RESTRICT"))
    # coinbase_transactions | kraken_ledgers | kraken_trades | binance_trades | binance_transactions ...
    format: Mapped[str] = mapped_column(String(40))
    file_name: Mapped[str] = mapped_column(String(255), default="")
    sha256: Mapped[str] = mapped_column(String(64))
    covered_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    covered_to: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    imported_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PredictionPosition(Base):
    """A prediction-market position observation (market, outcome, size, average price, value)."""

    __tablename__ = "prediction_positions"
    __table_args__ = (Index("ix_prediction_positions_current", "connection_id", "market_id", "outcome", "valid_to"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="RESTRICT"))
    market_id: Mapped[str] = mapped_column(String(200))
    market_title: Mapped[str] = mapped_column(String(500), default="")
    category: Mapped[str] = mapped_column(String(100), default="")
    outcome: Mapped[str] = mapped_column(String(100))
    size: Mapped[Decimal] = mapped_column(Amount)
    avg_price: Mapped[Decimal | None] = mapped_column(Amount, default=None)
    current_value: Mapped[Decimal | None] = mapped_column(Amount, default=None)
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    valid_to: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    observed_until: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
