"""Coinbase (Advanced Trade API, CDP keys) through ccxt.

- Scope comes from ``GET /api/v3/brokerage/key_permissions``: read-only is ``can_view`` without
  ``can_trade`` or ``can_transfer`` (Transfer covers sending funds off the platform).
- A CDP key sees one portfolio only; the evidence records which one.
- Balances come from v3 ``/brokerage/accounts`` (one wallet per currency, cursor-paged). The same
  wallet uuids address the v2 App API, where ``/accounts/{id}/transactions`` is the only place that lists
  crypto sends and receives; deposits and withdrawals are read there, wallet by wallet, resuming after
  the last transaction id seen in each (``order=asc&starting_after=``).
- Trades are v3 fills (``/brokerage/orders/historical/fills``), newest first by cursor inside a window
  pinned at the start of a run; the next run starts at the newest fill time seen (inclusive).
- load_markets only calls the public product list: the markets client has no credentials, so ccxt
  skips its signed ``transaction_summary``; ``has['fetchCurrencies']`` is off (three more public calls
  we do not need).
- ccxt's own account lookup (used only by its transfer and withdraw helpers) is pointed at v2
  ``/accounts``, which is not on the allowlist: such an attempt is refused on its very first request.
- Errors: Advanced Trade answers with its gRPC gateway's status body ``{"error": "UNAUTHENTICATED", "code": 16,
  "message", "details"}`` (and, seen in the wild, a bare ``Unauthorized`` text); the App API (v2) with
  ``{"errors": [{"id", "message"}]}``. The HTTP status decides first (401: the key is invalid or revoked, 403: it
  lacks a scope, 429: rate limit), then the gRPC status name or number, then the v2 id. An unrecognised body on
  a 401 is still an invalid key: the connection turns red in the same poll.
- Transfer statuses (v2 ``status``): ``completed``; ``pending``, ``waiting_for_signature``,
  ``waiting_for_clearing`` (pending); ``failed``, ``expired`` (failed); ``canceled``. A pending transaction is
  read again on every run until it has an outcome (each wallet resumes before its oldest pending one).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from appliance.errors import (
    VenueAuthError,
    VenueBadData,
    VenueError,
    VenuePermissionError,
    VenueRateLimited,
    VenueTransient,
)
from appliance.venues import egress
from appliance.venues.base import (
    NOT_READ,
    Balance,
    CredentialField,
    Credentials,
    GuideStep,
    Kind,
    Page,
    Scope,
    Stream,
    TxRecord,
    TxStatus,
    coverage_gap,
    transfer_status,
)
from appliance.venues.ccxt_base import GRPC_NAMES, GRPC_STATUS_ERRORS, CcxtAdapter, to_decimal
from appliance.venues.ratelimits import RateLimit

FILLS_PAGE = 250
ACCOUNTS_PAGE = 250
TRANSACTIONS_PAGE = 100
KNOWN_FLAGS = ("can_view", "can_trade", "can_transfer")
# Trades made in the Coinbase app (simple buy, sell, convert) are App API transactions of types buy, sell and trade,
# not Advanced Trade fills; this adapter reads fills only, so the trades stream says so (the transaction history
# report holds them: a statement import closes the gap).
APP_TRADES_GAP = coverage_gap(NOT_READ, "Coinbase app buys, sells and converts (App API transaction types buy, sell "
                              "and trade) are not read as trades yet, only Advanced Trade fills; import the "
                              "transaction history report to record them")
# Flags that grant nothing over funds: "receive inbound payments" (key_permissions, 2026) only lets payments in.
HARMLESS_FLAGS = ("can_receive",)
# v2 transaction status -> ours (docs: Coinbase App API, Transactions: "Currently available statuses").
STATUSES = {"completed": TxStatus.COMPLETED, "pending": TxStatus.PENDING, "waiting_for_signature": TxStatus.PENDING,
            "waiting_for_clearing": TxStatus.PENDING, "failed": TxStatus.FAILED, "expired": TxStatus.FAILED,
            "canceled": TxStatus.CANCELLED, "cancelled": TxStatus.CANCELLED}
DEPOSIT_TYPES = frozenset({"fiat_deposit"})
WITHDRAWAL_TYPES = frozenset({"fiat_withdrawal"})
CRYPTO_TYPES = frozenset({"send", "receive"})  # the sign of the amount gives the direction
_JSON_TAIL = re.compile(r"[\[{].*[\]}]", re.S)
_FRACTION = re.compile(r"\.(\d+)")


def parse_time(text: Any) -> dt.datetime:
    """RFC 3339 as Coinbase prints it (up to nanoseconds, ``Z``), truncated to microseconds, UTC."""
    value = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), str(text).replace("Z", "+00:00"), count=1)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise VenueBadData("coinbase", f"not a timestamp: {str(text)[:40]!r}") from None
    return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def amount_of(money: Any) -> Decimal | None:
    """Coinbase money objects: v2 ``{"amount", "currency"}``, v3 ``{"value", "currency"}``."""
    if not isinstance(money, dict):
        return None
    return to_decimal(money.get("amount", money.get("value")))


class CoinbaseAdapter(CcxtAdapter):
    id = "coinbase"
    name = "Coinbase"
    ccxt_id = "coinbase"
    hosts = ("api.coinbase.com",)
    read_endpoints = (
        *egress.read("GET", r"/api/v3/brokerage/market/products", r"/api/v3/brokerage/key_permissions",
                     r"/api/v3/brokerage/accounts", r"/api/v3/brokerage/orders/historical/fills",
                     r"/v2/accounts/[0-9a-fA-F-]{36}/transactions"),
    )
    ccxt_options: ClassVar[Mapping[str, Any]] = {"fetchAccounts": "fetchAccountsV2"}
    ccxt_has: ClassVar[Mapping[str, Any]] = {"fetchCurrencies": False}
    streams = (Stream.TRADES, Stream.DEPOSITS, Stream.WITHDRAWALS)
    # docs: Advanced Trade API Rate Limits (private 30 requests/s per user, public 10/s per IP); Coinbase App
    # Rate Limiting (10,000 requests an hour per key).
    rate_limits = (
        RateLimit(30, 1, path=r"/api/v3/brokerage/(?!market/).*", per_account=True,
                  source="https://docs.cdp.coinbase.com/advanced-trade/docs/rest-api-rate-limits"),
        RateLimit(10, 1, path=r"/api/v3/brokerage/market/.*",
                  source="https://docs.cdp.coinbase.com/advanced-trade/docs/rest-api-rate-limits"),
        RateLimit(10_000, 3600, path=r"/v2/.*", per_account=True,
                  source="https://docs.cdp.coinbase.com/coinbase-app/docs/rate-limiting"),
    )
    http_status_errors: ClassVar[Mapping[int, type[VenueError]]] = {
        401: VenueAuthError, 403: VenuePermissionError, 429: VenueRateLimited}
    error_codes: ClassVar[Mapping[str, type[VenueError]]] = {
        **GRPC_STATUS_ERRORS,
        "PERMISSION_DENIED": VenuePermissionError,
        "invalid_scope": VenuePermissionError,  # ccxt: AuthenticationError; the key works, the scope is missing
        "authentication_error": VenueAuthError,
        "unauthorized": VenueAuthError,
        "invalid_token": VenueAuthError,
        "revoked_token": VenueAuthError,
        "expired_token": VenueAuthError,
        "rate_limit_exceeded": VenueRateLimited,
        "RATE_LIMIT_EXCEEDED": VenueRateLimited,
        "resource_exhausted": VenueRateLimited,
        "internal_server_error": VenueTransient,
    }
    credential_fields = (
        CredentialField("api_key", "API key name",
                        help="The key's name as Coinbase shows it: organizations/…/apiKeys/… (the 'name' field of "
                             "the downloaded JSON)."),
        CredentialField("api_secret", "Private key",
                        help="The whole private key, from -----BEGIN EC PRIVATE KEY----- to the END line "
                             "(the 'privateKey' field of the downloaded JSON).", multiline=True),
    )
    guide = (
        GuideStep("Sign in at portal.cdp.coinbase.com (Coinbase Developer Platform) with your Coinbase account "
                  "and open API keys → Secret API keys → Create API key."),
        GuideStep("Name the key and pick the portfolio that holds your assets (normally Default): the key only "
                  "sees that one portfolio."),
        GuideStep("Under API restrictions tick View only. Leave Trade and Transfer unticked: a key with either "
                  "is refused.", warning=True),
        GuideStep("Under Advanced settings choose ECDSA as the signature algorithm and leave the IP allowlist "
                  "empty, then create the key."),
        GuideStep("Download the key file and copy its 'name' and 'privateKey' into the form below."),
    )

    # -- scope --------------------------------------------------------------------------------
    def probe_scope(self, creds: Credentials) -> Scope:
        client = self.client(creds)
        response = self.call(client.v3PrivateGetBrokerageKeyPermissions, creds=creds)
        if not isinstance(response, dict) or "can_view" not in response:
            raise VenueBadData(self.id, "key_permissions did not list the key's permissions")
        # A permission flag we do not know that is on fails closed.
        unknown = sorted(k for k, v in response.items()
                         if k.startswith("can_") and k not in KNOWN_FLAGS + HARMLESS_FLAGS and v)
        transfer = response.get("can_transfer") is True or bool(unknown)
        secrets = creds.secrets()
        evidence = {k: v for k, v in response.items() if not (isinstance(v, str) and any(s in v for s in secrets))}
        return Scope(read=response.get("can_view") is True, trade=response.get("can_trade") is True,
                     transfer=transfer, withdraw=transfer, verified=True, evidence=evidence,
                     notes=tuple(f"unrecognised permission {k!r} treated as dangerous" for k in unknown))

    def regenerate_instructions(self, scope: Scope) -> str:
        ticked = [label for flag, label in (("can_trade", "Trade"), ("can_transfer", "Transfer"))
                  if scope.evidence.get(flag) is True]
        held = " and ".join(ticked) or "more than View"
        return (f"This Coinbase key has {held} permission ({', '.join(scope.granted())}). In the Coinbase "
                "Developer Platform (portal.cdp.coinbase.com → API keys), delete this key and create a new "
                "Secret API key on the same portfolio with only View ticked: leave Trade and Transfer unticked. "
                "Then submit the new key.")

    def venue_code(self, message: str) -> str | None:
        """v3: the gRPC status name (``error``), else its number (``code``, as ``grpc:N``); v3 order errors:
        ``error`` too; v2: ``errors[0].id``."""
        body = _JSON_TAIL.search(message)
        parsed = None
        if body:
            try:
                parsed = json.loads(body.group(0))
            except ValueError:
                parsed = None
        if isinstance(parsed, dict):
            name = parsed.get("error")
            if isinstance(name, str) and name:
                return name
            number = parsed.get("code")
            if isinstance(number, int) and not isinstance(number, bool) and number in GRPC_NAMES:
                return f"grpc:{number}"
            errors = parsed.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict) and errors[0].get("id"):
                return str(errors[0]["id"])
        return super().venue_code(message)

    # -- balances -----------------------------------------------------------------------------
    def wallets(self, creds: Credentials, cursor: str | None) -> tuple[list[Mapping[str, Any]], str | None]:
        """One page of v3 accounts and the cursor of the next page (None at the end)."""
        client = self.client(creds)
        request: dict[str, Any] = {"limit": ACCOUNTS_PAGE}
        if cursor:
            request["cursor"] = cursor
        response = self.call(client.v3PrivateGetBrokerageAccounts, request, creds=creds)
        accounts = response.get("accounts") if isinstance(response, dict) else None
        if not isinstance(accounts, list):
            raise VenueBadData(self.id, "accounts did not list any account")
        following = response.get("cursor") if response.get("has_next") else None
        return accounts, str(following) if following else None

    def fetch_balances(self, creds: Credentials) -> list[Balance]:
        balances, cursor = [], None
        while True:
            accounts, cursor = self.wallets(creds, cursor)
            for account in accounts:
                amounts = [amount_of(account.get("available_balance")), amount_of(account.get("hold"))]
                total = sum((a for a in amounts if a is not None), Decimal(0))
                if total:
                    balances.append(Balance(str(account.get("currency", "")), total))
            if cursor is None:
                return balances

    # -- history ------------------------------------------------------------------------------
    def fetch_transactions(self, creds: Credentials, stream: str, cursor: Mapping[str, Any]) -> Page:
        if stream == Stream.TRADES:
            return self.fills_page(creds, dict(cursor))
        if stream in (Stream.DEPOSITS, Stream.WITHDRAWALS):
            return self.funding_page(creds, stream, dict(cursor))
        raise VenueBadData(self.id, f"stream {stream!r} is not served by this adapter")

    def fills_page(self, creds: Credentials, cursor: dict[str, Any]) -> Page:
        started = cursor.get("started") or now_iso()
        until = cursor.get("until") or dt.datetime.fromisoformat(started).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        request: dict[str, Any] = {"limit": FILLS_PAGE, "end_sequence_timestamp": until}
        if cursor.get("since"):
            request["start_sequence_timestamp"] = cursor["since"]
        if cursor.get("page"):
            request["cursor"] = cursor["page"]
        client = self.client(creds)
        response = self.call(client.v3PrivateGetBrokerageOrdersHistoricalFills, request, creds=creds)
        fills = response.get("fills") if isinstance(response, dict) else None
        if not isinstance(fills, list):
            raise VenueBadData(self.id, "fills response without a fills list")
        records = [self.fill_record(f) for f in fills]
        stamps = [s for s in (cursor.get("newest"), *(f.get("sequence_timestamp") for f in fills)) if s]
        newest = max(stamps, key=parse_time) if stamps else None
        following = response.get("cursor")
        if following:
            return Page(records, {"since": cursor.get("since"), "until": until, "page": following,
                                  "newest": newest, "started": started}, False)
        since = newest or cursor.get("since")
        return Page(records, {"since": since} if since else {}, True, complete_until=dt.datetime.fromisoformat(started),
                    notes={"coverage_gap": APP_TRADES_GAP})

    def fill_record(self, f: Mapping[str, Any]) -> TxRecord:
        base, quote, symbol = self.market_of(str(f.get("product_id", "")))
        size, price, fee = to_decimal(f.get("size")), to_decimal(f.get("price")), to_decimal(f.get("commission"))
        if size is None or price is None or not f.get("entry_id"):
            raise VenueBadData(self.id, "a fill without an id, size or price")
        # size_in_quote: the size is in the quote currency (market buys by cost).
        amount, cost = (size / price, size) if f.get("size_in_quote") is True else (size, size * price)
        return TxRecord(
            stream=Stream.TRADES, venue_tx_id=str(f["entry_id"]),
            kind=Kind.BUY if str(f.get("side", "")).upper() == "BUY" else Kind.SELL,
            occurred_at=parse_time(f.get("trade_time")), asset=base, amount=amount, market=symbol, quote_asset=quote,
            quote_amount=cost, price=price, fee_asset=quote, fee_amount=fee, raw=dict(f))

    def market_of(self, product_id: str) -> tuple[str, str, str]:
        found = self.markets().markets_by_id.get(product_id) or []
        if found:
            return str(found[0]["base"]), str(found[0]["quote"]), str(found[0]["symbol"])
        base, _, quote = product_id.partition("-")
        return base, quote, f"{base}/{quote}"

    def funding_page(self, creds: Credentials, stream: str, cursor: dict[str, Any]) -> Page:
        """A run lists the wallets, then reads each wallet's new v2 transactions, one page per request.

        ``after[wallet]``: the last transaction read. ``hold[wallet]``: where the wallet's oldest pending
        transaction of this stream sits (the id just before it; "" for the wallet's start). The next run resumes
        a wallet at its hold rather than after the last transaction, so a pending one is read again until it has
        an outcome; each run recomputes the holds from what it reads.
        """
        started = cursor.setdefault("started", now_iso())
        after: dict[str, str] = dict(cursor.get("after", {}))
        if "queue" not in cursor:
            accounts, following = self.wallets(creds, cursor.get("listing"))
            found = [*cursor.get("found", []), *(str(a["uuid"]) for a in accounts if a.get("uuid"))]
            if following:
                return Page([], {**cursor, "listing": following, "found": found}, False)
            cursor = {"after": after, "resume": {**after, **dict(cursor.get("hold", {}))}, "hold": {},
                      "queue": found, "started": started}
            return self.end_of_run([], cursor)
        wallet = cursor["queue"][0]
        hold: dict[str, str] = dict(cursor.get("hold", {}))
        first = cursor.get("reading") != wallet
        start_after = (cursor.get("resume") or {}).get(wallet, "") if first else after.get(wallet, "")
        request: dict[str, Any] = {"account_id": wallet, "limit": TRANSACTIONS_PAGE, "order": "asc"}
        if start_after:
            request["starting_after"] = start_after
        client = self.client(creds)
        try:
            response = self.call(client.v2PrivateGetAccountsAccountIdTransactions, request, creds=creds)
        except VenueError as exc:
            if exc.venue_code != "not_found":
                raise
            response = {"data": [], "pagination": {}}  # the wallet went away between listing and reading
        data = response.get("data") if isinstance(response, dict) else None
        if not isinstance(data, list):
            raise VenueBadData(self.id, "transactions response without data")
        records = []
        previous = start_after
        for tx in data:
            if not isinstance(tx, dict) or not tx.get("id"):
                raise VenueBadData(self.id, "a transaction without an id")
            record = self.funding_record(stream, tx)
            if record is not None:
                records.append(record)
                if record.status == TxStatus.PENDING and wallet not in hold:
                    hold[wallet] = previous
            previous = after[wallet] = str(tx["id"])
        more = bool((response.get("pagination") or {}).get("next_uri")) and bool(data)
        queue = cursor["queue"] if more else cursor["queue"][1:]
        cursor = {**cursor, "after": after, "hold": hold, "queue": queue, "reading": wallet if more else None}
        return self.end_of_run(records, cursor)

    @staticmethod
    def end_of_run(records: list[TxRecord], cursor: dict[str, Any]) -> Page:
        if cursor["queue"]:
            return Page(records, cursor, False)
        following = {"after": cursor["after"]}
        if cursor.get("hold"):
            following["hold"] = cursor["hold"]
        return Page(records, following, True, complete_until=dt.datetime.fromisoformat(cursor["started"]))

    def funding_record(self, stream: str, tx: Mapping[str, Any]) -> TxRecord | None:
        """The transaction as a deposit or withdrawal of ``stream``, or None (trades, rewards, other stream)."""
        kind, money = str(tx.get("type", "")), tx.get("amount")
        signed = amount_of(money)
        if signed is None or not isinstance(money, dict):
            return None
        incoming = kind in DEPOSIT_TYPES or (kind in CRYPTO_TYPES and signed > 0)
        outgoing = kind in WITHDRAWAL_TYPES or (kind in CRYPTO_TYPES and signed < 0)
        if not (incoming if stream == Stream.DEPOSITS else outgoing):
            return None
        network = tx.get("network")
        if not isinstance(network, dict):
            network = {}
        fee = amount_of(network.get("transaction_fee"))
        sent = amount_of(network.get("transaction_amount"))
        asset = str(money.get("currency", ""))
        return TxRecord(
            stream=stream, venue_tx_id=str(tx["id"]), kind=Kind.DEPOSIT if incoming else Kind.WITHDRAWAL,
            occurred_at=parse_time(tx.get("created_at")), asset=asset,
            amount=sent if (outgoing and sent is not None) else abs(signed),
            fee_asset=asset if fee is not None else None, fee_amount=fee, raw=dict(tx),
            status=transfer_status(self.id, STATUSES, str(tx.get("status") or "").lower()))
