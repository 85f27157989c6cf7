"""Bybit v5 (api.bybit.com, Unified Trading Account) through ccxt's implicit endpoint methods.

- Scope: ``GET /v5/user/query-api``. ``readOnly == 1`` decides: a read-only key still lists the sections
  it may *read* (``Spot: [SpotTrade]``, ``Wallet: [AccountTransfer]``), so the lists are not write
  rights. We also reject ``Wallet: [Withdraw]`` on a read-only key (unverified whether Bybit allows it).
  A read-write key always escalates; sections we do not know count as trade (fail closed).
- ccxt would call query-api and ``/v5/account/info`` itself before the first private call to learn
  the account mode; the options below preset it (Unified) so no hidden calls leave the box.
- Trades: ``/v5/execution/list`` with ``category=spot`` (ccxt's default is linear, which misses spot),
  at most 7 days per query and two years back (older trades are a standing ``history_limit`` gap: only Bybit's
  own exports reach them); on-chain deposits (``/v5/asset/deposit/query-record``), internal (off-chain)
  deposits from other Bybit users (``/v5/asset/deposit/query-internal-record``, its own stream) and withdrawals
  (``withdrawType=2``: on-chain and internal) at most 30 days per query. The windows are walked by
  ``venues.windows`` (a first sync newest first and concurrently), following ``nextPageCursor`` within a window.
- Withdrawal records are served to the master account's key only (docs: Get Withdrawal Records): a sub-account
  key (query-api ``isMaster`` false) is told so at onboarding, and its withdrawals stream is a standing
  ``venue_limitation`` gap instead of a failing request.
- Transfer status (docs: Enums, depositStatus / withdrawStatus; internal deposits: 1 processing, 2 success,
  3 failed): see the tables below. A deposit with ``depositType`` 50 is never credited (failed). A pending
  deposit has no ``successAt`` yet: it is recorded at the time it was first seen, and takes Bybit's time when
  it completes.
- Limits (docs: Rate Limit Rules): 600 requests per 5 s per IP; per account and endpoint: execution list 50/s,
  wallet balance 50/s, funding coins balance 5/s, deposit records 100/min, withdrawal records 300/min.
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
from appliance.venues.base import (
    HISTORY_LIMIT,
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
    TxStatus,
    coverage_gap,
    transfer_status,
)
from appliance.venues.ccxt_base import CcxtAdapter, scrub_evidence, to_decimal
from appliance.venues.ratelimits import RateLimit
from appliance.venues.windows import WindowedStream, walk

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
INTERNAL_DEPOSITS = "internal_deposits"
DEPOSIT_STATUS = {
    "3": TxStatus.COMPLETED, "10012": TxStatus.COMPLETED, "70012": TxStatus.COMPLETED,
    "0": TxStatus.PENDING, "1": TxStatus.PENDING, "2": TxStatus.PENDING, "7": TxStatus.PENDING,
    "10011": TxStatus.PENDING, "70013": TxStatus.PENDING,
    "4": TxStatus.FAILED, "70011": TxStatus.FAILED,  # failed; rolled back after a chain reorganisation
}
INTERNAL_DEPOSIT_STATUS = {"2": TxStatus.COMPLETED, "1": TxStatus.PENDING, "3": TxStatus.FAILED}
WITHDRAW_STATUS = {
    "success": TxStatus.COMPLETED, "BlockchainConfirmed": TxStatus.COMPLETED,
    "SecurityCheck": TxStatus.PENDING, "Pending": TxStatus.PENDING, "MoreInformationRequired": TxStatus.PENDING,
    "Unknown": TxStatus.PENDING,
    "CancelByUser": TxStatus.CANCELLED, "Reject": TxStatus.FAILED, "Fail": TxStatus.FAILED,
}
NEVER_CREDITED_DEPOSIT_TYPE = "50"
LIMITS_DOC = "https://bybit-exchange.github.io/docs/v5/rate-limit"
SUB_ACCOUNT_WITHDRAWALS = (
    "This key belongs to a Bybit sub-account. Bybit gives withdrawal records only to a key of the master account, "
    "so this account's withdrawals are shown as a coverage gap. To include them, create the read-only key on the "
    "master account instead.")


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
    gap: Mapping[str, Any] | None = None


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
        r"/v5/asset/deposit/query-internal-record",
        r"/v5/asset/withdraw/query-record",
    )
    rate_limits = (
        RateLimit(600, 5, source=LIMITS_DOC),
        RateLimit(50, 1, path=r"/v5/execution/list", per_account=True, source=LIMITS_DOC),
        RateLimit(50, 1, path=r"/v5/account/wallet-balance", per_account=True, source=LIMITS_DOC),
        RateLimit(5, 1, path=r"/v5/asset/transfer/query-account-coins-balance", per_account=True, source=LIMITS_DOC),
        RateLimit(100, 60, path=r"/v5/asset/deposit/query-record", per_account=True, source=LIMITS_DOC),
        RateLimit(300, 60, path=r"/v5/asset/withdraw/query-record", per_account=True, source=LIMITS_DOC),
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
    streams = (Stream.TRADES, Stream.DEPOSITS, INTERNAL_DEPOSITS, Stream.WITHDRAWALS)
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
        limitations = (SUB_ACCOUNT_WITHDRAWALS,) if info.get("isMaster") is False else ()
        read_only = info.get("readOnly")
        if read_only == 1:
            return Scope(read=True, trade=False, transfer=False, withdraw="Withdraw" in wallet, verified=True,
                         evidence=evidence, notes=tuple(notes), limitations=limitations)
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
        asset_floor = ms_from(ASSET_HISTORY_START)
        if stream == Stream.TRADES:
            floor = int(cursor.get("floor") or now_ms() - TRADES_HISTORY_DAYS * DAY_MS)
            gap = coverage_gap(HISTORY_LIMIT, "Bybit's API serves the last two years of trades; older ones are only in "
                               "Bybit's own trade history export",
                               start=ASSET_HISTORY_START, end=utc_from_ms(floor))
            walk_spec = Walk("privateGetV5ExecutionList", {"category": "spot"}, TRADES_WINDOW_MS, floor, "list", 100,
                             self.trade_record, gap)
        elif stream == Stream.DEPOSITS:
            walk_spec = Walk("privateGetV5AssetDepositQueryRecord", {}, ASSET_WINDOW_MS, asset_floor, "rows", 50,
                             self.deposit_record)
        elif stream == INTERNAL_DEPOSITS:
            walk_spec = Walk("privateGetV5AssetDepositQueryInternalRecord", {}, ASSET_WINDOW_MS, asset_floor, "rows",
                             50, self.internal_deposit_record)
        elif stream == Stream.WITHDRAWALS:
            if not self.call(self.is_master, creds, cursor, creds=creds):
                # A sub-account key: Bybit serves withdrawal records to the master key only.
                return Page([], {"master": False}, True, notes={"coverage_gap": coverage_gap(
                    VENUE_LIMITATION, "Bybit gives withdrawal records only to a key of the master account; this "
                    "is a sub-account key")})
            walk_spec = Walk("privateGetV5AssetWithdrawQueryRecord", {"withdrawType": 2}, ASSET_WINDOW_MS,
                             asset_floor, "rows", 50, self.withdrawal_record)
        else:
            raise ValueError(f"{self.id} has no {stream!r} stream")
        # Venue requests are classified inside; the outer call() turns parsing surprises into VenueBadData.
        page = self.call(self.window_page, creds, dict(cursor), walk_spec, creds=creds)
        if stream == Stream.WITHDRAWALS and page.done:
            page.cursor["master"] = True
        return page

    def is_master(self, creds: Credentials, cursor: Mapping[str, Any]) -> bool:
        """Whether the key belongs to the master account (remembered in the cursor: a key never changes account)."""
        if "master" in cursor:
            return bool(cursor["master"])
        info = self.call(self.client(creds).privateGetV5UserQueryApi, creds=creds).get("result") or {}
        return info.get("isMaster") is not False

    def window_page(self, creds: Credentials, cursor: dict[str, Any], walk_spec: Walk) -> Page:
        """One batch of windows of ``walk_spec.span`` (``venues.windows``), each paged by ``nextPageCursor``."""
        def read(client: Any, start: int, end: int) -> list[TxRecord]:
            records: list[TxRecord] = []
            page = ""
            while True:
                request = {**walk_spec.params, "startTime": start, "endTime": end, "limit": walk_spec.page_size}
                if page:
                    request["cursor"] = page
                response = self.call(getattr(client, walk_spec.method), request, creds=creds)
                result = response.get("result") or {}
                rows = result.get(walk_spec.rows_key) or []
                records += [walk_spec.parse(client, row) for row in rows]
                page = result.get("nextPageCursor") or ""
                if not rows or not page:
                    return records

        master = cursor.pop("master", None)
        spec = WindowedStream(walk_spec.span, walk_spec.floor, read, LOOKBACK_MS, gap=walk_spec.gap)
        page = walk(self, creds, cursor, spec)
        if master is not None and not page.done:
            page.cursor["master"] = master
        return page

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
        status = transfer_status(self.id, DEPOSIT_STATUS, row.get("status"))
        if str(row.get("depositType", "")) == NEVER_CREDITED_DEPOSIT_TYPE:
            status = TxStatus.FAILED  # blocked by an account or compliance restriction: never credited
        return TxRecord(
            stream=Stream.DEPOSITS, venue_tx_id=str(row.get("id") or row["txID"]), kind=Kind.DEPOSIT,
            occurred_at=self.time_or_now(row.get("successAt")), asset=asset, amount=self.number(row.get("amount")),
            fee_asset=asset if fee is not None else None, fee_amount=fee, raw=dict(row), status=status)

    def internal_deposit_record(self, client: Any, row: Mapping[str, Any]) -> TxRecord:
        """An off-chain deposit from another Bybit user; ``createdTime`` is in seconds (docs example)."""
        created = str(row.get("createdTime") or "")
        occurred = (utc_from_ms(int(created) * 1000) if created.isdigit() and len(created) <= 10
                    else self.time_or_now(created))
        return TxRecord(
            stream=INTERNAL_DEPOSITS, venue_tx_id=str(row["id"]), kind=Kind.DEPOSIT, occurred_at=occurred,
            asset=client.safe_currency_code(row["coin"]), amount=self.number(row.get("amount")), raw=dict(row),
            status=transfer_status(self.id, INTERNAL_DEPOSIT_STATUS, row.get("status")))

    def withdrawal_record(self, client: Any, row: Mapping[str, Any]) -> TxRecord:
        asset = client.safe_currency_code(row["coin"])
        return TxRecord(
            stream=Stream.WITHDRAWALS, venue_tx_id=str(row["withdrawId"]), kind=Kind.WITHDRAWAL,
            occurred_at=utc_from_ms(row["createTime"]), asset=asset, amount=self.number(row.get("amount")),
            fee_asset=asset, fee_amount=to_decimal(row.get("withdrawFee")), raw=dict(row),
            status=transfer_status(self.id, WITHDRAW_STATUS, row.get("status")))

    @staticmethod
    def time_or_now(value: Any) -> dt.datetime:
        """Bybit's ms time; a pending record has none yet ("" or "0"): the time it was first seen stands in."""
        text = str(value or "")
        if text.isdigit() and int(text) > 0:
            return utc_from_ms(text)
        return dt.datetime.now(dt.UTC).replace(microsecond=0)

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
