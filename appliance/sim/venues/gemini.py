"""Gemini REST simulator (``api.gemini.com``).

Wire facts it keeps (VENUES.md §5, Appendix A.3):

- Private calls are ``POST /v1/...``; the parameters travel in ``X-GEMINI-PAYLOAD`` (base64 JSON with
  ``request`` = the path and an increasing ``nonce``), signed by ``X-GEMINI-SIGNATURE`` = hex
  HMAC-SHA384(secret, payload). Errors are ``{"result": "error", "reason": ..., "message": ...}``.
- Keys are account-scoped (``account-...``; ccxt refuses anything else). Roles: Auditor (read only,
  never combined with another role), Trader, Fund Manager; each endpoint requires one of a set of
  roles and answers 403 ``MissingRole`` otherwise (a Trader cannot list transfers).
- ``/v1/mytrades`` needs a symbol and returns at most 500 trades, ``/v1/transfers`` at most 50. With
  ``timestamp`` (seconds or milliseconds, inclusive) they return the oldest page at or after it;
  without, the newest page. Both list newest first.
- The sim never executes orders or withdrawals: a permitted mutating call is answered as invalid.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import hmac
import json
import secrets
import string
import uuid
from decimal import Decimal
from typing import Any

from appliance.sim.core import Account, Key, Request, Response, Trade, Transfer, VenueError, VenueSim, fmt

TRADES_MAX, TRADES_DEFAULT = 500, 50
TRANSFERS_MAX, TRANSFERS_DEFAULT = 50, 10
FIAT = frozenset({"USD", "EUR", "GBP", "SGD", "CAD", "AUD", "HKD"})

AUDITOR, TRADER, FUND_MANAGER = "Auditor", "Trader", "FundManager"
# Endpoint -> roles of which one is needed (docs: "Roles"); mutating ones are listed to enforce them.
ROLES_NEEDED: dict[str, frozenset[str]] = {
    "/v1/roles": frozenset(),
    "/v1/balances": frozenset({AUDITOR, TRADER, FUND_MANAGER}),
    "/v1/mytrades": frozenset({AUDITOR, TRADER}),
    "/v1/transfers": frozenset({AUDITOR, FUND_MANAGER}),
    "/v1/order/new": frozenset({TRADER}),
    "/v1/order/cancel": frozenset({TRADER}),
    "/v1/order/cancel/all": frozenset({TRADER}),
}
FUND_MANAGER_PREFIXES = ("/v1/withdraw/", "/v1/deposit/", "/v1/account/transfer/")


def gemini_error(status: int, reason: str, message: str) -> VenueError:
    return VenueError(status, {"result": "error", "reason": reason, "message": message})


def roles_of(key: Key) -> set[str]:
    """Gemini's roles for our abstract permissions; Auditor cannot be combined with another role."""
    roles = set()
    if "trade" in key.permissions:
        roles.add(TRADER)
    if key.permissions & {"transfer", "withdraw"}:
        roles.add(FUND_MANAGER)
    if not roles and "read" in key.permissions:
        roles.add(AUDITOR)
    return roles


def symbol_of(base: str, quote: str) -> str:
    return f"{base}{quote}".lower()


def oldest_first_page(items: list[Any], times_ms: list[int], payload: dict[str, Any], limit: int) -> list[Any]:
    """Gemini's window: from ``timestamp`` (inclusive) the oldest ``limit`` items, else the newest; newest first."""
    raw = payload.get("timestamp")
    if raw is None or raw == "":
        chosen = items[-limit:] if limit else []
    else:
        try:
            since = int(Decimal(str(raw)))
        except ArithmeticError:
            raise gemini_error(400, "InvalidTimestampInPayload", f"Invalid timestamp {raw!r}") from None
        since_ms = since if since > 100_000_000_000 else since * 1000
        start = bisect.bisect_left(times_ms, since_ms)  # items are in ascending time
        chosen = items[start:start + limit]
    return chosen[::-1]


class GeminiSim(VenueSim):
    id = "gemini"
    host = "api.gemini.com"
    markets = (("BTC", "USD"), ("ETH", "USD"), ("SOL", "USD"), ("BTC", "USDT"), ("ETH", "USDT"), ("SOL", "USDT"),
               ("ETH", "BTC"))
    quote_markets = (("BTC", "EUR"), ("BTC", "GBP"))
    page_limits = {"trades": TRADES_MAX, "deposits": TRANSFERS_MAX, "withdrawals": TRANSFERS_MAX}

    def mint_credentials(self) -> tuple[str, str, str | None, dict[str, Any]]:
        alphabet = string.ascii_letters + string.digits
        api_key = "account-" + "".join(secrets.choice(alphabet) for _ in range(20))
        secret = "".join(secrets.choice(alphabet) for _ in range(28))
        counterparty = "".join(secrets.choice(string.ascii_uppercase) for _ in range(8))
        return api_key, secret, None, {"counterparty_id": counterparty}

    def rate_limit_response(self, retry_after: int) -> Response:
        body = {"result": "error", "reason": "RateLimit", "message": "Requests were made too frequently"}
        return Response(429, body, {"Retry-After": str(retry_after)})

    def outage_response(self) -> Response:
        return Response(503, {"result": "error", "reason": "Maintenance",
                              "message": "The Gemini Exchange is currently undergoing maintenance."})

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.method == "GET" and req.path == "/v1/symbols":
            return Response(200, [symbol_of(b, q) for b, q in self.listed_markets()])
        if req.method == "GET" and req.path.startswith("/v1/symbols/details/"):
            return Response(200, self.symbol_details(req.path.rsplit("/", 1)[-1]))
        if req.method != "POST":
            raise gemini_error(404, "EndpointNotFound", f"API entry point `{req.path}` not found")
        key, payload = self.authenticate(req)
        self.authorise(key, req.path)
        if req.path == "/v1/roles":
            roles = roles_of(key)
            return Response(200, {"isAuditor": AUDITOR in roles, "isFundManager": FUND_MANAGER in roles,
                                  "isTrader": TRADER in roles, "counterparty_id": key.extra["counterparty_id"],
                                  **key.extra.get("roles", {})})  # raw extra flags, for tests of new roles
        if req.path == "/v1/balances":
            return Response(200, [self.render_balance(a, v) for a, v in sorted(key.account.balances.items())])
        if req.path == "/v1/mytrades":
            return Response(200, self.my_trades(key.account, payload))
        if req.path == "/v1/transfers":
            return Response(200, self.transfers(key.account, payload))
        raise gemini_error(400, "InvalidQuantity", "The simulator does not execute orders or withdrawals")

    def authenticate(self, req: Request) -> tuple[Key, dict[str, Any]]:
        api_key, payload_b64 = req.header("X-GEMINI-APIKEY"), req.header("X-GEMINI-PAYLOAD")
        signature = req.header("X-GEMINI-SIGNATURE")
        if not api_key:
            raise gemini_error(400, "MissingApikeyHeader", "The X-GEMINI-APIKEY header was missing")
        if not payload_b64:
            raise gemini_error(400, "MissingPayloadHeader", "The X-GEMINI-PAYLOAD header was missing")
        if not signature:
            raise gemini_error(400, "MissingSignatureHeader", "The X-GEMINI-SIGNATURE header was missing")
        key = self.key_or_none(api_key)
        if key is None:
            raise gemini_error(400, "InvalidApiKey", f"Invalid API key '{api_key}'")
        expected = hmac.new(key.api_secret.encode(), payload_b64.encode(), hashlib.sha384).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise gemini_error(400, "InvalidSignature", "InvalidSignature")
        try:
            payload = json.loads(base64.b64decode(payload_b64, validate=True))
        except (binascii.Error, ValueError):
            raise gemini_error(400, "InvalidJson", "Could not parse the JSON payload") from None
        if not isinstance(payload, dict) or payload.get("request") != req.path:
            raise gemini_error(400, "EndpointMismatch", f"EndpointMismatch: payload request != {req.path}")
        nonce = str(payload.get("nonce", ""))
        if not nonce.isdigit() or int(nonce) <= key.last_nonce:
            raise gemini_error(400, "InvalidNonce",
                               f"Nonce '{nonce}' has not increased since your last call to the Gemini API.")
        key.last_nonce = int(nonce)
        return key, payload

    def authorise(self, key: Key, path: str) -> None:
        needed = ROLES_NEEDED.get(path)
        if needed is None and path.startswith(FUND_MANAGER_PREFIXES):
            needed = frozenset({FUND_MANAGER})
        if needed is None:
            raise gemini_error(404, "EndpointNotFound", f"API entry point `{path}` not found")
        roles = roles_of(key)
        if needed and not needed & roles:
            raise gemini_error(403, "MissingRole",
                               f"To access this endpoint, you need to log in to the website and go to the settings "
                               f"page to assign one of these roles [{', '.join(sorted(needed))}] to API key "
                               f"{key.api_key} which currently has roles [{', '.join(sorted(roles))}]")

    # -- data -------------------------------------------------------------------------------
    def symbol_details(self, symbol: str) -> dict[str, Any]:
        for base, quote in self.listed_markets():
            if symbol_of(base, quote) == symbol.lower():
                return {"symbol": symbol.upper(), "base_currency": base, "quote_currency": quote,
                        "tick_size": 1e-8, "quote_increment": 0.01, "min_order_size": "0.00001", "status": "open",
                        "wrap_enabled": False}
        raise gemini_error(400, "InvalidSymbol", f"Supplied value '{symbol}' is not a valid symbol")

    @staticmethod
    def render_balance(asset: str, amount: Decimal) -> dict[str, Any]:
        return {"type": "exchange", "currency": asset, "amount": fmt(amount), "available": fmt(amount),
                "availableForWithdrawal": fmt(amount)}

    def my_trades(self, account: Account, payload: dict[str, Any]) -> list[dict[str, Any]]:
        symbol = str(payload.get("symbol", "")).lower()
        markets = {symbol_of(b, q): (b, q) for b, q in self.markets}
        if symbol not in markets:
            raise gemini_error(400, "InvalidSymbol", f"Supplied value '{symbol}' is not a valid symbol")
        limit = self.limit(payload, "limit_trades", TRADES_DEFAULT, TRADES_MAX)
        trades = [t for t in account.trades if (t.base, t.quote) == markets[symbol]]
        page = oldest_first_page(trades, [t.timestamp for t in trades], payload, limit)
        return [self.render_trade(t) for t in page]

    def transfers(self, account: Account, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """docs: List Past Transfers: completed ("Complete"; a deposit credited ahead is "Advanced") and pending
        ones; the endpoint "does not currently show cancelled advances, returned outgoing wires or ACH
        transactions, or other exceptional transaction circumstances": failed or cancelled ones are not listed."""
        limit = self.limit(payload, "limit_transfers", TRANSFERS_DEFAULT, TRANSFERS_MAX)
        shown = [("Deposit", t) for t in account.deposits] + [("Withdrawal", t) for t in account.withdrawals]
        merged = sorted([(k, t) for k, t in shown if t.status in ("ok", "pending")],
                        key=lambda kt: (kt[1].timestamp, int(kt[1].id)))
        page = oldest_first_page(merged, [t.timestamp for _, t in merged], payload, limit)
        return [self.render_transfer(kind, t) for kind, t in page]

    def stream_ids(self, account: Account, stream: str) -> set[str]:
        if stream in ("deposits", "withdrawals"):
            items = account.deposits if stream == "deposits" else account.withdrawals
            return {t.id for t in items if t.status in ("ok", "pending")}
        return super().stream_ids(account, stream)

    @staticmethod
    def limit(payload: dict[str, Any], name: str, default: int, maximum: int) -> int:
        try:
            return max(1, min(maximum, int(payload.get(name, default))))
        except (TypeError, ValueError):
            raise gemini_error(400, "InvalidQuantity", f"Invalid {name}") from None

    @staticmethod
    def render_trade(t: Trade) -> dict[str, Any]:
        return {
            "price": fmt(t.price), "amount": fmt(t.amount),
            "timestamp": t.timestamp // 1000, "timestampms": t.timestamp,
            "type": "Buy" if t.side == "buy" else "Sell", "aggressor": t.taker, "fee_currency": t.fee_asset,
            "fee_amount": fmt(t.fee), "tid": int(t.id), "order_id": t.order_id, "exchange": "gemini",
            "is_auction_fill": False, "is_clearing_fill": False, "symbol": f"{t.base}{t.quote}",
        }

    @staticmethod
    def render_transfer(kind: str, t: Transfer) -> dict[str, Any]:
        status = "Pending" if t.status == "pending" else "Complete"
        out: dict[str, Any] = {"type": kind, "status": status, "timestampms": t.timestamp, "eid": int(t.id),
                               "currency": t.asset, "amount": fmt(t.amount)}
        if t.asset in FIAT:
            out["method"] = "ACH"
        else:
            out.update({"txHash": t.txid, "destination": t.address})
            if kind == "Deposit":
                out["outputIdx"] = 0
        if kind == "Withdrawal":
            out.update({"withdrawalId": str(uuid.uuid5(uuid.NAMESPACE_OID, t.id)), "feeAmount": fmt(t.fee),
                        "feeCurrency": t.asset})
        return out
