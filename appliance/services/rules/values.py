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
from collections.abc import Sequence
from decimal import Decimal
from typing import NamedTuple, Protocol

from sqlalchemy.orm import Session

from appliance.settings import Settings


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
        if item.asset.upper() == self.currency:
            return Valuation(abs(item.amount), self.currency, source="amount in the base currency")
        if item.quote_asset and item.quote_asset.upper() == self.currency and item.quote_amount is not None:
            return Valuation(abs(item.quote_amount), self.currency, source="the trade's own quote amount")
        return Valuation(None, self.currency, reason=f"no price of {item.asset} in {self.currency} at the record's "
                         "time")

    def value(self, session: Session, items: Sequence[Priced]) -> list[Valuation]:
        currency = self.currency
        out: list[Valuation] = []
        for item in items:  # the common cases inline: this runs once per trade in a full evaluation
            if item.quote_amount is not None and item.quote_asset == currency:
                out.append(Valuation(abs(item.quote_amount), currency, source="the trade's own quote amount"))
            else:
                out.append(self.one(item))
        return out


def default_valuer(settings: Settings) -> Valuer:
    return QuoteValuer(base_currency(settings))
