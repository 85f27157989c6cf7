"""One module per exchange; EXCHANGE_ADAPTERS lists them all."""

from __future__ import annotations

from appliance.venues.base import VenueAdapter

EXCHANGE_ADAPTERS: list[type[VenueAdapter]] = []

# group A: binance, binanceus, bybit
from appliance.venues.exchanges.binance import BinanceAdapter  # noqa: E402
from appliance.venues.exchanges.binanceus import BinanceUsAdapter  # noqa: E402
from appliance.venues.exchanges.bybit import BybitAdapter  # noqa: E402

EXCHANGE_ADAPTERS += [BinanceAdapter, BinanceUsAdapter, BybitAdapter]
# group B: coinbase, kraken, gemini
from appliance.venues.exchanges.coinbase import CoinbaseAdapter  # noqa: E402
from appliance.venues.exchanges.gemini import GeminiAdapter  # noqa: E402
from appliance.venues.exchanges.kraken import KrakenAdapter  # noqa: E402

EXCHANGE_ADAPTERS += [CoinbaseAdapter, KrakenAdapter, GeminiAdapter]
# group C: okx, kucoin, bitstamp
from appliance.venues.exchanges.bitstamp import BitstampAdapter  # noqa: E402
from appliance.venues.exchanges.kucoin import KucoinAdapter  # noqa: E402
from appliance.venues.exchanges.okx import OkxAdapter  # noqa: E402

EXCHANGE_ADAPTERS += [OkxAdapter, KucoinAdapter, BitstampAdapter]
