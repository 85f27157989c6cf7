"""Kalshi balance, positions, fills and settlements through Kalshi's signed REST API (trade-api v2).

Kalshi is not in ccxt 4.5.90, so this is a small client of our own over the egress layer.

- Credentials: the key id (a UUID) and the RSA private key PEM Kalshi downloads as a ``.key`` file.
  Every request carries ``KALSHI-ACCESS-KEY``, ``KALSHI-ACCESS-TIMESTAMP`` (ms) and
  ``KALSHI-ACCESS-SIGNATURE`` = base64 RSA-PSS-SHA256 (MGF1-SHA256, salt = digest length) over
  ``timestamp + METHOD + path``, the path with ``/trade-api/v2`` and without the query (VENUES.md §12).
  Signing happens inside ``requests`` when the request is prepared, i.e. after the egress limiter
  has waited, so a throttled request never leaves with a stale timestamp; the production path is
  signed, so a ``base_url`` rewrite (gateway, simulator) does not change the signature.
- Scope: ``GET /api_keys`` lists the account's keys with their scopes. Only a key listed with
  scopes exactly ``["read"]`` is accepted. ``write`` grants every write endpoint (orders and the
  transfer group), so it counts as trade, transfer and withdraw; ``write::trade`` and
  ``write::block_trade_accept`` as trade; ``write::transfer`` as transfer and, conservatively,
  withdraw (Kalshi has no separate withdrawal scope). Any other scope, or our key missing from the
  list, fails closed: treated as every dangerous permission. The key-management write endpoints
  (``POST /api_keys``, ``POST /api_keys/generate``, ``DELETE /api_keys/{id}``) are not on the
  allowlist, so they are refused inside the box.
- Positions: ``position_fp`` is signed (positive YES, negative NO contracts); size is its absolute
  value. The average price is ``market_exposure / size``: Kalshi defines market exposure as the cost
  of the open position (``total_traded`` also counts contracts already closed, so it is not used).
  The current value is size times the bid of the held side (what the position could be sold for
  now; the last traded price when there is no bid), or the settlement payout once the market has a
  result. Titles come from ``GET /markets/{ticker}``, categories from the event (or its series);
  both are public and fetched unsigned, cached per process.
- Fills are read live (``/portfolio/fills``) and then from the archive (``/historical/fills``, where
  Kalshi moves fills older than its historical cutoff), newest first with ``min_ts``. Amounts are
  fixed-point dollar and contract strings (``yes_price_dollars``, ``count_fp``); the legacy integer
  cents fields are read only when the strings are absent. A fill is recorded from the side it held
  (``side``/``action``); where only ``book_side`` is given, it is recorded on the YES leg (a bid buys
  YES, an ask sells YES), which is the same exposure Kalshi reports.
- Settlements carry no id: one is made from the ticker and the settlement time.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import requests
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from appliance.errors import EgressRefused, VenueAuthError, VenueBadData, VenueError
from appliance.venues import egress as egress_rules
from appliance.venues.base import (
    Balance,
    CredentialField,
    Credentials,
    GuideStep,
    Kind,
    Page,
    PositionRecord,
    Scope,
    Stream,
    TxRecord,
    VenueAdapter,
)
from appliance.venues.predictions import (
    FeedRow,
    asset_label,
    epoch_seconds,
    http_get,
    newest_first_page,
    optional_decimal,
    plain_row,
    scrub_error,
    to_decimal,
    utc_from_iso,
    utc_from_seconds,
)
from appliance.venues.ratelimits import RateLimit

log = logging.getLogger(__name__)

HOST = "api.elections.kalshi.com"
PREFIX = "/trade-api/v2"
PAGE = 200
MAX_POSITION_PAGES = 100
_SEGMENT = r"[^/]+"  # one path segment: a market, event or series ticker
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", re.S)

# Scope -> the dangerous permissions it grants.
WRITE_SCOPES: dict[str, tuple[str, ...]] = {
    "write": ("trade", "transfer", "withdraw"),
    "write::trade": ("trade",),
    "write::block_trade_accept": ("trade",),
    "write::transfer": ("transfer", "withdraw"),
}

_market_cache: dict[tuple[str, str], tuple[str, str]] = {}
_market_lock = threading.Lock()
_checked_pems: set[bytes] = set()  # SHA-256 of PEMs whose RSA consistency check passed
_checked_lock = threading.Lock()


class KalshiSigner(requests.auth.AuthBase):
    """Adds Kalshi's three headers when ``requests`` prepares the request (after any limiter wait)."""

    def __init__(self, key_id: str, key: rsa.RSAPrivateKey, path: str) -> None:
        self.key_id = key_id
        self.key = key
        self.path = path  # production path, /trade-api/v2/..., no query

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        timestamp = str(int(time.time() * 1000))
        message = (timestamp + str(request.method).upper() + self.path).encode()
        signature = self.key.sign(
            message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
            hashes.SHA256())
        request.headers["KALSHI-ACCESS-KEY"] = self.key_id
        request.headers["KALSHI-ACCESS-TIMESTAMP"] = timestamp
        request.headers["KALSHI-ACCESS-SIGNATURE"] = base64.b64encode(signature).decode()
        return request


def normalise_pem(text: str) -> bytes:
    """The PEM as pasted into a form: CRLF, indentation, or newlines lost to a single line."""
    match = _PEM.search(text or "")
    if match is None:
        raise VenueAuthError("kalshi", "the private key must be the whole contents of the .key file Kalshi "
                                       "downloaded, from -----BEGIN to -----END")
    label, body = match.group(1), re.sub(r"\s+", "", match.group(2))
    lines = "\n".join(textwrap.wrap(body, 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode()


def load_key(creds: Credentials) -> tuple[str, rsa.RSAPrivateKey]:
    """The key id and the RSA key, parsed for this call only. OpenSSL's RSA consistency check costs
    ~80 ms, so it runs once per distinct PEM per process: only a SHA-256 digest of each PEM that
    passed is remembered, never the key."""
    key_id = creds.api_key.strip()
    if not _UUID.fullmatch(key_id):
        raise VenueAuthError("kalshi", "the key ID is the UUID Kalshi shows next to the key "
                                       "(like 1a2b3c4d-0000-4000-8000-1234567890ab)")
    pem = normalise_pem(creds.api_secret)
    digest = hashlib.sha256(pem).digest()
    with _checked_lock:
        checked = digest in _checked_pems
    try:
        key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=checked)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise VenueAuthError("kalshi", "the private key could not be read: paste the .key file Kalshi "
                                       "downloaded when the key was created, unchanged") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise VenueAuthError("kalshi", "the private key is not an RSA key: Kalshi keys are RSA")
    if not checked:
        with _checked_lock:
            if len(_checked_pems) >= 4096:
                _checked_pems.clear()
            _checked_pems.add(digest)
    return key_id, key


def read_error(status: int, body: Any) -> tuple[str | None, str]:
    """Kalshi errors are ``{"error": {"code", "message", "details"?}}``."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        return (str(code) if code else None), str(error.get("message") or "")[:200]
    if isinstance(body, dict) and body.get("code"):
        return str(body["code"]), str(body.get("message") or "")[:200]
    return None, ""


def dollars_or_none(venue: str, row: Mapping[str, Any], name: str) -> Decimal | None:
    """``<name>_dollars`` (fixed-point string) or, from older responses, ``<name>`` in integer cents."""
    if row.get(f"{name}_dollars") not in (None, ""):
        return to_decimal(venue, row[f"{name}_dollars"], f"{name}_dollars")
    if row.get(name) not in (None, ""):
        return to_decimal(venue, row[name], name).scaleb(-2)
    return None


def dollars(venue: str, row: Mapping[str, Any], name: str) -> Decimal:
    value = dollars_or_none(venue, row, name)
    if value is None:
        raise VenueBadData(venue, f"{name}_dollars is missing")
    return value


def contracts(venue: str, row: Mapping[str, Any], name: str) -> Decimal:
    """``<name>_fp`` (fixed-point contracts) or the legacy integer ``<name>``."""
    value = row.get(f"{name}_fp")
    return to_decimal(venue, value if value not in (None, "") else row.get(name), f"{name}_fp")


class KalshiAdapter(VenueAdapter):
    id = "kalshi"
    name = "Kalshi"
    kind = "prediction"
    hosts = (HOST,)
    streams = (Stream.FILLS, Stream.SETTLEMENTS)
    read_endpoints = egress_rules.read(
        "GET", rf"{PREFIX}/api_keys", rf"{PREFIX}/portfolio/(balance|positions|fills|settlements)",
        rf"{PREFIX}/historical/fills", rf"{PREFIX}/(markets|events|series)/{_SEGMENT}")
    credential_fields = (
        CredentialField("api_key", "Key ID", help="The ID Kalshi shows next to the key (a UUID)."),
        CredentialField("api_secret", "Private key (.key file contents)", multiline=True,
                        help="Open the .key file Kalshi downloaded when you created the key and paste all of it, "
                             "from -----BEGIN to -----END."),
    )
    guide = (
        GuideStep("Sign in to kalshi.com and open Account & security → API Keys, then choose Create Key."),
        GuideStep("Give the key a name you will recognise, e.g. 'compliance read-only', and give it only the "
                  "Read scope."),
        GuideStep("Do not grant Write or Transfer: a key with any scope other than Read is refused.", warning=True),
        GuideStep("Kalshi shows the Key ID and downloads the private key as a .key file once. Copy the Key ID and "
                  "paste the whole .key file into the form below."),
    )

    # docs: Rate Limits and Tiers — Basic tier: 20 reads a second (per member).
    rate_limits = (RateLimit(20, 1, per_account=True,
                             source="https://docs.kalshi.com/getting_started/rate_limits"),)

    # -- plumbing -------------------------------------------------------------------------------
    def _session(self, creds: Credentials | None = None) -> requests.Session:
        account = hashlib.sha256(creds.api_key.encode()).hexdigest()[:16] if creds is not None else ""
        return self.egress.session(self.id, self.hosts, self.read_endpoints, self.rate_limits, account)

    def _signed(self, creds: Credentials, path: str, params: Mapping[str, Any] | None = None) -> Any:
        key_id, key = load_key(creds)
        full = PREFIX + path
        try:
            with self._session(creds) as session:
                return http_get(self.id, session, f"https://{HOST}{full}", params=params,
                                auth=KalshiSigner(key_id, key, full), read_error=read_error)
        except EgressRefused:
            raise
        except VenueError as exc:
            raise scrub_error(exc, creds.secrets()) from None

    def _public(self, path: str) -> Any:
        with self._session() as session:
            return http_get(self.id, session, f"https://{HOST}{PREFIX}{path}", read_error=read_error)

    def _object(self, body: Any, key: str, what: str) -> Any:
        if not isinstance(body, dict) or key not in body:
            raise VenueBadData(self.id, f"{what}: the response has no {key!r}")
        return body[key]

    # -- scope ----------------------------------------------------------------------------------
    def probe_scope(self, creds: Credentials) -> Scope:
        body = self._signed(creds, "/api_keys")
        keys = self._object(body, "api_keys", "api_keys")
        if not isinstance(keys, list):
            raise VenueBadData(self.id, "api_keys is not a list")
        mine = next((k for k in keys if isinstance(k, dict) and k.get("api_key_id") == creds.api_key.strip()), None)
        if mine is None:
            return Scope(read=None, trade=True, transfer=True, withdraw=True, verified=True,
                         evidence={"listed": False, "keys_listed": len(keys)},
                         notes=("Kalshi did not list this key among the account's API keys, so its scopes cannot "
                                "be confirmed; treated as having every permission",))
        scopes = mine.get("scopes")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            return Scope(read=None, trade=True, transfer=True, withdraw=True, verified=True,
                         evidence={"listed": True, "scopes": None},
                         notes=("Kalshi listed this key without readable scopes; treated as having every "
                                "permission",))
        granted: set[str] = set()
        notes = []
        for scope in sorted(set(scopes) - {"read"}):
            if scope in WRITE_SCOPES:
                granted.update(WRITE_SCOPES[scope])
            else:
                granted.update(("trade", "transfer", "withdraw"))
                notes.append(f"scope {scope!r} is not the plain read scope; only a key whose scopes are exactly "
                             "['read'] is accepted, so it is treated as every permission")
        if "write::transfer" in scopes or "write" in scopes:
            notes.append("transfer scope counted as withdraw too: Kalshi has no separate withdrawal scope")
        read = "read" in scopes
        if not read:
            notes.append("the key lacks the read scope")
        return Scope(read=read, trade="trade" in granted, transfer="transfer" in granted,
                     withdraw="withdraw" in granted, verified=True,
                     evidence={"listed": True, "scopes": list(scopes)}, notes=tuple(notes))

    def regenerate_instructions(self, scope: Scope) -> str:
        if scope.evidence.get("listed") is False:
            return ("Kalshi did not list this key among your API keys, so we cannot confirm it is read-only. "
                    "Check that the Key ID and the .key file belong to the same key on this Kalshi account, or "
                    "create a new key with only the Read scope and submit it.")
        extra = [s for s in scope.evidence.get("scopes") or [] if s != "read"]
        named = f" ({', '.join(extra)})" if extra else ""
        return (f"This Kalshi key has scopes beyond Read{named}, which allow "
                f"{', '.join(scope.granted()) or 'more than reading'}. In Kalshi open Account & security → API "
                "Keys, delete this key, and create a new one with only the Read scope. If Kalshi does not offer "
                "a scope choice when creating keys, its keys can trade and this appliance cannot accept them: "
                "ask your compliance team.")

    # -- balances and positions -----------------------------------------------------------------
    def fetch_balances(self, creds: Credentials) -> list[Balance]:
        body = self._signed(creds, "/portfolio/balance")
        if not isinstance(body, dict):
            raise VenueBadData(self.id, "balance is not an object")
        cash = dollars(self.id, body, "balance")
        return [Balance("USD", cash, "cash")] if cash else []

    def fetch_positions(self, creds: Credentials) -> list[PositionRecord]:
        rows: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(MAX_POSITION_PAGES):
            params: dict[str, Any] = {"limit": PAGE, "count_filter": "position"}
            if cursor:
                params["cursor"] = cursor
            body = self._signed(creds, "/portfolio/positions", params)
            page = self._object(body, "market_positions", "positions") or []
            if not isinstance(page, list) or any(not isinstance(r, dict) for r in page):
                raise VenueBadData(self.id, "market_positions is not a list of objects")
            rows.extend(page)
            cursor = str(body.get("cursor") or "")
            if not cursor or not page:
                break
        else:
            raise VenueBadData(self.id, f"positions: more than {MAX_POSITION_PAGES} pages")
        return [p for p in (self.position_record(row) for row in rows) if p is not None]

    def position_record(self, row: Mapping[str, Any]) -> PositionRecord | None:
        ticker = str(row.get("ticker") or "")
        if not ticker:
            raise VenueBadData(self.id, "a position has no ticker")
        signed = contracts(self.id, row, "position")
        if not signed:
            return None
        outcome = "yes" if signed > 0 else "no"
        size = abs(signed)
        exposure = dollars_or_none(self.id, row, "market_exposure")
        avg = (exposure / size).quantize(Decimal("0.000001")) if exposure is not None else None
        market = self.market(ticker)
        title, category = self.market_meta(ticker, market)
        return PositionRecord(market_id=ticker, outcome=outcome, size=size, market_title=title, category=category,
                              avg_price=avg, current_value=self.value_of(market, outcome, size))

    def market(self, ticker: str) -> dict[str, Any] | None:
        """The market's public record, or None when Kalshi cannot say (enrichment only)."""
        try:
            market = self._object(self._public(f"/markets/{quote(ticker, safe='')}"), "market", "market")
        except EgressRefused:
            raise
        except VenueError as exc:
            log.warning("kalshi: market data unavailable (%s)", exc.error_class)
            return None
        return market if isinstance(market, dict) else None

    def market_meta(self, ticker: str, market: Mapping[str, Any] | None) -> tuple[str, str]:
        base = self.egress.base_url(self.id)
        with _market_lock:
            cached = _market_cache.get((base, ticker))
        if cached is not None or market is None:
            return cached or ("", "")
        title = str(market.get("title") or "")
        category = ""
        try:
            event_ticker = str(market.get("event_ticker") or "")
            if event_ticker:
                event = self._object(self._public(f"/events/{quote(event_ticker, safe='')}"), "event", "event")
                category = str(event.get("category") or "") if isinstance(event, dict) else ""
                series_ticker = str(event.get("series_ticker") or "") if isinstance(event, dict) else ""
                if not category and series_ticker:
                    series = self._object(self._public(f"/series/{quote(series_ticker, safe='')}"), "series",
                                          "series")
                    category = str(series.get("category") or "") if isinstance(series, dict) else ""
        except EgressRefused:
            raise
        except VenueError as exc:
            log.warning("kalshi: category unavailable (%s)", exc.error_class)
            return title, ""
        with _market_lock:
            _market_cache[(base, ticker)] = (title, category)
        return title, category

    def value_of(self, market: Mapping[str, Any] | None, outcome: str, size: Decimal) -> Decimal | None:
        if market is None:
            return None
        result = str(market.get("result") or "").lower()
        if result in ("yes", "no"):
            return size if result == outcome else Decimal(0)
        price = dollars_or_none(self.id, market, f"{outcome}_bid")
        if not price:
            last = dollars_or_none(self.id, market, "last_price")
            price = None if last is None else (last if outcome == "yes" else 1 - last)
        return None if price is None else size * price

    # -- public market prices (valuation) ----------------------------------------------------------
    def outcome_price(self, ticker: str, outcome: str) -> Decimal | None:
        """One contract's price from the market's public record, by the rule ``value_of`` applies (the bid of
        the held side, else the last price; the payout once settled); None when Kalshi quotes none. Unsigned:
        the request names the market only. Errors are raised classified, for the pricing job to record."""
        market = self._object(self._public(f"/markets/{quote(ticker, safe='')}"), "market", "market")
        if not isinstance(market, dict):
            raise VenueBadData(self.id, "market is not an object")
        return self.value_of(market, outcome, Decimal(1))

    # -- history --------------------------------------------------------------------------------
    def fetch_transactions(self, creds: Credentials, stream: str, cursor: Mapping[str, Any]) -> Page:
        load_key(creds)  # a malformed key is an authentication error before anything is sent
        if stream == Stream.FILLS:
            paths = {"live": "/portfolio/fills", "historical": "/historical/fills"}
            return newest_first_page(cursor, ("live", "historical"),
                                     self._feed(creds, lambda phase: paths[phase], "fills", self.fill_row))
        if stream == Stream.SETTLEMENTS:
            return newest_first_page(cursor, ("settlements",),
                                     self._feed(creds, lambda _p: "/portfolio/settlements", "settlements",
                                                self.settlement_row))
        raise VenueBadData(self.id, f"stream {stream!r} is not served by this adapter")

    def _feed(self, creds: Credentials, path_of: Callable[[str], str], key: str,
              build: Callable[[dict[str, Any]], FeedRow]
              ) -> Callable[[str, int | None, str | None], tuple[list[FeedRow], str | None]]:
        def fetch(phase: str, since: int | None, venue_cursor: str | None) -> tuple[list[FeedRow], str | None]:
            params: dict[str, Any] = {"limit": PAGE}
            if since is not None:
                params["min_ts"] = since - 1  # "after" may be exclusive: ask one second early, ids deduplicate
            if venue_cursor:
                params["cursor"] = venue_cursor
            body = self._signed(creds, path_of(phase), params)
            rows = self._object(body, key, key) or []
            if not isinstance(rows, list) or any(not isinstance(r, dict) for r in rows):
                raise VenueBadData(self.id, f"{key} is not a list of objects")
            next_cursor = str(body.get("cursor") or "") or None
            return [build(row) for row in rows], (next_cursor if rows else None)
        return fetch

    def fill_row(self, row: dict[str, Any]) -> FeedRow:
        fill_id = str(row.get("fill_id") or row.get("trade_id") or "")
        ticker = str(row.get("ticker") or row.get("market_ticker") or "")
        if not fill_id or not ticker:
            raise VenueBadData(self.id, "a fill has no id or ticker")
        action, side = str(row.get("action") or "").lower(), str(row.get("side") or "").lower()
        if action not in ("buy", "sell") or side not in ("yes", "no"):
            book = str(row.get("book_side") or "").lower()
            if book not in ("bid", "ask"):
                raise VenueBadData(self.id, f"fill {fill_id[:40]} has no direction")
            action, side = ("buy" if book == "bid" else "sell"), "yes"
        count = contracts(self.id, row, "count")
        price = dollars_or_none(self.id, row, f"{side}_price")
        if price is None:  # a binary contract's two sides price to one dollar
            price = 1 - dollars(self.id, row, f"{'no' if side == 'yes' else 'yes'}_price")
        occurred = (utc_from_iso(self.id, row["created_time"], "created_time") if row.get("created_time")
                    else utc_from_seconds(self.id, row.get("ts"), "ts"))
        record = TxRecord(
            stream=Stream.FILLS, venue_tx_id=fill_id, kind=Kind.BUY if action == "buy" else Kind.SELL,
            occurred_at=occurred, asset=asset_label(ticker, side), amount=count, market=ticker, quote_asset="USD",
            quote_amount=count * price, price=price, fee_asset="USD",
            fee_amount=optional_decimal(self.id, row.get("fee_cost"), "fee_cost"), raw=plain_row(row))
        return epoch_seconds(occurred), fill_id, record

    def settlement_row(self, row: dict[str, Any]) -> FeedRow:
        ticker = str(row.get("ticker") or "")
        settled = str(row.get("settled_time") or "")
        if not ticker or not settled:
            raise VenueBadData(self.id, "a settlement has no ticker or settlement time")
        occurred = utc_from_iso(self.id, settled, "settled_time")
        revenue = to_decimal(self.id, row.get("revenue", 0), "revenue").scaleb(-2)  # integer cents
        venue_id = f"{ticker}:{settled}"
        record = TxRecord(
            stream=Stream.SETTLEMENTS, venue_tx_id=venue_id, kind=Kind.SETTLEMENT, occurred_at=occurred,
            asset="USD", amount=revenue, market=ticker, fee_asset="USD",
            fee_amount=optional_decimal(self.id, row.get("fee_cost"), "fee_cost"), raw=plain_row(row))
        return epoch_seconds(occurred), venue_id, record
