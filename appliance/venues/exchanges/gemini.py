"""Gemini through ccxt.

- Scope comes from ``POST /v1/roles``: only an account-scoped key with the Auditor role alone is
  read-only (Auditor cannot be combined with Trader or Fund Manager; new keys default to Trader).
  ccxt itself refuses keys without ``account`` in them (master keys), which we report as an
  authentication error before any request leaves. ccxt also maps ``MissingRole`` to an authentication
  error, and puts only the message in its exception: we read the reason from the body and classify
  ``MissingRole`` as permission (the key is valid; it lacks the role, e.g. after a role change).
- ``/v1/mytrades`` needs a symbol. The markets to ask about are derived from what the account shows:
  currencies in its balances and transfers, and markets it traded before (kept in the cursor). A
  market is queried when both its currencies were seen; ``Page.notes["markets"]`` lists them.
- Deposits and withdrawals come from ``/v1/transfers`` (ccxt's fetch_deposits/withdrawals are
  NotSupported). Both trades and transfers page forward from a ``timestamp`` (inclusive, ms): each
  page is the oldest batch at or after it; a (time, id) watermark drops what was already returned.
- ``has['fetchCurrencies']`` is off: ccxt would otherwise scrape exchange.gemini.com for currencies.
- Transfer status (docs: List Past Transfers): ``Complete``, and ``Advanced`` (a deposit credited ahead: "when
  deposits show as Advanced or Complete they are available for trading") are completed, ``Pending`` pending; the
  endpoint does not list cancelled advances or returned wires. A pending transfer is read again on every run.
- Limits (docs: Rate Limits; List Past Transfers): private endpoints 600 requests a minute; ``/v1/transfers`` one
  request per 5 seconds per account. One sync reads each page of transfers once and shares it between the
  deposits and withdrawals streams and the trades' planning (they ask for the same pages).
- Nonces must increase per key; every fresh ccxt client takes them from one process-wide counter.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator, Mapping
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
from appliance.venues.ccxt_base import CcxtAdapter, MonotonicNonce, to_decimal
from appliance.venues.ratelimits import RateLimit

TRADES_PAGE = 500
TRANSFERS_PAGE = 50
KNOWN_ROLES = ("isAuditor", "isTrader", "isFundManager")
STATUSES = {"Complete": TxStatus.COMPLETED, "Advanced": TxStatus.COMPLETED, "Pending": TxStatus.PENDING,
            "Cancelled": TxStatus.CANCELLED, "Canceled": TxStatus.CANCELLED, "Failed": TxStatus.FAILED}
LIMITS_DOC = "https://docs.gemini.com/rest-api/#rate-limits"


_nonce = MonotonicNonce()


def body_reason(body: Any) -> str | None:
    """The ``reason`` of a Gemini error body (``{"result": "error", "reason": ...}``), if that is what it is."""
    if not isinstance(body, str) or not body.startswith("{"):
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if isinstance(parsed, dict) and parsed.get("result") == "error" and parsed.get("reason"):
        return str(parsed["reason"])
    return None


def utc_ms(ms: Any) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=int(ms))


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def newer(item: tuple[int, int], mark: list[int] | None) -> bool:
    return mark is None or item > (mark[0], mark[1])


class GeminiAdapter(CcxtAdapter):
    id = "gemini"
    name = "Gemini"
    ccxt_id = "gemini"
    hosts = ("api.gemini.com",)
    read_endpoints = (
        *egress.read("GET", r"/v1/symbols"),
        *egress.read("POST", r"/v1/(roles|balances|mytrades|transfers)"),
    )
    ccxt_has: ClassVar[Mapping[str, Any]] = {"fetchCurrencies": False}
    streams = (Stream.TRADES, Stream.DEPOSITS, Stream.WITHDRAWALS)
    rate_limits = (
        RateLimit(600, 60, path=r"/v1/(roles|balances|mytrades|transfers)", per_account=True, source=LIMITS_DOC),
        RateLimit(1, 5, path=r"/v1/transfers", per_account=True,
                  source="https://developer.gemini.com/trading/rest-api/fund-management/list-past-transfers"),
        RateLimit(120, 60, path=r"/v1/symbols.*", source=LIMITS_DOC),
    )
    error_codes: ClassVar[Mapping[str, type[VenueError]]] = {
        "InvalidApiKey": VenueAuthError,
        "InvalidSignature": VenueAuthError,
        "MissingApikeyHeader": VenueAuthError,
        "MissingRole": VenuePermissionError,  # ccxt: AuthenticationError; the key works, it lacks the role
        "RateLimit": VenueRateLimited,
        "RateLimited": VenueRateLimited,
        "InvalidNonce": VenueTransient,
        "Maintenance": VenueTransient,
        "System": VenueTransient,
    }
    credential_fields = (
        CredentialField("api_key", "API key", help="Starts with 'account-'. Master keys are not accepted."),
        CredentialField("api_secret", "API secret", help="Shown once by Gemini when the key is created."),
    )
    guide = (
        GuideStep("Sign in to gemini.com and open Settings → API, then choose Create API key."),
        GuideStep("Choose the scope of your trading account (Primary), not Master: the key must start with "
                  "'account-'."),
        GuideStep("Tick the Auditor role only. Gemini ticks Trader by default: untick it, and do not add "
                  "Fund Manager. A key with either role is refused.", warning=True),
        GuideStep("Leave 'Uses a time based nonce' unticked and confirm with your second factor."),
        GuideStep("Copy the API key and the API secret into the form below, then tick the confirmation box on "
                  "Gemini to activate the key."),
    )

    def new_client(self, creds: Credentials | None = None) -> Any:
        client = super().new_client(creds)
        client.nonce = _nonce
        return client

    # -- scope --------------------------------------------------------------------------------
    def probe_scope(self, creds: Credentials) -> Scope:
        client = self.client(creds)
        roles = self.call(client.privatePostV1Roles, creds=creds)
        if not isinstance(roles, dict) or "isAuditor" not in roles:
            raise VenueBadData(self.id, "the roles endpoint did not list the key's roles")
        # A role we do not know (master keys report administrator roles) fails closed: everything.
        unknown = sorted(k for k, v in roles.items() if k.startswith("is") and k not in KNOWN_ROLES and v is True)
        fund_manager = roles.get("isFundManager") is True or bool(unknown)
        secrets = creds.secrets()
        evidence = {k: v for k, v in roles.items() if not (isinstance(v, str) and any(s in v for s in secrets))}
        return Scope(read=roles.get("isAuditor") is True, trade=roles.get("isTrader") is True or bool(unknown),
                     transfer=fund_manager, withdraw=fund_manager, verified=True, evidence=evidence,
                     notes=tuple(f"unrecognised role {k!r} treated as dangerous" for k in unknown))

    def regenerate_instructions(self, scope: Scope) -> str:
        roles = [label for flag, label in (("isTrader", "Trader"), ("isFundManager", "Fund Manager"))
                 if scope.evidence.get(flag) is True]
        held = " and ".join(roles) or "an administrator"
        return (f"This Gemini key has the {held} role ({', '.join(scope.granted())} permission). In Gemini open "
                "Settings → API, revoke this key, and create a new key for your trading account (not Master) "
                "with the Auditor role only: untick Trader and do not add Fund Manager. Then submit the new key.")

    def classify(self, exc: Exception, creds: Credentials | None, client: Any = None) -> VenueError:
        """ccxt's Gemini errors carry only the venue's message; the reason code is in the body. Each client
        here makes a single request, so its last response is the one that failed."""
        error = super().classify(exc, creds, client)
        reason = body_reason(getattr(client, "last_http_response", None))
        if reason is None:
            return error
        cls = self.error_codes.get(reason, type(error))
        if cls is type(error):
            error.venue_code = reason
            return error
        if cls is VenueRateLimited:
            return VenueRateLimited(self.id, f"rate limited ({reason})", retry_after=self._retry_after(client),
                                    venue_code=reason)
        return cls(self.id, self.describe(cls, reason), venue_code=reason)

    # -- balances -----------------------------------------------------------------------------
    def fetch_balances(self, creds: Credentials) -> list[Balance]:
        client = self.client(creds)
        rows = self.call(client.privatePostV1Balances, creds=creds)
        return [b for b in (self.balance(row) for row in self.rows(rows, "balances")) if b.amount]

    def balance(self, row: Mapping[str, Any]) -> Balance:
        amount = to_decimal(row.get("amount"))
        if amount is None:
            raise VenueBadData(self.id, "a balance without an amount")
        return Balance(self.code(row.get("currency")), amount, str(row.get("type", "")).lower())

    def rows(self, response: Any, what: str) -> list[Mapping[str, Any]]:
        if not isinstance(response, list) or not all(isinstance(r, dict) for r in response):
            raise VenueBadData(self.id, f"{what} is not a list of objects")
        return response

    def position(self, row: Mapping[str, Any], id_field: str) -> tuple[int, int]:
        """(time, id): the order Gemini lists entries in, and our watermark."""
        try:
            return int(row["timestampms"]), int(row[id_field])
        except (KeyError, TypeError, ValueError):
            raise VenueBadData(self.id, f"an entry without timestampms or {id_field}") from None

    def code(self, currency_id: Any) -> str:
        return str(self.markets().safe_currency_code(str(currency_id or "")))

    # -- history ------------------------------------------------------------------------------
    def fetch_transactions(self, creds: Credentials, stream: str, cursor: Mapping[str, Any]) -> Page:
        if stream == Stream.TRADES:
            return self.trades_page(creds, dict(cursor))
        if stream in (Stream.DEPOSITS, Stream.WITHDRAWALS):
            return self.transfers_page(creds, stream, dict(cursor))
        raise VenueBadData(self.id, f"stream {stream!r} is not served by this adapter")

    @contextlib.contextmanager
    def reusing(self, creds: Credentials) -> Iterator[None]:
        outer = getattr(self._scope, "transfers", None)
        self._scope.transfers = (creds, {})
        try:
            with super().reusing(creds):
                yield
        finally:
            self._scope.transfers = outer

    def transfers(self, creds: Credentials, mark: list[int] | None) -> list[Mapping[str, Any]]:
        """One page of /v1/transfers from ``mark``'s time. Gemini allows one such request per 5 s: within a sync
        (``reusing``) each page is asked for once, whichever stream asks first."""
        since = mark[0] if mark else 0
        scope = getattr(self._scope, "transfers", None)
        cache = scope[1] if scope is not None and scope[0] is creds else None
        if cache is not None and since in cache:
            return cache[since]
        client = self.client(creds)
        request = {"timestamp": since, "limit_transfers": TRANSFERS_PAGE}
        rows = self.rows(self.call(client.privatePostV1Transfers, request, creds=creds), "transfers")
        if cache is not None:
            cache[since] = rows
        return rows

    def transfers_page(self, creds: Credentials, stream: str, cursor: dict[str, Any]) -> Page:
        """Transfers after ``mark`` (time, eid). A pending transfer of this stream holds the next run's start just
        before it (``hold``), so it is read again until it has an outcome."""
        started = cursor.get("started") or now_iso()
        mark = cursor.get("hold") or cursor.get("mark") if "started" not in cursor else cursor.get("mark")
        hold = cursor.get("run_hold")
        rows = self.transfers(creds, mark)
        wanted = "Deposit" if stream == Stream.DEPOSITS else "Withdrawal"
        records, new_mark = [], mark
        for row in sorted(rows, key=lambda r: self.position(r, "eid")):
            at = self.position(row, "eid")
            if not newer(at, mark):
                continue
            new_mark = list(at)
            if row.get("type") == wanted:
                record = self.transfer_record(stream, row)
                records.append(record)
                if record.status == TxStatus.PENDING and hold is None:
                    hold = [at[0], at[1] - 1]
        if len(rows) >= TRANSFERS_PAGE and new_mark != mark:
            return Page(records, {"mark": new_mark, "started": started, "run_hold": hold}, False)
        # A full page that did not move the watermark is 50 transfers within one millisecond.
        notes = {"gaps": ["transfers"]} if len(rows) >= TRANSFERS_PAGE else {}
        following: dict[str, Any] = {"mark": new_mark} if new_mark else {}
        if hold is not None:
            following["hold"] = hold
        return Page(records, following, True, complete_until=dt.datetime.fromisoformat(started), notes=notes)

    def transfer_record(self, stream: str, row: Mapping[str, Any]) -> TxRecord:
        amount, asset = to_decimal(row.get("amount")), self.code(row.get("currency"))
        if amount is None:
            raise VenueBadData(self.id, f"transfer {row.get('eid')} has no amount")
        fee = to_decimal(row.get("feeAmount"))
        return TxRecord(
            stream=stream, venue_tx_id=str(row["eid"]),
            kind=Kind.DEPOSIT if stream == Stream.DEPOSITS else Kind.WITHDRAWAL,
            occurred_at=utc_ms(row["timestampms"]), asset=asset, amount=abs(amount),
            fee_asset=self.code(row.get("feeCurrency")) if fee is not None else None, fee_amount=fee, raw=dict(row),
            status=transfer_status(self.id, STATUSES, row.get("status")))

    def trades_page(self, creds: Credentials, cursor: dict[str, Any]) -> Page:
        """A run: balances, then transfers since the last run (currencies), then one market per page."""
        stage = cursor.get("stage")
        assets = set(cursor.get("assets", []))
        cursor.setdefault("started", now_iso())
        if stage is None:
            client = self.client(creds)
            balances = self.rows(self.call(client.privatePostV1Balances, creds=creds), "balances")
            cursor.update(stage="transfers", assets=sorted(assets | {self.code(r.get("currency")) for r in balances}))
            return Page([], cursor, False)
        if stage == "transfers":
            mark = cursor.get("transfers_mark")
            rows = self.transfers(creds, mark)
            best = mark
            for row in rows:
                assets.add(self.code(row.get("currency")))
                at = self.position(row, "eid")
                if newer(at, best):
                    best = list(at)
            cursor.update(assets=sorted(assets), transfers_mark=best)
            if len(rows) < TRANSFERS_PAGE or best == mark:
                queue = self.candidate_markets(assets, cursor.get("markets", {}))
                cursor.update(stage="markets", queue=queue, covered=queue)
            return self.run_page([], cursor)
        return self.market_page(creds, cursor, assets)

    def candidate_markets(self, assets: set[str], traded: Mapping[str, Any]) -> list[str]:
        """Spot market ids whose base and quote the account has shown, plus every market traded before."""
        public = self.markets()
        ids = {m["id"] for m in public.markets.values()
               if m.get("spot") and m["base"] in assets and m["quote"] in assets}
        return sorted(ids | set(traded))

    def market_page(self, creds: Credentials, cursor: dict[str, Any], assets: set[str]) -> Page:
        market_id = cursor["queue"][0]
        marks = dict(cursor.get("markets", {}))
        mark = marks.get(market_id)
        client = self.client(creds)
        request = {"symbol": market_id, "limit_trades": TRADES_PAGE, "timestamp": mark[0] if mark else 0}
        rows = self.rows(self.call(client.privatePostV1Mytrades, request, creds=creds), "trades")
        records = []
        for row in sorted(rows, key=lambda r: self.position(r, "tid")):
            at = self.position(row, "tid")
            if newer(at, mark):
                marks[market_id] = list(at)
                records.append(self.trade_record(market_id, row))
        if records:
            market = self.market_info(market_id)
            assets |= {market["base"], market["quote"]} - {""}
        if len(rows) >= TRADES_PAGE and marks.get(market_id) == mark:
            # A full page within one millisecond: the venue's timestamp paging cannot go past it.
            cursor["gaps"] = [*cursor.get("gaps", []), self.market_info(market_id)["symbol"]]
        if len(rows) < TRADES_PAGE or marks.get(market_id) == mark:
            cursor["queue"] = cursor["queue"][1:]
        cursor.update(markets=marks, assets=sorted(assets))
        return self.run_page(records, cursor)

    def run_page(self, records: list[TxRecord], cursor: dict[str, Any]) -> Page:
        """A page of the trades run; once the market queue is empty keep only what the next run needs."""
        if cursor.get("stage") != "markets":
            return Page(records, cursor, False)
        notes: dict[str, Any] = {"markets": [self.market_info(m)["symbol"] for m in cursor["covered"]],
                                 "market_list": "derived"}
        if cursor.get("gaps"):
            notes["gaps"] = cursor["gaps"]
        if cursor["queue"]:
            return Page(records, cursor, False, notes=notes)
        keep = {k: cursor[k] for k in ("assets", "markets", "transfers_mark") if cursor.get(k) is not None}
        return Page(records, keep, True, complete_until=dt.datetime.fromisoformat(cursor["started"]), notes=notes)

    def market_info(self, market_id: str) -> dict[str, str]:
        found = self.markets().markets_by_id.get(market_id) or []
        if not found:
            return {"base": market_id.upper(), "quote": "", "symbol": market_id.upper()}
        return {"base": found[0]["base"], "quote": found[0]["quote"], "symbol": found[0]["symbol"]}

    def trade_record(self, market_id: str, row: Mapping[str, Any]) -> TxRecord:
        market = self.market_info(market_id)
        amount, price = to_decimal(row.get("amount")), to_decimal(row.get("price"))
        if amount is None or price is None:
            raise VenueBadData(self.id, f"trade {row.get('tid')} has no amount or price")
        return TxRecord(
            stream=Stream.TRADES, venue_tx_id=str(row["tid"]),
            kind=Kind.BUY if str(row.get("type", "")).lower() == "buy" else Kind.SELL,
            occurred_at=utc_ms(row["timestampms"]), asset=market["base"], amount=amount, market=market["symbol"],
            quote_asset=market["quote"] or None, quote_amount=amount * price, price=price,
            fee_asset=self.code(row.get("fee_currency")), fee_amount=to_decimal(row.get("fee_amount")),
            raw=dict(row))
