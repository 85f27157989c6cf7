"""Binance.US simulator: Binance's wire protocol on api.binance.us, with US listings.

Binance.US shares Binance's signing, error codes and endpoint shapes (VENUES.md §2), so only the host,
the listings and the instance id differ. ``/sapi/v1/account/apiRestrictions`` is served as Binance
serves it, although its existence on the real Binance.US is unverified; ``restrictions_answer`` (a
404 page or an error body) replaces it so the adapter's fail-closed path can be exercised.
"""

from __future__ import annotations

from appliance.sim.venues.binance import BinanceSim


class BinanceUsSim(BinanceSim):
    id = "binanceus"
    host = "api.binance.us"
    listings = (*BinanceSim.markets, ("BTC", "USD"), ("ETH", "USD"), ("SOL", "USD"), ("USDT", "USD"))
    quote_markets = (("USDC", "USD"),)
