"""Binance spot (api.binance.com) through ccxt's implicit endpoint methods.

Why the implicit methods rather than ccxt's unified ones: each page is exactly one venue request whose
parameters we choose (``fromId``, the 90-day windows), and the venue's decimal strings arrive untouched.

- Scope: ``GET /sapi/v1/account/apiRestrictions``, never ``/api/v3/account`` (its canTrade/canWithdraw
  are account-level and true for read-only keys). Unknown ``enable*``/``permits*`` flags that are on count
  as escalation (fail closed).
- Trades: ``myTrades`` needs a symbol. Each run first derives the markets to ask about (both sides among
  the assets held, recently deposited or withdrawn, or seen before), then walks each market by ``fromId``.
  ``Page.notes["markets"]`` lists the markets covered.
- Deposits/withdrawals: the venue serves at most 90 days per request, newest first, paged by ``offset``.
  The windows are walked by ``venues.windows`` (a first sync newest first and concurrently, within Binance's
  documented limits; later runs forward from the last run's end minus a day, for late-indexed rows).
- Transfer status (docs: Deposit History / Withdraw History, supporting network): deposit ``status`` 1 success and
  6 credited are completed, 0 pending and 8 waiting for the user's confirmation are pending, 7 wrong deposit and
  2 rejected are failed; withdrawal ``status`` 6 is completed, 0 email sent, 2 awaiting approval and 4 processing
  are pending, 1 is cancelled, 3 rejected and 5 failure are failed. A pending transfer is read again on every run
  until it has an outcome.
- Limits (docs: General info, LIMITS; the endpoints' "Request Weight"): 6,000 request weight a minute per IP;
  ``account``, ``myTrades`` and ``exchangeInfo`` weigh 20, the wallet endpoints 1; withdraw history is limited to
  10 requests a second.
- Error codes are classified from Binance's own code: ccxt turns -2015 into DDoSProtection once an
  instance has authenticated, and -2008 into ExchangeError off the production URL (VENUES.md §1).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar

from appliance.errors import VenueAuthError, VenueBadData, VenueError, VenueRateLimited, VenueTransient
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
    TxStatus,
    transfer_status,
)
from appliance.venues.ccxt_base import CcxtAdapter, scrub_evidence, to_decimal
from appliance.venues.ratelimits import RateLimit
from appliance.venues.windows import WindowedStream, walk

DAY_MS = 24 * 3600 * 1000
HISTORY_WINDOW_MS = 90 * DAY_MS  # deposit/withdrawal history: at most 90 days per request
HISTORY_LOOKBACK_MS = DAY_MS  # re-read the last day on every run: rows can be indexed after their time
HISTORY_PAGE = 1000
TRADES_PAGE = 1000

TRADE_FLAGS = ("enableSpotAndMarginTrading", "enableMargin", "enableFutures", "enablePortfolioMarginTrading",
               "enableVanillaOptions", "enableFixApiTrade")
TRANSFER_FLAGS = ("enableInternalTransfer", "permitsUniversalTransfer")
WITHDRAW_FLAGS = ("enableWithdrawals",)
READ_FLAGS = ("enableReading", "enableFixReadOnly")
DEPOSIT_STATUS = {"1": TxStatus.COMPLETED, "6": TxStatus.COMPLETED, "0": TxStatus.PENDING, "8": TxStatus.PENDING,
                  "7": TxStatus.FAILED, "2": TxStatus.FAILED}
WITHDRAWAL_STATUS = {"6": TxStatus.COMPLETED, "0": TxStatus.PENDING, "2": TxStatus.PENDING, "4": TxStatus.PENDING,
                     "1": TxStatus.CANCELLED, "3": TxStatus.FAILED, "5": TxStatus.FAILED}
LIMITS_DOC = "https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits"
# What the employee sees in Binance's API Management for each flag.
FLAG_LABELS = {
    "enableSpotAndMarginTrading": "Enable Spot & Margin Trading",
    "enableMargin": "Enable Margin Loan, Repay & Transfer",
    "enableFutures": "Enable Futures",
    "enablePortfolioMarginTrading": "Enable Portfolio Margin Trading",
    "enableVanillaOptions": "Enable European Options",
    "enableFixApiTrade": "Enable FIX API trading",
    "enableInternalTransfer": "Enable Internal Transfer",
    "permitsUniversalTransfer": "Permits Universal Transfer",
    "enableWithdrawals": "Enable Withdrawals",
}


def now_ms() -> int:
    return int(time.time() * 1000)


def utc_from_ms(ms: Any) -> dt.datetime:
    value = int(ms)
    return dt.datetime.fromtimestamp(value // 1000, dt.UTC) + dt.timedelta(milliseconds=value % 1000)


def ms_from(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def _tri(raw: Mapping[str, Any], flags: tuple[str, ...]) -> bool | None:
    """True if any flag is on, False if every present flag is off, None if none is present or readable."""
    values = [raw[f] for f in flags if f in raw]
    if any(v is True for v in values):
        return True
    if values and all(v is False for v in values):
        return False
    return None


class BinanceAdapter(CcxtAdapter):
    id = "binance"
    name = "Binance"
    ccxt_id = "binance"
    hosts = ("api.binance.com",)
    read_endpoints = egress.read(
        "GET",
        r"/api/v3/exchangeInfo",
        r"/sapi/v1/account/apiRestrictions",
        r"/api/v3/account",
        r"/api/v3/myTrades",
        r"/sapi/v1/capital/deposit/hisrec",
        r"/sapi/v1/capital/withdraw/history",
    )
    # Spot markets only and no currencies: load_markets is then the one public exchangeInfo call.
    ccxt_options: ClassVar[Mapping[str, Any]] = {
        "fetchCurrencies": False, "fetchMarkets": {"types": ["spot"]}, "fetchMargins": False, "defaultType": "spot",
    }
    ccxt_has: ClassVar[Mapping[str, Any]] = {"fetchCurrencies": False}
    error_codes: ClassVar[Mapping[str, type[VenueError]]] = {
        "-2015": VenueAuthError,  # invalid key, IP or permission; DDoSProtection in ccxt after a success
        "-2014": VenueAuthError,  # API-key format invalid
        "-2008": VenueAuthError,  # invalid Api-Key ID (deleted keys)
        "-1022": VenueAuthError,  # signature not valid
        "-1002": VenueAuthError,  # not authorized
        "-1099": VenueAuthError,  # not found, authenticated, or authorized
        "-1003": VenueRateLimited,  # too much request weight
        "-1015": VenueRateLimited,
        "-1000": VenueTransient,
        "-1001": VenueTransient,  # internal error / maintenance
        "-1006": VenueTransient,
        "-1007": VenueTransient,
        "-1008": VenueTransient,  # server busy
        "-1021": VenueTransient,  # our clock is outside recvWindow
        "-1121": VenueBadData,  # invalid symbol: a market we derived vanished
    }
    credential_fields = (
        CredentialField("api_key", "API Key", "The 64-character API Key shown after you created the key."),
        CredentialField("api_secret", "Secret Key",
                        "Shown only once, right after creation. If you no longer have it, delete the key and "
                        "create a new one."),
    )
    guide = (
        GuideStep("Log in to Binance and open Profile → API Management."),
        GuideStep("Click Create API, choose System generated, enter a label such as \"Compliance\" and confirm "
                  "with your 2FA."),
        GuideStep("Keep only Enable Reading ticked (new keys start that way)."),
        GuideStep("Leave Enable Spot & Margin Trading, Enable Margin Loan, Repay & Transfer and Enable Futures "
                  "unticked.", warning=True),
        GuideStep("Leave Enable Withdrawals, Enable Internal Transfer and Permits Universal Transfer unticked.",
                  warning=True),
        GuideStep("No IP restriction is needed for reading. Copy the API Key and the Secret Key and paste them "
                  "below."),
    )
    streams = (Stream.TRADES, Stream.DEPOSITS, Stream.WITHDRAWALS)
    rate_limits = (
        RateLimit(6000, 60, weights=((r"/api/v3/(account|myTrades|exchangeInfo)", 20),), source=LIMITS_DOC),
        RateLimit(10, 1, path=r"/sapi/v1/capital/withdraw/history", per_account=True,
                  source="https://developers.binance.com/docs/wallet/capital/withdraw-history"),
    )
    # Binance opened in July 2017: no history exists before, so the first run starts there.
    history_start: ClassVar[dt.datetime] = dt.datetime(2017, 7, 1, tzinfo=dt.UTC)

    # -- scope -------------------------------------------------------------------------------------
    def probe_scope(self, creds: Credentials) -> Scope:
        client = self.client(creds)
        raw = self.call(client.sapiGetAccountApiRestrictions, creds=creds)
        # Parsing runs inside call() too: a surprising shape becomes VenueBadData, not a KeyError.
        return self.call(self.scope_from_restrictions, raw, creds, creds=creds)

    def scope_from_restrictions(self, raw: Mapping[str, Any], creds: Credentials) -> Scope:
        known = set(TRADE_FLAGS + TRANSFER_FLAGS + WITHDRAW_FLAGS + READ_FLAGS)
        unknown_on = sorted(k for k, v in raw.items()
                            if k.startswith(("enable", "permits")) and k not in known and v is not False)
        trade = _tri(raw, TRADE_FLAGS)
        notes = []
        if unknown_on:
            # Fail closed: a flag we do not know may grant anything.
            trade = True
            notes.append(f"unrecognised permission flags are on: {', '.join(unknown_on)}")
        return Scope(read=_tri(raw, ("enableReading",)), trade=trade, transfer=_tri(raw, TRANSFER_FLAGS),
                     withdraw=_tri(raw, WITHDRAW_FLAGS), verified=True,
                     evidence=scrub_evidence(dict(raw), creds.secrets()), notes=tuple(notes))

    def regenerate_instructions(self, scope: Scope) -> str:
        flags = [FLAG_LABELS.get(k, k) for k, v in scope.evidence.items()
                 if v is True and k not in READ_FLAGS and k.startswith(("enable", "permits"))]
        granted = ", ".join(scope.granted()) or "unknown"
        ticked = ", ".join(flags) if flags else "every permission except Enable Reading"
        return (f"This {self.name} key has {granted} permission ({ticked}). In {self.name}, open Profile → API "
                f"Management and delete this key, then create a new System generated key with only Enable "
                f"Reading ticked, and submit the new key.")

    # -- balances ----------------------------------------------------------------------------------
    def fetch_balances(self, creds: Credentials) -> list[Balance]:
        client = self.client(creds)
        account = self.call(client.privateGetAccount, creds=creds)
        return self.call(self.parse_balances, client, account, creds=creds)

    def parse_balances(self, client: Any, account: Mapping[str, Any]) -> list[Balance]:
        out = []
        for row in account.get("balances") or []:
            total = self.number(row.get("free")) + self.number(row.get("locked"))
            if total:
                out.append(Balance(client.safe_currency_code(row["asset"]), total, "spot"))
        return out

    # -- history -----------------------------------------------------------------------------------
    def fetch_transactions(self, creds: Credentials, stream: str, cursor: Mapping[str, Any]) -> Page:
        if stream not in self.streams:
            raise ValueError(f"{self.id} has no {stream!r} stream")
        # Venue requests are classified inside; the outer call() turns parsing surprises into VenueBadData.
        if stream == Stream.TRADES:
            return self.call(self.trades_page, creds, dict(cursor), creds=creds)
        if stream == Stream.DEPOSITS:
            return self.call(self.history_page, creds, dict(cursor), "sapiGetCapitalDepositHisrec",
                             self.deposit_record, creds=creds)
        return self.call(self.history_page, creds, dict(cursor), "sapiGetCapitalWithdrawHistory",
                         self.withdrawal_record, creds=creds)

    def trades_page(self, creds: Credentials, cursor: dict[str, Any]) -> Page:
        """One market per page by ``fromId``; a run begins with a planning page that picks the markets."""
        client = self.client(creds)
        if "queue" not in cursor:
            return self.plan_trades(client, creds, cursor)
        # A market delisted since the run was planned (another process, older markets) is skipped.
        queue = [m for m in cursor["queue"] if m in (client.markets_by_id or {})]
        from_ids: dict[str, int] = dict(cursor.get("from_ids") or {})
        covered: list[str] = list(cursor.get("covered") or [])
        records: list[TxRecord] = []
        if queue:
            market_id = queue[0]
            rows = self.call(client.privateGetMyTrades, {"symbol": market_id, "fromId": from_ids.get(market_id, 0),
                                                         "limit": TRADES_PAGE}, creds=creds)
            market = client.safe_market(market_id, None, None, "spot")
            records = [self.trade_record(client, market, row) for row in rows]
            if rows:
                from_ids[market_id] = max(int(row["id"]) for row in rows) + 1
            if len(rows) < TRADES_PAGE:
                queue.pop(0)
                covered.append(market_id)
        notes = {"markets": [client.safe_market(m, None, None, "spot")["symbol"] for m in covered],
                 "market_list": "derived"}
        if queue:
            next_cursor = {**cursor, "queue": queue, "from_ids": from_ids, "covered": covered}
            return Page(records, next_cursor, done=False, notes=notes)
        finished = {"assets": cursor.get("assets", []), "from_ids": from_ids}
        return Page(records, finished, done=True, complete_until=utc_from_ms(cursor["run_started"]), notes=notes)

    def plan_trades(self, client: Any, creds: Credentials, cursor: dict[str, Any]) -> Page:
        """Assets held now, moved in the last 90 days, or known from earlier runs -> markets to query."""
        started = now_ms()
        assets = set(cursor.get("assets") or [])
        account = self.call(client.privateGetAccount, creds=creds)
        assets |= {row["asset"] for row in account.get("balances") or []
                   if self.number(row.get("free")) + self.number(row.get("locked"))}
        window = {"startTime": started - HISTORY_WINDOW_MS + 1, "endTime": started, "limit": HISTORY_PAGE}
        for method in (client.sapiGetCapitalDepositHisrec, client.sapiGetCapitalWithdrawHistory):
            assets |= {row["coin"] for row in self.call(method, dict(window), creds=creds) if row.get("coin")}
        from_ids: dict[str, int] = dict(cursor.get("from_ids") or {})
        listed = {m["id"] for m in client.markets.values() if m.get("spot")}
        derived = {m["id"] for m in client.markets.values()
                   if m.get("spot") and m.get("baseId") in assets and m.get("quoteId") in assets}
        queue = sorted(derived | (set(from_ids) & listed))
        planned = {"assets": sorted(assets), "from_ids": from_ids, "queue": queue, "covered": [],
                   "run_started": started}
        if not queue:
            return Page([], {"assets": sorted(assets), "from_ids": from_ids}, done=True,
                        complete_until=utc_from_ms(started), notes={"markets": [], "market_list": "derived"})
        return Page([], planned, done=False, notes={"markets": []})

    def history_page(self, creds: Credentials, cursor: dict[str, Any], method: str,
                     parse: Callable[[Any, Mapping[str, Any]], TxRecord]) -> Page:
        """One batch of <= 90-day windows (``venues.windows``), each read to its end by ``offset``."""
        def read(client: Any, start: int, end: int) -> list[TxRecord]:
            records, offset = [], 0
            while True:
                rows = self.call(getattr(client, method), {"startTime": start, "endTime": end, "offset": offset,
                                                           "limit": HISTORY_PAGE}, creds=creds)
                records += [parse(client, row) for row in rows]
                if len(rows) < HISTORY_PAGE:
                    return records
                offset += len(rows)

        spec = WindowedStream(HISTORY_WINDOW_MS, ms_from(self.history_start), read, HISTORY_LOOKBACK_MS)
        return walk(self, creds, cursor, spec)

    # -- records -----------------------------------------------------------------------------------
    def trade_record(self, client: Any, market: Mapping[str, Any], row: Mapping[str, Any]) -> TxRecord:
        qty, price = self.number(row.get("qty")), self.number(row.get("price"))
        quote_qty = to_decimal(row.get("quoteQty"))
        return TxRecord(
            stream=Stream.TRADES, venue_tx_id=str(row["id"]), kind=Kind.BUY if row.get("isBuyer") else Kind.SELL,
            occurred_at=utc_from_ms(row["time"]), asset=market["base"], amount=qty, market=market["symbol"],
            quote_asset=market["quote"], quote_amount=quote_qty if quote_qty is not None else qty * price,
            price=price, fee_asset=client.safe_currency_code(row.get("commissionAsset")),
            fee_amount=to_decimal(row.get("commission")), raw=dict(row))

    def deposit_record(self, client: Any, row: Mapping[str, Any]) -> TxRecord:
        return TxRecord(
            stream=Stream.DEPOSITS, venue_tx_id=str(row.get("id") or row["txId"]), kind=Kind.DEPOSIT,
            occurred_at=utc_from_ms(row["insertTime"]), asset=client.safe_currency_code(row["coin"]),
            amount=self.number(row.get("amount")), raw=dict(row),
            status=transfer_status(self.id, DEPOSIT_STATUS, row.get("status")))

    def withdrawal_record(self, client: Any, row: Mapping[str, Any]) -> TxRecord:
        # applyTime is set from the request on; completeTime only once it completed (absent while pending).
        applied = dt.datetime.strptime(row["applyTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
        asset = client.safe_currency_code(row["coin"])
        return TxRecord(
            stream=Stream.WITHDRAWALS, venue_tx_id=str(row["id"]), kind=Kind.WITHDRAWAL, occurred_at=applied,
            asset=asset, amount=self.number(row.get("amount")), fee_asset=asset,
            fee_amount=to_decimal(row.get("transactionFee")), raw=dict(row),
            status=transfer_status(self.id, WITHDRAWAL_STATUS, row.get("status")))

    def number(self, value: Any) -> Decimal:
        parsed = to_decimal(value)
        if parsed is None:
            raise VenueBadData(self.id, "a required amount is missing from the venue's answer")
        return parsed
