"""How a price is assembled: the first source (in the configured order) that prices the pair directly, else a
cross through a bridge asset, with every leg recorded — or the reason no price exists.

Pure logic over a ``LegFinder``: it knows nothing of venues, databases or time. A finder answers for one
source and one direction-free pair: a ``Leg`` (the source prices it, inverted if it lists quote/base), ``None``
(the source does not list the pair), or raises ``SourceFailed`` (the source lists it but could not say: down,
no candle for that time, an import too old...). Failures become the reason when nothing else prices the pair.

Order of preference: a direct pair at any source beats a cross; among direct pairs, the configured order of
sources; among crosses, the configured order of bridges, then the shorter route.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

IDENTITY = "identity"


class SourceFailed(Exception):
    """The source lists the pair but gave no usable price; the message says why (shown to users)."""

    def __init__(self, source: str, why: str, *, transient: bool = False, retry_at: dt.datetime | None = None) -> None:
        super().__init__(f"{source}: {why}")
        self.source = source
        self.why = why
        self.transient = transient  # the source may answer later (down, rate limited)
        self.retry_at = retry_at  # the price will exist then (a candle still forming)


@dataclass(frozen=True)
class Leg:
    """``base`` priced in ``quote`` by ``source``; ``inverted`` when the source quotes quote/base."""

    base: str
    quote: str
    price: Decimal
    source: str
    at: dt.datetime
    basis: str  # ticker | candle 1h | market (a prediction market's own price) | empty (imported, identity)
    inverted: bool = False

    def text(self) -> str:
        if self.source == IDENTITY:
            return f"{self.base} = {self.quote}"
        pair = f"{self.quote}/{self.base}" if self.inverted else f"{self.base}/{self.quote}"
        shown = f"1/({pair})" if self.inverted else pair
        return f"{shown} {self.source} {self.basis}".strip()


@dataclass(frozen=True)
class Priced:
    """A price of ``asset`` in ``currency`` (the product of its legs), or why there is none."""

    asset: str
    currency: str
    price: Decimal | None
    legs: tuple[Leg, ...] = ()
    reason: str = ""
    transient: bool = False
    retry_at: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        return self.price is not None

    @property
    def source(self) -> str:
        return "+".join(dict.fromkeys(leg.source for leg in self.legs)) if self.legs else ""

    @property
    def route(self) -> str:
        return " x ".join(leg.text() for leg in self.legs)

    @property
    def at(self) -> dt.datetime | None:
        """The time the price is for: the oldest of its legs (None for an asset priced in itself)."""
        return min((leg.at for leg in self.legs if leg.source != IDENTITY), default=None)

    @property
    def crossed(self) -> bool:
        return len(self.legs) > 1


LegFinder = Callable[[str, str, str], Leg | None]  # (source, base, quote)


@dataclass
class Resolver:
    """Resolves prices for one pricing run (or one instant of history), remembering what it found."""

    find_leg: LegFinder
    sources_for: Callable[[str], Sequence[str]]
    bridges: Sequence[str]
    max_legs: int = 3
    memo: dict[tuple[str, str, int], Priced] = field(default_factory=dict)

    def price(self, asset: str, currency: str) -> Priced:
        return self._resolve(asset, currency, self.max_legs, frozenset())

    def _resolve(self, asset: str, currency: str, legs_left: int, visited: frozenset[str]) -> Priced:
        key = (asset, currency, legs_left)
        if key in self.memo:
            return self.memo[key]
        result = self._compute(asset, currency, legs_left, visited | {asset})
        self.memo[key] = result
        return result

    def _compute(self, asset: str, currency: str, legs_left: int, visited: frozenset[str]) -> Priced:
        if asset == currency:
            now = dt.datetime.now(dt.UTC)
            return Priced(asset, currency, Decimal(1), (Leg(asset, currency, Decimal(1), IDENTITY, now, ""),))
        direct = self._direct(asset, currency)
        if direct.ok or legs_left <= 1:
            return direct
        failures = [direct]
        for bridge in self.bridges:
            if bridge in visited or bridge == currency:
                continue
            first = self._direct(asset, bridge)
            if not first.ok:
                failures.append(first)
                continue
            second = self._resolve(bridge, currency, legs_left - 1, visited | {bridge})
            if second.ok and first.price is not None and second.price is not None:
                return Priced(asset, currency, first.price * second.price, first.legs + second.legs)
            failures.append(second)
        return self._unpriced(asset, currency, failures)

    def _direct(self, asset: str, currency: str) -> Priced:
        failures: list[SourceFailed] = []
        for source in self.sources_for(asset):
            try:
                leg = self.find_leg(source, asset, currency)
            except SourceFailed as exc:
                failures.append(exc)
                continue
            if leg is not None:
                return Priced(asset, currency, leg.price, (leg,))
        if not failures:
            return Priced(asset, currency, None, reason=f"no price source lists {asset}/{currency}")
        return Priced(asset, currency, None, reason="; ".join(str(f) for f in failures),
                      transient=any(f.transient for f in failures),
                      retry_at=min((f.retry_at for f in failures if f.retry_at), default=None))

    def _unpriced(self, asset: str, currency: str, failures: list[Priced]) -> Priced:
        listed = [f for f in failures if f.reason and not f.reason.startswith("no price source lists")]
        if not listed:
            via = ", ".join(b for b in self.bridges if b not in (asset, currency))
            reason = f"no price source lists {asset} against {currency}" + (f" or {via}" if via else "")
        else:
            reason = "; ".join(dict.fromkeys(f.reason for f in listed))
        return Priced(asset, currency, None, reason=f"no price for {asset} in {currency}: {reason}"[:480],
                      transient=any(f.transient for f in failures),
                      retry_at=min((f.retry_at for f in failures if f.retry_at), default=None))
