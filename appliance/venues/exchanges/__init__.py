"""One module per exchange; EXCHANGE_ADAPTERS lists them all."""

from __future__ import annotations

from appliance.venues.base import VenueAdapter

EXCHANGE_ADAPTERS: list[type[VenueAdapter]] = []

# group A: binance, binanceus, bybit
# group B: coinbase, kraken, gemini
# group C: okx, kucoin, bitstamp
