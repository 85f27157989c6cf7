"""One price path for the whole simulated market, so every venue quotes the same asset alike.

Every asset has a reference value in US dollars that moves smoothly with time (two slow waves, a few
per cent for coins, a few hundredths of a per cent for stablecoins and fiat). A pair's price at an
instant is ``usd(base) / usd(quote)``, times the venue's own small offset (within ±0.1 %): the same
asset is priced consistently across venues within a spread, and no venue is exactly another's copy.
Prices are a pure function of (venue, pair, time), so a test can compute what any venue quotes for any
past instant, and a candle asked twice is the same candle.

Candles cover ``[open_time, open_time + step)``: open is the price at the start, close the price at the
end (or now, for the candle still forming), high and low the extremes of a few samples in between.

Stablecoins are deliberately *not* 1.00 (USDT a little above, USDC a little below): the appliance must
price them like anything else. Assets without a reference (ADA) are listed by some venues' asset lists
but traded nowhere, so nothing can price them.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
from decimal import Decimal

# Reference values in US dollars at the path's mean.
REFERENCE_USD: dict[str, Decimal] = {
    "BTC": Decimal("43125.50"), "ETH": Decimal("2250.12"), "SOL": Decimal("98.765"), "XRP": Decimal("0.5213"),
    "BNB": Decimal("312.40"), "USDT": Decimal("1.0003"), "USDC": Decimal("0.9997"), "USD": Decimal(1),
    "EUR": Decimal("1.0850"), "GBP": Decimal("1.2710"), "CHF": Decimal("1.1320"), "JPY": Decimal("0.00672"),
}
# Relative amplitude of the path per asset class.
STABLE = frozenset({"USDT", "USDC", "USD", "EUR", "GBP", "CHF", "JPY"})
COIN_AMPLITUDE = 0.04
STABLE_AMPLITUDE = 0.0004
SIGNIFICANT = 10  # digits a quoted price carries


def _unit(text: str) -> float:
    """A stable number in [0, 1) derived from ``text`` (no dependence on PYTHONHASHSEED)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def venue_offset(venue: str) -> float:
    """The venue's own deviation from the common path, within ±0.1 %."""
    return (_unit("venue:" + venue) - 0.5) * 0.002


def quantize(value: float) -> Decimal:
    """A float price as a decimal with ``SIGNIFICANT`` significant digits, written without exponent."""
    if value <= 0:
        return Decimal(0)
    return Decimal(f"{value:.{SIGNIFICANT}g}")


@dataclass(frozen=True)
class Candle:
    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class PricePath:
    """The market's common price path, with per-asset overrides set through the control API."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fixed: dict[str, Decimal] = {}  # asset -> a flat USD value (tests that want round numbers)

    def set_fixed(self, values: dict[str, Decimal]) -> None:
        with self.lock:
            self.fixed.update(values)

    def clear(self) -> None:
        with self.lock:
            self.fixed.clear()

    def known(self, asset: str) -> bool:
        return asset in REFERENCE_USD or asset in self.fixed

    def usd(self, asset: str, at_ms: int) -> float:
        with self.lock:
            fixed = self.fixed.get(asset)
        if fixed is not None:
            return float(fixed)
        reference = REFERENCE_USD.get(asset)
        if reference is None:
            raise KeyError(asset)
        if asset == "USD":
            return 1.0
        amplitude = STABLE_AMPLITUDE if asset in STABLE else COIN_AMPLITUDE
        phase = _unit("phase:" + asset) * 2 * math.pi
        hours = at_ms / 3_600_000
        wave = 0.6 * math.sin(2 * math.pi * hours / 37 + phase) + 0.4 * math.sin(2 * math.pi * hours / 5.3 + 2 * phase)
        return float(reference) * (1 + amplitude * wave)

    def pair_float(self, venue: str, base: str, quote: str, at_ms: int) -> float:
        return self.usd(base, at_ms) / self.usd(quote, at_ms) * (1 + venue_offset(venue))

    def price(self, venue: str, base: str, quote: str, at_ms: int) -> Decimal:
        """What ``venue`` quotes for base/quote at ``at_ms``."""
        return quantize(self.pair_float(venue, base, quote, at_ms))

    def candle(self, venue: str, base: str, quote: str, open_ms: int, step_ms: int, now_ms: int) -> Candle:
        end = min(open_ms + step_ms, now_ms)
        samples = [self.pair_float(venue, base, quote, open_ms + (end - open_ms) * i // 4) for i in range(5)]
        volume = Decimal(10 + int(_unit(f"vol:{venue}:{base}{quote}:{open_ms}") * 990)) / 10
        return Candle(open_ms, quantize(samples[0]), quantize(max(samples)), quantize(min(samples)),
                      quantize(samples[-1]), volume)

    def candles(self, venue: str, base: str, quote: str, step_ms: int, start_ms: int, end_ms: int, now_ms: int
                ) -> list[Candle]:
        """Candles whose open time lies in [start_ms, end_ms], oldest first, none after now."""
        first = -(-start_ms // step_ms) * step_ms
        last = min(end_ms, now_ms)
        return [self.candle(venue, base, quote, t, step_ms, now_ms) for t in range(first, last + 1, step_ms)]
