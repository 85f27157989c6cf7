"""One public request to a venue, through the egress layer: is it reachable, and what time is it there?

`vigatra doctor` uses this to prove egress works for each enabled venue (the same session, allowlist,
proxy, base_url rewrite and TLS verification the poller uses) and to measure the clock skew that
makes venues refuse signed requests (most reject a timestamp a few seconds off: Binance's default
recvWindow is 5 s, Kraken's nonce window, Kalshi's signed timestamps).

Each probe is the venue's documented public server-time endpoint where it has one; otherwise a small
public endpoint the adapter already uses, and the time comes from the response's ``Date`` header
(RFC 9110 section 6.6.1: an origin server with a clock sends it).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from appliance.errors import EgressRefused
from appliance.venues.egress import Egress, EndpointRule


@dataclass(frozen=True)
class PublicProbe:
    method: str
    host: str
    path: str
    query: str = ""
    # Seconds since the epoch from the JSON body; None: read the Date header.
    time_of: Callable[[Any], float] | None = None


PROBES: dict[str, PublicProbe] = {
    # https://docs.kraken.com/api-reference/market-data/get-server-time
    "kraken": PublicProbe("GET", "api.kraken.com", "/0/public/Time", time_of=lambda b: float(b["result"]["unixtime"])),
    # https://developers.binance.com/docs/binance-spot-api-docs/rest-api/general-endpoints (Check server time)
    "binance": PublicProbe("GET", "api.binance.com", "/api/v3/time", time_of=lambda b: b["serverTime"] / 1000),
    "binanceus": PublicProbe("GET", "api.binance.us", "/api/v3/time", time_of=lambda b: b["serverTime"] / 1000),
    # https://docs.cdp.coinbase.com/api-reference/advanced-trade-api/rest-api/public/get-server-time
    "coinbase": PublicProbe("GET", "api.coinbase.com", "/api/v3/brokerage/time",
                            time_of=lambda b: int(b["epochMillis"]) / 1000),
    # https://www.okx.com/docs-v5/en/#public-data-rest-api-get-system-time
    "okx": PublicProbe("GET", "www.okx.com", "/api/v5/public/time", time_of=lambda b: int(b["data"][0]["ts"]) / 1000),
    # https://bybit-exchange.github.io/docs/v5/market/time
    "bybit": PublicProbe("GET", "api.bybit.com", "/v5/market/time",
                         time_of=lambda b: int(b["result"]["timeNano"]) / 1e9),
    # https://www.kucoin.com/docs/rest/spot-trading/market-data/get-server-time
    "kucoin": PublicProbe("GET", "api.kucoin.com", "/api/v1/timestamp", time_of=lambda b: int(b["data"]) / 1000),
    # No time endpoint: the public symbol list the adapter loads, and the Date header.
    "gemini": PublicProbe("GET", "api.gemini.com", "/v1/symbols"),
    "bitstamp": PublicProbe("GET", "www.bitstamp.net", "/api/v2/markets/"),
    # https://docs.kalshi.com (Get Exchange Status, public)
    "kalshi": PublicProbe("GET", "api.elections.kalshi.com", "/trade-api/v2/exchange/status"),
    "polymarket": PublicProbe("GET", "gamma-api.polymarket.com", "/markets", "limit=1"),
}


@dataclass(frozen=True)
class ProbeResult:
    venue: str
    url: str
    ok: bool
    detail: str
    skew_seconds: float | None = None
    time_source: str = ""


def probe(egress: Egress, venue_id: str, *, now: Callable[[], float] = time.time) -> ProbeResult:
    """Send the venue's probe through the egress layer; never raises for a network failure."""
    spec = PROBES.get(venue_id)
    if spec is None:
        return ProbeResult(venue_id, "", False, "no public probe is defined for this venue")
    rule = EndpointRule(spec.method, re.escape(spec.path))
    session = egress.session(venue_id, (spec.host,), (rule,))
    url = f"https://{spec.host}{spec.path}" + (f"?{spec.query}" if spec.query else "")
    shown = egress.base_url(venue_id) + spec.path if egress.base_url(venue_id) else url
    sent = now()
    try:
        response = session.request(spec.method, url)
    except EgressRefused as exc:
        return ProbeResult(venue_id, shown, False, f"refused by the egress policy: {exc}")
    except requests.exceptions.ProxyError:
        proxy = egress.settings.egress.proxy
        return ProbeResult(venue_id, shown, False, f"the proxy {proxy} refused or is unreachable")
    except requests.exceptions.SSLError:
        return ProbeResult(venue_id, shown, False, "TLS failed (the certificate is not trusted by this host, or a "
                                                   "proxy intercepts TLS)")
    except requests.exceptions.Timeout:
        return ProbeResult(venue_id, shown, False, f"no answer within {egress.settings.egress.timeout_seconds} s")
    except requests.exceptions.ConnectionError as exc:
        reason = "name does not resolve" if "resolve" in str(exc).lower() or "name" in str(exc).lower() else \
            "connection failed"
        return ProbeResult(venue_id, shown, False, f"{reason} (firewall, DNS or egress gateway)")
    finally:
        session.close()
    received = now()
    if response.status_code >= 400:
        return ProbeResult(venue_id, shown, False, f"answered HTTP {response.status_code}")
    server_time, source = _server_time(spec, response)
    if server_time is None:
        return ProbeResult(venue_id, shown, True, f"HTTP {response.status_code}; no server time in the answer")
    # The venue read its clock somewhere between sending and receiving: compare with the midpoint.
    skew = server_time - (sent + received) / 2
    return ProbeResult(venue_id, shown, True, f"HTTP {response.status_code} in {received - sent:.2f} s", skew, source)


def _server_time(spec: PublicProbe, response: requests.Response) -> tuple[float | None, str]:
    if spec.time_of is not None:
        try:
            return float(spec.time_of(response.json())), "its time endpoint"
        except (ValueError, KeyError, IndexError, TypeError):
            pass
    header = response.headers.get("Date")
    if header:
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None, ""
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.timestamp(), "its Date header"
    return None, ""
