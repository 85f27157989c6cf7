"""Binance spot simulator (api.binance.com): the endpoints a read-only monitor touches, on the wire.

What it reproduces, because the adapter and ccxt depend on it:

- SIGNED requests: ``X-MBX-APIKEY`` plus ``timestamp``/``recvWindow`` and a hex HMAC-SHA256 over the raw
  query string up to ``&signature=`` (VENUES.md A.1); the timestamp window (1000 ms ahead, ``recvWindow``
  behind, ``recvWindow`` at most 60000); errors as Binance sends them: 401 ``-2014``/``-2015``, 400
  ``-1022``/``-1021``, 429 ``-1003`` with ``Retry-After``.
- The permission endpoint ``/sapi/v1/account/apiRestrictions``; ``/api/v3/account`` keeps reporting the
  account-level ``canTrade``/``canWithdraw`` as true even for read-only keys (the trap in VENUES.md §1).
- ``myTrades`` needs a symbol and pages by ``fromId`` (ascending, at most 1000, ``fromId`` not combinable
  with a time range, a time range at most 24 h); deposit and withdrawal history take at most 90 days per
  request, newest first, paged by ``offset``, with the documented status codes (pending ones without a
  ``completeTime``). Sources: docs/VENUES-SOURCES.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from appliance.sim.core import (
    Account,
    Key,
    Request,
    Response,
    SimState,
    Transfer,
    VenueError,
    VenueSim,
    fmt,
    now_ms,
)

DAY_MS = 24 * 3600 * 1000
HISTORY_WINDOW_MS = 90 * DAY_MS
TRADES_WINDOW_MS = DAY_MS
_ALNUM = string.ascii_letters + string.digits
_KEY_FORMAT = re.compile(r"[A-Za-z0-9]{64}")

# The four abstract permissions onto apiRestrictions flags.
_FLAGS_BY_PERMISSION = {
    "read": ("enableReading",),
    "trade": ("enableSpotAndMarginTrading",),
    "transfer": ("enableInternalTransfer", "permitsUniversalTransfer"),
    "withdraw": ("enableWithdrawals",),
}
_ALL_FLAGS = ("enableReading", "enableSpotAndMarginTrading", "enableWithdrawals", "enableInternalTransfer",
              "enableMargin", "enableFutures", "permitsUniversalTransfer", "enableVanillaOptions",
              "enableFixApiTrade", "enableFixReadOnly", "enablePortfolioMarginTrading")
# docs: Deposit History (supporting network): 0 pending, 6 credited but cannot withdraw, 7 wrong deposit,
# 8 waiting user confirm, 1 success, 2 rejected. Withdraw History: 0 email sent, 1 cancelled, 2 awaiting
# approval, 3 rejected, 4 processing, 5 failure, 6 completed.
_DEPOSIT_STATUS = {"ok": 1, "pending": 0, "failed": 7, "rejected": 2, "cancelled": 2}
_WITHDRAW_STATUS = {"ok": 6, "pending": 4, "failed": 5, "rejected": 3, "cancelled": 1}

Handler = Callable[[Request, dict[str, str], Key], Any]


def binance_error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> VenueError:
    return VenueError(status, {"code": code, "msg": msg}, headers)


class BinanceSim(VenueSim):
    id = "binance"
    host = "api.binance.com"
    page_limits = {"trades": 1000, "deposits": 1000, "withdrawals": 1000}
    # exchangeInfo lists more than the markets trades are seeded on, so symbol derivation has a choice.
    listings: tuple[tuple[str, str], ...] = (*VenueSim.markets, ("BNB", "USDT"), ("XRP", "USDT"), ("SOL", "BTC"))
    quote_markets: tuple[tuple[str, str], ...] = (("USDC", "USDT"), ("EUR", "USDT"))

    def __init__(self, state: SimState) -> None:
        super().__init__(state)
        # Binance.US may not serve apiRestrictions (VENUES.md §2): tests set a 404 or an error body here.
        self.restrictions_answer: Response | None = None
        self._public: dict[str, Callable[[dict[str, str]], Any]] = {
            "/api/v3/exchangeInfo": self.exchange_info,
            # Check Server Time (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/general-endpoints)
            "/api/v3/time": lambda _params: {"serverTime": self.server_time_ms()},
        }
        self._private: dict[str, Handler] = {
            "/sapi/v1/account/apiRestrictions": self.api_restrictions,
            "/api/v3/account": self.account,
            "/api/v3/myTrades": self.my_trades,
            "/sapi/v1/capital/deposit/hisrec": self.deposit_history,
            "/sapi/v1/capital/withdraw/history": self.withdraw_history,
        }

    # -- keys and transport ------------------------------------------------------------------------
    def mint_credentials(self) -> tuple[str, str, str | None, dict[str, Any]]:
        def token() -> str:
            return "".join(secrets.choice(_ALNUM) for _ in range(64))

        return token(), token(), None, {}

    def rate_limit_response(self, retry_after: int) -> Response:
        body = {"code": -1003, "msg": "Too much request weight used; current limit is 6000 request weight per "
                "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."}
        return Response(429, body, {"Retry-After": str(retry_after)})

    def outage_response(self) -> Response:
        body = {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}
        return Response(503, body)

    def handle(self, req: Request) -> Response:
        if req.method != "GET":
            raise binance_error(405, -1000, "An unknown error occurred while processing the request.")
        if req.path == "/sapi/v1/account/apiRestrictions" and self.restrictions_answer is not None:
            return self.restrictions_answer
        params = dict(parse_qsl(req.query, keep_blank_values=True))
        public = self._public.get(req.path)
        if public is not None:
            return Response(200, public(params))
        private = self._private.get(req.path)
        if private is None:
            return Response(404, "<html><body><h1>404 Not Found</h1></body></html>", content_type="text/html")
        key = self.authenticate(req, params)
        return Response(200, private(req, params, key))

    def authenticate(self, req: Request, params: dict[str, str]) -> Key:
        """Key, timestamp window, then signature, answered with Binance's own codes."""
        api_key = req.header("X-MBX-APIKEY")
        if not _KEY_FORMAT.fullmatch(api_key):
            raise binance_error(401, -2014, "API-key format invalid.")
        key = self.key_or_none(api_key)
        if key is None:
            raise binance_error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        signed, sep, signature = req.query.rpartition("&signature=")
        if not sep or not signature:
            raise binance_error(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or "
                                "malformed.")
        self.check_timestamp(params)
        expected = hmac.new(key.api_secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise binance_error(400, -1022, "Signature for this request is not valid.")
        return key

    @staticmethod
    def check_timestamp(params: dict[str, str]) -> None:
        try:
            timestamp = int(params["timestamp"])
            recv_window = int(params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            raise binance_error(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or "
                                "malformed.") from None
        if recv_window > 60000:
            raise binance_error(400, -1131, "recvWindow must be less than 60000")
        now = now_ms()
        if timestamp > now + 1000:
            raise binance_error(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - timestamp > recv_window:
            raise binance_error(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    @staticmethod
    def require_read(key: Key) -> None:
        if "read" not in key.permissions:
            raise binance_error(401, -2015, "Invalid API-key, IP, or permissions for action.")

    # -- public ------------------------------------------------------------------------------------
    def exchange_info(self, params: dict[str, str]) -> dict[str, Any]:
        return {
            "timezone": "UTC", "serverTime": now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self.symbol_info(base, quote) for base, quote in self.listed_markets()],
        }

    @staticmethod
    def symbol_info(base: str, quote: str) -> dict[str, Any]:
        return {
            "symbol": base + quote, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
            "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True, "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.00000001", "maxPrice": "1000000.00000000",
                 "tickSize": "0.00000001"},
                {"filterType": "LOT_SIZE", "minQty": "0.00000001", "maxQty": "90000000.00000000",
                 "stepSize": "0.00000001"},
                {"filterType": "NOTIONAL", "minNotional": "0.00000001", "applyMinToMarket": True,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
            ],
            "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    # -- private -----------------------------------------------------------------------------------
    def api_restrictions(self, req: Request, params: dict[str, str], key: Key) -> dict[str, Any]:
        """Any valid key may read its own restrictions; flags follow the key's abstract permissions."""
        body: dict[str, Any] = {"ipRestrict": "withdraw" in key.permissions, "createTime": key.created_at}
        for flag in _ALL_FLAGS:
            body[flag] = False
        for permission in key.permissions:
            for flag in _FLAGS_BY_PERMISSION[permission]:
                body[flag] = True
        if "trade" in key.permissions and not body["ipRestrict"]:
            # Unrestricted keys lose spot trading 30 days after creation (Binance, July 2021).
            body["tradingAuthorityExpirationTime"] = key.created_at + 30 * DAY_MS
        return body

    def account(self, req: Request, params: dict[str, str], key: Key) -> dict[str, Any]:
        self.require_read(key)
        balances = [{"asset": asset, "free": fmt(amount, 8), "locked": "0.00000000"}
                    for asset, amount in sorted(key.account.balances.items())]
        return {
            "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000",
                                "seller": "0.00000000"},
            # Account-level flags: true whatever the key may do (never a scope signal).
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": now_ms(),
            "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"],
            "uid": int(key.account.id[:8], 16),
        }

    def my_trades(self, req: Request, params: dict[str, str], key: Key) -> list[dict[str, Any]]:
        self.require_read(key)
        symbol = params.get("symbol", "")
        if not symbol:
            raise binance_error(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        market = next(((b, q) for b, q in self.listings if b + q == symbol), None)
        if market is None:
            raise binance_error(400, -1121, "Invalid symbol.")
        limit = self.limit(params, default=500, maximum=self.page_limits["trades"])
        from_id, start, end = params.get("fromId"), params.get("startTime"), params.get("endTime")
        if from_id is not None and (start is not None or end is not None):
            raise binance_error(400, -1128, "Combination of optional parameters invalid.")
        trades = [t for t in key.account.trades if (t.base, t.quote) == market]
        trades.sort(key=lambda t: int(t.id))
        if from_id is not None:
            selected = [t for t in trades if int(t.id) >= int(from_id)][:limit]
        elif start is not None or end is not None:
            lo = int(start) if start is not None else int(end or 0) - TRADES_WINDOW_MS
            hi = int(end) if end is not None else lo + TRADES_WINDOW_MS
            if hi - lo > TRADES_WINDOW_MS:
                raise binance_error(400, -1127, "More than 24 hours between startTime and endTime.")
            selected = [t for t in trades if lo <= t.timestamp <= hi][:limit]
        else:
            selected = trades[-limit:]
        return [{
            "symbol": symbol, "id": int(t.id), "orderId": int(t.order_id), "orderListId": -1,
            "price": fmt(t.price, 8), "qty": fmt(t.amount, 8), "quoteQty": fmt(t.cost, 8),
            "commission": fmt(t.fee, 8), "commissionAsset": t.fee_asset, "time": t.timestamp,
            "isBuyer": t.side == "buy", "isMaker": not t.taker, "isBestMatch": True,
        } for t in selected]

    def deposit_history(self, req: Request, params: dict[str, str], key: Key) -> list[dict[str, Any]]:
        self.require_read(key)
        return [self.render_deposit(t) for t in self.history_page(key.account.deposits, params)]

    def withdraw_history(self, req: Request, params: dict[str, str], key: Key) -> list[dict[str, Any]]:
        self.require_read(key)
        return [self.render_withdrawal(t) for t in self.history_page(key.account.withdrawals, params)]

    def history_page(self, items: list[Transfer], params: dict[str, str]) -> list[Transfer]:
        """Deposits/withdrawals: a <= 90-day window (default: the last 90 days), newest first, by offset."""
        end = int(params.get("endTime") or now_ms())
        start = int(params["startTime"]) if params.get("startTime") else end - HISTORY_WINDOW_MS
        if end - start > HISTORY_WINDOW_MS:
            raise binance_error(400, -1127, "More than 90 days between startTime and endTime.")
        limit = self.limit(params, default=1000, maximum=1000)
        offset = int(params.get("offset") or 0)
        coin = params.get("coin")
        chosen = [t for t in items if start <= t.timestamp <= end and (not coin or t.asset == coin)]
        chosen.sort(key=lambda t: (t.timestamp, int(t.id)), reverse=True)
        return chosen[offset:offset + limit]

    @staticmethod
    def limit(params: dict[str, str], *, default: int, maximum: int) -> int:
        try:
            value = int(params.get("limit") or default)
        except ValueError:
            raise binance_error(400, -1100, "Illegal characters found in parameter 'limit'.") from None
        if not 1 <= value <= maximum:
            raise binance_error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        return value

    def render_deposit(self, t: Transfer) -> dict[str, Any]:
        return {
            "id": t.id, "amount": fmt(t.amount, 8), "coin": t.asset, "network": t.network,
            "status": _DEPOSIT_STATUS.get(t.status, 0), "address": t.address, "addressTag": "", "txId": t.txid,
            "insertTime": t.timestamp, "transferType": 1 if t.internal else 0,
            "confirmTimes": "12/12" if t.status == "ok" else "1/12", "unlockConfirm": 0, "walletType": 0,
        }

    def render_withdrawal(self, t: Transfer) -> dict[str, Any]:
        applied = dt.datetime.fromtimestamp(t.timestamp // 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        row: dict[str, Any] = {
            "id": t.id, "amount": fmt(t.amount, 8), "transactionFee": fmt(t.fee or Decimal(0), 8), "coin": t.asset,
            "status": _WITHDRAW_STATUS.get(t.status, 4), "address": t.address, "txId": t.txid,
            "applyTime": applied, "network": t.network, "transferType": 1 if t.internal else 0, "info": "",
            "confirmNo": 12 if t.status == "ok" else 0, "walletType": 0, "txKey": "",
        }
        if t.status == "ok":  # a withdrawal has a completion time only once it completed
            row["completeTime"] = dt.datetime.fromtimestamp(t.timestamp // 1000 + 120, dt.UTC).strftime(
                "%Y-%m-%d %H:%M:%S")
        return row

    def stream_ids(self, account: Account, stream: str) -> set[str]:
        if stream == "trades":
            listed = set(self.listings)
            return {t.id for t in account.trades if (t.base, t.quote) in listed}
        return super().stream_ids(account, stream)
