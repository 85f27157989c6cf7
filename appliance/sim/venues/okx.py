"""OKX (REST v5) simulator.

Wire facts served here (VENUES.md §6, Appendix A.4):

- Private requests carry ``OK-ACCESS-KEY``, ``OK-ACCESS-PASSPHRASE`` (the plaintext passphrase chosen at key
  creation), ``OK-ACCESS-TIMESTAMP`` (ISO-8601 UTC with milliseconds, within 30 s of server time) and
  ``OK-ACCESS-SIGN = base64(HMAC-SHA256(secret, timestamp + METHOD + path?query + body))``.
- Errors are ``{"code": "<5 digits>", "msg": ..., "data": []}``; authentication failures are HTTP 401. A deleted
  key answers ``50119 API key doesn't exist``, which ccxt maps to a bare ExchangeError. A key without Read (every
  endpoint served here documents "Permission: Read") answers ``50120 API key doesn't have permission to use this
  function``, also with HTTP 401.
- Permissions: ``account/config`` reports ``perm`` as a comma-separated subset of ``read_only``, ``trade`` and
  ``withdraw``. Every OKX key can read. OKX has no separate transfer permission: funds transfer
  (``POST /api/v5/asset/transfer``) needs Trade, so our abstract "transfer" shows up as ``trade``.
- History: ``trade/fills-history`` (last 3 months, paginated by ``billId`` with ``after``/``before``),
  ``asset/deposit-history`` and ``asset/withdrawal-history`` (paginated by ``ts`` in ms with ``after``/``before``);
  newest first, at most 100 rows. ``before`` alone returns the newest rows newer than the bound.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from appliance.sim.core import Account, Key, Request, Response, Trade, Transfer, VenueError, VenueSim, fmt, now_ms

DAY_MS = 86_400_000
_ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_CHAINS = {"ETH": "ERC20", "BTC": "Bitcoin", "TRX": "TRC20", "SOL": "Solana"}
# docs: Get deposit history, state: 0 waiting for confirmation, 1 deposit credited, 2 deposit successful, 8 pending
# (temporary suspension), 11 address blacklisted, 12 account or deposit frozen, 13 sub-account interception,
# 14 KYC limit, 17 travel rule. Get withdrawal history, state: -3 cancelling, -2 cancelled, -1 failed, 0 waiting,
# 1 withdrawing, 2 success, 7 approved, 10 waiting transfer, 4/5/6/8/9/12 manual review, 15-17 validation.
_DEPOSIT_STATE = {"ok": "2", "pending": "0", "failed": "11", "rejected": "11", "cancelled": "11"}
_WITHDRAWAL_STATE = {"ok": "2", "pending": "1", "failed": "-1", "rejected": "-1", "cancelled": "-2"}


def _fail(status: int, code: str, msg: str) -> VenueError:
    return VenueError(status, {"code": code, "msg": msg, "data": []})


class OkxSim(VenueSim):
    id = "okx"
    host = "www.okx.com"
    quote_markets = (("USDC", "USDT"),)
    uses_passphrase = True
    page_limits = {"trades": 100, "deposits": 100, "withdrawals": 100}
    timestamp_window_ms = 30_000
    fills_history_ms = 90 * DAY_MS  # fills-history covers the last 3 months

    def mint_credentials(self) -> tuple[str, str, str | None, dict[str, Any]]:
        # OKX shows a UUID api key, a 32-hex-digit upper-case secret, and keeps the passphrase the user typed.
        return str(uuid.uuid4()), secrets.token_hex(16).upper(), "Vg-" + secrets.token_urlsafe(12), {}

    def rate_limit_response(self, retry_after: int) -> Response:
        return Response(429, {"msg": "Too Many Requests", "code": "50011"}, {"Retry-After": str(retry_after)})

    def outage_response(self) -> Response:
        return Response(503, {"code": "50001", "msg": "Service temporarily unavailable. Please try again later.",
                              "data": []})

    # -- dispatch ------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        params = dict(parse_qsl(req.query, keep_blank_values=True))
        if req.method == "GET" and req.path == "/api/v5/public/time":
            # Get system time (https://www.okx.com/docs-v5/en/#public-data-rest-api-get-system-time): ts, ms, a string.
            return self._ok([{"ts": str(self.server_time_ms())}])
        if req.method == "GET" and req.path == "/api/v5/public/instruments":
            return self._ok(self._instruments(params))
        route = _ROUTES.get((req.method, req.path))
        key = self.authenticate(req)
        if route is None:
            raise VenueError(404, {"msg": "Not Found", "code": "404"})
        if "read" not in key.permissions:
            raise _fail(401, "50120", "API key doesn't have permission to use this function")
        return self._ok(route(self, key, params))

    @staticmethod
    def _ok(data: list[dict[str, Any]]) -> Response:
        return Response(200, {"code": "0", "msg": "", "data": data})

    def authenticate(self, req: Request) -> Key:
        api_key = req.header("OK-ACCESS-KEY")
        passphrase = req.header("OK-ACCESS-PASSPHRASE")
        signature = req.header("OK-ACCESS-SIGN")
        timestamp = req.header("OK-ACCESS-TIMESTAMP")
        for value, code, name in ((api_key, "50103", "OK-ACCESS-KEY"), (passphrase, "50104", "OK-ACCESS-PASSPHRASE"),
                                  (signature, "50106", "OK-ACCESS-SIGN"), (timestamp, "50107", "OK-ACCESS-TIMESTAMP")):
            if not value:
                raise _fail(401, code, f'Request header "{name}" cannot be empty.')
        if not _ISO_MS.fullmatch(timestamp):
            raise _fail(401, "50112", "Invalid OK-ACCESS-TIMESTAMP")
        sent = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
        if abs(now_ms() - int(sent.timestamp() * 1000)) > self.timestamp_window_ms:
            raise _fail(401, "50102", "Timestamp request expired")
        key = self.key_or_none(api_key)
        if key is None:
            raise _fail(401, "50119", "API key doesn't exist")
        if not hmac.compare_digest(passphrase.encode(), (key.passphrase or "").encode()):
            raise _fail(401, "50105", "OK-ACCESS-PASSPHRASE incorrect")
        payload = timestamp + req.method + req.path_qs + req.body.decode("utf-8", "replace")
        expected = base64.b64encode(hmac.new(key.api_secret.encode(), payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature.encode(), expected):
            raise _fail(401, "50113", "Invalid Sign")
        return key

    # -- public --------------------------------------------------------------------------------
    def _instruments(self, params: dict[str, str]) -> list[dict[str, Any]]:
        inst_type = params.get("instType")
        if not inst_type:
            raise _fail(400, "50014", "Parameter instType can not be empty.")
        if inst_type != "SPOT":
            return []
        return [{
            "instType": "SPOT", "instId": f"{base}-{quote}", "uly": "", "instFamily": "", "category": "1",
            "baseCcy": base, "quoteCcy": quote, "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "",
            "optType": "", "stk": "", "listTime": "1548133413000", "expTime": "", "lever": "10", "tickSz": "0.01",
            "lotSz": "0.00000001", "minSz": "0.00001", "ctType": "", "alias": "", "state": "live",
            "maxLmtSz": "9999999999", "maxMktSz": "1000000",
        } for base, quote in self.listed_markets()]

    # -- private -------------------------------------------------------------------------------
    @staticmethod
    def perm(key: Key) -> str:
        perms = ["read_only"]
        if key.permissions & {"trade", "transfer"}:
            perms.append("trade")
        if "withdraw" in key.permissions:
            perms.append("withdraw")
        return ",".join(perms)

    def _config(self, key: Key, params: dict[str, str]) -> list[dict[str, Any]]:
        uid = str(int(key.account.id, 16) % 10**15)
        return [{
            "uid": uid, "mainUid": uid, "acctLv": "1", "posMode": "net_mode", "autoLoan": False, "greeksType": "PA",
            "level": "Lv1", "levelTmp": "", "ctIsoMode": "automatic", "mgnIsoMode": "automatic", "roleType": "0",
            "traderInsts": [], "spotRoleType": "0", "spotTraderInsts": [], "opAuth": "0", "kycLv": "2",
            "label": "vigatra", "ip": "", "perm": self.perm(key), "liquidationGear": "-1",
        }]

    def _balance(self, key: Key, params: dict[str, str]) -> list[dict[str, Any]]:
        stamp = str(now_ms())
        details = [{
            "ccy": ccy, "eq": fmt(amount), "cashBal": fmt(amount), "availBal": fmt(amount), "availEq": fmt(amount),
            "frozenBal": "0", "ordFrozen": "0", "upl": "0", "disEq": "", "eqUsd": "", "liab": "", "uTime": stamp,
        } for ccy, amount in sorted(key.account.balances.items()) if amount]
        return [{"adjEq": "", "details": details, "imr": "", "isoEq": "0", "mgnRatio": "", "mmr": "",
                 "notionalUsd": "", "ordFroz": "", "totalEq": "", "uTime": stamp}]

    def _funding(self, key: Key, params: dict[str, str]) -> list[dict[str, Any]]:
        funding: dict[str, Decimal] = key.extra.get("funding", {})
        return [{"ccy": ccy, "bal": fmt(amount), "availBal": fmt(amount), "frozenBal": "0"}
                for ccy, amount in sorted(funding.items()) if amount]

    def _fills(self, key: Key, params: dict[str, str]) -> list[dict[str, Any]]:
        inst_type = params.get("instType")
        if not inst_type:
            raise _fail(400, "50014", "Parameter instType can not be empty.")
        limit = self._limit(params)
        floor = now_ms() - self.fills_history_ms
        rows = [t for t in key.account.trades if t.timestamp >= floor and inst_type == "SPOT"]
        if params.get("instId"):
            rows = [t for t in rows if f"{t.base}-{t.quote}" == params["instId"]]
        rows = _bounded(rows, params, lambda t: int(t.id), "after", "before")
        rows = _bounded(rows, params, lambda t: t.timestamp, "end", "begin")
        rows.sort(key=lambda t: int(t.id), reverse=True)
        return [_fill(t) for t in rows[:limit]]

    def _deposits(self, key: Key, params: dict[str, str]) -> list[dict[str, Any]]:
        return [_deposit(t) for t in self._history(key.account.deposits, params)]

    def _withdrawals(self, key: Key, params: dict[str, str]) -> list[dict[str, Any]]:
        return [_withdrawal(t) for t in self._history(key.account.withdrawals, params)]

    def _history(self, transfers: list[Transfer], params: dict[str, str]) -> list[Transfer]:
        limit = self._limit(params)
        rows = [t for t in transfers if not params.get("ccy") or t.asset == params["ccy"]]
        rows = _bounded(rows, params, lambda t: t.timestamp, "after", "before")
        rows.sort(key=lambda t: (t.timestamp, int(t.id)), reverse=True)
        return rows[:limit]

    @staticmethod
    def _limit(params: dict[str, str]) -> int:
        try:
            limit = int(params.get("limit") or 100)
        except ValueError:
            raise _fail(400, "51000", "Parameter limit error") from None
        if not 1 <= limit <= 100:
            raise _fail(400, "51000", "Parameter limit error")
        return limit

    def stream_ids(self, account: Account, stream: str) -> set[str]:
        if stream == "trades":  # fills-history only reaches back 3 months
            floor = now_ms() - self.fills_history_ms
            return {t.id for t in account.trades if t.timestamp >= floor}
        return super().stream_ids(account, stream)


def _bounded(rows: list[Any], params: dict[str, str], value: Callable[[Any], int], older: str, newer: str
             ) -> list[Any]:
    """OKX's ``after`` (strictly older than) and ``before`` (strictly newer than) bounds."""
    try:
        if params.get(older):
            bound = int(params[older])
            rows = [r for r in rows if value(r) < bound]
        if params.get(newer):
            bound = int(params[newer])
            rows = [r for r in rows if value(r) > bound]
    except ValueError:
        raise _fail(400, "51000", "Parameter after or before error") from None
    return rows


def _chain(t: Transfer) -> str:
    return f"{t.asset}-{_CHAINS.get(t.network, t.network)}"


def _fill(t: Trade) -> dict[str, Any]:
    return {
        "instType": "SPOT", "instId": f"{t.base}-{t.quote}", "tradeId": str(900_000_000 + int(t.id)),
        "ordId": t.order_id, "clOrdId": "", "billId": t.id, "subType": "1" if t.side == "buy" else "2", "tag": "",
        "fillPx": fmt(t.price), "fillSz": fmt(t.amount), "fillIdxPx": "", "fillPnl": "0", "side": t.side,
        "posSide": "net", "execType": "T" if t.taker else "M", "feeCcy": t.fee_asset,
        "fee": fmt(-t.fee) if t.fee else "0", "ts": str(t.timestamp), "fillTime": str(t.timestamp),
    }


def _deposit(t: Transfer) -> dict[str, Any]:
    return {
        "actualDepBlkConfirm": "17", "amt": fmt(t.amount), "areaCodeFrom": "", "ccy": t.asset, "chain": _chain(t),
        "depId": t.id, "from": "", "fromWdId": "", "state": _DEPOSIT_STATE.get(t.status, "0"), "to": t.address,
        "ts": str(t.timestamp), "txId": t.txid,
    }


def _withdrawal(t: Transfer) -> dict[str, Any]:
    return {
        "chain": _chain(t), "fee": fmt(t.fee), "feeCcy": t.asset, "ccy": t.asset, "clientId": "", "amt": fmt(t.amount),
        "txId": t.txid, "from": "", "areaCodeFrom": "", "to": t.address, "areaCodeTo": "",
        "state": _WITHDRAWAL_STATE.get(t.status, "1"), "ts": str(t.timestamp), "nonTradableAsset": False,
        "wdId": t.id,
    }


_ROUTES: dict[tuple[str, str], Callable[[OkxSim, Key, dict[str, str]], list[dict[str, Any]]]] = {
    ("GET", "/api/v5/account/config"): OkxSim._config,
    ("GET", "/api/v5/account/balance"): OkxSim._balance,
    ("GET", "/api/v5/asset/balances"): OkxSim._funding,
    ("GET", "/api/v5/trade/fills-history"): OkxSim._fills,
    ("GET", "/api/v5/asset/deposit-history"): OkxSim._deposits,
    ("GET", "/api/v5/asset/withdrawal-history"): OkxSim._withdrawals,
}
