"""OKX (www.okx.com, REST v5) through ccxt.

- Scope: ``GET /api/v5/account/config`` → ``perm``, a comma-separated subset of ``read_only``, ``trade``,
  ``withdraw``. Accepted only when it is exactly {read_only}. OKX has no separate transfer permission: funds
  transfer needs Trade, so ``trade`` also means transfer. Unknown values count as escalation.
- ccxt maps ``50119 API key doesn't exist`` (deleted key, or a key of another OKX region) to a bare ExchangeError;
  we classify it from the venue code (authentication). ``50120`` ("API key doesn't have permission to use this
  function") is a permission error, not an invalid key: the message names the permission to add (Read: every
  endpoint read here requires it). OKX answers both with HTTP 401, so the code decides, not the status.
- Transfer status (docs: Get deposit history ``state``, Get withdrawal history ``state``): deposits 2 successful
  and 1 credited are completed, 0, 8, 12-14, 17 pending, 11 (address blacklisted) failed; withdrawals 2 success
  completed, -2 cancelled, -1 failed, every other documented state (-3 cancelling, 0, 1, 4-10, 12, 15-17) pending.
  A pending transfer is read again on every run until it has an outcome.
- Limits (docs: each endpoint's "Rate Limit", per user ID): config 5/2 s, balance 10/2 s, funding balances 6/s,
  fills-history 10/2 s, deposit and withdrawal history 6/s; instruments 20/2 s per IP.
- load_markets: spot instruments only, and ``fetchCurrencies`` off (it is a signed call on OKX).
- Balances: trading account plus funding account. History: ``fills-history`` (last 3 months, pages by
  ``billId``), ``deposit-history`` and ``withdrawal-history`` (pages by ``ts``), each newest first, 100 rows a page.
  We call ccxt's implicit methods and read OKX's decimal strings ourselves, so amounts stay exact.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation, localcontext
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

PAGE = 100
# A deposit or withdrawal can be listed a little after its ``ts``; each run re-reads this much behind the
# newest record it had seen (the store dedupes on venue_tx_id).
OVERLAP_MS = 86_400_000
# Coverage caveat carried by every trades page: spot fills only, and only as far back as fills-history goes.
FILLS_NOTES = {"inst_type": "SPOT", "history_days": 90}
_KNOWN_PERMS = {"read_only", "trade", "withdraw"}
DEPOSIT_STATE = {
    "2": TxStatus.COMPLETED, "1": TxStatus.COMPLETED,
    **dict.fromkeys(("0", "8", "12", "13", "14", "17"), TxStatus.PENDING),
    "11": TxStatus.FAILED,
}
WITHDRAWAL_STATE = {
    "2": TxStatus.COMPLETED, "-2": TxStatus.CANCELLED, "-1": TxStatus.FAILED,
    **dict.fromkeys(("-3", "0", "1", "4", "5", "6", "7", "8", "9", "10", "12", "15", "16", "17"), TxStatus.PENDING),
}
MISSING_PERMISSION = "50120"
OKX_OPENED = dt.datetime(2017, 1, 1, tzinfo=dt.UTC)
_DOC = "https://www.okx.com/docs-v5/en/"
_PARSE_ERRORS = (KeyError, TypeError, ValueError, InvalidOperation, AttributeError, IndexError)


def _when(ms: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.UTC)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dec(value: Any) -> Decimal:
    parsed = to_decimal(value)
    if parsed is None:
        raise ValueError("missing number")
    return parsed


class OkxAdapter(CcxtAdapter):
    id = "okx"
    name = "OKX"
    ccxt_id = "okx"
    hosts = ("www.okx.com",)
    read_endpoints = (
        *egress.read("GET", r"/api/v5/public/instruments"),  # load_markets (spot only, public)
        *egress.read("GET", r"/api/v5/account/config"),  # the key's permissions
        *egress.read("GET", r"/api/v5/account/balance", r"/api/v5/asset/balances"),  # trading + funding
        *egress.read("GET", r"/api/v5/trade/fills-history", r"/api/v5/asset/deposit-history",
                     r"/api/v5/asset/withdrawal-history"),
    )
    ccxt_options = {"fetchMarkets": {"types": ["spot"]}, "timeDifference": 0, "adjustForTimeDifference": False}
    ccxt_has = {"fetchCurrencies": False}  # OKX currencies are a signed call (VENUES.md §0.1)
    error_codes: ClassVar[Mapping[str, type[VenueError]]] = {
        **dict.fromkeys(("50100", "50101", "50103", "50104", "50105", "50106", "50107", "50111", "50112", "50113",
                         "50114", "50119", "50008"), VenueAuthError),
        "50110": VenuePermissionError,  # the key's IP allow-list does not include us
        MISSING_PERMISSION: VenuePermissionError,  # the key lacks a permission (Read) this request needs
        "50011": VenueRateLimited,
        **dict.fromkeys(("50001", "50004", "50005", "50013", "50026", "50102"), VenueTransient),
    }
    streams = (Stream.TRADES, Stream.DEPOSITS, Stream.WITHDRAWALS)
    history_limit_days = 90  # fills-history: the last 3 months
    rate_limits = (
        RateLimit(20, 2, path=r"/api/v5/public/instruments", source=_DOC + "#public-data-rest-api-get-instruments"),
        RateLimit(5, 2, path=r"/api/v5/account/config", per_account=True,
                  source=_DOC + "#trading-account-rest-api-get-account-configuration"),
        RateLimit(10, 2, path=r"/api/v5/account/balance", per_account=True,
                  source=_DOC + "#trading-account-rest-api-get-balance"),
        RateLimit(6, 1, path=r"/api/v5/asset/balances", per_account=True,
                  source=_DOC + "#funding-account-rest-api-get-balance"),
        RateLimit(10, 2, path=r"/api/v5/trade/fills-history", per_account=True,
                  source=_DOC + "#order-book-trading-trade-get-transaction-details-last-3-months"),
        RateLimit(6, 1, path=r"/api/v5/asset/deposit-history", per_account=True,
                  source=_DOC + "#funding-account-rest-api-get-deposit-history"),
        RateLimit(6, 1, path=r"/api/v5/asset/withdrawal-history", per_account=True,
                  source=_DOC + "#funding-account-rest-api-get-withdrawal-history"),
    )

    def classify(self, exc: Exception, creds: Credentials | None, client: Any = None) -> VenueError:
        error = super().classify(exc, creds, client)
        if error.venue_code == MISSING_PERMISSION:
            return VenuePermissionError(self.id, (
                "this key does not have the permission OKX requires for this request (OKX error 50120). In OKX open "
                "Profile → API, edit this key and tick Read — the only permission the appliance needs: it reads "
                "balances, trades, deposits and withdrawals. Leave Trade and Withdraw unticked."),
                venue_code=MISSING_PERMISSION)
        return error

    credential_fields = (
        CredentialField("api_key", "API key", "Shown by OKX after you create the key (five groups of letters and "
                        "digits separated by dashes)."),
        CredentialField("api_secret", "Secret key", "Shown once, right after the key is created."),
        CredentialField("passphrase", "Passphrase", "The API passphrase you chose while creating this key "
                        "(not your login password)."),
    )
    guide = (
        GuideStep("Log in at www.okx.com and open Profile → API → Create API key (V5)."),
        GuideStep("Keys made on the OKX EEA or OKX US sites do not work here: use the global site."),
        GuideStep("Purpose: API trading. Name the key, e.g. 'compliance read-only'."),
        GuideStep("Permissions: tick Read only."),
        GuideStep("Leave Trade and Withdraw unticked. A key with either is rejected.", warning=True),
        GuideStep("Choose an API passphrase and keep it: you enter it below together with the key and secret."),
        GuideStep("Leave the IP address list empty unless your compliance team gives you an address."),
        GuideStep("Confirm with your verification code, then copy the API key and secret key."),
    )

    # -- scope ---------------------------------------------------------------------------------
    def probe_scope(self, creds: Credentials) -> Scope:
        client = self.client(creds)
        response = self.call(client.privateGetAccountConfig, creds=creds)
        try:
            config = dict(self._rows(response)[0])
        except IndexError:
            raise VenueBadData(self.id, "account/config returned no row") from None
        perms = {p.strip() for p in str(config.get("perm", "")).split(",") if p.strip()}
        unknown = sorted(perms - _KNOWN_PERMS)
        notes = ["OKX's Trade permission also allows funds transfers, so trade implies transfer."]
        if unknown:
            notes.append(f"Unrecognised OKX permissions {', '.join(unknown)} are treated as trading.")
        trading = "trade" in perms
        return Scope(read="read_only" in perms, trade=trading or bool(unknown), transfer=trading,
                     withdraw="withdraw" in perms, verified=True, evidence=_scrubbed(config, creds),
                     notes=tuple(notes))

    def regenerate_instructions(self, scope: Scope) -> str:
        granted = ", ".join(scope.granted()) or "unknown permissions"
        reported = scope.evidence.get("perm", "")
        return (f"This OKX key has {granted} permission (OKX reports: {reported}). In OKX open Profile → API, "
                "delete this key, then create a new V5 API key with only Read ticked (leave Trade and Withdraw "
                "unticked) and submit the new key, secret key and passphrase.")

    # -- balances ------------------------------------------------------------------------------
    def fetch_balances(self, creds: Credentials) -> list[Balance]:
        client = self.client(creds)
        trading = self._rows(self.call(client.privateGetAccountBalance, creds=creds))
        funding = self._rows(self.call(client.privateGetAssetBalances, creds=creds))
        try:
            out = [Balance(d["ccy"], _dec(d.get("eq") or d["cashBal"]), "trading")
                   for row in trading for d in row.get("details", [])]
            out += [Balance(row["ccy"], _dec(row["bal"]), "funding") for row in funding]
        except _PARSE_ERRORS:
            raise VenueBadData(self.id, "unexpected balance row") from None
        return [b for b in out if b.amount != 0]

    # -- history -------------------------------------------------------------------------------
    def fetch_transactions(self, creds: Credentials, stream: str, cursor: Mapping[str, Any]) -> Page:
        if stream == Stream.TRADES:
            return self._fills_page(creds, cursor)
        if stream == Stream.DEPOSITS:
            return self._transfers_page(creds, cursor, Stream.DEPOSITS)
        if stream == Stream.WITHDRAWALS:
            return self._transfers_page(creds, cursor, Stream.WITHDRAWALS)
        raise ValueError(f"{self.id} does not serve the {stream!r} stream")

    def _fills_page(self, creds: Credentials, cursor: Mapping[str, Any]) -> Page:
        """Walk fills-history from the newest ``billId`` down to the newest one the last run stored.

        ``billId`` grows with every fill, so the previous run's highest billId is an exact boundary.
        Cursor: ``boundary`` (between runs); ``after``, ``top``, ``started`` (within a run).
        """
        boundary = int(cursor.get("boundary") or 0)
        started = int(cursor.get("started") or _now_ms())
        params = {"instType": "SPOT", "limit": str(PAGE)}
        if cursor.get("after"):
            params["after"] = str(cursor["after"])
        client = self.client(creds)
        rows = self._rows(self.call(client.privateGetTradeFillsHistory, params, creds=creds))
        try:
            fresh = [row for row in rows if int(row["billId"]) > boundary]
            records = [self._fill(row) for row in fresh]
        except _PARSE_ERRORS:
            raise VenueBadData(self.id, "unexpected fills-history row") from None
        top = max([int(cursor.get("top") or 0), *(int(r.venue_tx_id) for r in records)])
        if len(rows) < PAGE or len(fresh) < len(rows):
            newest = max(boundary, top)
            floor = int(cursor.get("floor") or started - self.history_limit_days * 86_400_000)
            notes = {**FILLS_NOTES, "coverage_gap": coverage_gap(
                HISTORY_LIMIT, "OKX's API serves the last three months of fills; older trades are only in OKX's "
                "own statement exports", start=OKX_OPENED, end=_when(floor))}
            following = {"boundary": str(newest), "floor": floor} if newest else {"floor": floor}
            return Page(records, following, True, _when(started), notes)
        following = {"boundary": str(boundary), "after": str(rows[-1]["billId"]), "top": str(top), "started": started}
        if cursor.get("floor"):
            following["floor"] = cursor["floor"]
        return Page(records, following, False, notes=FILLS_NOTES)

    def _transfers_page(self, creds: Credentials, cursor: Mapping[str, Any], stream: str) -> Page:
        """Walk deposit/withdrawal history newest first by ``ts`` (OKX's ``after`` = strictly older than).

        Rows sharing the boundary millisecond are re-asked for (``after`` = oldest + 1) and skipped by id, so a
        page edge inside one millisecond loses nothing. A run stops ``OVERLAP_MS`` behind the newest ``ts`` the
        previous run saw. Cursor: ``newest`` (between runs); ``after_ts``, ``seen``, ``top``, ``started``.
        """
        deposits = stream == Stream.DEPOSITS
        id_field = "depId" if deposits else "wdId"
        newest = int(cursor.get("newest") or 0)
        stop = newest - OVERLAP_MS if newest else 0
        if cursor.get("pending") is not None:
            stop = min(stop, int(cursor["pending"]))  # re-read a pending transfer until it has an outcome
        started = int(cursor.get("started") or _now_ms())
        after_ts = cursor.get("after_ts")
        seen = set(cursor.get("seen") or ())
        params = {"limit": str(PAGE)}
        if after_ts is not None:
            params["after"] = str(int(after_ts) + 1)
        client = self.client(creds)
        method = client.privateGetAssetDepositHistory if deposits else client.privateGetAssetWithdrawalHistory
        rows = self._rows(self.call(method, params, creds=creds))
        try:
            fresh = [row for row in rows if str(row[id_field]) not in seen and int(row["ts"]) >= stop]
            records = [self._transfer(row, stream, id_field) for row in fresh]
            times = [int(row["ts"]) for row in rows]
        except _PARSE_ERRORS:
            raise VenueBadData(self.id, f"unexpected {stream} row") from None
        top = max([int(cursor.get("top") or 0), *times])
        pending = [int(r.occurred_at.timestamp() * 1000) for r in records if r.status == TxStatus.PENDING]
        if cursor.get("pending_run") is not None:
            pending.append(int(cursor["pending_run"]))
        pending_run = min(pending) if pending else None
        if len(rows) < PAGE or min(times) < stop:
            latest = max(newest, top)
            following: dict[str, Any] = {"newest": latest} if latest else {}
            if pending_run is not None:
                following["pending"] = pending_run
            return Page(records, following, True, _when(started))
        oldest = min(times)
        notes: dict[str, Any] = {}
        if not records and after_ts is not None and oldest == int(after_ts):
            # More than a page of rows in one millisecond: step past it rather than loop.
            oldest -= 1
            notes["skipped_millisecond"] = oldest + 1
        edge = {str(row[id_field]) for row in rows if int(row["ts"]) == oldest}
        if after_ts is not None and oldest == int(after_ts):
            edge |= seen
        return Page(records, {"newest": newest, "after_ts": oldest, "seen": sorted(edge), "top": top,
                              "started": started, "pending": cursor.get("pending"), "pending_run": pending_run},
                    False, notes=notes)

    # -- parsing -------------------------------------------------------------------------------
    def _rows(self, response: Any) -> list[dict[str, Any]]:
        data = response.get("data") if isinstance(response, dict) else None
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise VenueBadData(self.id, "unexpected response from the venue (no data list)")
        return data

    def _fill(self, row: dict[str, Any]) -> TxRecord:
        base, quote = str(row["instId"]).split("-")[:2]
        size, price = _dec(row["fillSz"]), _dec(row["fillPx"])
        with localcontext() as ctx:
            ctx.prec = 60
            cost = size * price
        fee = to_decimal(row.get("fee"))
        return TxRecord(
            stream=Stream.TRADES, venue_tx_id=str(row["billId"]),
            kind=Kind.BUY if row["side"] == "buy" else Kind.SELL, occurred_at=_when(row["ts"]), asset=base,
            amount=size, market=f"{base}/{quote}", quote_asset=quote, quote_amount=cost, price=price,
            # OKX reports the fee charged as a negative number (a rebate is positive).
            fee_asset=row.get("feeCcy") or None, fee_amount=-fee if fee is not None else None, raw=row)

    def _transfer(self, row: dict[str, Any], stream: str, id_field: str) -> TxRecord:
        deposit = stream == Stream.DEPOSITS
        fee = None if deposit else to_decimal(row.get("fee"))
        return TxRecord(
            stream=stream, venue_tx_id=str(row[id_field]), kind=Kind.DEPOSIT if deposit else Kind.WITHDRAWAL,
            occurred_at=_when(row["ts"]), asset=row["ccy"], amount=_dec(row["amt"]),
            fee_asset=(row.get("feeCcy") or row["ccy"]) if fee is not None else None, fee_amount=fee, raw=row,
            status=transfer_status(self.id, DEPOSIT_STATE if deposit else WITHDRAWAL_STATE, row.get("state")))


def _scrubbed(value: Any, creds: Credentials) -> Any:
    """The permission response as evidence: never a key, secret or passphrase."""
    if isinstance(value, dict):
        return {k: _scrubbed(v, creds) for k, v in value.items() if k.lower() not in {"apikey", "secretkey"}}
    if isinstance(value, list):
        return [_scrubbed(v, creds) for v in value]
    if isinstance(value, str) and value in creds.secrets():
        return "<redacted>"
    return value
