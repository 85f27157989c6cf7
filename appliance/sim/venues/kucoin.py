"""KuCoin (classic spot account, REST) simulator.

Wire facts served here (VENUES.md §8, Appendix A.6):

- Private requests carry ``KC-API-KEY``, ``KC-API-TIMESTAMP`` (ms, within 5 s), ``KC-API-KEY-VERSION`` (2),
  ``KC-API-PASSPHRASE = base64(HMAC-SHA256(secret, passphrase))`` for v2/v3 keys (plaintext for v1) and
  ``KC-API-SIGN = base64(HMAC-SHA256(secret, timestamp + METHOD + path?query + body))``; the query is signed
  exactly as sent (ccxt does not URL-encode it). ccxt's partner headers are ignored, as KuCoin does for us.
- Errors are ``{"code": "4000xx", "msg": ...}``: 400001 missing header, 400002 timestamp, 400003 unknown key,
  400004 passphrase, 400005 signature (HTTP 401); 400007 permission (HTTP 403). ccxt maps 400007 to
  AuthenticationError.
- Permissions (``GET /api/v1/user/api-key`` → ``permission``): read → ``General``, trade → ``Spot``,
  transfer → ``InnerTransfer``, withdraw → ``Transfer`` (KuCoin's Transfer permission is the one that withdraws).
  Every endpoint served here needs General.
- History: ``/api/v1/fills``, ``/api/v1/deposits``, ``/api/v1/withdrawals`` answer one time window of at most
  7 days (``startAt``/``endAt`` in ms; none given → the last 7 days), newest first, ``currentPage``/``pageSize``
  (max 500) pagination. Deposits carry no id of their own: ``walletTxId`` identifies them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from appliance.sim.core import Account, Key, Request, Response, Trade, Transfer, VenueError, VenueSim, fmt, now_ms

WINDOW_MS = 7 * 86_400_000
_PERMISSIONS = {"read": "General", "trade": "Spot", "transfer": "InnerTransfer", "withdraw": "Transfer"}
# docs: Get Deposit History / Get Withdrawal History: PROCESSING, WALLET_PROCESSING, SUCCESS, FAILURE (a
# cancelled withdrawal ends as FAILURE: KuCoin has no cancelled status).
_STATUS = {"ok": "SUCCESS", "pending": "PROCESSING", "failed": "FAILURE", "rejected": "FAILURE",
           "cancelled": "FAILURE"}


def _fail(status: int, code: str, msg: str) -> VenueError:
    return VenueError(status, {"code": code, "msg": msg})


class KucoinSim(VenueSim):
    id = "kucoin"
    host = "api.kucoin.com"
    quote_markets = (("USDC", "USDT"),)
    uses_passphrase = True
    page_limits = {"trades": 500, "deposits": 500, "withdrawals": 500}
    timestamp_window_ms = 5_000

    def mint_credentials(self) -> tuple[str, str, str | None, dict[str, Any]]:
        # KuCoin keys look like Mongo object ids; secrets are UUIDs; the passphrase is the user's choice.
        return secrets.token_hex(12), str(uuid.uuid4()), "Vg-" + secrets.token_urlsafe(12), {}

    def rate_limit_response(self, retry_after: int) -> Response:
        return Response(429, {"code": "429000", "msg": "Too Many Requests"}, {
            "Retry-After": str(retry_after), "gw-ratelimit-limit": "4000", "gw-ratelimit-remaining": "0",
            "gw-ratelimit-reset": str(retry_after * 1000)})

    def outage_response(self) -> Response:
        return Response(503, {"code": "500000", "msg": "Service unavailable, please try again later."})

    # -- dispatch ------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        params = dict(parse_qsl(req.query, keep_blank_values=True))
        if req.method == "GET" and req.path == "/api/v1/timestamp":
            # Get Server Time (https://www.kucoin.com/docs/rest/spot-trading/market-data/get-server-time): ms in data.
            return Response(200, {"code": "200000", "msg": "success", "data": self.server_time_ms()})
        if req.method == "GET" and req.path == "/api/v2/symbols":
            return self._ok(self._symbols())
        route = _ROUTES.get((req.method, req.path))
        key = self.authenticate(req)
        if route is None:
            raise _fail(404, "404000", "Url Not Found")
        if "read" not in key.permissions:
            raise _fail(403, "400007", "Access denied, require more permission.")
        return self._ok(route(self, key, params))

    @staticmethod
    def _ok(data: Any) -> Response:
        return Response(200, {"code": "200000", "data": data})

    def authenticate(self, req: Request) -> Key:
        api_key, signature = req.header("KC-API-KEY"), req.header("KC-API-SIGN")
        timestamp, passphrase = req.header("KC-API-TIMESTAMP"), req.header("KC-API-PASSPHRASE")
        if not (api_key and signature and timestamp and passphrase):
            raise _fail(401, "400001", "Please check the header of your request for KC-API-KEY, KC-API-SIGN, "
                                       "KC-API-TIMESTAMP, KC-API-PASSPHRASE")
        if not timestamp.isdigit() or abs(now_ms() - int(timestamp)) > self.timestamp_window_ms:
            raise _fail(401, "400002", "KC-API-TIMESTAMP Invalid -- Time differs from server time by more than "
                                       "5 seconds")
        key = self.key_or_none(api_key)
        if key is None:
            raise _fail(401, "400003", "KC-API-KEY not exists")
        secret = key.api_secret.encode()
        expected_passphrase = (key.passphrase or "").encode()
        if req.header("KC-API-KEY-VERSION", "1") in ("2", "3"):
            expected_passphrase = base64.b64encode(hmac.new(secret, expected_passphrase, hashlib.sha256).digest())
        if not hmac.compare_digest(passphrase.encode(), expected_passphrase):
            raise _fail(401, "400004", "Invalid KC-API-PASSPHRASE")
        payload = timestamp.encode() + req.method.encode() + req.path_qs.encode() + req.body
        expected = base64.b64encode(hmac.new(secret, payload, hashlib.sha256).digest())
        if not hmac.compare_digest(signature.encode(), expected):
            raise _fail(401, "400005", "Invalid KC-API-SIGN")
        return key

    # -- public --------------------------------------------------------------------------------
    def _symbols(self) -> list[dict[str, Any]]:
        return [{
            "symbol": f"{base}-{quote}", "name": f"{base}-{quote}", "baseCurrency": base, "quoteCurrency": quote,
            "feeCurrency": quote, "market": "USDS", "baseMinSize": "0.00001", "quoteMinSize": "0.1",
            "baseMaxSize": "10000000000", "quoteMaxSize": "99999999", "baseIncrement": "0.00000001",
            "quoteIncrement": "0.000001", "priceIncrement": "0.01", "priceLimitRate": "0.1", "minFunds": "0.1",
            "isMarginEnabled": True, "enableTrading": True, "feeCategory": 1, "makerFeeCoefficient": "1.00",
            "takerFeeCoefficient": "1.00", "st": False,
        } for base, quote in self.listed_markets()]

    # -- private -------------------------------------------------------------------------------
    def _api_key(self, key: Key, params: dict[str, str]) -> dict[str, Any]:
        perms = [name for abstract, name in _PERMISSIONS.items() if abstract in key.permissions]
        return {"remark": "vigatra", "apiKey": key.api_key, "apiVersion": 3, "permission": ",".join(perms),
                "ipWhitelist": "", "createdAt": key.created_at, "uid": int(key.account.id, 16) % 10**9,
                "isMaster": True}

    def _accounts(self, key: Key, params: dict[str, str]) -> list[dict[str, Any]]:
        funding: dict[str, Decimal] = key.extra.get("funding", {})
        rows = [("trade", ccy, amount) for ccy, amount in key.account.balances.items()]
        rows += [("main", ccy, amount) for ccy, amount in funding.items()]
        return [{"id": hashlib.md5(f"{key.account.id}{kind}{ccy}".encode(), usedforsecurity=False).hexdigest()[:24],
                 "currency": ccy, "type": kind, "balance": fmt(amount), "available": fmt(amount), "holds": "0"}
                for kind, ccy, amount in sorted(rows)
                if (not params.get("type") or params["type"] == kind)
                and (not params.get("currency") or params["currency"] == ccy)]

    def _fills(self, key: Key, params: dict[str, str]) -> dict[str, Any]:
        rows = [t for t in self._window(key.account.trades, params) if params.get("tradeType", "TRADE") == "TRADE"]
        if params.get("symbol"):
            rows = [t for t in rows if f"{t.base}-{t.quote}" == params["symbol"]]
        return self._page(rows, params, _fill)

    def _deposits(self, key: Key, params: dict[str, str]) -> dict[str, Any]:
        return self._page(self._window(key.account.deposits, params), params, _deposit)

    def _withdrawals(self, key: Key, params: dict[str, str]) -> dict[str, Any]:
        return self._page(self._window(key.account.withdrawals, params), params, _withdrawal)

    @staticmethod
    def _window(rows: list[Any], params: dict[str, str]) -> list[Any]:
        try:
            start = int(params["startAt"]) if params.get("startAt") else None
            end = int(params["endAt"]) if params.get("endAt") else None
        except ValueError:
            raise _fail(400, "400100", "startAt or endAt is invalid") from None
        if start is None:
            end = end if end is not None else now_ms()
            start = end - WINDOW_MS
        elif end is None:
            end = start + WINDOW_MS
        if end - start > WINDOW_MS:
            raise _fail(400, "400100", "The time range cannot exceed 7 days")
        return [r for r in rows if start <= r.timestamp <= end]

    @staticmethod
    def _page(rows: list[Any], params: dict[str, str], render: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        try:
            page = int(params.get("currentPage") or 1)
            size = int(params.get("pageSize") or 50)
        except ValueError:
            raise _fail(400, "400100", "currentPage or pageSize is invalid") from None
        if size > 500:
            raise _fail(400, "400100", "pageSize should not greater than 500")
        page, size = max(page, 1), max(size, 10)
        rows = sorted(rows, key=lambda r: (r.timestamp, int(r.id)), reverse=True)
        total_page = (len(rows) + size - 1) // size
        return {"currentPage": page, "pageSize": size, "totalNum": len(rows), "totalPage": total_page,
                "items": [render(r) for r in rows[(page - 1) * size: page * size]]}

    def stream_ids(self, account: Account, stream: str) -> set[str]:
        if stream == "deposits":  # KuCoin deposits have no id: walletTxId is theirs
            return {t.txid for t in account.deposits}
        return super().stream_ids(account, stream)


def _fill(t: Trade) -> dict[str, Any]:
    return {
        "symbol": f"{t.base}-{t.quote}", "tradeId": t.id, "orderId": t.order_id, "counterOrderId": t.order_id + "c",
        "side": t.side, "liquidity": "taker" if t.taker else "maker", "forceTaker": False, "price": fmt(t.price),
        "size": fmt(t.amount), "funds": fmt(t.cost), "fee": fmt(t.fee), "feeRate": "0.001",
        "feeCurrency": t.fee_asset, "stop": "", "tradeType": "TRADE", "type": "limit", "createdAt": t.timestamp,
    }


def _transfer(t: Transfer) -> dict[str, Any]:
    return {
        "currency": t.asset, "chain": t.network.lower(), "status": _STATUS.get(t.status, "PROCESSING"),
        "address": t.address, "memo": "", "isInner": False, "amount": fmt(t.amount), "fee": fmt(t.fee),
        "walletTxId": t.txid, "createdAt": t.timestamp, "updatedAt": t.timestamp, "remark": "",
    }


def _deposit(t: Transfer) -> dict[str, Any]:
    return {**_transfer(t), "arrears": False}


def _withdrawal(t: Transfer) -> dict[str, Any]:
    return {"id": t.id, **_transfer(t)}


_ROUTES: dict[tuple[str, str], Callable[[KucoinSim, Key, dict[str, str]], Any]] = {
    ("GET", "/api/v1/user/api-key"): KucoinSim._api_key,
    ("GET", "/api/v1/accounts"): KucoinSim._accounts,
    ("GET", "/api/v1/fills"): KucoinSim._fills,
    ("GET", "/api/v1/deposits"): KucoinSim._deposits,
    ("GET", "/api/v1/withdrawals"): KucoinSim._withdrawals,
}
