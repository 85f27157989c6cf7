"""One module per simulated venue; ALL_VENUES lists them all."""

from __future__ import annotations

from appliance.sim.core import VenueSim

ALL_VENUES: list[type[VenueSim]] = []

# group A: binance, binanceus, bybit
# group B: coinbase, kraken, gemini
# group C: okx, kucoin, bitstamp
