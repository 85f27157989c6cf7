"""Coinbase simulator: Advanced Trade (``/api/v3/brokerage``) and the App API (``/v2``) on ``api.coinbase.com``.

Wire facts it keeps (VENUES.md §3, §0.2, Appendix A.8):

- CDP keys: the key is ``organizations/{org}/apiKeys/{id}``, the secret an EC P-256 PEM. Every private
  request carries ``Authorization: Bearer <JWT>`` signed ES256 (raw r‖s). The JWT is checked as
  Coinbase does: signature with the key's public key, ``kid == sub == key name``, ``iss`` "cdp" or
  "coinbase-cloud" (``aud`` not required), ``nbf``/``exp`` (120 s), and ``uri`` = METHOD + " " +
  production host + path without query (the client signs the production URL, not ours).
- Errors as the API reference documents them (docs/VENUES-SOURCES.md, Coinbase): Advanced Trade (v3) answers with
  its gRPC gateway's status body ``{"error": "UNAUTHENTICATED", "code": 16, "message", "details": []}`` (401; an
  invalid, revoked or expired key), ``PERMISSION_DENIED``/7 (403; a scope the key lacks), ``RESOURCE_EXHAUSTED``/8
  (429); the App API (v2) with ``{"errors": [{"id", "message"}]}``. ``auth_error_style = "text"`` answers a bare
  ``Unauthorized`` instead, as ccxt users have seen it (ccxt/ccxt#21596, #23987).
- Scopes View / Trade / Transfer; ``GET /api/v3/brokerage/key_permissions`` reports them (plus ``can_receive``,
  documented since 2026, false here).
- One CDP key sees one portfolio; wallets (accounts) are per currency and share one uuid between v3
  ``/brokerage/accounts`` and v2 ``/accounts/{id}/transactions``.
- Fills page newest first by an opaque ``cursor``; v2 transactions page by ``starting_after`` with
  ``order`` asc|desc and at most 100 per page. Crypto deposits are ``receive`` and withdrawals ``send``
  transactions (the docs now restrict ``send`` to sends; negative amount, fee in ``network``); fiat ones are
  ``fiat_deposit`` / ``fiat_withdrawal``; each fill also books an ``advanced_trade_fill`` per wallet. A transfer's
  ``status`` is ``completed``, ``pending``, ``failed`` or ``canceled`` (and ``network.status`` ``confirmed`` or
  ``pending``).
- The sim never executes orders or sends: a permitted mutating call is answered as invalid.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from appliance.sim.core import Account, Key, Request, Response, Trade, Transfer, VenueError, VenueSim, fmt

FILLS_MAX, FILLS_DEFAULT = 250, 100
ACCOUNTS_MAX, ACCOUNTS_DEFAULT = 250, 49
TRANSACTIONS_MAX, TRANSACTIONS_DEFAULT = 100, 25
JWT_LIFETIME = 120
CLOCK_SKEW = 5  # seconds of nbf in the future tolerated
FIAT = frozenset({"USD", "EUR", "GBP"})
ISSUERS = frozenset({"cdp", "coinbase-cloud"})
NAMESPACE = uuid.UUID("6f1c3c4e-3a61-4d7e-9a43-7f0f1d2c9b10")


# gRPC status name -> number (google.rpc.Code), as the gateway puts both in its error body.
GRPC_CODES = {"INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
              "INTERNAL": 13, "UNAVAILABLE": 14, "UNAUTHENTICATED": 16}


def v3_error(status: int, code: str, message: str) -> VenueError:
    """Advanced Trade's documented error body: the gRPC gateway status."""
    return VenueError(status, {"error": code, "code": GRPC_CODES.get(code, 2), "message": message, "details": []})


def v2_error(status: int, code: str, message: str) -> VenueError:
    return VenueError(status, {"errors": [{"id": code, "message": message}]})


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def iso(ms: int, digits: int = 3) -> str:
    """RFC 3339 UTC; Coinbase prints up to nanoseconds in v3 and whole seconds in v2."""
    moment = dt.datetime.fromtimestamp(ms // 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{ms % 1000:03d}".ljust(digits, "0")[:digits] if digits else ""
    return f"{moment}.{fraction}Z" if fraction else f"{moment}Z"


def parse_iso_ms(text: str) -> int:
    try:
        head, _, frac = text.rstrip("Z").partition(".")
        moment = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC)
    except ValueError:
        raise v3_error(400, "INVALID_ARGUMENT", f"invalid timestamp {text!r}") from None
    return int(moment.timestamp()) * 1000 + int((frac + "000")[:3])


def wallet_id(account: Account, asset: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"wallet:{account.id}:{asset}"))


def entry_id(trade_id: str) -> str:
    return hashlib.sha256(f"fill:{trade_id}".encode()).hexdigest()


def tx_id(kind: str, internal_id: str, leg: str = "") -> str:
    return str(uuid.uuid5(NAMESPACE, f"tx:{kind}:{internal_id}:{leg}"))


@dataclass(frozen=True)
class V2Tx:
    id: str
    wallet: str
    order: tuple[int, int, int]
    body: dict[str, Any]


class CoinbaseSim(VenueSim):
    id = "coinbase"
    host = "api.coinbase.com"
    markets = (("BTC", "USD"), ("ETH", "USD"), ("BTC", "USDT"), ("ETH", "USDT"), ("SOL", "USDT"), ("ETH", "BTC"))
    quote_markets = (("USDT", "USD"), ("SOL", "USD"), ("BTC", "EUR"), ("ETH", "EUR"), ("USDT", "EUR"), ("BTC", "GBP"))
    page_limits = {"trades": FILLS_MAX, "deposits": TRANSACTIONS_MAX, "withdrawals": TRANSACTIONS_MAX}

    def __init__(self, state: Any) -> None:
        super().__init__(state)
        self._v2: dict[str, tuple[tuple[int, int, int], dict[str, list[V2Tx]]]] = {}
        # "grpc": the documented v3 error body; "text": the bare "Unauthorized" seen in the wild.
        self.auth_error_style = "grpc"

    def transfers_changed(self, account: Account) -> None:
        self._v2.pop(account.id, None)

    def unauthorized(self, req: Request) -> VenueError:
        if self.auth_error_style == "text":
            return VenueError(401, "Unauthorized")
        if req.path.startswith("/v2/"):
            return v2_error(401, "authentication_error", "invalid signature")
        return v3_error(401, "UNAUTHENTICATED", "Unauthorized")

    def control(self, segs: list[str], method: str, body: dict[str, Any]) -> Response | None:
        if segs == ["auth_error_style"] and method == "POST":
            style = str(body.get("style", "grpc"))
            if style not in ("grpc", "text"):
                raise ValueError("style is grpc or text")
            self.auth_error_style = style
            return Response(200, {"auth_error_style": style})
        return None

    def mint_credentials(self) -> tuple[str, str, str | None, dict[str, Any]]:
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()).decode()
        name = f"organizations/{uuid.uuid4()}/apiKeys/{uuid.uuid4()}"
        return name, pem, None, {"public_key": private.public_key(), "portfolio_uuid": str(uuid.uuid4()),
                                 "user_id": str(uuid.uuid4())}

    def rate_limit_response(self, retry_after: int) -> Response:
        body = {"error": "RESOURCE_EXHAUSTED", "code": 8, "message": "Too many requests", "details": []}
        return Response(429, body, {"Retry-After": str(retry_after)})

    def stream_ids(self, account: Account, stream: str) -> set[str]:
        if stream == "trades":
            return {entry_id(t.id) for t in account.trades}
        if stream == "deposits":
            return {tx_id("deposit", t.id) for t in account.deposits}
        if stream == "withdrawals":
            return {tx_id("withdrawal", t.id) for t in account.withdrawals}
        return super().stream_ids(account, stream)

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        query = {k: v for k, v in parse_qs(req.query, keep_blank_values=True).items()}
        if req.method == "GET" and req.path == "/api/v3/brokerage/time":
            # Get Server Time, public (https://docs.cdp.coinbase.com/api-reference/advanced-trade-api/rest-api/public/
            # get-server-time): ExtendedTimestamp, the epoch values as strings (int64 in JSON).
            ms = self.server_time_ms()
            iso = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            return Response(200, {"iso": iso, "epochSeconds": str(ms // 1000), "epochMillis": str(ms)})
        if req.method == "GET" and req.path == "/api/v3/brokerage/market/products":
            return Response(200, self.products(query))
        key = self.authenticate(req)
        v2 = req.path.startswith("/v2/")
        parts = req.path.strip("/").split("/")
        if req.method == "GET" and req.path == "/api/v3/brokerage/key_permissions":
            return Response(200, self.key_permissions(key))  # any key may ask about itself
        if req.method == "GET":
            if "read" not in key.permissions:
                raise (v2_error(403, "invalid_scope", "Invalid scope") if v2 else
                       v3_error(403, "PERMISSION_DENIED", "Missing required scopes"))
            if req.path == "/api/v3/brokerage/accounts":
                return Response(200, self.accounts(key, query))
            if req.path == "/api/v3/brokerage/orders/historical/fills":
                return Response(200, self.fills(key, query))
            if req.path == "/api/v3/brokerage/transaction_summary":
                return Response(200, self.transaction_summary())
            if v2 and len(parts) == 4 and parts[1] == "accounts" and parts[3] == "transactions":
                return Response(200, self.transactions(key, parts[2], query))
        if req.method == "POST" and req.path.startswith("/api/v3/brokerage/orders"):
            if "trade" not in key.permissions:
                raise v3_error(403, "PERMISSION_DENIED", "Missing required scopes")
            raise v3_error(400, "INVALID_ARGUMENT", "the simulator does not execute orders")
        if req.method == "POST" and v2 and parts[-1] == "transactions":
            if not key.permissions & {"transfer", "withdraw"}:
                raise v2_error(403, "invalid_scope", "Invalid scope")
            raise v2_error(400, "validation_error", "the simulator does not send funds")
        raise (v2_error(404, "not_found", "Not found") if v2 else v3_error(404, "NOT_FOUND", "Not found"))

    def authenticate(self, req: Request) -> Key:
        """Verify the CDP JWT exactly as Coinbase does; every failure is a 401 (see ``unauthorized``)."""
        unauthorized = functools.partial(self.unauthorized, req)
        auth = req.header("Authorization")
        if not auth.startswith("Bearer "):
            raise unauthorized()
        try:
            head64, claims64, sig64 = auth.removeprefix("Bearer ").split(".")
            header, claims = json.loads(b64url(head64)), json.loads(b64url(claims64))
            signature = b64url(sig64)
        except (ValueError, binascii.Error):
            raise unauthorized() from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise unauthorized()
        key = self.key_or_none(str(header.get("kid", "")))
        if key is None or header.get("alg") != "ES256" or claims.get("sub") != key.api_key or len(signature) != 64:
            raise unauthorized()
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        try:
            key.extra["public_key"].verify(der, f"{head64}.{claims64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise unauthorized() from None
        now = time.time()
        nbf, exp = claims.get("nbf"), claims.get("exp")
        if not isinstance(nbf, int) or not isinstance(exp, int) or nbf > now + CLOCK_SKEW or exp < now \
                or exp - nbf > JWT_LIFETIME:
            raise unauthorized()
        if claims.get("iss") not in ISSUERS or claims.get("uri") != f"{req.method} {self.host}{req.path}":
            raise unauthorized()
        return key

    # -- v3 ---------------------------------------------------------------------------------
    def products(self, query: dict[str, list[str]]) -> dict[str, Any]:
        if query.get("product_type", ["SPOT"])[0] != "SPOT":
            return {"products": [], "num_products": 0}
        products: list[dict[str, Any]] = [{
            "product_id": f"{b}-{q}", "price": "1", "base_increment": "0.00000001",
            "quote_increment": "0.01" if q in FIAT else "0.00000001", "quote_min_size": "1",
            "quote_max_size": "10000000", "base_min_size": "0.00000001", "base_max_size": "100000000",
            "base_name": b, "quote_name": q, "status": "online", "cancel_only": False, "limit_only": False,
            "post_only": False, "trading_disabled": False, "auction_mode": False, "product_type": "SPOT",
            "quote_currency_id": q, "base_currency_id": b, "base_display_symbol": b, "quote_display_symbol": q,
            "view_only": False, "price_increment": "0.01", "display_name": f"{b}-{q}", "product_venue": "CBE",
            "alias": "", "alias_to": [],
        } for b, q in self.listed_markets()]
        return {"products": products, "num_products": len(products)}

    @staticmethod
    def key_permissions(key: Key) -> dict[str, Any]:
        return {"can_view": "read" in key.permissions, "can_trade": "trade" in key.permissions,
                "can_transfer": bool(key.permissions & {"transfer", "withdraw"}), "can_receive": False,
                "portfolio_uuid": key.extra["portfolio_uuid"], "portfolio_type": "DEFAULT"}

    @staticmethod
    def transaction_summary() -> dict[str, Any]:
        return {"total_volume": 0, "total_fees": 0, "fee_tier": {
            "pricing_tier": "Advanced 1", "usd_from": "0", "usd_to": "1000", "taker_fee_rate": "0.012",
            "maker_fee_rate": "0.006"}, "margin_rate": None, "goods_and_services_tax": None,
            "advanced_trade_only_volume": 0, "advanced_trade_only_fees": 0, "coinbase_pro_volume": 0,
            "coinbase_pro_fees": 0}

    @staticmethod
    def limit(query: dict[str, list[str]], default: int, maximum: int) -> int:
        try:
            return max(1, min(maximum, int(query.get("limit", [default])[0])))
        except ValueError:
            raise v3_error(400, "INVALID_ARGUMENT", "invalid limit") from None

    @staticmethod
    def assets(account: Account) -> list[str]:
        seen = set(account.balances)
        seen |= {c for t in account.trades for c in (t.base, t.quote)}
        seen |= {t.asset for t in account.deposits + account.withdrawals}
        return sorted(seen)

    def accounts(self, key: Key, query: dict[str, list[str]]) -> dict[str, Any]:
        account = key.account
        wallets = [(wallet_id(account, a), a) for a in self.assets(account)]
        start = 0
        after = query.get("cursor", [""])[0]
        if after:
            ids = [w for w, _ in wallets]
            start = ids.index(after) + 1 if after in ids else len(ids)
        page = wallets[start:start + self.limit(query, ACCOUNTS_DEFAULT, ACCOUNTS_MAX)]
        has_next = start + len(page) < len(wallets)
        created = iso(key.created_at)
        return {"accounts": [{
            "uuid": w, "name": f"{a} Wallet", "currency": a,
            "available_balance": {"value": fmt(account.balances.get(a, Decimal(0))), "currency": a},
            "default": False, "active": True, "created_at": created, "updated_at": created, "deleted_at": None,
            "type": "ACCOUNT_TYPE_FIAT" if a in FIAT else "ACCOUNT_TYPE_CRYPTO", "ready": True,
            "hold": {"value": "0", "currency": a}, "retail_portfolio_id": key.extra["portfolio_uuid"],
            "platform": "ACCOUNT_PLATFORM_CONSUMER",
        } for w, a in page], "has_next": has_next, "cursor": page[-1][0] if has_next else "", "size": len(page)}

    def fills(self, key: Key, query: dict[str, list[str]]) -> dict[str, Any]:
        trades = key.account.trades  # ascending (time, id)
        products: set[str] = set(query.get("product_ids", []) + query.get("product_id", []))
        since = parse_iso_ms(query["start_sequence_timestamp"][0]) if query.get("start_sequence_timestamp") else None
        until = parse_iso_ms(query["end_sequence_timestamp"][0]) if query.get("end_sequence_timestamp") else None
        chosen = [t for t in reversed(trades)
                  if (since is None or t.timestamp >= since) and (until is None or t.timestamp < until)
                  and (not products or f"{t.base}-{t.quote}" in products)]
        cursor = query.get("cursor", [""])[0]
        if cursor:
            try:
                last = tuple(json.loads(b64url(cursor)))
            except (ValueError, binascii.Error):
                raise v3_error(400, "INVALID_ARGUMENT", "invalid cursor") from None
            chosen = [t for t in chosen if (t.timestamp, int(t.id)) < last]
        limit = self.limit(query, FILLS_DEFAULT, FILLS_MAX)
        page = chosen[:limit]
        following = ""
        if len(chosen) > limit:
            following = base64.urlsafe_b64encode(json.dumps([page[-1].timestamp, int(page[-1].id)]).encode()).decode()
        return {"fills": [self.render_fill(key, t) for t in page], "cursor": following}

    @staticmethod
    def render_fill(key: Key, t: Trade) -> dict[str, Any]:
        return {
            "entry_id": entry_id(t.id), "trade_id": str(uuid.uuid5(NAMESPACE, f"trade:{t.id}")),
            "order_id": str(uuid.uuid5(NAMESPACE, f"order:{t.order_id}")), "trade_time": iso(t.timestamp, 9),
            "trade_type": "FILL", "price": fmt(t.price), "size": fmt(t.amount), "commission": fmt(t.fee),
            "product_id": f"{t.base}-{t.quote}", "sequence_timestamp": iso(t.timestamp, 6),
            "liquidity_indicator": "TAKER" if t.taker else "MAKER", "size_in_quote": False,
            "user_id": key.extra["user_id"], "side": t.side.upper(), "retail_portfolio_id": key.extra["portfolio_uuid"],
        }

    # -- v2 ---------------------------------------------------------------------------------
    def transactions(self, key: Key, wallet: str, query: dict[str, list[str]]) -> dict[str, Any]:
        listing = self.v2_book(key.account).get(wallet)
        if listing is None:
            raise v2_error(404, "not_found", "Not found")
        order = query.get("order", ["desc"])[0]
        items = listing if order == "asc" else listing[::-1]
        ids = [tx.id for tx in items]
        after, before = query.get("starting_after", [""])[0], query.get("ending_before", [""])[0]
        for ref in (after, before):
            if ref and ref not in ids:
                raise v2_error(400, "invalid_request", f"unknown cursor {ref}")
        if before:
            items = items[:ids.index(before)]
        if after:
            items = items[ids.index(after) + 1:]
        limit = self.limit(query, TRANSACTIONS_DEFAULT, TRANSACTIONS_MAX)
        page, more = items[:limit], len(items) > limit
        path = f"/v2/accounts/{wallet}/transactions"
        next_after = page[-1].id if more else None
        return {"pagination": {
            "ending_before": before or None, "starting_after": after or None, "previous_ending_before": None,
            "next_starting_after": next_after, "limit": limit, "order": order, "previous_uri": None,
            "next_uri": f"{path}?limit={limit}&order={order}&starting_after={next_after}" if more else None,
        }, "data": [tx.body for tx in page]}

    def v2_book(self, account: Account) -> dict[str, list[V2Tx]]:
        """Each wallet's transactions, ascending; rebuilt only when the account's history grows."""
        size = (len(account.trades), len(account.deposits), len(account.withdrawals))
        cached = self._v2.get(account.id)
        if cached is not None and cached[0] == size:
            return cached[1]
        txs: list[V2Tx] = []
        for t in account.trades:
            txs.extend(self.fill_legs(account, t))
        for tr in account.deposits:
            txs.append(self.funding_tx(account, tr, "deposit"))
        for tr in account.withdrawals:
            txs.append(self.funding_tx(account, tr, "withdrawal"))
        book: dict[str, list[V2Tx]] = {wallet_id(account, a): [] for a in self.assets(account)}
        for tx in sorted(txs, key=lambda x: x.order):
            book[tx.wallet].append(tx)
        self._v2[account.id] = (size, book)
        return book

    def fill_legs(self, account: Account, t: Trade) -> list[V2Tx]:
        sign = 1 if t.side == "buy" else -1
        legs = []
        for n, (asset, amount) in enumerate(((t.base, sign * t.amount), (t.quote, -sign * t.cost - t.fee))):
            wallet, ident = wallet_id(account, asset), tx_id("fill", t.id, asset)
            legs.append(V2Tx(ident, wallet, (t.timestamp, int(t.id), n), {
                "id": ident, "type": "advanced_trade_fill", "status": "completed",
                "amount": {"amount": fmt(amount), "currency": asset}, "created_at": iso(t.timestamp, 0),
                "updated_at": iso(t.timestamp, 0), "resource": "transaction",
                "resource_path": f"/v2/accounts/{wallet}/transactions/{ident}",
                "advanced_trade_fill": {"fill_price": fmt(t.price), "product_id": f"{t.base}-{t.quote}",
                                        "order_id": str(uuid.uuid5(NAMESPACE, f"order:{t.order_id}")),
                                        "commission": fmt(t.fee), "order_side": t.side},
            }))
        return legs

    def funding_tx(self, account: Account, tr: Transfer, kind: str) -> V2Tx:
        wallet, ident = wallet_id(account, tr.asset), tx_id(kind, tr.id)
        status = {"ok": "completed", "pending": "pending", "failed": "failed", "rejected": "failed",
                  "cancelled": "canceled"}.get(tr.status, "pending")
        chain_status = "confirmed" if tr.status == "ok" else "pending"
        body: dict[str, Any] = {"id": ident, "status": status, "created_at": iso(tr.timestamp, 0),
                                "updated_at": iso(tr.timestamp, 0), "resource": "transaction",
                                "resource_path": f"/v2/accounts/{wallet}/transactions/{ident}",
                                "instant_exchange": False, "description": None}
        if tr.asset in FIAT:
            amount = tr.amount if kind == "deposit" else -tr.amount
            body.update(type=f"fiat_{kind}", amount={"amount": fmt(amount), "currency": tr.asset})
        elif kind == "deposit":
            body.update(type="receive", amount={"amount": fmt(tr.amount), "currency": tr.asset},
                        network={"status": chain_status, "hash": tr.txid, "network_name": tr.network.lower()},
                        **{"from": {"resource": "address", "address": tr.address, "currency": tr.asset}})
        else:
            body.update(type="send", amount={"amount": fmt(-(tr.amount + tr.fee)), "currency": tr.asset},
                        idem=str(uuid.uuid5(NAMESPACE, f"idem:{tr.id}")),
                        network={"status": chain_status, "hash": tr.txid, "network_name": tr.network.lower(),
                                 "transaction_fee": {"amount": fmt(tr.fee), "currency": tr.asset},
                                 "transaction_amount": {"amount": fmt(tr.amount), "currency": tr.asset}},
                        to={"resource": "address", "address": tr.address, "currency": tr.asset})
        return V2Tx(ident, wallet, (tr.timestamp, int(tr.id), 0), body)
