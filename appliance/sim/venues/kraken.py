"""Kraken spot REST simulator (``api.kraken.com``).

Wire facts it keeps (VENUES.md §4, Appendix A.2):

- Private calls are ``POST /0/private/<Method>`` with a form body starting ``nonce=<ms>``, headers
  ``API-Key`` and ``API-Sign = b64(HMAC-SHA512(b64dec(secret), path + SHA256(nonce + body)))``. The
  nonce must be strictly greater than the last one the key used (``EAPI:Invalid nonce``).
- Errors are HTTP 200 ``{"error": ["EAPI:Invalid key"]}`` and siblings; a missing permission is
  ``EGeneral:Permission denied``, enforced per method as Kraken does (Deposit/WithdrawStatus need the
  deposit/withdraw permissions, which is why the adapter reads deposits from the ledger).
- ``GetApiKeyInfo`` lists the key's permission strings; ``TradesHistory`` and ``Ledgers`` page 50
  results newest first with ``start`` (exclusive) / ``end`` (inclusive) as timestamps or ids, plus ``ofs``.
  Which method needs which permission follows Kraken's "API key permissions" guide (Query Funds: Balance,
  BalanceEx, TradeBalance; Query Open/Closed Orders & Trades: TradesHistory...; Query Ledger Entries: Ledgers).
- Asset ids carry Kraken's X/Z prefixes (``XXBT``, ``ZUSD``); amounts are decimal strings padded to
  the asset's decimals; times are float seconds.
- The sim never executes orders or withdrawals: a permitted mutating call is answered as invalid.
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from appliance.sim.core import Account, Key, Request, Response, Trade, Transfer, VenueError, VenueSim, fmt, now_ms

PAGE = 50

# Unified code -> Kraken asset id (the legacy X/Z-prefixed ids; newer assets use the plain code).
ASSET_IDS = {"BTC": "XXBT", "ETH": "XETH", "USD": "ZUSD", "EUR": "ZEUR", "XRP": "XXRP", "GBP": "ZGBP"}
ALTNAMES = {"XXBT": "XBT", "XETH": "ETH", "ZUSD": "USD", "ZEUR": "EUR", "XXRP": "XRP", "ZGBP": "GBP"}
ASSET_DECIMALS = {"XXBT": 10, "XETH": 10, "ZUSD": 4, "ZEUR": 4, "ZGBP": 4}

# (base, quote) -> (pair id as AssetPairs keys it, altname). Old pairs keep the prefixed ids.
PAIRS = {
    ("BTC", "USD"): ("XXBTZUSD", "XBTUSD"),
    ("ETH", "USD"): ("XETHZUSD", "ETHUSD"),
    ("ETH", "BTC"): ("XETHXXBT", "ETHXBT"),
    ("BTC", "USDT"): ("XBTUSDT", "XBTUSDT"),
    ("ETH", "USDT"): ("ETHUSDT", "ETHUSDT"),
    ("SOL", "USDT"): ("SOLUSDT", "SOLUSDT"),
}
# Listed for quoting only (fiat and stablecoin legs); no activity is seeded on them.
QUOTE_PAIRS = {
    ("USDT", "USD"): ("USDTZUSD", "USDTUSD"),
    ("USDC", "USD"): ("USDCUSD", "USDCUSD"),
    ("SOL", "USD"): ("SOLUSD", "SOLUSD"),
    ("XRP", "USD"): ("XXRPZUSD", "XRPUSD"),
    ("BTC", "EUR"): ("XXBTZEUR", "XBTEUR"),
    ("ETH", "EUR"): ("XETHZEUR", "ETHEUR"),
    ("USDT", "EUR"): ("USDTEUR", "USDTEUR"),
    ("EUR", "USD"): ("ZEURZUSD", "EURUSD"),
    ("BTC", "GBP"): ("XXBTZGBP", "XBTGBP"),
    ("GBP", "USD"): ("ZGBPZUSD", "GBPUSD"),
}

# Our abstract permissions -> Kraken's permission strings (GetApiKeyInfo).
GRANTS = {
    "read": ("query-funds", "query-open-trades", "query-closed-trades", "query-ledger"),
    "trade": ("modify-trades", "cancel-trades"),
    "transfer": ("earn-funds",),
    "withdraw": ("withdraw-funds",),
}

# Method -> the permission strings of which one is needed (docs: "API key permissions").
REQUIRES: dict[str, tuple[str, ...]] = {
    "GetApiKeyInfo": (),
    "Balance": ("query-funds",), "BalanceEx": ("query-funds",), "TradeBalance": ("query-funds",),
    "TradesHistory": ("query-open-trades", "query-closed-trades"),
    "QueryTrades": ("query-open-trades", "query-closed-trades"),
    "OpenOrders": ("query-open-trades",), "ClosedOrders": ("query-closed-trades",),
    "Ledgers": ("query-ledger",), "QueryLedgers": ("query-ledger",),
    "DepositMethods": ("deposit-funds",), "DepositAddresses": ("deposit-funds",), "DepositStatus": ("deposit-funds",),
    "WithdrawMethods": ("withdraw-funds",), "WithdrawAddresses": ("withdraw-funds",),
    "WithdrawInfo": ("withdraw-funds",), "Withdraw": ("withdraw-funds",), "WithdrawStatus": ("withdraw-funds",),
    "WithdrawCancel": ("withdraw-funds",), "WalletTransfer": ("withdraw-funds",),
    "AddOrder": ("modify-trades",), "AddOrderBatch": ("modify-trades",), "EditOrder": ("modify-trades",),
    "AmendOrder": ("modify-trades",), "CancelOrder": ("cancel-trades",), "CancelAll": ("cancel-trades",),
    "CancelAllOrdersAfter": ("cancel-trades",), "CancelOrderBatch": ("cancel-trades",),
    "Allocate": ("earn-funds",), "Deallocate": ("earn-funds",),
}


def pair_ids(venue: VenueSim) -> dict[tuple[str, str], tuple[str, str]]:
    """(base, quote) -> (pair id, altname) for every pair the venue lists, traded and quote-only."""
    return {pair: PAIRS.get(pair) or QUOTE_PAIRS[pair] for pair in venue.listed_markets()}


def asset_id(code: str) -> str:
    return ASSET_IDS.get(code, code)


def altname_of(code: str) -> str:
    return ALTNAMES.get(asset_id(code), code)


def decimals(kraken_asset: str) -> int:
    return ASSET_DECIMALS.get(kraken_asset, 8)


def kraken_id(prefix: str, seed: str) -> str:
    """Kraken-style reference id (``TCWJEG-FL4SZ-3FKGH6``), derived from our internal id."""
    text = base64.b32encode(hashlib.sha1(seed.encode()).digest()).decode()  # noqa: S324 - an id, not a MAC
    return f"{prefix}{text[:5]}-{text[5:10]}-{text[10:16]}"


def padded(value: Decimal, places: int) -> str:
    """Kraken pads amounts to the asset's decimals; never round (the sim's values are the truth)."""
    text = fmt(value)
    whole, _, frac = text.partition(".")
    if len(frac) < places:
        frac += "0" * (places - len(frac))
    return f"{whole}.{frac}" if frac else whole


def seconds(ms: int) -> float:
    return ms / 1000


def kraken_error(*errors: str, status: int = 200) -> VenueError:
    return VenueError(status, {"error": list(errors)})


@dataclass(frozen=True)
class LedgerEntry:
    id: str
    refid: str
    time_ms: int
    type: str
    asset: str  # unified code
    amount: Decimal
    fee: Decimal
    balance: Decimal


@dataclass
class Listing:
    """Entries in ascending order, with each id's position (for ``start``/``end`` given as ids)."""

    items: list[Any]
    times_ms: list[int]
    positions: dict[str, int]


def listing(items: list[Any], times_ms: list[int], ids: list[str]) -> Listing:
    return Listing(items, times_ms, {i: n for n, i in enumerate(ids)})


@dataclass
class Book:
    """An account rendered in Kraken's terms, rebuilt only when the account's history grows."""

    size: tuple[int, int, int]
    trades: Listing
    ledgers: dict[str, Listing]  # by ledger type, "all" included


class KrakenSim(VenueSim):
    id = "kraken"
    host = "api.kraken.com"
    markets = tuple(PAIRS)
    quote_markets = tuple(QUOTE_PAIRS)
    page_limits = {"trades": PAGE, "deposits": PAGE, "withdrawals": PAGE}

    def __init__(self, state: Any) -> None:
        super().__init__(state)
        self._books: dict[str, Book] = {}
        self.handlers: dict[str, Callable[[Key, dict[str, str]], Any]] = {
            "GetApiKeyInfo": self.api_key_info, "Balance": self.balance, "BalanceEx": self.balance_ex,
            "TradesHistory": self.trades_history, "Ledgers": self.ledgers,
            "DepositStatus": self.deposit_status, "WithdrawStatus": self.withdraw_status,
        }

    def mint_credentials(self) -> tuple[str, str, str | None, dict[str, Any]]:
        api_key = "/"
        while "/" in api_key:  # Kraken keys are base64; the control API carries them in a URL path
            api_key = base64.b64encode(secrets.token_bytes(42)).decode()
        secret = base64.b64encode(secrets.token_bytes(64)).decode()
        return api_key, secret, None, {"name": f"key-{secrets.token_hex(3)}", "created": now_ms() // 1000}

    def rate_limit_response(self, retry_after: int) -> Response:
        return Response(429, {"error": ["EAPI:Rate limit exceeded"]}, {"Retry-After": str(retry_after)})

    def outage_response(self) -> Response:
        return Response(503, {"error": ["EService:Unavailable"]})

    def stream_ids(self, account: Account, stream: str) -> set[str]:
        book = self.book(account)
        if stream == "trades":
            return set(book.trades.positions)
        if stream in ("deposits", "withdrawals"):
            return set(book.ledgers.get(stream.removesuffix("s"), listing([], [], [])).positions)
        return super().stream_ids(account, stream)

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.method == "GET" and req.path == "/0/public/Time":
            # Get Server Time (https://docs.kraken.com/api-reference/market-data/get-server-time): unixtime in
            # seconds and an RFC 1123 string with a two-digit year, as in the documented example.
            seconds = self.server_time_ms() // 1000
            stamp = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%a, %d %b %y %H:%M:%S +0000")
            return self.ok({"unixtime": seconds, "rfc1123": stamp})
        if req.method == "GET" and req.path == "/0/public/Assets":
            return self.ok(self.assets())
        if req.method == "GET" and req.path == "/0/public/AssetPairs":
            return self.ok(self.asset_pairs())
        if req.method == "POST" and req.path.startswith("/0/private/"):
            method = req.path.removeprefix("/0/private/")
            form = self.form(req)
            key = self.authenticate(req, form)
            if method not in REQUIRES:
                raise kraken_error("EGeneral:Unknown method")
            needed = REQUIRES[method]
            if needed and not set(needed) & set(self.permission_strings(key)):
                raise kraken_error("EGeneral:Permission denied")
            handler = self.handlers.get(method)
            if handler is None:  # a permitted order/withdrawal: the sim never moves anything
                raise kraken_error("EGeneral:Invalid arguments")
            return self.ok(handler(key, form))
        raise kraken_error("EGeneral:Unknown method", status=404)

    @staticmethod
    def ok(result: Any) -> Response:
        return Response(200, {"error": [], "result": result})

    @staticmethod
    def form(req: Request) -> dict[str, str]:
        text = req.body.decode("utf-8", "replace")
        if req.header("Content-Type").startswith("application/json"):
            try:
                return {k: str(v) for k, v in json.loads(text or "{}").items()}
            except (ValueError, AttributeError):
                raise kraken_error("EGeneral:Invalid arguments") from None
        return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}

    def authenticate(self, req: Request, form: dict[str, str]) -> Key:
        key = self.key_or_none(req.header("API-Key"))
        if key is None:
            raise kraken_error("EAPI:Invalid key")
        nonce = form.get("nonce", "")
        try:
            secret = base64.b64decode(key.api_secret)
            message = req.path.encode() + hashlib.sha256(nonce.encode() + req.body).digest()
            expected = base64.b64encode(hmac.new(secret, message, hashlib.sha512).digest()).decode()
        except ValueError:
            raise kraken_error("EAPI:Invalid signature") from None
        if not hmac.compare_digest(expected, req.header("API-Sign")):
            raise kraken_error("EAPI:Invalid signature")
        if not nonce.isdigit() or int(nonce) <= key.last_nonce:
            raise kraken_error("EAPI:Invalid nonce")
        key.last_nonce = int(nonce)
        return key

    @staticmethod
    def permission_strings(key: Key) -> list[str]:
        """Kraken's strings for the key; ``extra["permissions"]`` adds raw strings (tests of new ones), and
        ``extra["exact_permissions"]`` (``/_sim/kraken/keys/<key>/permission_strings``) replaces them all, for keys
        made exactly as a guide says (Kraken's read-only recipe has no query-ledger)."""
        if "exact_permissions" in key.extra:
            return list(key.extra["exact_permissions"])
        granted = [p for name, grants in GRANTS.items() if name in key.permissions for p in grants]
        return granted + [p for p in key.extra.get("permissions", []) if p not in granted]

    def control(self, segs: list[str], method: str, body: dict[str, Any]) -> Response | None:
        if len(segs) == 3 and segs[0] == "keys" and segs[2] == "permission_strings" and method == "POST":
            key = self.keys.get(segs[1])
            if key is None:
                return Response(404, {"error": "unknown api key"})
            key.extra["exact_permissions"] = [str(p) for p in body.get("permissions", [])]
            return Response(200, {"permissions": key.extra["exact_permissions"]})
        return None

    def transfers_changed(self, account: Account) -> None:
        self._books.pop(account.id, None)

    # -- public -----------------------------------------------------------------------------
    def assets(self) -> dict[str, Any]:
        codes = sorted({c for pair in pair_ids(self) for c in pair} | {"USDC", "XRP", "ADA"})
        return {asset_id(c): {"aclass": "currency", "altname": altname_of(c),
                              "decimals": decimals(asset_id(c)), "display_decimals": 5, "status": "enabled"}
                for c in codes}

    def asset_pairs(self) -> dict[str, Any]:
        out = {}
        for (base, quote), (pair_id, altname) in pair_ids(self).items():
            out[pair_id] = {
                "altname": altname, "wsname": f"{altname_of(base)}/{altname_of(quote)}",
                "aclass_base": "currency", "base": asset_id(base), "aclass_quote": "currency", "quote": asset_id(quote),
                "lot": "unit", "cost_decimals": 5, "pair_decimals": 5 if quote == "BTC" else 2, "lot_decimals": 8,
                "lot_multiplier": 1, "leverage_buy": [], "leverage_sell": [],
                "fees": [[0, 0.4], [10000, 0.35]], "fees_maker": [[0, 0.25], [10000, 0.2]],
                "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
                "ordermin": "0.0001", "costmin": "0.5", "tick_size": "0.01", "status": "online",
            }
        return out

    # -- private ----------------------------------------------------------------------------
    def api_key_info(self, key: Key, form: dict[str, str]) -> dict[str, Any]:
        created = str(key.extra["created"])
        return {
            "apiKeyName": key.extra["name"], "apiKey": key.api_key, "nonce": str(key.last_nonce),
            "nonceWindow": 0, "permissions": self.permission_strings(key),
            "iban": "AA12 N84G " + key.account.id[:8].upper(),
            "validUntil": "0", "queryFrom": "0", "queryTo": "0", "createdTime": created, "modifiedTime": created,
            "ipAllowlist": [], "lastUsed": str(now_ms() // 1000),
        }

    def balance(self, key: Key, form: dict[str, str]) -> dict[str, Any]:
        return {asset_id(a): padded(v, decimals(asset_id(a))) for a, v in sorted(key.account.balances.items())}

    def balance_ex(self, key: Key, form: dict[str, str]) -> dict[str, Any]:
        return {asset_id(a): {"balance": padded(v, decimals(asset_id(a))), "hold_trade": padded(Decimal(0), 4)}
                for a, v in sorted(key.account.balances.items())}

    def trades_history(self, key: Key, form: dict[str, str]) -> dict[str, Any]:
        selected, count = self.window(self.book(key.account).trades, form)
        return {"trades": {txid: self.render_trade(txid, t) for txid, t in selected}, "count": count}

    def ledgers(self, key: Key, form: dict[str, str]) -> dict[str, Any]:
        book = self.book(key.account)
        entries = book.ledgers.get(form.get("type", "all") or "all", listing([], [], []))
        wanted = {a for a in form.get("asset", "all").split(",") if a and a != "all"}
        if wanted:
            kept = [e for e in entries.items if asset_id(e.asset) in wanted]
            entries = listing(kept, [e.time_ms for e in kept], [e.id for e in kept])
        selected, count = self.window(entries, form)
        return {"ledger": {e.id: self.render_entry(e) for e in selected}, "count": count}

    def deposit_status(self, key: Key, form: dict[str, str]) -> list[dict[str, Any]]:
        return [self.render_funding(t, "deposit") for t in reversed(key.account.deposits)]

    def withdraw_status(self, key: Key, form: dict[str, str]) -> list[dict[str, Any]]:
        return [self.render_funding(t, "withdrawal") for t in reversed(key.account.withdrawals)]

    # -- paging -----------------------------------------------------------------------------
    @staticmethod
    def window(entries: Listing, form: dict[str, str]) -> tuple[list[Any], int]:
        """Kraken's paging: (start, end] by id or timestamp over the ascending list, newest first, ofs."""
        lo, hi = 0, len(entries.items)
        if form.get("start"):
            lo = KrakenSim.bound(form["start"], entries)
        if form.get("end"):
            hi = KrakenSim.bound(form["end"], entries)
        try:
            ofs = max(0, int(form.get("ofs") or 0))
        except ValueError:
            raise kraken_error("EGeneral:Invalid arguments:ofs") from None
        top = hi - ofs  # newest first: skip ``ofs`` from the top of the window
        return (entries.items[max(lo, top - PAGE):top][::-1] if top > lo else []), max(0, hi - lo)

    @staticmethod
    def bound(value: str, entries: Listing) -> int:
        """Index just past ``value``: an id resolves to its position, a timestamp to its time.
        (``start`` is exclusive and ``end`` inclusive, so both cut just after that entry.)"""
        try:
            limit_ms = float(value) * 1000
        except ValueError:
            if value not in entries.positions:
                raise kraken_error("EGeneral:Invalid arguments") from None
            return entries.positions[value] + 1
        return bisect.bisect_right(entries.times_ms, limit_ms)

    # -- rendering --------------------------------------------------------------------------
    def book(self, account: Account) -> Book:
        size = (len(account.trades), len(account.deposits), len(account.withdrawals))
        cached = self._books.get(account.id)
        if cached is not None and cached.size == size:
            return cached
        trades = [(kraken_id("T", t.id), t) for t in account.trades]
        legs: list[tuple[tuple[int, int, int], str, str, str, str, Decimal, Decimal]] = []
        for txid, t in trades:
            sign = 1 if t.side == "buy" else -1
            base_fee, quote_fee = (t.fee, Decimal(0)) if t.fee_asset == t.base else (Decimal(0), t.fee)
            at = (t.timestamp, int(t.id))
            legs.append(((*at, 0), f"{t.id}:base", txid, "trade", t.base, sign * t.amount, base_fee))
            legs.append(((*at, 1), f"{t.id}:quote", txid, "trade", t.quote, -sign * t.cost, quote_fee))
        for kind, transfers in (("deposit", account.deposits), ("withdrawal", account.withdrawals)):
            for tr in transfers:
                if tr.status != "ok":  # Kraken books funding in the ledger once it is credited
                    continue
                amount = tr.amount if kind == "deposit" else -tr.amount
                legs.append(((tr.timestamp, int(tr.id), 0), f"{kind}:{tr.id}", kraken_id("F", tr.id), kind, tr.asset,
                             amount, tr.fee))
        legs.sort(key=lambda leg: leg[0])
        running: dict[str, Decimal] = {}
        by_type: dict[str, list[LedgerEntry]] = {"all": []}
        for order, seed, refid, kind, asset, amount, fee in legs:
            running[asset] = running.get(asset, Decimal(0)) + amount - fee
            entry = LedgerEntry(kraken_id("L", seed), refid, order[0], kind, asset, amount, fee, running[asset])
            by_type["all"].append(entry)
            by_type.setdefault(kind, []).append(entry)
        book = Book(size, listing(trades, [t.timestamp for _, t in trades], [txid for txid, _ in trades]),
                    {kind: listing(entries, [e.time_ms for e in entries], [e.id for e in entries])
                     for kind, entries in by_type.items()})
        self._books[account.id] = book
        return book

    @staticmethod
    def render_trade(txid: str, t: Trade) -> dict[str, Any]:
        pair_id = PAIRS.get((t.base, t.quote), (asset_id(t.base) + asset_id(t.quote), ""))[0]
        quote_places = decimals(asset_id(t.quote))
        return {
            "ordertxid": kraken_id("O", t.order_id), "postxid": kraken_id("P", t.id), "pair": pair_id,
            "aclass": "forex", "time": seconds(t.timestamp), "type": t.side, "ordertype": "limit",
            "price": padded(t.price, 5), "cost": padded(t.cost, quote_places), "fee": padded(t.fee, quote_places),
            "vol": padded(t.amount, 8), "margin": "0.00000", "leverage": "0", "misc": "",
            "trade_id": int(t.id), "maker": not t.taker,
        }

    @staticmethod
    def render_entry(e: LedgerEntry) -> dict[str, Any]:
        places = decimals(asset_id(e.asset))
        return {"refid": e.refid, "time": seconds(e.time_ms), "type": e.type, "subtype": "", "aclass": "currency",
                "asset": asset_id(e.asset), "amount": padded(e.amount, places), "fee": padded(e.fee, places),
                "balance": padded(e.balance, places)}

    @staticmethod
    def render_funding(t: Transfer, kind: str) -> dict[str, Any]:
        places = decimals(asset_id(t.asset))
        status = {"ok": "Success", "pending": "Pending", "failed": "Failure"}.get(t.status, "Pending")
        return {"method": t.network, "aclass": "currency", "asset": asset_id(t.asset), "refid": kraken_id("F", t.id),
                "txid": t.txid, "info": t.address, "amount": padded(t.amount, places), "fee": padded(t.fee, places),
                "time": t.timestamp // 1000, "status": status, "type": kind}
