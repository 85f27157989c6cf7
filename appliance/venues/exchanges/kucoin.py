"""KuCoin (api.kucoin.com, classic spot account) through ccxt.

- Scope: ``GET /api/v1/user/api-key`` → ``permission``, e.g. ``"General"`` or ``"General,Spot,Transfer"``.
  Accepted only when it is exactly {General}. KuCoin's ``Transfer`` permission is the one that withdraws;
  ``InnerTransfer`` moves funds between the user's accounts; trading permissions are Spot, Margin, Futures
  (and Earn, which moves funds into products). Unknown values count as escalation.
- ccxt raises AuthenticationError for every 4000xx code, including 400006 (IP not allowed) and 400007 (the key
  lacks a permission); we classify those two as permission errors from the venue code.
- Signed calls ccxt would make on its own are kept out, not served: ``options['uta'] = False`` and
  ``options['hf'] = False`` stop it asking ``/api/ua/v1/account/mode`` and ``/api/v1/hf/accounts/opened``;
  markets are loaded once by a credential-less client, for which ccxt skips the margin symbol lists, and we ask
  for spot symbols only, without the ticker (fee) call. None of those paths is on the allowlist, so a ccxt
  upgrade that starts calling them fails loudly as EgressRefused instead of sending a signed request.
- History: fills, deposits and withdrawals are served per time window of at most 7 days, newest first, paged
  with ``currentPage``. The windows are walked by ``venues.windows`` (a first sync newest first, concurrently)
  back to ``history_limit_days`` ago; each window's end is fixed before it is read, so paging inside it cannot
  shift. What is older is a standing ``history_limit`` gap (only KuCoin's own exports reach it).
- Transfer status (docs: Get Deposit History / Get Withdrawal History): ``SUCCESS`` completed; ``PROCESSING``,
  ``WALLET_PROCESSING``, ``REVIEW`` (and ``WAIT_TRM_MGT``) pending; ``FAILURE`` failed.
- Limits (docs: Rate Limit): weights per 30 s per account: Management pool 2,000 (accounts 5, api-key 20,
  deposits 5, withdrawals 20), Spot pool 4,000 (fills 10); Public pool 2,000 per IP (symbols 4).
- Classic account only: trades of high-frequency (HF) accounts live behind ``/api/v1/hf/fills``, which needs a
  symbol per query; this adapter does not read them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
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
from appliance.venues.ccxt_base import CcxtAdapter, to_decimal
from appliance.venues.ratelimits import RateLimit
from appliance.venues.windows import WindowedStream, utc_from_ms, walk

DAY_MS = 86_400_000
WINDOW_MS = 7 * DAY_MS
PAGE = 500
# Records can be listed a little after their createdAt: each run starts this far behind the last one's end.
OVERLAP_MS = DAY_MS
HISTORY_DAYS = 365  # how far back the first run looks; KuCoin's own retention is not documented precisely
# Coverage caveat carried by every trades page (see the module docstring).
TRADES_NOTES = {"account": "classic spot account; high-frequency (HF) account fills are not read"}
_READ = {"General"}
_TRADE = {"Spot", "Margin", "Futures", "Earn", "Trade", "Options", "LeadtradeFutures", "LeadtradeSpot"}
_TRANSFER = {"InnerTransfer"}
_WITHDRAW = {"Transfer", "Withdrawal", "Withdraw"}  # KuCoin's "Transfer" is the withdrawal permission
_PARSE_ERRORS = (KeyError, TypeError, ValueError, InvalidOperation, AttributeError, IndexError)
STATUSES = {"SUCCESS": TxStatus.COMPLETED, "PROCESSING": TxStatus.PENDING, "WALLET_PROCESSING": TxStatus.PENDING,
            "REVIEW": TxStatus.PENDING, "WAIT_TRM_MGT": TxStatus.PENDING, "FAILURE": TxStatus.FAILED}
KUCOIN_OPENED = dt.datetime(2017, 9, 15, tzinfo=dt.UTC)
LIMITS_DOC = "https://www.kucoin.com/docs-new/rate-limit"
_MANAGEMENT = r"/api/v1/(accounts|user/api-key|deposits|withdrawals)"


def _when(ms: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.UTC)


def _dec(value: Any) -> Decimal:
    parsed = to_decimal(value)
    if parsed is None:
        raise ValueError("missing number")
    return parsed


class KucoinAdapter(CcxtAdapter):
    id = "kucoin"
    name = "KuCoin"
    ccxt_id = "kucoin"
    hosts = ("api.kucoin.com",)
    read_endpoints = (
        *egress.read("GET", r"/api/v2/symbols"),  # load_markets: spot symbols (public)
        *egress.read("GET", r"/api/v1/user/api-key"),  # the key's permissions
        *egress.read("GET", r"/api/v1/accounts"),  # balances of every account type (main, trade, ...)
        *egress.read("GET", r"/api/v1/fills", r"/api/v1/deposits", r"/api/v1/withdrawals"),
    )
    ccxt_options = {"uta": False, "hf": False, "fetchMarkets": {"types": ["spot"], "fetchTickersFees": False}}
    ccxt_has = {"fetchCurrencies": False}
    error_codes: ClassVar[Mapping[str, type[VenueError]]] = {
        **dict.fromkeys(("400001", "400003", "400004", "400005", "411100"), VenueAuthError),
        "400006": VenuePermissionError,  # the key's IP allow-list does not include us
        "400007": VenuePermissionError,  # the key lacks the permission this endpoint needs
        "429000": VenueRateLimited,
        **dict.fromkeys(("400002", "500000", "503000"), VenueTransient),
    }
    streams = (Stream.TRADES, Stream.DEPOSITS, Stream.WITHDRAWALS)
    history_limit_days = HISTORY_DAYS
    rate_limits = (
        RateLimit(2000, 30, path=_MANAGEMENT, per_account=True, source=LIMITS_DOC,
                  weights=((r"/api/v1/(user/api-key|withdrawals)", 20),)),
        RateLimit(4000, 30, path=r"/api/v1/fills", per_account=True, weights=((r".*", 10),), source=LIMITS_DOC),
        RateLimit(2000, 30, path=r"/api/v2/symbols", weights=((r".*", 4),), source=LIMITS_DOC),
    )

    credential_fields = (
        CredentialField("api_key", "API key", "Shown by KuCoin after you create the key (24 letters and digits)."),
        CredentialField("api_secret", "API secret", "Shown once, right after the key is created."),
        CredentialField("passphrase", "API passphrase", "The passphrase you chose while creating this key "
                        "(not your login or trading password)."),
    )
    guide = (
        GuideStep("Log in at www.kucoin.com, open the avatar menu → API Management → Create API."),
        GuideStep("Choose 'API Trading', enter a name, e.g. 'compliance read-only', and an API passphrase that "
                  "you keep: you enter it below together with the key and secret."),
        GuideStep("Permissions: keep only General ticked."),
        GuideStep("Leave Spot, Margin and Futures trading, Earn, Transfer (withdrawals) and Inner transfer "
                  "unticked. A key with any of them is rejected.", warning=True),
        GuideStep("Leave the IP restriction off unless your compliance team gives you an address."),
        GuideStep("Complete the security verification, then copy the API key and secret."),
    )

    # -- scope ---------------------------------------------------------------------------------
    def probe_scope(self, creds: Credentials) -> Scope:
        client = self.client(creds)
        try:
            response = self.call(client.privateGetUserApiKey, creds=creds)
        except VenuePermissionError as exc:
            if exc.venue_code != "400007":
                raise
            # The key-info query itself needs General: without it the key cannot read anything.
            return Scope(read=False, trade=None, transfer=None, withdraw=None, verified=True,
                         evidence={"code": "400007"}, notes=("KuCoin refused the key-info query: no General "
                                                            "permission.",))
        data = response.get("data") if isinstance(response, dict) else None
        if not isinstance(data, dict):
            raise VenueBadData(self.id, "user/api-key returned no data")
        perms = {p.strip() for p in str(data.get("permission", "")).split(",") if p.strip()}
        unknown = sorted(perms - _READ - _TRADE - _TRANSFER - _WITHDRAW)
        withdraw = bool(perms & _WITHDRAW)
        notes = []
        if unknown:
            notes.append(f"Unrecognised KuCoin permissions {', '.join(unknown)} are treated as trading.")
        if withdraw:
            notes.append("KuCoin's Transfer permission withdraws funds; it also counts as transfer.")
        evidence = {k: v for k, v in data.items() if k != "apiKey" and v not in creds.secrets()}
        return Scope(read=bool(perms & _READ), trade=bool(perms & _TRADE) or bool(unknown),
                     transfer=bool(perms & _TRANSFER) or withdraw, withdraw=withdraw, verified=True,
                     evidence=evidence, notes=tuple(notes))

    def regenerate_instructions(self, scope: Scope) -> str:
        extra = [p.strip() for p in str(scope.evidence.get("permission", "")).split(",")
                 if p.strip() and p.strip() not in _READ]
        untick = ", ".join(extra) or "everything except General"
        return (f"This KuCoin key has permissions beyond General ({untick}). In KuCoin open API Management, "
                "delete this key, then create a new one with only General ticked and submit the new key, secret "
                "and passphrase.")

    # -- balances ------------------------------------------------------------------------------
    def fetch_balances(self, creds: Credentials) -> list[Balance]:
        client = self.client(creds)
        response = self.call(client.privateGetAccounts, creds=creds)
        data = response.get("data") if isinstance(response, dict) else None
        if not isinstance(data, list):
            raise VenueBadData(self.id, "accounts returned no list")
        try:
            out = [Balance(row["currency"], _dec(row["balance"]), row["type"]) for row in data]
        except _PARSE_ERRORS:
            raise VenueBadData(self.id, "unexpected accounts response") from None
        return [b for b in out if b.amount != 0]

    # -- history -------------------------------------------------------------------------------
    def fetch_transactions(self, creds: Credentials, stream: str, cursor: Mapping[str, Any]) -> Page:
        if stream not in self.streams:
            raise ValueError(f"{self.id} does not serve the {stream!r} stream")
        method, parse = {Stream.TRADES: ("privateGetFills", self._fill),
                         Stream.DEPOSITS: ("privateGetDeposits", self._deposit),
                         Stream.WITHDRAWALS: ("privateGetWithdrawals", self._withdrawal)}[Stream(stream)]
        extra = {"tradeType": "TRADE"} if stream == Stream.TRADES else {}

        def read(client: Any, start: int, end: int) -> list[TxRecord]:
            records: list[TxRecord] = []
            page = 1
            while True:
                params: dict[str, Any] = {**extra, "startAt": start, "endAt": end, "currentPage": page,
                                          "pageSize": PAGE}
                response = self.call(getattr(client, method), params, creds=creds)
                try:
                    data = response["data"]
                    records += [parse(row) for row in data["items"]]
                    total_pages = int(data["totalPage"])
                except _PARSE_ERRORS:
                    raise VenueBadData(self.id, f"unexpected {stream} page") from None
                if page >= total_pages:
                    return records
                page += 1

        floor = int(cursor.get("floor") or time.time() * 1000 - HISTORY_DAYS * DAY_MS)
        gap = coverage_gap(HISTORY_LIMIT, f"KuCoin's {stream} are read for the last {HISTORY_DAYS} days (7 days a "
                           "query); older ones are in KuCoin's own exports", start=KUCOIN_OPENED,
                           end=utc_from_ms(floor))
        notes = TRADES_NOTES if stream == Stream.TRADES else {}
        spec = WindowedStream(WINDOW_MS, floor, read, OVERLAP_MS, notes=notes, gap=gap)
        return walk(self, creds, cursor, spec)

    # -- parsing -------------------------------------------------------------------------------
    def _fill(self, row: dict[str, Any]) -> TxRecord:
        base, quote = str(row["symbol"]).split("-")[:2]
        fee = to_decimal(row.get("fee"))
        return TxRecord(
            stream=Stream.TRADES, venue_tx_id=str(row["tradeId"]),
            kind=Kind.BUY if row["side"] == "buy" else Kind.SELL, occurred_at=_when(row["createdAt"]), asset=base,
            amount=_dec(row["size"]), market=f"{base}/{quote}", quote_asset=quote, quote_amount=_dec(row["funds"]),
            price=_dec(row["price"]), fee_asset=row.get("feeCurrency") or None, fee_amount=fee, raw=row)

    def _deposit(self, row: dict[str, Any]) -> TxRecord:
        # KuCoin deposits have no id field; walletTxId (chain hash, or an internal id for inner transfers) is it.
        venue_id = row.get("walletTxId") or f"{row['currency']}:{row['createdAt']}:{row['amount']}"
        return TxRecord(
            stream=Stream.DEPOSITS, venue_tx_id=str(venue_id), kind=Kind.DEPOSIT, occurred_at=_when(row["createdAt"]),
            asset=row["currency"], amount=_dec(row["amount"]), fee_asset=row["currency"],
            fee_amount=to_decimal(row.get("fee")), raw=row,
            status=transfer_status(self.id, STATUSES, row.get("status")))

    def _withdrawal(self, row: dict[str, Any]) -> TxRecord:
        return TxRecord(
            stream=Stream.WITHDRAWALS, venue_tx_id=str(row["id"]), kind=Kind.WITHDRAWAL,
            occurred_at=_when(row["createdAt"]), asset=row["currency"], amount=_dec(row["amount"]),
            fee_asset=row["currency"], fee_amount=to_decimal(row.get("fee")), raw=row,
            status=transfer_status(self.id, STATUSES, row.get("status")))
