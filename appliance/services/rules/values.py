"""The value of a record in the base currency, as the threshold rule needs it: the narrow interface
the rules read values through, and the valuation this module can do on its own.

``Valuer`` is all the threshold rule knows: a value in the base currency *at the record's time*, or
None with the reason it could not be established (never 0, never a guess). ``QuoteValuer`` answers
what needs no price feed: a trade whose quote currency is the base currency is worth its quote
amount at that moment, an amount of the base currency is worth itself. Everything else is "could not
be valued" with the reason; the appliance's price service plugs in behind the same interface.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from sqlalchemy.orm import Session

from appliance.settings import Settings
from appliance.store.params import dialect_of, one_of

LOOKUP_BATCH = 2000  # ids per statement (both databases' parameter limits are far above)


class Valuation(NamedTuple):
    value: Decimal | None
    currency: str
    reason: str = ""  # why there is no value
    source: str = ""  # where the value came from (shown as evidence)


class Priced(NamedTuple):
    """What a valuer is asked about: an amount of an asset at an instant, with the trade's quote leg when
    the record is a trade (its own price at that moment)."""

    asset: str
    amount: Decimal
    at: dt.datetime
    quote_asset: str | None = None
    quote_amount: Decimal | None = None
    transaction_id: int | None = None  # a transaction: the value the pricing job stored for its own time


class Valuer(Protocol):
    currency: str

    def value(self, session: Session, items: Sequence[Priced]) -> list[Valuation]:
        """One valuation per item, in order."""


def base_currency(settings: Settings) -> str:
    """The firm's base currency (``valuation.currency`` where the appliance has it; USD otherwise)."""
    valuation = getattr(settings, "valuation", None)
    currency = getattr(valuation, "currency", None)
    return str(currency).upper() if currency else "USD"


class QuoteValuer:
    """Values that need no price: the trade's own quote leg in the base currency, or the base currency itself."""

    def __init__(self, currency: str) -> None:
        self.currency = currency.upper()

    def one(self, item: Priced) -> Valuation:
        return self.known(item) or Valuation(None, self.currency, reason=f"no price of {item.asset} in "
                                             f"{self.currency} at the record's time")

    def known(self, item: Priced) -> Valuation | None:
        """The value when it needs no price, else None."""
        if item.asset.upper() == self.currency:
            return Valuation(abs(item.amount), self.currency, source="amount in the base currency")
        if item.quote_asset and item.quote_asset.upper() == self.currency and item.quote_amount is not None:
            return Valuation(abs(item.quote_amount), self.currency, source="the trade's own quote amount")
        return None

    def value(self, session: Session, items: Sequence[Priced]) -> list[Valuation]:
        currency = self.currency
        out: list[Valuation] = []
        for item in items:  # the common cases inline: this runs once per trade in a full evaluation
            if item.quote_amount is not None and item.quote_asset == currency:
                out.append(Valuation(abs(item.quote_amount), currency, source="the trade's own quote amount"))
            else:
                out.append(self.one(item))
        return out


class StoredValuer:
    """The appliance's valuations (services/valuation): a transaction is worth what the pricing job stored
    for it at its own time (the candle that contains it); without a stored value, a trade quoted in the base
    currency is worth its own quote amount; an amount (a holding, a position's cost in its quote currency)
    is worth it at the current price. Anything else is "could not be valued" with the valuation's reason
    (e.g. not priced yet: the threshold looks at it again when the pricing job has run)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.currency = base_currency(settings)
        self.quotes = QuoteValuer(self.currency)

    def value(self, session: Session, items: Sequence[Priced]) -> list[Valuation]:
        from appliance.services.valuation import read

        currency = self.currency
        stored = self._stored(session, [i.transaction_id for i in items if i.transaction_id is not None])
        amounts = [i.asset for i in items if i.transaction_id is None and i.asset.upper() != currency]
        table = read.PriceTable(session, self.settings, amounts) if amounts else None
        out: list[Valuation] = []
        for item in items:
            if item.transaction_id is not None:
                found = stored.get(item.transaction_id)
                if found is not None and found[0] is not None:
                    out.append(Valuation(abs(found[0]), currency, source=f"{found[1]} at the trade's time".strip()))
                    continue
                quoted = self.quotes.known(item)
                if quoted is not None:
                    out.append(quoted)
                    continue
                if found is not None:
                    reason = found[2] or "no price"
                else:
                    reason = read.NOT_YET if self.settings.valuation.enabled else read.DISABLED
                out.append(Valuation(None, currency, reason=reason[:300]))
                continue
            if item.asset.upper() == currency or table is None:
                out.append(self.quotes.one(item))
                continue
            value = table.value(item.asset, abs(item.amount))
            out.append(Valuation(value.value, currency, reason=value.reason[:300], source=value.source)
                       if value.value is not None else Valuation(None, currency, reason=value.reason[:300]))
        return out

    def _stored(self, session: Session, ids: Sequence[int]) -> dict[int, tuple[Decimal | None, str, str]]:
        """transaction id -> (value, source, reason) the pricing job stored in the base currency: plain rows
        (a full evaluation asks about every trade and transfer)."""
        out: dict[int, tuple[Decimal | None, str, str]] = {}
        connection = session.connection()
        currency = self.settings.valuation.currency
        for start in range(0, len(ids), LOOKUP_BATCH):
            chunk = list(ids[start:start + LOOKUP_BATCH])
            for tx_id, value, source, reason in connection.execute(_stored_statement(dialect_of(session)),
                                                                   {"currency": currency, "ids": chunk}):
                out[tx_id] = (value, source or "", reason or "")
        return out


@functools.cache
def _stored_statement(dialect: str) -> Any:
    """Built once: it runs after every sync that stored a trade or a transfer."""
    from sqlalchemy import bindparam, select

    from appliance.store.models import TransactionValue

    return select(TransactionValue.transaction_id, TransactionValue.value, TransactionValue.source,
                  TransactionValue.reason).where(TransactionValue.currency == bindparam("currency"),
                                                 one_of(TransactionValue.transaction_id, "ids", dialect))


def default_valuer(settings: Settings) -> Valuer:
    if getattr(settings, "valuation", None) is not None:
        return StoredValuer(settings)
    return QuoteValuer(base_currency(settings))
