"""One module per simulated venue; ALL_VENUES lists them all."""

from __future__ import annotations

from appliance.sim.core import VenueSim

ALL_VENUES: list[type[VenueSim]] = []

# group A: binance, binanceus, bybit
from appliance.sim.venues.binance import BinanceSim  # noqa: E402
from appliance.sim.venues.binanceus import BinanceUsSim  # noqa: E402
from appliance.sim.venues.bybit import BybitSim  # noqa: E402

ALL_VENUES += [BinanceSim, BinanceUsSim, BybitSim]
# group B: coinbase, kraken, gemini
from appliance.sim.venues.coinbase import CoinbaseSim  # noqa: E402
from appliance.sim.venues.gemini import GeminiSim  # noqa: E402
from appliance.sim.venues.kraken import KrakenSim  # noqa: E402

ALL_VENUES += [CoinbaseSim, KrakenSim, GeminiSim]
# group C: okx, kucoin, bitstamp
from appliance.sim.venues.bitstamp import BitstampSim  # noqa: E402
from appliance.sim.venues.kucoin import KucoinSim  # noqa: E402
from appliance.sim.venues.okx import OkxSim  # noqa: E402

ALL_VENUES += [OkxSim, KucoinSim, BitstampSim]
# chains: Bitcoin through Esplora
from appliance.sim.venues.esplora import EsploraSim  # noqa: E402

ALL_VENUES += [EsploraSim]
# prediction markets: polymarket, kalshi
from appliance.sim.venues.kalshi import KalshiSim  # noqa: E402
from appliance.sim.venues.polymarket import PolymarketSim  # noqa: E402

ALL_VENUES += [PolymarketSim, KalshiSim]
