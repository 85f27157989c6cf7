"""Bitstamp (www.bitstamp.net, API v2) through ccxt.

- Bitstamp has no permission query: permissions are ticked per endpoint when the key is made. We test what can
  be tested without side effects: reading (``account_balances``) and the cancel-order permission, by cancelling
  an order id that cannot be an open order of the employee (VENUES.md §9): "No permission found" means the key
  may not cancel; any other answer from the venue ("Order not found.", a validation error) means the permission
  check passed, so the key is a trading key. Transfer and withdraw cannot be tested harmlessly and stay unknown,
  so ``can_probe_scope`` is False and the configured unverified policy decides.
- ccxt exposes ``privatePostRevokeAllApiKeys``, which revokes every key of the account. It is not on the
  allowlist, and nothing here calls it.
- Bitstamp signs the host (VENUES.md §0.2); the egress layer rewrites scheme and host only after signing.
- History: one ``ledger`` stream from ``user_transactions``, which holds deposits (type 0), withdrawals (1),
  trades (2) and the rest (sub-account transfers, staking, rewards), oldest first, 1000 rows a page, resumed with
  ``since_id``. One walk serves every kind, instead of three walks over the same endpoint.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import ccxt

from appliance.errors import (
    EgressRefused,
    VenueAuthError,
    VenueBadData,
    VenueError,
    VenuePermissionError,
    VenueRateLimited,
    VenueTransient,
)
from appliance.venues import egress
from appliance.venues.base import (
    Balance,
    CredentialField,
    Credentials,
    GuideStep,
    Kind,
    Page,
    Scope,
    Stream,
    TxRecord,
)
from appliance.venues.ccxt_base import CcxtAdapter, to_decimal
from appliance.venues.ratelimits import RateLimit

PAGE = 1000
NO_PERMISSION = "No permission found"
# Order ids are 16-digit numbers today; order 1 is from 2011 and can never be an open order of the employee,
# so the probe cannot cancel anything even on a key that may cancel.
PROBE_ORDER_ID = "1"
_META = {"id", "datetime", "type", "fee", "order_id"}
_KINDS = {"0": Kind.DEPOSIT, "1": Kind.WITHDRAWAL, "25": Kind.TRANSFER_IN, "26": Kind.TRANSFER_OUT,
          "27": Kind.REWARD, "32": Kind.REWARD}
_SIGNED_TRANSFERS = {"14", "35"}  # sub-account and inter-account transfers: direction from the sign
_PARSE_ERRORS = (KeyError, TypeError, ValueError, InvalidOperation, AttributeError, IndexError)


class BitstampAdapter(CcxtAdapter):
    id = "bitstamp"
    name = "Bitstamp"
    ccxt_id = "bitstamp"
    hosts = ("www.bitstamp.net",)
    read_endpoints = (
        *egress.read("GET", r"/api/v2/markets/"),  # load_markets: markets and currencies, public
        *egress.read("POST", r"/api/v2/account_balances/"),
        *egress.read("POST", r"/api/v2/user_transactions/"),
        # Scope probe only (VENUES.md §9): cancel_order of PROBE_ORDER_ID, which cannot be an open order. It tells a
        # key that may cancel (a trading key) from one that may not. Nothing else in this module calls it.
        *egress.read("POST", r"/api/v2/cancel_order/"),
    )
    can_probe_scope = False  # transfer and withdraw cannot be tested without moving funds
    # docs: "Request limits": 400 requests a second, and by default 10,000 requests per 10 minutes (per client).
    rate_limits = (RateLimit(400, 1, source="https://www.bitstamp.net/api/#section/Request-limits"),
                   RateLimit(10_000, 600, source="https://www.bitstamp.net/api/#section/Request-limits"))
    error_codes: ClassVar[Mapping[str, type[VenueError]]] = {
        **dict.fromkeys(("API0001", "API0005", "API0006", "API0008", "API0011", "API0012", "API0013", "API0014",
                         "API0015", "API0016"), VenueAuthError),
        **dict.fromkeys(("API0002", NO_PERMISSION, "API0003", "IP address not allowed"), VenuePermissionError),
        "Rate limit exceeded": VenueRateLimited,
        **dict.fromkeys(("API0004", "API0017"), VenueTransient),  # nonce reuse, clock skew
    }
    streams = (Stream.LEDGER,)

    credential_fields = (
        CredentialField("api_key", "API key", "Shown by Bitstamp after you create the key."),
        CredentialField("api_secret", "API secret", "Shown once, right after the key is created."),
    )
    guide = (
        GuideStep("Log in at www.bitstamp.net and open Settings → API access → New API key."),
        GuideStep("Tick only the reading permissions: Account balance, User transactions, Open orders, "
                  "Order status and Withdrawal requests."),
        GuideStep("Leave every Buy and Sell order, Cancel order, Withdrawal (per currency), Transfer and Bank "
                  "withdrawal permission unticked.", warning=True),
        GuideStep("Bitstamp does not let us read a key's permissions. We check reading and order cancelling; "
                  "your compliance team's policy decides whether a key that may still withdraw is accepted, so "
                  "tick nothing beyond the list above.", warning=True),
        GuideStep("Generate the key, then activate it from the confirmation email Bitstamp sends."),
        GuideStep("Copy the API key and secret."),
    )

    # -- scope ---------------------------------------------------------------------------------
    def probe_scope(self, creds: Credentials) -> Scope:
        client = self.client(creds)
        evidence: dict[str, str] = {}
        try:
            self.call(client.privatePostAccountBalances, creds=creds)
            read, evidence["account_balances"] = True, "ok"
        except VenuePermissionError as exc:
            if NO_PERMISSION not in exc.message:
                raise  # e.g. the key's IP allow-list: nothing learnt about the key
            read, evidence["account_balances"] = False, NO_PERMISSION
        trade, evidence["cancel_order_probe"] = self._cancel_probe(client, creds)
        return Scope(read=read, trade=trade, transfer=None, withdraw=None, verified=False, evidence=evidence,
                     notes=("Bitstamp has no permission query; trade is inferred from the cancel-order permission "
                            "and transfer/withdraw are unknown.",))

    def _cancel_probe(self, client: Any, creds: Credentials) -> tuple[bool, str]:
        try:
            client.privatePostCancelOrder({"id": PROBE_ORDER_ID})
        except EgressRefused:
            raise
        except ccxt.BaseError as exc:
            text = self.safe_text(str(exc), creds.secrets())
            if NO_PERMISSION in text:
                return False, NO_PERMISSION
            classified = self.classify(exc, creds, client)
            if isinstance(exc, ccxt.NetworkError) or isinstance(
                    classified, (VenueAuthError, VenuePermissionError, VenueRateLimited)):
                raise classified from None  # nothing learnt about the key
            return True, text  # the venue got past its permission check: the key may cancel orders
        return True, "cancel_order accepted"

    def regenerate_instructions(self, scope: Scope) -> str:
        return ("This Bitstamp key may cancel orders, so it is a trading key. In Bitstamp open Settings → API "
                "access, delete it, then create a new key with only the reading permissions ticked (Account "
                "balance, User transactions, Open orders, Order status, Withdrawal requests), activate it from "
                "the email and submit it.")

    # -- balances ------------------------------------------------------------------------------
    def fetch_balances(self, creds: Credentials) -> list[Balance]:
        client = self.client(creds)
        rows = self.call(client.privatePostAccountBalances, creds=creds)
        if not isinstance(rows, list):
            raise VenueBadData(self.id, "account_balances returned no list")
        try:
            out = [Balance(str(row["currency"]).upper(), _dec(row["total"]), "spot") for row in rows]
        except _PARSE_ERRORS:
            raise VenueBadData(self.id, "unexpected account_balances row") from None
        return [b for b in out if b.amount != 0]

    # -- history -------------------------------------------------------------------------------
    def fetch_transactions(self, creds: Credentials, stream: str, cursor: Mapping[str, Any]) -> Page:
        """One page of user_transactions, oldest first. Cursor: ``since_id`` = the last id stored."""
        if stream != Stream.LEDGER:
            raise ValueError(f"{self.id} does not serve the {stream!r} stream")
        last = int(cursor["since_id"]) if cursor.get("since_id") else None
        params: dict[str, Any] = {"sort": "asc", "limit": PAGE}
        if last is None:
            params["offset"] = 0
        else:
            params["since_id"] = last  # inclusive on Bitstamp: the row we already hold comes back first
        client = self.client(creds)
        asked_at = dt.datetime.now(dt.UTC)
        rows = self.call(client.privatePostUserTransactions, params, creds=creds)
        if not isinstance(rows, list):
            raise VenueBadData(self.id, "user_transactions returned no list")
        try:
            fresh = [row for row in rows if last is None or int(row["id"]) > last]
            records = [record for row in fresh for record in self._records(row)]
            newest = max([last or 0, *(int(row["id"]) for row in fresh)])
        except _PARSE_ERRORS:
            raise VenueBadData(self.id, "unexpected user_transactions row") from None
        next_cursor = {"since_id": newest} if newest else {}
        if len(rows) < PAGE:
            return Page(records, next_cursor, True, asked_at)
        return Page(records, next_cursor, False, records[-1].occurred_at if records else None)

    def _records(self, row: dict[str, Any]) -> list[TxRecord]:
        kind = str(row["type"])
        occurred = dt.datetime.fromisoformat(str(row["datetime"])).replace(tzinfo=dt.UTC)
        fee = to_decimal(row.get("fee"))
        if kind == "2":
            return [self._trade(row, occurred, fee)]
        amounts = {k: _dec(v) for k, v in row.items() if k not in _META and "_" not in k}
        moved = {k: v for k, v in amounts.items() if v != 0}
        out = []
        for currency, amount in moved.items():
            if kind in _SIGNED_TRANSFERS:
                what = Kind.TRANSFER_IN if amount > 0 else Kind.TRANSFER_OUT
            else:
                what = _KINDS.get(kind, Kind.OTHER)
            venue_id = str(row["id"]) if len(moved) == 1 else f"{row['id']}:{currency}"
            out.append(TxRecord(
                stream=Stream.LEDGER, venue_tx_id=venue_id, kind=what, occurred_at=occurred, asset=currency.upper(),
                # Unknown types keep Bitstamp's sign; known kinds carry the direction themselves.
                amount=amount if what == Kind.OTHER else abs(amount), fee_asset=currency.upper() if fee else None,
                fee_amount=fee or None, raw=row))
        return out

    def _trade(self, row: dict[str, Any], occurred: dt.datetime, fee: Decimal | None) -> TxRecord:
        pair = next((k for k in row if "_" in k and k != "order_id"), None)
        if pair is None:
            raise ValueError("trade row without a <base>_<quote> price")
        base, quote = pair.split("_", 1)
        size, cost = _dec(row[base]), _dec(row[quote])
        return TxRecord(
            stream=Stream.LEDGER, venue_tx_id=str(row["id"]), kind=Kind.BUY if size > 0 else Kind.SELL,
            occurred_at=occurred, asset=base.upper(), amount=abs(size), market=f"{base.upper()}/{quote.upper()}",
            quote_asset=quote.upper(), quote_amount=abs(cost), price=_dec(row[pair]),
            fee_asset=quote.upper() if fee is not None else None, fee_amount=fee, raw=row)


def _dec(value: Any) -> Decimal:
    parsed = to_decimal(value)
    if parsed is None:
        raise ValueError("missing number")
    return parsed
