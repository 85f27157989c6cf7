"""Bybit v5 (api.bybit.com, Unified Trading Account) through ccxt's implicit endpoint methods.

- Scope: ``GET /v5/user/query-api``. ``readOnly == 1`` decides: a read-only key still lists the sections
  it may *read* (``Spot: [SpotTrade]``, ``Wallet: [AccountTransfer]``), so the lists are not write
  rights. We also reject ``Wallet: [Withdraw]`` on a read-only key (unverified whether Bybit allows it).
  A read-write key always escalates; sections we do not know count as trade (fail closed).
- ccxt would call query-api and ``/v5/account/info`` itself before the first private call to learn
  the account mode; the options below preset it (Unified) so no hidden calls leave the box.
- Trades: ``/v5/execution/list`` with ``category=spot`` (ccxt's default is linear, which misses spot),
  at most 7 days per query and two years back; deposits and withdrawals at most 30 days per query
  (withdrawals with ``withdrawType=2``: on-chain and internal). Each run walks the windows forward
  from the last completed instant minus a day, following ``nextPageCursor`` within a window.
- Rate limits arrive as retCode 10006 on HTTP 200 with ``X-Bapi-Limit-Reset-Timestamp``, not Retry-After.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
from appliance.venues.base import Balance, CredentialField, Credentials, GuideStep, Kind, Page, Scope, Stream, TxRecord
from appliance.venues.ccxt_base import CcxtAdapter, scrub_evidence, to_decimal

DAY_MS = 24 * 3600 * 1000
TRADES_WINDOW_MS = 7 * DAY_MS
ASSET_WINDOW_MS = 30 * DAY_MS
LOOKBACK_MS = DAY_MS
TRADES_HISTORY_DAYS = 730  # the execution list serves two years
# Bybit opened in March 2018; deposit and withdrawal records cannot be older.
ASSET_HISTORY_START = dt.datetime(2018, 3, 1, tzinfo=dt.UTC)

TRADE_SECTIONS = ("ContractTrade", "Spot", "Options", "Derivatives", "CopyTrading", "BlockTrade", "Exchange")
TRANSFER_ITEMS = ("AccountTransfer", "SubMemberTransfer", "SubMemberTransferList")
# Sections that grant nothing beyond reading even on a read-write key.
HARMLESS_SECTIONS = ("Affiliate",)
_QUOTES = ("USDT", "USDC", "USDE", "BTC", "ETH", "EUR", "BRL", "DAI", "MNT", "TRY", "PLN", "USD")


@dataclass(frozen=True)
class Walk:
    """How one stream is walked: endpoint, fixed params, window span, oldest instant, page size, parser."""

    method: str
    params: Mapping[str, Any]
    span: int
    floor: int
    rows_key: str
    page_size: int
    parse: Callable[[Any, Mapping[str, Any]], TxRecord]


def now_ms() -> int:
    return int(time.time() * 1000)


def ms_from(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def utc_from_ms(ms: Any) -> dt.datetime:
    value = int(ms)
    return dt.datetime.fromtimestamp(value // 1000, dt.UTC) + dt.timedelta(milliseconds=value % 1000)


class BybitAdapter(CcxtAdapter):
    id = "bybit"
    name = "Bybit"
    ccxt_id = "bybit"
    hosts = ("api.bybit.com",)
    read_endpoints = egress.read(
        "GET",
        r"/v5/market/instruments-info",
        r"/v5/user/query-api",
        r"/v5/account/wallet-balance",
        r"/v5/asset/transfer/query-account-coins-balance",
        r"/v5/execution/list",
        r"/v5/asset/deposit/query-record",
        r"/v5/asset/withdraw/query-record",
    )
    ccxt_options: ClassVar[Mapping[str, Any]] = {
        "fetchMarkets": {"types": ["spot"]}, "defaultType": "spot",
        "enableUnifiedAccount": True, "enableUnifiedMargin": False,
    }
    # Currencies come from the signed /v5/asset/coin/query-info: off, load_markets stays public.
    ccxt_has: ClassVar[Mapping[str, Any]] = {"fetchCurrencies": False}
    error_codes: ClassVar[Mapping[str, type[VenueError]]] = {
        "10003": VenueAuthError,  # API key is invalid
        "10004": VenueAuthError,  # error sign
        "10007": VenueAuthError,  # user authentication failed
        "33004": VenueAuthError,  # api key expired
        "10005": VenuePermissionError,  # permission denied for this key
        "10010": VenuePermissionError,  # request IP not in the key's allow-list
        "10024": VenuePermissionError,  # compliance rules triggered
        "10006": VenueRateLimited,  # too many visits (per UID)
        "10018": VenueRateLimited,  # IP rate limit
        "10000": VenueTransient,  # server timeout
        "10016": VenueTransient,  # internal error / maintenance
        "10002": VenueTransient,  # our clock is outside recv_window
        "10001": VenueBadData,  # parameter error: our request or the venue changed
    }
    credential_fields = (
        CredentialField("api_key", "API Key", "The API Key shown after you created the key."),
        CredentialField("api_secret", "API Secret",
                        "Shown only once, right after creation. If you no longer have it, delete the key and "
                        "create a new one."),
    )
    guide = (
        GuideStep("Log in to Bybit, open your profile menu → API, and click Create New Key."),
        GuideStep("Choose System-generated API Keys, then API Transaction, and enter a name such as "
                  "\"Compliance\"."),
        GuideStep("Under API Key Permissions choose Read-Only, not Read-Write.", warning=True),
        GuideStep("Tick the sections to read (Unified Trading, SPOT, Wallet, Exchange); with Read-Only they "
                  "only allow reading."),
        GuideStep("Leave Withdrawal unticked.", warning=True),
        GuideStep("Binding IP addresses is optional; without it Bybit expires the key after 90 days and you "
                  "will be asked for a new one. Confirm with your 2FA, then copy the API Key and API Secret "
                  "below."),
    )
    streams = (Stream.TRADES, Stream.DEPOSITS, Stream.WITHDRAWALS)
    history_limit_days = TRADES_HISTORY_DAYS

    # -- scope -------------------------------------------------------------------------------------
    def probe_scope(self, creds: Credentials) -> Scope:
        client = self.client(creds)
        response = self.call(client.privateGetV5UserQueryApi, creds=creds)
        # Parsing runs inside call() too: a surprising shape becomes VenueBadData, not a KeyError.
        return self.call(lambda: self.scope_from_key_info(response["result"], creds), creds=creds)

    def scope_from_key_info(self, info: Mapping[str, Any], creds: Credentials) -> Scope:
        raw_perms = info.get("permissions")
        perms: Mapping[str, Any] = raw_perms if isinstance(raw_perms, Mapping) else {}
        wallet = list(perms.get("Wallet") or [])
        evidence = scrub_evidence(dict(info), creds.secrets())
        notes = [f"Bybit expires this key at {info['expiredAt']}."] if info.get("expiredAt") else []
        read_only = info.get("readOnly")
        if read_only == 1:
            return Scope(read=True, trade=False, transfer=False, withdraw="Withdraw" in wallet, verified=True,
                         evidence=evidence, notes=tuple(notes))
        if read_only != 0:
            notes.append(f"Bybit reported readOnly={read_only!r}; the key's rights are unknown.")
            return Scope(read=True, trade=None, transfer=None, withdraw=None, verified=True, evidence=evidence,
                         notes=tuple(notes))
        # Read-Write: every ticked section is a write right.
        ticked = sorted(name for name, items in perms.items() if items)
        trade = any(perms.get(name) for name in TRADE_SECTIONS)
        transfer = any(item in TRANSFER_ITEMS for item in wallet)
        withdraw = "Withdraw" in wallet
        unknown = [name for name in ticked if name not in (*TRADE_SECTIONS, "Wallet", *HARMLESS_SECTIONS)]
        if unknown or not (trade or transfer or withdraw):
            trade = True  # fail closed: a read-write key, or write rights we do not recognise
            notes.append(f"Read-Write key with sections {', '.join(ticked) or 'none'} ticked.")
        return Scope(read=True, trade=trade, transfer=transfer, withdraw=withdraw, verified=True,
                     evidence=evidence, notes=tuple(notes))

    def regenerate_instructions(self, scope: Scope) -> str:
        granted = ", ".join(scope.granted()) or "unknown"
        read_only = scope.evidence.get("readOnly") == 1
        fix = ("untick Withdrawal" if read_only else "choose Read-Only (not Read-Write) and leave Withdrawal unticked")
        return (f"This {self.name} key has {granted} permission. In {self.name}, open API management and delete "
                f"this key, then create a new System-generated key: {fix}. Submit the new key.")

    # -- balances ----------------------------------------------------------------------------------
    def fetch_balances(self, creds: Credentials) -> list[Balance]:
        """The Unified Trading account plus the Funding wallet (where deposits land by default)."""
        client = self.client(creds)
        unified = self.call(client.privateGetV5AccountWalletBalance, {"accountType": "UNIFIED"}, creds=creds)
        funding = self.call(client.privateGetV5AssetTransferQueryAccountCoinsBalance, {"accountType": "FUND"},
                            creds=creds)
        return self.call(self.parse_balances, client, unified, funding, creds=creds)

    def parse_balances(self, client: Any, unified: Mapping[str, Any], funding: Mapping[str, Any]) -> list[Balance]:
        rows = [(coin, "unified") for account in unified["result"]["list"] for coin in account.get("coin") or []]
        rows += [(coin, "funding") for coin in funding["result"].get("balance") or []]
        out = []
        for coin, account_name in rows:
            amount = to_decimal(coin.get("walletBalance"))
            if amount:
                out.append(Balance(client.safe_currency_code(coin["coin"]), amount, account_name))
        return out

    # -- history -----------------------------------------------------------------------------------
    def fetch_transactions(self, creds: Credentials, stream: str, cursor: Mapping[str, Any]) -> Page:
        if stream == Stream.TRADES:
            walk = Walk("privateGetV5ExecutionList", {"category": "spot"}, TRADES_WINDOW_MS,
                        now_ms() - TRADES_HISTORY_DAYS * DAY_MS, "list", 100, self.trade_record)
        elif stream == Stream.DEPOSITS:
            walk = Walk("privateGetV5AssetDepositQueryRecord", {}, ASSET_WINDOW_MS, ms_from(ASSET_HISTORY_START),
                        "rows", 50, self.deposit_record)
        elif stream == Stream.WITHDRAWALS:
            walk = Walk("privateGetV5AssetWithdrawQueryRecord", {"withdrawType": 2}, ASSET_WINDOW_MS,
                        ms_from(ASSET_HISTORY_START), "rows", 50, self.withdrawal_record)
        else:
            raise ValueError(f"{self.id} has no {stream!r} stream")
        # Venue requests are classified inside; the outer call() turns parsing surprises into VenueBadData.
        return self.call(self.window_page, creds, dict(cursor), walk, creds=creds)

    def window_page(self, creds: Credentials, cursor: dict[str, Any], walk: Walk) -> Page:
        """One request of a forward walk over windows of ``walk.span``, each paged by ``nextPageCursor``."""
        if "run_end" not in cursor:
            until = cursor.get("until")
            start = max(until - LOOKBACK_MS, walk.floor) if until is not None else walk.floor
            cursor = {"until": until, "start": start, "run_end": now_ms(), "page": ""}
        start, run_end, page = int(cursor["start"]), int(cursor["run_end"]), str(cursor.get("page") or "")
        end = min(start + walk.span - 1, run_end)
        request = {**walk.params, "startTime": start, "endTime": end, "limit": walk.page_size}
        if page:
            request["cursor"] = page
        client = self.client(creds)
        response = self.call(getattr(client, walk.method), request, creds=creds)
        result = response.get("result") or {}
        rows = result.get(walk.rows_key) or []
        records = [walk.parse(client, row) for row in rows]
        next_page = result.get("nextPageCursor") or ""
        if rows and next_page:
            return Page(records, {**cursor, "page": next_page}, done=False)
        if end >= run_end:
            return Page(records, {"until": run_end}, done=True, complete_until=utc_from_ms(run_end))
        return Page(records, {**cursor, "start": end + 1, "page": ""}, done=False, complete_until=utc_from_ms(end))

    # -- records -----------------------------------------------------------------------------------
    def trade_record(self, client: Any, row: Mapping[str, Any]) -> TxRecord:
        base, quote, symbol = self.split_symbol(client, str(row["symbol"]))
        return TxRecord(
            stream=Stream.TRADES, venue_tx_id=str(row["execId"]),
            kind=Kind.BUY if row.get("side") == "Buy" else Kind.SELL, occurred_at=utc_from_ms(row["execTime"]),
            asset=base, amount=self.number(row.get("execQty")), market=symbol, quote_asset=quote,
            quote_amount=to_decimal(row.get("execValue")), price=to_decimal(row.get("execPrice")),
            fee_asset=client.safe_currency_code(row["feeCurrency"]) if row.get("feeCurrency") else None,
            fee_amount=to_decimal(row.get("execFee")), raw=dict(row))

    def deposit_record(self, client: Any, row: Mapping[str, Any]) -> TxRecord:
        asset = client.safe_currency_code(row["coin"])
        fee = to_decimal(row.get("depositFee"))
        return TxRecord(
            stream=Stream.DEPOSITS, venue_tx_id=str(row.get("id") or row["txID"]), kind=Kind.DEPOSIT,
            occurred_at=utc_from_ms(row["successAt"]), asset=asset, amount=self.number(row.get("amount")),
            fee_asset=asset if fee is not None else None, fee_amount=fee, raw=dict(row))

    def withdrawal_record(self, client: Any, row: Mapping[str, Any]) -> TxRecord:
        asset = client.safe_currency_code(row["coin"])
        return TxRecord(
            stream=Stream.WITHDRAWALS, venue_tx_id=str(row["withdrawId"]), kind=Kind.WITHDRAWAL,
            occurred_at=utc_from_ms(row["createTime"]), asset=asset, amount=self.number(row.get("amount")),
            fee_asset=asset, fee_amount=to_decimal(row.get("withdrawFee")), raw=dict(row))

    @staticmethod
    def split_symbol(client: Any, market_id: str) -> tuple[str, str | None, str]:
        """Base, quote and unified symbol; delisted markets are absent from the loaded markets."""
        market = client.markets_by_id.get(market_id) if client.markets_by_id else None
        if market:
            first = market[0]
            return first["base"], first["quote"], first["symbol"]
        for quote in _QUOTES:
            if market_id.endswith(quote) and len(market_id) > len(quote):
                base = client.safe_currency_code(market_id[: -len(quote)])
                return base, quote, f"{base}/{quote}"
        return market_id, None, market_id

    def number(self, value: Any) -> Decimal:
        parsed = to_decimal(value)
        if parsed is None:
            raise VenueBadData(self.id, "a required amount is missing from the venue's answer")
        return parsed

    def _retry_after(self, client: Any) -> float:
        """Bybit says when the limit resets (ms epoch) instead of sending Retry-After."""
        headers = getattr(client, "last_response_headers", None) or {}
        reset = headers.get("X-Bapi-Limit-Reset-Timestamp")
        if reset and str(reset).isdigit():
            return max(0.0, (int(reset) - now_ms()) / 1000)
        return super()._retry_after(client)
