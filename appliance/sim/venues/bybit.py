"""Bybit v5 simulator (api.bybit.com): a Unified Trading Account as a read-only monitor sees it.

What it reproduces, because the adapter and ccxt depend on it:

- Signing: ``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP``, ``X-BAPI-RECV-WINDOW`` and ``X-BAPI-SIGN`` = hex
  HMAC-SHA256 over timestamp + key + recvWindow + raw query (VENUES.md A.5); the window
  ``server - recvWindow <= timestamp < server + 1000``; failures as Bybit answers them (retCode 10003
  invalid key, 10004 "error sign!" echoing the signed origin string, 10002 stale timestamp).
- ``/v5/user/query-api`` with ``readOnly`` and ``permissions``: a read-only key still lists the sections
  it may read (``Wallet: [AccountTransfer, ...]``), which is why ``readOnly`` decides, not the lists.
- History as Bybit serves it: newest first, ``nextPageCursor`` paging, ``category`` required on the
  execution list (spot trades only under ``category=spot``), at most 7 days per execution query and
  30 days per deposit/withdrawal query, withdrawals on-chain only unless ``withdrawType=2``.
- Rate limiting as retCode 10006 on HTTP 200 with ``X-Bapi-Limit-Reset-Timestamp`` (Bybit sends no
  Retry-After).
- Transfers with the documented statuses (Enums: depositStatus, withdrawStatus); a deposit that is not yet a
  success has no ``successAt`` (""). Internal (off-chain) deposits from another Bybit user are served by
  ``/v5/asset/deposit/query-internal-record`` (``createdTime`` in seconds, status 1 processing / 2 success /
  3 failed), not by the on-chain deposit records.
- A sub-account key (``/_sim/bybit/keys/<key>/sub_account``) reports ``isMaster: false`` and is refused the
  withdrawal records ("Can query by the master UID's api key only"); the code it gets is not documented, so the
  sim answers the documented generic permission error 10005.
Sources: docs/VENUES-SOURCES.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import string
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from appliance.sim.core import Key, Request, Response, SimState, Transfer, VenueError, VenueSim, fmt, now_ms

DAY_MS = 24 * 3600 * 1000
EXECUTION_WINDOW_MS = 7 * DAY_MS
ASSET_WINDOW_MS = 30 * DAY_MS
OFF_CHAIN_NETWORK = "INTERNAL"  # sim convention: a withdrawal to another Bybit user (withdrawType 1)
_ALNUM = string.ascii_letters + string.digits
_KEY_FORMAT = re.compile(r"[A-Za-z0-9]{18}")
_DEPOSIT_STATUS = {"ok": 3, "pending": 2, "failed": 4, "rejected": 4, "cancelled": 4}
_INTERNAL_DEPOSIT_STATUS = {"ok": 2, "pending": 1, "failed": 3, "rejected": 3, "cancelled": 3}
_WITHDRAW_STATUS = {"ok": "success", "pending": "Pending", "failed": "Fail", "rejected": "Reject",
                    "cancelled": "CancelByUser"}
_READABLE_SECTIONS = {
    "ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"], "Wallet": ["AccountTransfer", "SubMemberTransfer"],
    "Options": ["OptionsTrade"], "Derivatives": ["DerivativesTrade"], "Exchange": ["ExchangeHistory"],
}
_WRITE_SECTIONS = {
    "trade": {"ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"], "Options": ["OptionsTrade"],
              "Derivatives": ["DerivativesTrade"]},
    "transfer": {"Wallet": ["AccountTransfer", "SubMemberTransfer"]},
    "withdraw": {"Wallet": ["Withdraw"]},
}

Handler = Callable[[dict[str, str], Key], Any]


def bybit_error(ret_code: int, msg: str, status: int = 200, headers: dict[str, str] | None = None) -> VenueError:
    return VenueError(status, envelope({}, ret_code, msg), headers)


def envelope(result: Any, ret_code: int = 0, msg: str = "OK") -> dict[str, Any]:
    return {"retCode": ret_code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now_ms()}


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms // 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BybitSim(VenueSim):
    id = "bybit"
    host = "api.bybit.com"
    page_limits = {"trades": 100, "deposits": 50, "withdrawals": 50}
    listings: tuple[tuple[str, str], ...] = (*VenueSim.markets, ("XRP", "USDT"), ("SOL", "USDC"))
    quote_markets = (("USDC", "USDT"),)

    def __init__(self, state: SimState) -> None:
        super().__init__(state)
        self._private: dict[str, Handler] = {
            "/v5/user/query-api": self.query_api,
            "/v5/account/info": self.account_info,
            "/v5/account/wallet-balance": self.wallet_balance,
            "/v5/asset/transfer/query-account-coins-balance": self.coins_balance,
            "/v5/execution/list": self.executions,
            "/v5/asset/deposit/query-record": self.deposits,
            "/v5/asset/deposit/query-internal-record": self.internal_deposits,
            "/v5/asset/withdraw/query-record": self.withdrawals,
        }

    def control(self, segs: list[str], method: str, body: dict[str, Any]) -> Response | None:
        if len(segs) == 3 and segs[0] == "keys" and segs[2] == "sub_account" and method == "POST":
            key = self.keys.get(segs[1])
            if key is None:
                return Response(404, {"error": "unknown api key"})
            key.extra["sub_account"] = bool(body.get("sub", True))
            return Response(200, {"sub_account": key.extra["sub_account"]})
        return None

    def stream_ids(self, account: Any, stream: str) -> set[str]:
        if stream == "deposits":
            return {t.id for t in account.deposits if not t.internal}
        if stream == "internal_deposits":
            return {t.id for t in account.deposits if t.internal}
        return super().stream_ids(account, stream)

    # -- keys and transport ------------------------------------------------------------------------
    def mint_credentials(self) -> tuple[str, str, str | None, dict[str, Any]]:
        key = "".join(secrets.choice(_ALNUM) for _ in range(18))
        secret = "".join(secrets.choice(_ALNUM) for _ in range(36))
        return key, secret, None, {"key_id": str(secrets.randbelow(10**8)), "user_id": 10**8 + secrets.randbelow(10**8)}

    def rate_limit_response(self, retry_after: int) -> Response:
        reset = now_ms() + retry_after * 1000
        headers = {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset)}
        return Response(200, envelope({}, 10006, "Too many visits!"), headers)

    def outage_response(self) -> Response:
        return Response(503, envelope({}, 10016, "Internal server error."))

    def handle(self, req: Request) -> Response:
        if req.method != "GET":
            raise bybit_error(10017, "request path not found or request method is invalid", status=404)
        params = dict(parse_qsl(req.query, keep_blank_values=True))
        if req.path == "/v5/market/time":
            # Get Bybit Server Time (https://bybit-exchange.github.io/docs/v5/market/time): seconds and nanoseconds
            # as strings, and the envelope's own "time" in ms.
            ms = self.server_time_ms()
            body = envelope({"timeSecond": str(ms // 1000), "timeNano": str(ms * 1_000_000)})
            body["time"] = ms
            return Response(200, body)
        if req.path == "/v5/market/instruments-info":
            return Response(200, envelope(self.instruments(params)))
        handler = self._private.get(req.path)
        if handler is None:
            raise bybit_error(10017, "request path not found or request method is invalid", status=404)
        key = self.authenticate(req)
        return Response(200, envelope(handler(params, key)))

    def authenticate(self, req: Request) -> Key:
        api_key = req.header("X-BAPI-API-KEY")
        key = self.key_or_none(api_key) if _KEY_FORMAT.fullmatch(api_key) else None
        if key is None:
            raise bybit_error(10003, "API key is invalid.", status=401)
        timestamp, recv_window = req.header("X-BAPI-TIMESTAMP"), req.header("X-BAPI-RECV-WINDOW", "5000")
        now = now_ms()
        if not (timestamp.isdigit() and recv_window.isdigit()
                and now - int(recv_window) <= int(timestamp) < now + 1000):
            raise bybit_error(10002, "invalid request, please check your server timestamp or recv_window param. "
                              f"req_timestamp[{timestamp}],server_timestamp[{now}],recv_window[{recv_window}]")
        origin = timestamp + api_key + recv_window + req.query
        expected = hmac.new(key.api_secret.encode(), origin.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, req.header("X-BAPI-SIGN")):
            raise bybit_error(10004, f"error sign! origin_string[{origin}]", status=401)
        return key

    # -- public ------------------------------------------------------------------------------------
    def instruments(self, params: dict[str, str]) -> dict[str, Any]:
        category = params.get("category", "")
        if category not in ("spot", "linear", "inverse", "option"):
            raise bybit_error(10001, "params error: category is invalid")
        rows = [] if category != "spot" else [{
            "symbol": base + quote, "baseCoin": base, "quoteCoin": quote, "innovation": "0", "status": "Trading",
            "marginTrading": "none", "stTag": "0",
            "lotSizeFilter": {"basePrecision": "0.00000001", "quotePrecision": "0.00000001",
                              "minOrderQty": "0.00000001", "maxOrderQty": "90000000", "minOrderAmt": "1",
                              "maxOrderAmt": "2000000"},
            "priceFilter": {"tickSize": "0.00000001"},
            "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.05"},
        } for base, quote in self.listed_markets()]
        return {"category": category, "list": rows, "nextPageCursor": ""}

    # -- private -----------------------------------------------------------------------------------
    def query_api(self, params: dict[str, str], key: Key) -> dict[str, Any]:
        writes = key.permissions - {"read"}
        sections: dict[str, list[str]] = {name: [] for name in (
            "ContractTrade", "Spot", "Wallet", "Options", "Derivatives", "CopyTrading", "BlockTrade", "Exchange",
            "NFT", "Affiliate", "Earn")}
        if writes:
            for permission in sorted(writes):
                for section, items in _WRITE_SECTIONS[permission].items():
                    sections[section] = sections[section] + items
        else:
            sections.update({name: list(items) for name, items in _READABLE_SECTIONS.items()})
        return {
            "id": key.extra["key_id"], "note": "vigatra", "apiKey": key.api_key, "readOnly": 0 if writes else 1,
            "secret": "", "permissions": sections, "ips": ["*"], "type": 1, "deadlineDay": 90,
            "expiredAt": iso(key.created_at + 90 * DAY_MS), "createdAt": iso(key.created_at), "unified": 0,
            "uta": 1, "userID": key.extra["user_id"], "inviterID": 0, "vipLevel": "No VIP", "mktMakerLevel": "0",
            "affiliateID": 0, "rsaPublicKey": "", "isMaster": not key.extra.get("sub_account"),
            "parentUid": str(key.extra["user_id"] - 1) if key.extra.get("sub_account") else "0",
            "kycLevel": "LEVEL_DEFAULT", "kycRegion": "",
        }

    def account_info(self, params: dict[str, str], key: Key) -> dict[str, Any]:
        return {"unifiedMarginStatus": 6, "marginMode": "REGULAR_MARGIN", "isMasterTrader": False,
                "spotHedgingStatus": "OFF", "updatedTime": str(key.created_at), "dcpStatus": "OFF",
                "timeWindow": 10, "smpGroup": 0}

    def wallet_balance(self, params: dict[str, str], key: Key) -> dict[str, Any]:
        if params.get("accountType") != "UNIFIED":
            raise bybit_error(10001, "accountType only support UNIFIED.")
        wanted = set(filter(None, params.get("coin", "").split(",")))
        coins = [{
            "coin": asset, "equity": fmt(amount), "walletBalance": fmt(amount), "locked": "0",
            "usdValue": "", "unrealisedPnl": "0", "cumRealisedPnl": "0", "borrowAmount": "0", "accruedInterest": "0",
            "totalOrderIM": "0", "totalPositionIM": "0", "totalPositionMM": "0", "bonus": "0",
            "availableToWithdraw": "", "availableToBorrow": "", "collateralSwitch": True, "marginCollateral": True,
            "spotHedgingQty": "0",
        } for asset, amount in sorted(key.account.balances.items()) if not wanted or asset in wanted]
        return {"list": [{
            "accountType": "UNIFIED", "totalEquity": "", "totalWalletBalance": "", "totalMarginBalance": "",
            "totalAvailableBalance": "", "totalPerpUPL": "0", "totalInitialMargin": "0",
            "totalMaintenanceMargin": "0", "accountIMRate": "0", "accountMMRate": "0", "accountLTV": "0",
            "coin": coins,
        }]}

    def coins_balance(self, params: dict[str, str], key: Key) -> dict[str, Any]:
        """The funding wallet. The sim keeps every balance in the unified account, so FUND is empty."""
        account_type = params.get("accountType", "")
        if account_type not in ("FUND", "UNIFIED"):
            raise bybit_error(10001, "params error: accountType is invalid")
        balances = key.account.balances.items() if account_type == "UNIFIED" else []
        return {"memberId": str(key.extra["user_id"]), "accountType": account_type, "balance": [
            {"coin": asset, "walletBalance": fmt(amount), "transferBalance": fmt(amount), "bonus": ""}
            for asset, amount in sorted(balances)]}

    def executions(self, params: dict[str, str], key: Key) -> dict[str, Any]:
        category = params.get("category", "")
        if category not in ("spot", "linear", "inverse", "option"):
            raise bybit_error(10001, "params error: category is invalid")
        symbol = params.get("symbol")
        trades = [t for t in key.account.trades if category == "spot" and (not symbol or t.base + t.quote == symbol)]
        limit = self.limit(params, 50, self.page_limits["trades"])
        start, end = self.window(params, EXECUTION_WINDOW_MS)
        page, cursor = self.page(trades, start, end, limit, params)
        rows = [{
            "symbol": t.base + t.quote, "orderId": t.order_id, "orderLinkId": "", "side": t.side.capitalize(),
            "orderPrice": fmt(t.price), "orderQty": fmt(t.amount), "leavesQty": "0", "createType": "CreateByUser",
            "orderType": "Limit", "stopOrderType": "", "execFee": fmt(t.fee), "execId": t.id,
            "execPrice": fmt(t.price), "execQty": fmt(t.amount), "execType": "Trade", "execValue": fmt(t.cost),
            "execTime": str(t.timestamp), "feeCurrency": t.fee_asset, "isMaker": not t.taker, "feeRate": "0.001",
            "tradeIv": "", "markIv": "", "markPrice": "", "indexPrice": "", "underlyingPrice": "",
            "blockTradeId": "", "closedSize": "", "seq": int(t.id), "extraFees": "",
        } for t in page]
        return {"nextPageCursor": cursor, "category": category, "list": rows}

    def deposits(self, params: dict[str, str], key: Key) -> dict[str, Any]:
        items = [t for t in key.account.deposits
                 if not t.internal and (not params.get("coin") or t.asset == params["coin"])]
        start, end = self.window(params, ASSET_WINDOW_MS)
        page, cursor = self.page(items, start, end, self.limit(params, 50, self.page_limits["deposits"]), params)
        return {"rows": [{
            "id": t.id, "coin": t.asset, "chain": t.network, "amount": fmt(t.amount), "txID": t.txid,
            "status": _DEPOSIT_STATUS.get(t.status, 0), "toAddress": t.address, "tag": "", "depositFee": "",
            "successAt": str(t.timestamp) if t.status == "ok" else "", "confirmations": "64", "txIndex": "0",
            "blockHash": "", "batchReleaseLimit": "-1", "depositType": "0", "fromAddress": "",
            "taxDepositRecordsId": "0", "taxStatus": 0,
        } for t in page], "nextPageCursor": cursor}

    def internal_deposits(self, params: dict[str, str], key: Key) -> dict[str, Any]:
        """docs: Get Internal Deposit Records (off-chain): 30 days a query (default the last 30), limit 1-50."""
        items = [t for t in key.account.deposits
                 if t.internal and (not params.get("coin") or t.asset == params["coin"])
                 and (not params.get("txID") or params["txID"] == f"int-{t.id}")]
        start, end = self.window(params, ASSET_WINDOW_MS)
        page, cursor = self.page(items, start, end, self.limit(params, 50, 50), params)
        return {"rows": [{
            "id": t.id, "amount": fmt(t.amount), "type": 1, "coin": t.asset,
            "address": t.address[:4] + "***@example.com", "status": _INTERNAL_DEPOSIT_STATUS.get(t.status, 1),
            "createdTime": str(t.timestamp // 1000), "fromMemberId": "118027304", "txID": f"int-{t.id}",
            "complianceStatus": 0, "taxDepositRecordsId": "0", "taxStatus": 0,
        } for t in page], "nextPageCursor": cursor}

    def withdrawals(self, params: dict[str, str], key: Key) -> dict[str, Any]:
        if key.extra.get("sub_account"):
            raise bybit_error(10005, "Permission denied, please check your API key permissions.")
        kind = params.get("withdrawType", "0")
        if kind not in ("0", "1", "2"):
            raise bybit_error(10001, "params error: withdrawType is invalid")
        items = [t for t in key.account.withdrawals
                 if (not params.get("coin") or t.asset == params["coin"])
                 and (kind == "2" or (t.network == OFF_CHAIN_NETWORK or t.internal) == (kind == "1"))]
        start, end = self.window(params, ASSET_WINDOW_MS)
        page, cursor = self.page(items, start, end, self.limit(params, 50, self.page_limits["withdrawals"]), params)
        return {"rows": [self.render_withdrawal(t) for t in page], "nextPageCursor": cursor}

    @staticmethod
    def render_withdrawal(t: Transfer) -> dict[str, Any]:
        off_chain = t.network == OFF_CHAIN_NETWORK or t.internal
        failed = t.status in ("failed", "rejected", "cancelled")  # docs: txID "" for failed or cancelled ones
        return {
            "withdrawId": t.id, "txID": "" if off_chain or failed else t.txid, "withdrawType": 1 if off_chain else 0,
            "coin": t.asset, "chain": "" if off_chain else t.network, "amount": fmt(t.amount),
            "withdrawFee": fmt(t.fee), "status": _WITHDRAW_STATUS.get(t.status, "Pending"), "toAddress": t.address,
            "tag": "", "createTime": str(t.timestamp), "updateTime": str(t.timestamp + 60_000),
        }

    # -- paging ------------------------------------------------------------------------------------
    @staticmethod
    def limit(params: dict[str, str], default: int, maximum: int) -> int:
        raw = params.get("limit") or str(default)
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise bybit_error(10001, f"params error: limit must be in [1, {maximum}]")
        return int(raw)

    @staticmethod
    def window(params: dict[str, str], span: int) -> tuple[int, int]:
        """Bybit's time rules: default the last ``span``; one bound implies the other; at most ``span``."""
        start, end = params.get("startTime"), params.get("endTime")
        if start and end:
            lo, hi = int(start), int(end)
            if hi - lo > span:
                raise bybit_error(10001, f"params error: the time range cannot exceed {span // DAY_MS} days")
            return lo, hi
        if start:
            return int(start), int(start) + span
        hi = int(end) if end else now_ms()
        return hi - span, hi

    @staticmethod
    def page(items: list[Any], start: int, end: int, limit: int, params: dict[str, str]) -> tuple[list[Any], str]:
        """Newest first inside [start, end]; the cursor names the last row served, so inserts don't shift pages."""
        def order(t: Any) -> tuple[int, int]:
            return t.timestamp, int(t.id)

        rows = sorted((t for t in items if start <= t.timestamp <= end), key=order, reverse=True)
        if params.get("cursor"):
            raw = params["cursor"]
            try:
                mark = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
                after = (int(mark["t"]), int(mark["i"]))
            except (ValueError, KeyError, TypeError):
                raise bybit_error(10001, "params error: cursor is invalid") from None
            rows = [t for t in rows if order(t) < after]
        page = rows[:limit]
        if len(rows) <= limit:
            return page, ""
        mark_json = json.dumps(dict(zip("ti", order(page[-1]), strict=True)), separators=(",", ":")).encode()
        return page, base64.urlsafe_b64encode(mark_json).decode().rstrip("=")
