"""Values in the firm's currency as the API states them (shared by the balance, transaction and prediction routes).

Each valued item carries ``value`` (a decimal string, exact: quantity times price; or null), ``price`` (per unit,
in the currency), ``price_source`` (the venue(s), ``import:<source>`` or ``identity``), ``price_route`` (the legs:
``BTC/USDT binance candle 1h x USDT/USD kraken candle 1h`` for a cross), ``priced_at`` (the time the price is
for) and ``unpriced_reason`` (why there is no value; null when there is one). A missing value is null with a
reason, never 0. The response names ``currency`` at the top.

A transaction's own price (what the trade was done at, in its quote asset) is ``trade_price`` (api/employees.py),
so neither hides the other.
"""

from __future__ import annotations

from typing import Any

from appliance.api.common import json_value
from appliance.services.valuation.read import Total, Value


def value_json(value: Value) -> dict[str, Any]:
    return {
        "value": json_value(value.value), "price": json_value(value.price),
        "price_source": value.source or None, "price_route": value.route or None,
        "priced_at": json_value(value.priced_at), "unpriced_reason": value.reason or None,
    }


def total_json(total: Total) -> dict[str, Any]:
    """The sum of the priced values and how many items it leaves out (``complete`` only when none)."""
    return {"value": json_value(total.value), "priced": total.priced, "unpriced": total.unpriced,
            "complete": total.complete}
