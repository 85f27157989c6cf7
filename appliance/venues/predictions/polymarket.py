"""Polymarket positions, trades and activity of one wallet, from the public Data API and Gamma.

Polymarket data is public per wallet, so there is no key: the employee gives their proxy wallet
(profile) address and we read ``data-api.polymarket.com`` (v2: ``{"data", "pagination"}`` envelope,
snake_case rows, opaque cursors) and market metadata from ``gamma-api.polymarket.com``. ccxt's
``polymarket`` class is Polymarket *Perps* and needs the wallet's private key: never used here.

Facts this module relies on (VENUES.md §13, the v2 reference, captured v2 responses):

- Amounts are JSON numbers (``"size": 22.84``); they are decoded with ``parse_float=Decimal``, so what
  we store is exactly the text the venue sent, and ``quote_amount = size * price`` is exact.
- ``/v2/trades`` and ``/v2/activity`` are newest first and take ``start`` (inclusive epoch seconds;
  omitted = only the last three years, ``1`` = full history). The first page may come from a CDN
  cache up to five minutes old, so completeness is claimed five minutes behind the run's start.
- A trade's asset is ``<market slug>:<outcome>`` (the slug shortened to fit 64 characters), its
  market the condition id, its quote USDC.
- ``/v2/trades`` serves only the taker side of fills unless ``taker_only=false``: a wallet's resting
  orders that got filled are trades too, so we ask for both. Rows carry no id; a fill is identified
  by transaction hash, outcome token, side, size and price (two fills of one wallet identical in all
  five inside one transaction would collapse into one: a stated limit). Fills under the venue's
  ``filter_amount`` floor (0.01 shares) are not served.
- ``/v2/activity`` leaves out deposits and withdrawals unless ``exclude_deposits_withdrawals=false`` and
  tips unless named, so every non-trade type is named (trades have their own stream).
- ``/v2/positions`` (status OPEN, which includes resolved but unredeemed positions) lists holdings of at
  least 0.1 shares, the venue's default floor; titles and categories come from Gamma ``/markets``, cached
  per process (Gamma hides closed markets unless ``closed=true``, so both are asked).
- Cash (USDC/pUSD) in the proxy wallet is a Polygon token balance, read by the Polygon chain adapter;
  this adapter reports positions, not balances.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

from appliance.errors import EgressRefused, Invalid, VenueBadData, VenueError
from appliance.venues import egress as egress_rules
from appliance.venues.base import Balance, Kind, Page, PositionRecord, Stream, TxRecord, WalletAdapter
from appliance.venues.egress import Egress
from appliance.venues.predictions import (
    FeedRow,
    asset_label,
    http_get,
    newest_first_page,
    plain_row,
    to_decimal,
    utc_from_seconds,
)
from appliance.venues.ratelimits import RateLimit

log = logging.getLogger(__name__)

_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,199}")
_CONDITION = re.compile(r"0x[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class GammaMarket:
    """A market as Gamma lists it: enough to tell an employee which one they mean."""

    condition_id: str
    question: str
    slug: str
    closed: bool

DATA_HOST = "data-api.polymarket.com"
GAMMA_HOST = "gamma-api.polymarket.com"
PAGE = 500  # rows per page (the v2 maximum is 1000)
MAX_POSITION_PAGES = 200
GAMMA_BATCH = 50  # condition ids per Gamma request (the URL must stay under ~8 KB)
CDN_LAG = dt.timedelta(minutes=5)

RATE_LIMITS_DOC = "https://docs.polymarket.com/api-reference/rate-limits"
# Every activity type except TRADE (served by /v2/trades). TIP is opt-in and named on purpose.
ACTIVITY_TYPES = ("SPLIT", "MERGE", "REDEEM", "REWARD", "CONVERSION", "MIGRATION", "YIELD", "MAKER_REBATE",
                  "TAKER_REBATE", "REFERRAL_REWARD", "DEPOSIT", "WITHDRAWAL", "TIP")
ACTIVITY_KINDS = {
    "REDEEM": Kind.SETTLEMENT, "REWARD": Kind.REWARD, "YIELD": Kind.REWARD, "MAKER_REBATE": Kind.REWARD,
    "TAKER_REBATE": Kind.REWARD, "REFERRAL_REWARD": Kind.REWARD, "DEPOSIT": Kind.DEPOSIT,
    "WITHDRAWAL": Kind.WITHDRAWAL,
}
# Public-profile fields every row repeats; not needed in our records.
PROFILE_FIELDS = frozenset({"name", "pseudonym", "bio", "profile_image", "profile_image_optimized", "icon",
                            "verified"})
# Gamma tags that say nothing about the subject of a market.
GENERIC_TAGS = frozenset({"all", "hide-from-new", "recurring", "featured", "trending", "new", "breaking-news"})

_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_meta_cache: dict[tuple[str, str], tuple[str, str]] = {}
_meta_lock = threading.Lock()


def eip55(lower_hex: str) -> str:
    """EIP-55 mixed-case checksum form of 40 lower-case hex digits (without 0x)."""
    from appliance.venues.chains.primitives import keccak256

    digest = keccak256(lower_hex.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c
                          for i, c in enumerate(lower_hex))


def number_text(value: Decimal) -> str:
    """One spelling per number (``5``, ``5.0`` and ``5.00`` are the same fill size)."""
    return format(value.normalize(), "f")


def bounded_id(*parts: str) -> str:
    """Ids fit the 200-character column; an id that would not keeps its first part and a digest."""
    text = ":".join(parts)
    if len(text) <= 200:
        return text
    return f"{parts[0]}:{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def read_error(status: int, body: Any) -> tuple[str | None, str]:
    """v2 errors are ``{"error", "code", "retryable", "trace_id", "parameter"?}``; v1 ``{"error"}``;
    Cloudflare's throttle is plain text (``error code: 1015``)."""
    if isinstance(body, dict):
        code = body.get("code")
        message = str(body.get("error") or "")[:200]
        if body.get("parameter"):
            message += f" (parameter {str(body['parameter'])[:40]})"
        return (str(code) if code else None), message
    return None, ""


class PolymarketAdapter(WalletAdapter):
    id = "polymarket"
    name = "Polymarket"
    kind = "prediction"
    streams = (Stream.TRADES, Stream.ACTIVITY)
    hosts = (DATA_HOST, GAMMA_HOST)
    read_endpoints = egress_rules.read("GET", r"/v2/(positions|trades|activity)", r"/markets", r"/events")

    def __init__(self, egress: Egress) -> None:
        self.egress = egress

    # -- address --------------------------------------------------------------------------------
    def validate_address(self, address: str) -> str:
        """The proxy wallet in the lower-case form Polymarket itself uses. Mixed case must carry a
        correct EIP-55 checksum (a typo in a checksummed address is caught, not monitored)."""
        text = (address or "").strip()
        if not text.lower().startswith("0x"):
            raise Invalid("A Polymarket wallet address starts with 0x (copy it from your Polymarket profile).",
                          field="address")
        body = text[2:]
        if len(body) != 40:
            raise Invalid(f"A Polymarket wallet address is 0x followed by 40 hexadecimal characters; this one has "
                          f"{len(body)}.", field="address")
        if not _HEX40.fullmatch(body):
            raise Invalid("This address contains characters that are not hexadecimal (0-9, a-f).", field="address")
        if body not in (body.lower(), body.upper()) and eip55(body.lower()) != "0x" + body:
            raise Invalid("This address fails its EIP-55 checksum (its upper/lower-case pattern is wrong): check "
                          "for a typo and copy it again from your Polymarket profile.", field="address")
        return "0x" + body.lower()

    # docs: Rate Limits (Cloudflare throttling, sliding windows) — Data API: 1,000 requests per 10 s, /trades 200,
    # /positions and /closed-positions 150.
    rate_limits = (
        RateLimit(1000, 10, source=RATE_LIMITS_DOC),
        RateLimit(200, 10, path=r"(/v2)?/trades", source=RATE_LIMITS_DOC),
        RateLimit(150, 10, path=r"(/v2)?/(closed-)?positions", source=RATE_LIMITS_DOC),
    )

    # -- plumbing -------------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        return self.egress.session(self.id, self.hosts, self.read_endpoints, self.rate_limits)

    def _get(self, host: str, path: str, params: Mapping[str, Any] | Sequence[tuple[str, str]]) -> Any:
        with self._session() as session:
            return http_get(self.id, session, f"https://{host}{path}", params=params, read_error=read_error)

    def _envelope(self, body: Any, what: str) -> tuple[list[dict[str, Any]], str | None]:
        """Rows and the next cursor of a v2 response; ``data: null`` is a documented empty answer."""
        if not isinstance(body, dict) or "data" not in body:
            raise VenueBadData(self.id, f"{what}: the response has no data envelope")
        rows = body.get("data") or []
        pagination = body.get("pagination") or {}
        if not isinstance(rows, list) or not isinstance(pagination, dict):
            raise VenueBadData(self.id, f"{what}: data is not a list")
        next_cursor = pagination.get("next_cursor")
        if pagination.get("has_more") and not next_cursor:
            raise VenueBadData(self.id, f"{what}: has_more without a next_cursor")
        if any(not isinstance(row, dict) for row in rows):
            raise VenueBadData(self.id, f"{what}: a row is not an object")
        return rows, (str(next_cursor) if next_cursor else None)

    # -- balances and positions -----------------------------------------------------------------
    def fetch_balances(self, address: str) -> list[Balance]:
        """None here: the wallet's cash is a Polygon token balance (chain adapter)."""
        return []

    def fetch_positions(self, address: str) -> list[PositionRecord]:
        user = self.validate_address(address)
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_POSITION_PAGES):
            params: dict[str, Any] = {"user": user}
            if cursor:
                params["cursor"] = cursor  # the cursor binds status and sort; the anchor must be re-sent
            else:
                params["limit"] = PAGE
            page, cursor = self._envelope(self._get(DATA_HOST, "/v2/positions", params), "positions")
            rows.extend(page)
            if not cursor:
                break
        else:
            raise VenueBadData(self.id, f"positions: more than {MAX_POSITION_PAGES} pages")
        meta = self.market_meta({str(r.get("condition_id") or "") for r in rows} - {""})
        return [self.position_record(row, meta) for row in rows]

    def position_record(self, row: Mapping[str, Any], meta: Mapping[str, tuple[str, str]]) -> PositionRecord:
        condition = str(row.get("condition_id") or "")
        if not condition:
            raise VenueBadData(self.id, "a position has no condition_id")
        title, category = meta.get(condition, ("", ""))
        value = row.get("current_value")
        avg = row.get("avg_price")
        return PositionRecord(
            market_id=condition, outcome=str(row.get("outcome") or ""),
            size=to_decimal(self.id, row.get("current_size", row.get("size")), "position size"),
            market_title=title or str(row.get("title") or ""), category=category,
            avg_price=None if avg is None else to_decimal(self.id, avg, "avg_price"),
            current_value=None if value is None else to_decimal(self.id, value, "current_value"))

    def market_meta(self, condition_ids: set[str]) -> dict[str, tuple[str, str]]:
        """(title, category) per condition id from Gamma, cached per process. Enrichment only: if Gamma
        fails, positions keep the Data API title and an empty category, and the next sync asks again."""
        base = self.egress.base_url(self.id)
        with _meta_lock:
            found = {c: _meta_cache[(base, c)] for c in condition_ids if (base, c) in _meta_cache}
        missing = sorted(condition_ids - set(found))
        try:
            for closed in ("false", "true"):
                for start in range(0, len(missing), GAMMA_BATCH):
                    batch = missing[start:start + GAMMA_BATCH]
                    params = [("condition_ids", c) for c in batch] + [
                        ("closed", closed), ("include_tag", "true"), ("limit", str(len(batch)))]
                    for market in self._gamma_markets(self._get(GAMMA_HOST, "/markets", params)):
                        found[market[0]] = market[1:]
                missing = [c for c in missing if c not in found]
        except EgressRefused:
            raise
        except VenueError as exc:
            log.warning("polymarket: market metadata unavailable (%s); titles from the Data API", exc.error_class)
        with _meta_lock:
            for condition, value in found.items():
                _meta_cache[(base, condition)] = value
        return found

    def _gamma_markets(self, body: Any) -> list[tuple[str, str, str]]:
        if not isinstance(body, list):
            raise VenueBadData(self.id, "Gamma /markets did not return a list")
        out = []
        for market in body:
            if isinstance(market, dict) and market.get("conditionId"):
                out.append((str(market["conditionId"]), str(market.get("question") or ""), category_of(market)))
        return out

    # -- markets by slug (pre-clearance by URL) ----------------------------------------------------
    def markets_by_slug(self, slug: str, kind: str) -> list[GammaMarket]:
        """The markets a polymarket.com URL names: ``kind`` "event" asks Gamma ``/events?slug=`` (an event and
        its markets), "market" ``/markets?slug=``. Only the public slug is sent. Empty for an unknown slug."""
        if not _SLUG.fullmatch(slug):
            raise Invalid("a Polymarket slug is lower-case letters, digits and dashes", field="market_id")
        if kind == "event":
            body = self._get(GAMMA_HOST, "/events", [("slug", slug)])
            if not isinstance(body, list):
                raise VenueBadData(self.id, "Gamma /events did not return a list")
            rows = [m for event in body if isinstance(event, dict) and event.get("slug") == slug
                    for m in (event.get("markets") or []) if isinstance(m, dict)]
        else:
            body = self._get(GAMMA_HOST, "/markets", [("slug", slug)])
            if not isinstance(body, list):
                raise VenueBadData(self.id, "Gamma /markets did not return a list")
            rows = [m for m in body if isinstance(m, dict) and m.get("slug") == slug]
        return [GammaMarket(str(m["conditionId"]).lower(), str(m.get("question") or ""), str(m.get("slug") or ""),
                            bool(m.get("closed"))) for m in rows if _CONDITION.fullmatch(str(m.get("conditionId")))]

    # -- public market prices (valuation) ----------------------------------------------------------
    def outcome_prices(self, condition_ids: set[str]) -> dict[tuple[str, str], Decimal]:
        """(condition id, outcome) -> the outcome's price per share, from Gamma ``/markets`` (``outcomes`` and
        ``outcomePrices``, both JSON-encoded lists), open and closed markets alike. The request names markets
        only. Errors are raised classified, for the pricing job to record."""
        import json

        found: dict[tuple[str, str], Decimal] = {}
        wanted = sorted(c for c in condition_ids if c)
        for closed in ("false", "true"):
            for start in range(0, len(wanted), GAMMA_BATCH):
                batch = wanted[start:start + GAMMA_BATCH]
                params = [("condition_ids", c) for c in batch] + [("closed", closed), ("limit", str(len(batch)))]
                body = self._get(GAMMA_HOST, "/markets", params)
                if not isinstance(body, list):
                    raise VenueBadData(self.id, "Gamma /markets did not return a list")
                for market in body:
                    if not isinstance(market, dict) or not market.get("conditionId"):
                        continue
                    try:
                        outcomes = json.loads(str(market.get("outcomes") or "[]"))
                        prices = json.loads(str(market.get("outcomePrices") or "[]"))
                    except ValueError:
                        raise VenueBadData(self.id, "Gamma outcomes or outcomePrices are not JSON lists") from None
                    if not isinstance(outcomes, list) or not isinstance(prices, list) or len(outcomes) != len(prices):
                        raise VenueBadData(self.id, "Gamma outcomes and outcomePrices do not match")
                    for name, price in zip(outcomes, prices, strict=True):
                        found[(str(market["conditionId"]), str(name))] = to_decimal(self.id, price, "outcome price")
            wanted = [c for c in wanted if not any(key[0] == c for key in found)]
        return found

    # -- history --------------------------------------------------------------------------------
    def fetch_transactions(self, address: str, stream: str, cursor: Mapping[str, Any]) -> Page:
        user = self.validate_address(address)
        if stream == Stream.TRADES:
            params = {"user": user, "taker_only": "false", "limit": PAGE}
            return newest_first_page(cursor, ("trades",), self._feed("/v2/trades", params, self.trade_row),
                                     settle=CDN_LAG)
        if stream == Stream.ACTIVITY:
            params = {"user": user, "type": ",".join(ACTIVITY_TYPES), "exclude_deposits_withdrawals": "false",
                      "limit": PAGE}
            return newest_first_page(cursor, ("activity",), self._feed("/v2/activity", params, self.activity_row),
                                     settle=CDN_LAG)
        raise VenueBadData(self.id, f"stream {stream!r} is not served by this adapter")

    def _feed(self, path: str, params: dict[str, Any],
              build: Callable[[dict[str, Any]], FeedRow | None]
              ) -> Callable[[str, int | None, str | None], tuple[list[FeedRow], str | None]]:
        def fetch(_phase: str, since: int | None, venue_cursor: str | None) -> tuple[list[FeedRow], str | None]:
            # The feeds want the same filters on every page; start=1 asks for all history, not 3 years.
            request = dict(params, start=since if since is not None else 1)
            if venue_cursor:
                request["cursor"] = venue_cursor
            try:
                body = self._get(DATA_HOST, path, request)
            except VenueBadData as exc:
                if not venue_cursor or exc.venue_code != "invalid_request" or "parameter cursor" not in exc.message:
                    raise
                # A cursor kept across an interrupted run can expire: walk again from the top
                # (rows already stored come back and are deduplicated by their ids).
                log.info("polymarket: %s cursor refused, restarting the walk", path)
                body = self._get(DATA_HOST, path, dict(params, start=since if since is not None else 1))
            rows, next_cursor = self._envelope(body, path)
            built = [build(row) for row in rows]
            return [row for row in built if row is not None], next_cursor
        return fetch

    def trade_row(self, row: dict[str, Any]) -> FeedRow:
        side = str(row.get("side") or "").upper()
        if side not in ("BUY", "SELL"):
            raise VenueBadData(self.id, f"a trade has side {side[:10]!r}")
        tx = str(row.get("transaction_hash") or "")
        token = str(row.get("token_id") or row.get("asset") or "")
        if not tx or not token:
            raise VenueBadData(self.id, "a trade has no transaction hash or outcome token")
        size = to_decimal(self.id, row.get("size"), "trade size")
        price = to_decimal(self.id, row.get("price"), "trade price")
        ts = int(to_decimal(self.id, row.get("timestamp"), "trade timestamp"))
        name = str(row.get("slug") or row.get("condition_id") or token)
        outcome = str(row.get("outcome") or f"outcome {row.get('outcome_index', '?')}")
        record = TxRecord(
            stream=Stream.TRADES, venue_tx_id=bounded_id(tx, token, side, number_text(size), number_text(price)),
            kind=Kind.BUY if side == "BUY" else Kind.SELL, occurred_at=utc_from_seconds(self.id, ts),
            asset=asset_label(name, outcome), amount=size,
            market=str(row.get("condition_id") or ""), quote_asset="USDC", quote_amount=size * price, price=price,
            raw=plain(row))
        return ts, record.venue_tx_id, record

    def activity_row(self, row: dict[str, Any]) -> FeedRow | None:
        kind_name = str(row.get("type") or "").upper()
        if kind_name == "TRADE":
            return None  # the trades stream carries these
        tx = str(row.get("transaction_hash") or "")
        if not tx or not kind_name:
            raise VenueBadData(self.id, "an activity row has no transaction hash or type")
        ts = int(to_decimal(self.id, row.get("timestamp"), "activity timestamp"))
        usdc = to_decimal(self.id, row.get("usdc_size", 0), "usdc_size")
        side = str(row.get("side") or "").upper()
        kind = ACTIVITY_KINDS.get(kind_name, Kind.OTHER)
        if kind_name == "TIP":
            kind = Kind.TRANSFER_IN if side == "IN" else Kind.TRANSFER_OUT
        ref = str(row.get("token_id") or row.get("condition_id") or "-")
        record = TxRecord(
            stream=Stream.ACTIVITY, venue_tx_id=bounded_id(tx, kind_name, ref, side, number_text(usdc)), kind=kind,
            occurred_at=utc_from_seconds(self.id, ts), asset="USDC", amount=abs(usdc),
            market=str(row.get("condition_id") or ""), raw=plain(row))
        return ts, record.venue_tx_id, record


def category_of(market: Mapping[str, Any]) -> str:
    """Gamma's legacy ``category`` when set, else the first subject tag of the market or its event."""
    category = str(market.get("category") or "").strip()
    if category:
        return category
    sources: list[Any] = [market.get("tags")]
    sources += [event.get("tags") for event in market.get("events") or [] if isinstance(event, dict)]
    for tags in sources:
        for tag in tags or []:
            if isinstance(tag, dict) and tag.get("label") and str(tag.get("slug") or "").lower() not in GENERIC_TAGS:
                return str(tag["label"])
    return ""


def plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row as evidence: profile fields dropped, numbers kept as their exact decimal text."""
    return plain_row({k: v for k, v in row.items() if k not in PROFILE_FIELDS})
