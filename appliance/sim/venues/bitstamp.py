"""Bitstamp (API v2) simulator.

Wire facts served here (VENUES.md §9, §0.2, Appendix A.9):

- Private calls are POSTs with a form body (ccxt sends ``foo=bar`` when it has no parameter) and headers
  ``X-Auth: BITSTAMP <key>``, ``X-Auth-Nonce`` (UUID, single use), ``X-Auth-Timestamp`` (ms, within 150 s),
  ``X-Auth-Version: v2`` and ``X-Auth-Signature = hex HMAC-SHA256(secret, X-Auth + METHOD + host + path + query
  + content-type + nonce + timestamp + "v2" + body)``; content type and body are left out when the body is empty.
  The signed host is the production host: behind the simulator the request arrives on 127.0.0.1, but ccxt
  signed ``www.bitstamp.net/api/v2/...``.
- Errors: ``{"status": "error", "reason": ..., "code": "API00xx"}`` with HTTP 403 for authentication
  (API0001 key not found, API0004 nonce reused, API0005 signature, API0017 timestamp out of bounds).
- Bitstamp has no permission query. Permissions are ticked per endpoint; a call the key may not make answers
  ``No permission found``. Mapping: read → balances and user transactions; trade → orders, including
  cancel_order; transfer → sub-account transfers; withdraw → withdrawals. cancel_order with an id that is not an
  open order of the account answers ``Order not found.`` (there are no open orders here).
- ``user_transactions`` is the whole account history: type 0 deposit, 1 withdrawal, 2 market trade. Amounts are
  signed decimal strings per currency, the trade price is a JSON number under ``<base>_<quote>``; paging by
  ``offset``/``limit`` (max 1000) or ``since_id`` (inclusive; the limit is then 1000), ``sort`` asc or desc.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import hmac
import secrets
import string
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from appliance.sim.core import Account, Key, Request, Response, Trade, Transfer, VenueError, VenueSim, fmt, now_ms

_ALPHABET = string.ascii_letters + string.digits
_NAMES = {"BTC": "Bitcoin", "ETH": "Ether", "SOL": "Solana", "USDT": "Tether", "USD": "U.S. dollar",
          "USDC": "USD Coin", "XRP": "XRP", "ADA": "Cardano", "EUR": "Euro"}
_FORM = "application/x-www-form-urlencoded"
_PERMISSION = {"/api/v2/account_balances/": "read", "/api/v2/user_transactions/": "read",
               "/api/v2/cancel_order/": "trade"}


def _fail(reason: Any, code: str | None = None, status: int = 403) -> VenueError:
    body: dict[str, Any] = {"status": "error", "reason": reason}
    if code:
        body["code"] = code
    return VenueError(status, body)


def _datetime(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class BitstampSim(VenueSim):
    id = "bitstamp"
    host = "www.bitstamp.net"
    quote_markets = (("BTC", "USD"), ("ETH", "USD"), ("USDT", "USD"), ("USDC", "USD"), ("BTC", "EUR"),
                     ("EUR", "USD"), ("BTC", "GBP"), ("GBP", "USD"))
    # Every stream comes from user_transactions, whose page is at most 1000 rows.
    page_limits = {"ledger": 1000, "trades": 1000, "deposits": 1000, "withdrawals": 1000}
    timestamp_window_ms = 150_000

    def mint_credentials(self) -> tuple[str, str, str | None, dict[str, Any]]:
        key = "".join(secrets.choice(_ALPHABET) for _ in range(32))
        secret = "".join(secrets.choice(_ALPHABET) for _ in range(32))
        return key, secret, None, {}

    def rate_limit_response(self, retry_after: int) -> Response:
        return Response(429, {"status": "error", "reason": "Rate limit exceeded"}, {"Retry-After": str(retry_after)})

    def outage_response(self) -> Response:
        return Response(503, {"error": "Bitstamp.net is under scheduled maintenance. We'll be back soon."})

    # -- dispatch ------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.method == "GET" and req.path == "/api/v2/markets/":
            return Response(200, self._markets())
        if req.method != "POST" or req.path not in _PERMISSION:
            raise VenueError(404, {"status": "error", "reason": "Not found"})
        key = self.authenticate(req)
        if _PERMISSION[req.path] not in key.permissions:
            raise _fail("No permission found", "API0002")
        form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        if req.path == "/api/v2/account_balances/":
            return Response(200, self._balances(key.account))
        if req.path == "/api/v2/user_transactions/":
            return Response(200, self._user_transactions(key.account, form))
        if not form.get("id", "").isdigit():
            raise _fail({"id": ["Enter a whole number."]}, status=400)
        raise _fail("Order not found.", status=404)

    def authenticate(self, req: Request) -> Key:
        x_auth, signature = req.header("X-Auth"), req.header("X-Auth-Signature")
        nonce, timestamp = req.header("X-Auth-Nonce"), req.header("X-Auth-Timestamp")
        if req.header("X-Auth-Version") != "v2":
            raise _fail("X-Auth-Version header is required", "API0016")
        for value, header, code in ((x_auth, "X-Auth", "API0012"), (signature, "X-Auth-Signature", "API0013"),
                                    (nonce, "X-Auth-Nonce", "API0014"), (timestamp, "X-Auth-Timestamp", "API0015")):
            if not value:
                raise _fail(f"{header} header is required", code)
        if not x_auth.startswith("BITSTAMP "):
            raise _fail("Wrong API key format", "API0011")
        content_type = req.header("Content-Type")
        if req.body and content_type.split(";")[0].strip() != _FORM:
            raise _fail("Content-Type header is not accepted", "API0019")
        if not req.body and content_type:
            raise _fail("Content-Type header should not be present", "API0020")
        if not timestamp.isdigit() or abs(now_ms() - int(timestamp)) > self.timestamp_window_ms:
            raise _fail("X-Auth-Timestamp header is out of boundaries", "API0017")
        key = self.key_or_none(x_auth.removeprefix("BITSTAMP "))
        if key is None:
            raise _fail("API key not found", "API0001")
        body = req.body.decode("utf-8", "replace")
        signed = (x_auth + req.method + self.host + req.path_qs + (content_type if body else "") + nonce + timestamp
                  + "v2" + body)
        expected = hmac.new(key.api_secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
            raise _fail("Invalid signature", "API0005")
        self._spend_nonce(key, nonce)
        return key

    def _spend_nonce(self, key: Key, nonce: str) -> None:
        """A nonce may be used once within the timestamp window; older ones are forgotten."""
        recent: collections.deque[tuple[int, str]] = key.extra.setdefault("nonces", collections.deque())
        horizon = now_ms() - self.timestamp_window_ms
        while recent and recent[0][0] < horizon:
            key.seen_nonces.discard(recent.popleft()[1])
        if nonce in key.seen_nonces:
            raise _fail("Invalid nonce", "API0004")
        key.seen_nonces.add(nonce)
        recent.append((now_ms(), nonce))

    # -- public --------------------------------------------------------------------------------
    def _markets(self) -> list[dict[str, Any]]:
        return [{
            "name": f"{base}/{quote}", "market_symbol": f"{base}{quote}".lower(), "base_currency": base,
            "base_decimals": 8, "counter_currency": quote, "counter_decimals": 2, "minimum_order_value": "10.00",
            "trading": "Enabled", "instant_order_counter_decimals": 2, "instant_and_market_orders": "Enabled",
            "description": f"{_NAMES.get(base, base)} / {_NAMES.get(quote, quote)}", "market_type": "SPOT",
        } for base, quote in self.listed_markets()]

    # -- private -------------------------------------------------------------------------------
    @staticmethod
    def _balances(account: Account) -> list[dict[str, str]]:
        assets = sorted(set(account.balances) | {"USD", "EUR"})
        return [{"currency": a.lower(), "total": fmt(account.balances.get(a, Decimal(0))),
                 "available": fmt(account.balances.get(a, Decimal(0))), "reserved": "0.00000000"} for a in assets]

    def _user_transactions(self, account: Account, form: dict[str, str]) -> list[dict[str, Any]]:
        try:
            offset = int(form.get("offset") or 0)
            limit = int(form.get("limit") or 100)
            since_id = int(form["since_id"]) if form.get("since_id") else None
            since_ts = int(form["since_timestamp"]) * 1000 if form.get("since_timestamp") else None
            until_ts = int(form["until_timestamp"]) * 1000 if form.get("until_timestamp") else None
        except ValueError:
            raise _fail("Invalid parameters.", status=400) from None
        if not 0 <= offset <= 200_000:
            raise _fail("Invalid offset.", status=400)
        if not 1 <= limit <= 1000:
            raise _fail("Invalid limit.", status=400)
        sort = form.get("sort") or "desc"
        if sort not in ("asc", "desc"):
            raise _fail("Invalid sort.", status=400)
        if since_id is not None:
            limit, offset = 1000, 0
        rows: list[tuple[int, int, Trade | Transfer, str]] = [
            *((int(t.id), t.timestamp, t, "2") for t in account.trades),
            *((int(t.id), t.timestamp, t, "0") for t in account.deposits),
            *((int(t.id), t.timestamp, t, "1") for t in account.withdrawals),
        ]
        rows = [r for r in rows if (since_id is None or r[0] >= since_id) and (since_ts is None or r[1] >= since_ts)
                and (until_ts is None or r[1] <= until_ts)]
        rows.sort(key=lambda r: r[0], reverse=sort == "desc")
        return [_row(item, kind) for _, _, item, kind in rows[offset: offset + limit]]

    def stream_ids(self, account: Account, stream: str) -> set[str]:
        if stream == "ledger":
            return {t.id for t in account.trades} | {t.id for t in account.deposits} | {
                t.id for t in account.withdrawals}
        return super().stream_ids(account, stream)


def _row(item: Trade | Transfer, kind: str) -> dict[str, Any]:
    row: dict[str, Any] = {"id": int(item.id), "datetime": _datetime(item.timestamp), "type": kind}
    involved: set[str]
    if isinstance(item, Trade):
        base, quote = item.base.lower(), item.quote.lower()
        sign = 1 if item.side == "buy" else -1
        row.update({"fee": fmt(item.fee), base: fmt(sign * item.amount), quote: fmt(-sign * item.cost),
                    f"{base}_{quote}": float(item.price), "order_id": int(item.order_id)})
        involved = {base, quote}
    else:
        asset = item.asset.lower()
        row.update({"fee": fmt(item.fee), asset: fmt(item.amount if kind == "0" else -item.amount),
                    f"{asset}_usd" if asset != "usd" else "btc_usd": "0.00"})
        involved = {asset}
    for zero in ("usd", "eur", "btc"):  # Bitstamp lists other currencies of the account as plain zeros
        if zero not in involved:
            row[zero] = 0.0
    return row
