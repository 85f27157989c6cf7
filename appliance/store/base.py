"""Declarative base, constraint naming convention and the column types every model uses.

- ``UTCDateTime``: timezone-aware UTC in Python; TIMESTAMPTZ on PostgreSQL, naive UTC text on SQLite.
  Naive datetimes are refused at bind time so local time can never slip in.
- ``Amount``: exact decimals. Unbounded NUMERIC on PostgreSQL; canonical text on SQLite, whose NUMERIC
  affinity would otherwise round through a double. Floats are refused at bind time.
- ``Id``: 64-bit integer keys that are still ROWID aliases on SQLite.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Integer, MetaData, Numeric, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused: the store keeps timezone-aware UTC only")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Any:
        """The processing of process_bind_param and the dialect's own, with the last value remembered: bulk
        inserts (the alerts of a full rules evaluation) bind the same instant ("now") on every row, and
        converting it costs more than the rest of the row."""
        processor = super().bind_processor(dialect)
        if processor is None:
            return None
        last: list[tuple[Any, Any]] = [(None, None)]  # (value, processed): one tuple, swapped whole

        def process(value: Any) -> Any:
            seen, processed = last[0]
            if value is not None and value is seen:
                return processed
            processed = processor(value)
            last[0] = (value, processed)
            return processed

        return process

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def decimal_to_text(value: Decimal) -> str:
    """Plain positional notation, no exponent, no trailing zeros beyond what is significant."""
    if not value.is_finite():
        raise ValueError("amounts must be finite")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text


class Amount(TypeDecorator[Decimal]):
    impl = Numeric(asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(100))
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
            raise TypeError(f"amounts must be Decimal, got {type(value).__name__}")
        value = Decimal(value)
        if dialect.name == "sqlite":
            return decimal_to_text(value)
        if not value.is_finite():
            raise ValueError("amounts must be finite")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)) if not isinstance(value, Decimal) else value
