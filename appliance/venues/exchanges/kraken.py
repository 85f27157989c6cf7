"""Kraken spot through ccxt.

- Scope comes from ``POST /0/private/GetApiKeyInfo`` (the key's permission strings), judged with an
  allowlist: only read permissions are acceptable; anything else, known or not, is escalation. Kraken's own
  recipe for read-only monitoring (docs: API key permissions, "Read-only monitoring dashboard") is Query Funds plus
  Query Open and Query Closed Orders & Trades: that key is accepted. Deposits and withdrawals come from the ledger,
  which needs Query Ledger Entries; without it they are a standing ``venue_limitation`` gap, and the employee is
  told which permission adds them. Other read-only permissions (Export Data, Access WebSocket API) are accepted
  and reported as what they are: read-only, unused here.
- Deposits and withdrawals come from the ledger (``Ledgers`` with ``type=deposit|withdrawal``), because
  ``DepositStatus`` and ``WithdrawStatus`` need the Deposit/Withdraw Funds permissions we reject. Kraken books a
  ledger entry once funds move, so every ledger record is completed.
- ``TradesHistory`` and ``Ledgers`` return 50 entries newest first; a run pins ``end`` to the newest id
  it saw first and walks ``ofs``, so entries arriving mid-run do not shift pages; the next run starts
  after that id (``start`` is exclusive).
- Kraken rejects a nonce not greater than the key's previous one. ccxt's counter is per instance and
  we use a fresh instance per call, so the nonce comes from one process-wide monotonic counter.
- ccxt maps ``EAPI:Invalid signature`` to a plain ExchangeError; we classify it as authentication.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
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
    VENUE_LIMITATION,
    Balance,
    CredentialField,
    Credentials,
    GuideStep,
    Kind,
    Page,
    Scope,
    Stream,
    TxRecord,
    coverage_gap,
)
from appliance.venues.ccxt_base import CcxtAdapter, MonotonicNonce, to_decimal
from appliance.venues.ratelimits import RateLimit

# Permission strings a read-only key may hold (docs: GetApiKeyInfo; API key permissions), what they are called in
# Kraken's API settings, and the ones a key needs to be worth storing (balances and trades).
READ_LABELS = {
    "query-funds": "Query Funds", "query-open-trades": "Query Open Orders & Trades",
    "query-closed-trades": "Query Closed Orders & Trades", "query-ledger": "Query Ledger Entries",
}
# Read-only permissions the appliance does not use: accepted, and reported as what they are.
UNUSED_READ = {
    "export-data": "Export Data (creates downloadable exports of the account's history: read-only, not used here)",
}
READ_ONLY = frozenset(READ_LABELS) | frozenset(UNUSED_READ)
NEEDED = (("query-funds",), ("query-open-trades", "query-closed-trades"))
LEDGER = "query-ledger"
WITHOUT_LEDGER = (
    "This key has no Query Ledger Entries permission. Kraken lists deposits and withdrawals only in the ledger, so "
    "they will be shown as a coverage gap (balances and trades are read). To include them, edit the key on Kraken "
    "(Settings → API) and tick Data: Query ledger entries — it only adds reading.")
TRADE = frozenset({"modify-trades", "cancel-trades"})
TRANSFER = frozenset({"deposit-funds", "earn-funds"})
WITHDRAW = frozenset({"withdraw-funds"})
# Fields of GetApiKeyInfo that are not evidence: the key itself and the account's funding reference.
NOT_EVIDENCE = ("apiKey", "iban")
# Kraken balance suffixes (XBT.F, DOT.S...) name where the asset sits.
SUFFIX_ACCOUNTS = {"F": "earn", "B": "earn", "S": "staked", "M": "rewards", "P": "parachain", "T": "tokenized"}


_nonce = MonotonicNonce()


def websocket_permission(permission: str) -> bool:
    """Kraken's Access WebSocket API permission (GetWebSocketsToken): a token that carries the key's other
    permissions and nothing more, so read-only with a read-only key. Its exact string is undocumented."""
    return "websocket" in permission


def danger_of(permission: str) -> str:
    """Which dangerous class a non-read permission belongs to; unknown strings fail closed."""
    if permission in WITHDRAW or "withdraw" in permission:
        return "withdraw"
    if permission in TRADE or "trade" in permission or "order" in permission:
        return "trade"
    return "transfer"


def utc(seconds: Any) -> dt.datetime:
    """Kraken's float seconds as an exact UTC datetime (microseconds)."""
    micros = int(Decimal(str(seconds)) * 1_000_000)
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


class KrakenAdapter(CcxtAdapter):
    id = "kraken"
    name = "Kraken"
    ccxt_id = "kraken"
    hosts = ("api.kraken.com",)
    read_endpoints = (
        *egress.read("GET", r"/0/public/(Assets|AssetPairs)"),
        *egress.read("POST", r"/0/private/(GetApiKeyInfo|BalanceEx|TradesHistory|Ledgers)"),
    )
    # docs: Rate Limits, REST API: a per-account counter, ceiling 15 decaying 0.33/s (Starter tier, the lowest);
    # ledger and trade history queries cost 2, other calls 1. Public endpoints: about one call a second per IP.
    rate_limits = (
        RateLimit(15, 15 / 0.33, path=r"/0/private/.*", per_account=True, bucket=True,
                  weights=((r"/0/private/(Ledgers|QueryLedgers|TradesHistory|QueryTrades)", 2),),
                  source="https://docs.kraken.com/api/docs/guides/spot-rest-ratelimits"),
        RateLimit(1, 1, path=r"/0/public/.*", source="https://docs.kraken.com/api/docs/guides/spot-rest-ratelimits"),
    )
    streams = (Stream.TRADES, Stream.DEPOSITS, Stream.WITHDRAWALS)
    error_codes: ClassVar[Mapping[str, type[VenueError]]] = {
        "EAPI:Invalid key": VenueAuthError,
        "EAPI:Invalid signature": VenueAuthError,  # ccxt: ExchangeError
        "ESession:Invalid session": VenueAuthError,
        "EGeneral:Permission denied": VenuePermissionError,
        "EAPI:Rate limit exceeded": VenueRateLimited,
        "EGeneral:Too many requests": VenueRateLimited,
        "EGeneral:Temporary lockout": VenueRateLimited,
        "EAPI:Invalid nonce": VenueTransient,
        "EService:Unavailable": VenueTransient,
        "EService:Busy": VenueTransient,
    }
    credential_fields = (
        CredentialField("api_key", "API key", help="The public key Kraken shows after you create the key."),
        CredentialField("api_secret", "Private key",
                        help="Shown once by Kraken when the key is created (a long base64 string)."),
    )
    guide = (
        GuideStep("Sign in to kraken.com and open Settings → API, then choose Create API key."),
        GuideStep("Give the key a name you will recognise, e.g. 'compliance read-only'."),
        GuideStep("Under Funds tick only Query. Under Orders & trades tick Query open orders & trades and "
                  "Query closed orders & trades (Kraken's own recipe for read-only monitoring). Under Data also "
                  "tick Query ledger entries: Kraken lists deposits and withdrawals only in the ledger."),
        GuideStep("Leave Deposit, Withdraw, Create & modify orders, Cancel & close orders and every Earn "
                  "permission unticked: a key with any of them is refused.", warning=True),
        GuideStep("Leave the nonce window at 0 and the key without an expiry date, then Generate key."),
        GuideStep("Copy the API key and the Private key into the form below."),
    )

    def new_client(self, creds: Credentials | None = None) -> Any:
        client = super().new_client(creds)
        client.nonce = _nonce
        return client

    # -- scope --------------------------------------------------------------------------------
    def probe_scope(self, creds: Credentials) -> Scope:
        client = self.client(creds)
        result = self.result_of(self.call(client.privatePostGetApiKeyInfo, creds=creds), "GetApiKeyInfo")
        permissions = result.get("permissions")
        if not isinstance(permissions, list):
            raise VenueBadData(self.id, "GetApiKeyInfo did not list the key's permissions")
        held = {str(p) for p in permissions}
        websocket = {p for p in held if websocket_permission(p)}
        dangerous = held - READ_ONLY - websocket
        unknown = dangerous - TRADE - TRANSFER - WITHDRAW
        dangers = {danger_of(p) for p in dangerous}
        notes = [f"unrecognised permission {p!r} treated as {danger_of(p)}" for p in sorted(unknown)]
        notes += [f"{UNUSED_READ[p]}." for p in sorted(held & set(UNUSED_READ))]
        notes += [f"{p}: Access WebSocket API (a token carrying this key's own permissions: read-only here, not used)."
                  for p in sorted(websocket)]
        missing = [" or ".join(READ_LABELS[p] for p in group) for group in NEEDED if not set(group) & held]
        if missing:
            notes.append("missing read permissions: " + ", ".join(missing))
        limitations = (WITHOUT_LEDGER,) if LEDGER not in held and not missing else ()
        evidence = {k: v for k, v in result.items() if k not in NOT_EVIDENCE}
        return Scope(read=not missing, trade="trade" in dangers, transfer="transfer" in dangers,
                     withdraw="withdraw" in dangers, verified=True, evidence=self.scrubbed(evidence, creds),
                     notes=tuple(notes), limitations=limitations)

    @staticmethod
    def scrubbed(evidence: dict[str, Any], creds: Credentials) -> dict[str, Any]:
        secrets = creds.secrets()
        return {k: v for k, v in evidence.items() if not (isinstance(v, str) and any(s in v for s in secrets))}

    def regenerate_instructions(self, scope: Scope) -> str:
        held = scope.evidence.get("permissions") or []
        extra = sorted(p for p in held if p not in READ_ONLY)
        named = f" ({', '.join(extra)})" if extra else ""
        return (f"This Kraken key has {', '.join(scope.granted()) or 'unknown'} permission{named}. In Kraken open "
                "Settings → API, delete this key, and create a new one with only Funds: Query, Orders & trades: "
                "Query open orders & trades and Query closed orders & trades, and Data: Query ledger entries "
                "ticked. Leave Deposit, Withdraw, Create & modify orders, Cancel & close orders and Earn "
                "unticked, then submit the new key.")

    def cannot_read(self, scope: Scope) -> str:
        """Which permissions a key that cannot read must add, in Kraken's words."""
        held = set(scope.evidence.get("permissions") or [])
        missing = [" or ".join(READ_LABELS[p] for p in group) for group in NEEDED if not set(group) & held]
        return (f"This Kraken key cannot read your account: it needs {' and '.join(missing)}. In Kraken open "
                "Settings → API, edit the key and tick those (reading only), then submit it again.")

    # -- balances -----------------------------------------------------------------------------
    def fetch_balances(self, creds: Credentials) -> list[Balance]:
        client = self.client(creds)
        result = self.result_of(self.call(client.privatePostBalanceEx, creds=creds), "BalanceEx")
        balances = []
        for asset_id, entry in result.items():
            amount = to_decimal(entry.get("balance") if isinstance(entry, dict) else entry)
            if not amount:
                continue
            code, _, suffix = self.code(asset_id).partition(".")
            balances.append(Balance(code, amount, SUFFIX_ACCOUNTS.get(suffix, suffix.lower())))
        return balances

    def result_of(self, response: Any, method: str) -> dict[str, Any]:
        result = response.get("result") if isinstance(response, dict) else None
        if not isinstance(result, dict):
            raise VenueBadData(self.id, f"{method} returned no result object")
        return result

    def code(self, asset_id: str) -> str:
        return str(self.markets().safe_currency_code(asset_id))

    # -- history ------------------------------------------------------------------------------
    def fetch_transactions(self, creds: Credentials, stream: str, cursor: Mapping[str, Any]) -> Page:
        if stream == Stream.TRADES:
            return self.history_page(creds, cursor, method="TradesHistory", key="trades", params={"type": "all"},
                                     build=self.trade_record)
        if stream in (Stream.DEPOSITS, Stream.WITHDRAWALS):
            ledger_type = "deposit" if stream == Stream.DEPOSITS else "withdrawal"
            try:
                return self.history_page(creds, cursor, method="Ledgers", key="ledger", params={"type": ledger_type},
                                         build=lambda txid, entry: self.funding_record(stream, txid, entry))
            except VenuePermissionError as exc:
                if exc.venue_code != "EGeneral:Permission denied":
                    raise
                # The key was accepted without Query Ledger Entries (Kraken's read-only recipe): a standing gap,
                # closed by the first run after the permission is added (the walk then starts from the beginning).
                return Page([], {}, True, notes={"coverage_gap": coverage_gap(
                    VENUE_LIMITATION, f"Kraken lists {stream} only in the ledger, and this key has no Query Ledger "
                    "Entries permission")})
        raise VenueBadData(self.id, f"stream {stream!r} is not served by this adapter")

    def history_page(self, creds: Credentials, cursor: Mapping[str, Any], *, method: str, key: str,
                     params: dict[str, str], build: Callable[[str, Mapping[str, Any]], TxRecord]) -> Page:
        """One page of a Kraken newest-first listing: ``(after, end]`` at offset ``ofs``."""
        after, end = cursor.get("after"), cursor.get("end")
        ofs = int(cursor.get("ofs", 0))
        started = cursor.get("started") or dt.datetime.now(dt.UTC).isoformat()
        request = dict(params, ofs=str(ofs))
        if after:
            request["start"] = after
        if end:
            request["end"] = end
        client = self.client(creds)
        result = self.result_of(self.call(getattr(client, f"privatePost{method}"), request, creds=creds), method)
        entries = result.get(key) or {}
        if not isinstance(entries, dict):
            raise VenueBadData(self.id, f"{method} returned no {key} object")
        count = int(result.get("count", 0))
        records = [build(txid, entry) for txid, entry in entries.items()]
        if end is None and entries:
            end = next(iter(entries))  # newest first: pin the run's window to it
        ofs += len(entries)
        if not entries or ofs >= count:
            return Page(records, {"after": end or after} if (end or after) else {}, True,
                        complete_until=dt.datetime.fromisoformat(started))
        return Page(records, {"after": after, "end": end, "ofs": ofs, "started": started}, False)

    def trade_record(self, txid: str, t: Mapping[str, Any]) -> TxRecord:
        base, quote, symbol = self.market_of(str(t.get("pair", "")))
        price, cost, fee = to_decimal(t.get("price")), to_decimal(t.get("cost")), to_decimal(t.get("fee"))
        amount = to_decimal(t.get("vol"))
        if amount is None:
            raise VenueBadData(self.id, f"trade {txid} has no volume")
        return TxRecord(
            stream=Stream.TRADES, venue_tx_id=txid, kind=Kind.BUY if t.get("type") == "buy" else Kind.SELL,
            occurred_at=utc(t.get("time")), asset=base, amount=amount, market=symbol, quote_asset=quote,
            quote_amount=cost, price=price, fee_asset=quote, fee_amount=fee, raw=dict(t, txid=txid))

    def funding_record(self, stream: str, ledger_id: str, e: Mapping[str, Any]) -> TxRecord:
        amount = to_decimal(e.get("amount"))
        if amount is None:
            raise VenueBadData(self.id, f"ledger entry {ledger_id} has no amount")
        asset = self.code(str(e.get("asset", "")))
        return TxRecord(
            stream=stream, venue_tx_id=ledger_id, kind=Kind.DEPOSIT if stream == Stream.DEPOSITS else Kind.WITHDRAWAL,
            occurred_at=utc(e.get("time")), asset=asset, amount=abs(amount), fee_asset=asset,
            fee_amount=to_decimal(e.get("fee")), raw=dict(e, id=ledger_id))

    def market_of(self, pair: str) -> tuple[str, str | None, str]:
        """(base, quote, symbol) of a Kraken pair id; a pair no longer listed (delisted) keeps its id."""
        public = self.markets()
        found = public.markets_by_id.get(pair) or []
        market = found[0] if found else public.options.get("marketsByAltname", {}).get(pair)
        if market is None:
            return pair, None, pair
        return str(market["base"]), str(market["quote"]), str(market["symbol"])
