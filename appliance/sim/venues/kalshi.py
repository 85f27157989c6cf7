"""Kalshi trade-api v2 simulator (``api.elections.kalshi.com/trade-api/v2``).

Wire facts it keeps (VENUES.md §12, Appendix A.12, the kalshi-typescript 3.30 models):

- Private calls carry ``KALSHI-ACCESS-KEY`` (a UUID), ``KALSHI-ACCESS-TIMESTAMP`` (ms) and
  ``KALSHI-ACCESS-SIGNATURE``: base64 RSA-PSS-SHA256, MGF1-SHA256, salt length 32, over
  ``timestamp + METHOD + path`` with the ``/trade-api/v2`` prefix and without the query. The sim
  verifies it with the key's public key (salt length enforced, not auto-detected), refuses a
  timestamp more than 5 s away from its clock, and marks the request-log entry ``auth`` as
  ``verified`` or ``rejected: <why>``. Unknown, revoked, stale or forged -> 401.
- Keys have scopes (``read``, ``write``, ``write::trade``, ``write::transfer``, ...). The generic
  key control API maps our permissions: read -> ``read``, trade -> ``write``, transfer and withdraw ->
  ``write::transfer`` (Kalshi has no withdrawal scope). GET needs ``read``; the sim never performs
  writes (key management, orders, transfers are answered 403).
- Amounts are fixed-point strings (``*_dollars``, ``*_fp``); balance and settlement revenue are
  integer cents. Lists are newest first with ``cursor`` pagination (``""`` when done), ``limit`` up to
  1000; ``min_ts``/``max_ts`` filter strictly after/before. Fills older than the historical cutoff
  (60 days) are only served by ``/historical/fills``.
- Errors: ``{"error": {"code", "message"}}``; 429 with Retry-After.

Control API besides the generic one: ``POST /_sim/kalshi/keys/<id>/scopes`` ``{"scopes": [...]}``
sets exact scopes; ``POST .../unlist`` hides the key from ``GET /api_keys``; ``POST .../trades``
``{"count": n}`` adds fills; ``POST .../settlements`` ``{"count": n}``; ``POST .../positions``
``{"positions": [{"ticker", "position", "avg_price"}]}``; ``GET .../ledger`` is the truth.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from appliance.sim.core import Account, Key, Request, Response, VenueError, VenueSim, dec, fmt, now_ms

PREFIX = "/trade-api/v2"
WINDOW_MS = 5000
MAX_LIMIT = 1000
HISTORICAL_CUTOFF_DAYS = 60
SCOPE_OF = {"read": ("read",), "trade": ("write",), "transfer": ("write::transfer",),
            "withdraw": ("write::transfer",)}


def kalshi_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> VenueError:
    return VenueError(status, {"error": {"code": code, "message": message}}, headers)


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def money(value: Decimal) -> str:
    return fmt(value, 4)


def count(value: Decimal) -> str:
    return fmt(value, 2)


@dataclass(frozen=True)
class Market:
    ticker: str
    event_ticker: str
    series_ticker: str
    title: str
    event_category: str  # deprecated on events; empty for some, so the series is asked
    series_category: str
    yes_bid: Decimal
    yes_ask: Decimal
    last_price: Decimal
    result: str = ""  # "", "yes", "no"


MARKETS = (
    Market("KXFEDDECISION-26DEC-C25", "KXFEDDECISION-26DEC", "KXFEDDECISION", "Fed cuts 25bps in December 2026?",
           "Economics", "Economics", Decimal("0.6100"), Decimal("0.6300"), Decimal("0.6200")),
    Market("KXHIGHNY-26NOV30-B45.5", "KXHIGHNY-26NOV30", "KXHIGHNY", "Highest temperature in NYC on Nov 30: 45-46°",
           "", "Climate and Weather", Decimal("0.1800"), Decimal("0.2100"), Decimal("0.1900")),
    Market("KXPRESPARTY-2028-D", "KXPRESPARTY-2028", "KXPRESPARTY", "Democrats win the 2028 presidency?",
           "Elections", "Politics", Decimal("0.4700"), Decimal("0.4800"), Decimal("0.4750")),
    Market("KXACMEEARN-26Q4-BEAT", "KXACMEEARN-26Q4", "KXACMEEARN", "Acme Corp beats Q4 2026 earnings?",
           "Financials", "Companies", Decimal(0), Decimal(0), Decimal("0.9900"), result="yes"),
    Market("KXBTCD-26DEC31-T100000", "KXBTCD-26DEC31", "KXBTCD", "Bitcoin above $100,000 on Dec 31, 2026?",
           "Crypto", "Crypto", Decimal(0), Decimal("0.3500"), Decimal("0.3350")),
)
BY_TICKER = {m.ticker: m for m in MARKETS}
EVENTS = {m.event_ticker: m for m in MARKETS}
SERIES = {m.series_ticker: m for m in MARKETS}


@dataclass
class Fill:
    id: str  # fill_id == trade_id
    order_id: str
    ticker: str
    side: str  # yes | no
    action: str  # buy | sell
    count: Decimal
    yes_price: Decimal
    fee: Decimal
    ms: int
    taker: bool

    def row(self) -> dict[str, Any]:
        # buy-yes and sell-no position for YES; the book side quotes everything on the YES leg.
        outcome = "yes" if (self.action == "buy") == (self.side == "yes") else "no"
        book = "bid" if outcome == "yes" else "ask"
        return {"fill_id": self.id, "trade_id": self.id, "order_id": self.order_id, "exchange_index": 0,
                "ticker": self.ticker, "market_ticker": self.ticker, "side": self.side, "action": self.action,
                "outcome_side": outcome, "book_side": book, "count_fp": count(self.count),
                "yes_price_dollars": money(self.yes_price), "no_price_dollars": money(1 - self.yes_price),
                "is_taker": self.taker, "created_time": iso(self.ms), "fee_cost": money(self.fee),
                "ts": self.ms // 1000}


@dataclass
class Settlement:
    ticker: str
    result: str
    yes_count: Decimal
    yes_cost: Decimal
    no_count: Decimal
    no_cost: Decimal
    fee: Decimal
    ms: int

    @property
    def id(self) -> str:
        return f"{self.ticker}:{iso(self.ms)}"

    @property
    def revenue_cents(self) -> int:
        won = self.yes_count if self.result == "yes" else self.no_count
        return int(won * 100)

    def row(self) -> dict[str, Any]:
        return {"ticker": self.ticker, "exchange_index": 0, "event_ticker": BY_TICKER[self.ticker].event_ticker
                if self.ticker in BY_TICKER else self.ticker.rsplit("-", 1)[0], "market_result": self.result,
                "yes_count_fp": count(self.yes_count), "yes_total_cost_dollars": money(self.yes_cost),
                "no_count_fp": count(self.no_count), "no_total_cost_dollars": money(self.no_cost),
                "revenue": self.revenue_cents, "settled_time": iso(self.ms), "fee_cost": money(self.fee),
                "value": 100 if self.result == "yes" else 0}


@dataclass
class Position:
    ticker: str
    position: Decimal  # signed: + YES, - NO
    avg_price: Decimal
    realized: Decimal
    fees: Decimal
    ms: int

    @property
    def exposure(self) -> Decimal:
        return abs(self.position) * self.avg_price

    def row(self) -> dict[str, Any]:
        return {"ticker": self.ticker, "exchange_index": 0, "total_traded_dollars": money(self.exposure + 12),
                "position_fp": count(self.position), "market_exposure_dollars": money(self.exposure),
                "realized_pnl_dollars": money(self.realized), "fees_paid_dollars": money(self.fees),
                "last_updated_ts": iso(self.ms)}


@dataclass
class Book:
    balance_cents: int = 0
    positions: list[Position] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    settlements: list[Settlement] = field(default_factory=list)

    def ledger(self) -> dict[str, Any]:
        return {"balance_cents": self.balance_cents, "positions": [p.row() for p in self.positions],
                "fills": [f.row() for f in self.fills], "settlements": [s.row() for s in self.settlements]}


class KalshiSim(VenueSim):
    id = "kalshi"
    host = "api.elections.kalshi.com"
    page_limits = {"fills": MAX_LIMIT, "settlements": MAX_LIMIT}

    def __init__(self, state: Any) -> None:
        super().__init__(state)
        self.books: dict[str, Book] = {}

    # -- keys -----------------------------------------------------------------------------------
    def mint_credentials(self) -> tuple[str, str, str | None, dict[str, Any]]:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()).decode()
        return str(uuid.uuid4()), pem, None, {"public_key": private.public_key(), "name": f"key-{secrets.token_hex(3)}",
                                               "scopes": None, "listed": True}

    def scopes(self, key: Key) -> list[str]:
        if key.extra.get("scopes") is not None:
            return list(key.extra["scopes"])
        out: list[str] = []
        for permission in ("read", "trade", "transfer", "withdraw"):
            if permission in key.permissions:
                out += [s for s in SCOPE_OF[permission] if s not in out]
        return out

    # -- seeding --------------------------------------------------------------------------------
    def book(self, account: Account) -> Book:
        return self.books.setdefault(account.id, Book())

    def seed(self, account: Account, history: dict[str, int]) -> None:
        book = self.book(account)
        book.balance_cents = 152_075
        self.add_positions(book, int(history.get("positions", 3)))
        start = now_ms() - 90 * 86400_000
        self.add_trades(account, int(history.get("fills", history.get("trades", 3))), start_ms=start)
        self.add_settlements(book, int(history.get("settlements", 2)), start_ms=start + 3600_000)

    def add_positions(self, book: Book, n: int) -> None:
        rng = self.state.rng
        for i in range(n):
            market = MARKETS[(len(book.positions) + i) % len(MARKETS)]
            size = dec(rng.choice(["25", "10", "3.5", "1200", "7"]))
            book.positions.append(Position(market.ticker, size if rng.random() < 0.6 else -size,
                                           dec(rng.choice(["0.5600", "0.0350", "0.9100", "0.3333"])),
                                           dec(rng.choice(["0", "4.2500", "-1.1000"])), dec("0.3500"), now_ms()))

    def add_trades(self, account: Account, count_: int, *, start_ms: int | None = None,
                   explicit: list[dict[str, Any]] | None = None) -> list[Any]:
        """Fills (the generic control API's ``trades``); several share one second, like a sweep."""
        rng = self.state.rng
        book = self.book(account)
        specs = explicit or [{} for _ in range(count_)]
        times = self._spread(len(specs), start_ms)
        made = []
        for i, (spec, spread_ms) in enumerate(zip(specs, times, strict=True)):
            ms = times[i - 1] + 250 if i % 4 == 3 else spread_ms  # every fourth: the previous fill's second
            fill = Fill(str(uuid.uuid4()), str(uuid.uuid4()), spec.get("ticker", rng.choice(MARKETS).ticker),
                        spec.get("side", rng.choice(("yes", "no"))), spec.get("action", rng.choice(("buy", "sell"))),
                        dec(spec.get("count", rng.choice(["1", "10", "2.5", "150", "0.01"]))),
                        dec(spec.get("yes_price", rng.choice(["0.5600", "0.0100", "0.9900", "0.4750", "0.0350"]))),
                        dec(spec.get("fee", rng.choice(["0.0700", "0", "0.0100"]))), int(spec.get("ms", ms)),
                        bool(spec.get("taker", rng.random() < 0.5)))
            book.fills.append(fill)
            made.append(fill)
        book.fills.sort(key=lambda f: (f.ms, f.id))
        return made

    def add_settlements(self, book: Book, n: int, *, start_ms: int | None = None) -> list[Settlement]:
        rng = self.state.rng
        made = []
        for ms in self._spread(n, start_ms):
            market = rng.choice(MARKETS)
            yes, no = dec(rng.choice(["10", "0", "3.5"])), dec(rng.choice(["0", "5", "120"]))
            made.append(Settlement(market.ticker, rng.choice(("yes", "no")), yes, yes * dec("0.42"), no,
                                   no * dec("0.37"), dec("0.0500"), ms))
        book.settlements.extend(made)
        book.settlements.sort(key=lambda s: s.ms)
        return made

    def stream_ids(self, account: Account, stream: str) -> set[str]:
        book = self.book(account)
        if stream in ("fills", "trades"):
            return {f.id for f in book.fills}
        if stream == "settlements":
            return {s.id for s in book.settlements}
        return super().stream_ids(account, stream)

    # -- control API ----------------------------------------------------------------------------
    def control(self, segs: list[str], method: str, body: dict[str, Any]) -> Response | None:
        if len(segs) != 3 or segs[0] != "keys" or segs[1] not in self.keys:
            return None
        key = self.keys[segs[1]]
        action = segs[2]
        if action == "scopes" and method == "POST":
            key.extra["scopes"] = [str(s) for s in body.get("scopes", [])]
            return Response(200, {"scopes": key.extra["scopes"]})
        if action in ("unlist", "list") and method == "POST":
            key.extra["listed"] = action == "list"
            return Response(200, {"listed": key.extra["listed"]})
        if action == "positions" and method == "POST":
            book = self.book(key.account)
            for spec in body.get("positions", []):
                book.positions.append(Position(str(spec["ticker"]), dec(spec["position"]), dec(spec["avg_price"]),
                                               dec(spec.get("realized", "0")), dec(spec.get("fees", "0")), now_ms()))
            return Response(200, {"positions": len(book.positions)})
        if action == "settlements" and method == "POST":
            made = self.add_settlements(self.book(key.account), int(body.get("count", 0)),
                                        start_ms=body.get("start_ms"))
            return Response(200, {"added": len(made), "ids": [s.id for s in made]})
        if action == "ledger" and method == "GET":
            return Response(200, dict(self.book(key.account).ledger(), scopes=self.scopes(key)))
        return None

    # -- errors ---------------------------------------------------------------------------------
    def rate_limit_response(self, retry_after: int) -> Response:
        return kalshi_error(429, "too_many_requests", "too many requests",
                            {"Retry-After": str(retry_after)}).response

    def outage_response(self) -> Response:
        return kalshi_error(503, "service_unavailable", "the exchange is unavailable").response

    # -- authentication -------------------------------------------------------------------------
    def _annotate(self, signature: str, outcome: str) -> None:
        for entry in reversed(self.state.log):
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            if entry["venue"] == self.id and headers.get("kalshi-access-signature") == signature:
                entry["auth"] = outcome
                return

    def authenticate(self, req: Request) -> Key:
        key_id = req.header("KALSHI-ACCESS-KEY")
        stamp = req.header("KALSHI-ACCESS-TIMESTAMP")
        signature = req.header("KALSHI-ACCESS-SIGNATURE")

        def reject(why: str) -> VenueError:
            if signature:
                self._annotate(signature, f"rejected: {why}")
            return kalshi_error(401, "authentication_error", why)

        if not key_id or not stamp or not signature:
            raise reject("missing authentication headers")
        key = self.key_or_none(key_id)
        if key is None:
            raise reject("unknown or revoked api key")
        try:
            skew = abs(now_ms() - int(stamp))
        except ValueError:
            raise reject("timestamp is not milliseconds") from None
        if skew > WINDOW_MS:
            raise reject("timestamp outside the allowed window")
        try:
            raw = base64.b64decode(signature, validate=True)
            key.extra["public_key"].verify(
                raw, (stamp + req.method.upper() + req.path).encode(),
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        except (InvalidSignature, ValueError):
            raise reject("invalid signature") from None
        self._annotate(signature, "verified")
        return key

    # -- dispatch -------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if not req.path.startswith(PREFIX + "/"):
            raise kalshi_error(404, "not_found", "not found")
        path = req.path[len(PREFIX):]
        query = {k: v[-1] for k, v in parse_qs(req.query, keep_blank_values=True).items()}
        parts = path.strip("/").split("/")
        if req.method == "GET" and path == "/exchange/status":
            # Get Exchange Status, public (https://docs.kalshi.com/python-sdk/models/ExchangeStatus).
            return Response(200, {"exchange_active": True, "trading_active": True})
        if req.method == "GET" and len(parts) == 2 and parts[0] in ("markets", "events", "series"):
            return Response(200, self.public(parts[0], parts[1]))
        key = self.authenticate(req)
        if req.method != "GET":
            raise kalshi_error(403, "forbidden", "the simulator never changes keys, orders or funds")
        scopes = self.scopes(key)
        if "read" not in scopes and not (path == "/portfolio/balance" and "read::portfolio_balance" in scopes):
            raise kalshi_error(403, "insufficient_scope", "this api key lacks the read scope")
        book = self.book(key.account)
        cutoff = now_ms() - HISTORICAL_CUTOFF_DAYS * 86400_000
        if path == "/api_keys":
            return Response(200, {"api_keys": self.api_keys(key)})
        if path == "/portfolio/balance":
            value = sum((p.exposure for p in book.positions), Decimal(0))
            return Response(200, {"balance": book.balance_cents,
                                  "balance_dollars": money(dec(book.balance_cents) / 100),
                                  "portfolio_value": book.balance_cents + int(value * 100),
                                  "updated_ts": now_ms() // 1000})
        if path == "/portfolio/positions":
            return Response(200, self.positions(book, query))
        if path == "/portfolio/fills":
            return Response(200, self.listing("fills", [f for f in book.fills if f.ms >= cutoff], query))
        if path == "/historical/fills":
            return Response(200, self.listing("fills", [f for f in book.fills if f.ms < cutoff], query))
        if path == "/portfolio/settlements":
            return Response(200, self.listing("settlements", book.settlements, query))
        raise kalshi_error(404, "not_found", "not found")

    def api_keys(self, key: Key) -> list[dict[str, Any]]:
        decoy = str(uuid.UUID(int=int(key.account.id, 16)))
        out = [{"api_key_id": decoy, "name": "trading bot", "scopes": ["read", "write"]}]
        if key.extra.get("listed", True):
            out.append({"api_key_id": key.api_key, "name": key.extra.get("name", ""), "scopes": self.scopes(key)})
        return out

    def public(self, kind: str, ticker: str) -> dict[str, Any]:
        if kind == "markets" and ticker in BY_TICKER:
            m = BY_TICKER[ticker]
            return {"market": {
                "ticker": m.ticker, "event_ticker": m.event_ticker, "market_type": "binary", "title": m.title,
                "yes_sub_title": "Yes", "no_sub_title": "No", "status": "finalized" if m.result else "active",
                "yes_bid_dollars": money(m.yes_bid), "yes_ask_dollars": money(m.yes_ask),
                "no_bid_dollars": money(1 - m.yes_ask) if m.yes_ask else money(Decimal(0)),
                "no_ask_dollars": money(1 - m.yes_bid) if m.yes_bid else money(Decimal(1)),
                "last_price_dollars": money(m.last_price), "result": m.result, "volume_fp": "1520.00"}}
        if kind == "events" and ticker in EVENTS:
            m = EVENTS[ticker]
            event: dict[str, Any] = {"event_ticker": m.event_ticker, "series_ticker": m.series_ticker,
                                     "title": m.title, "sub_title": "", "mutually_exclusive": False}
            if m.event_category:
                event["category"] = m.event_category
            return {"event": event, "markets": []}
        if kind == "series" and ticker in SERIES:
            m = SERIES[ticker]
            return {"series": {"ticker": m.series_ticker, "title": m.title, "category": m.series_category,
                               "frequency": "custom", "tags": []}}
        raise kalshi_error(404, "not_found", f"{kind[:-1] if kind != 'series' else kind} not found")

    # -- listings -------------------------------------------------------------------------------
    def _limit(self, query: dict[str, str]) -> int:
        try:
            limit = int(query.get("limit") or 100)
        except ValueError:
            raise kalshi_error(400, "invalid_parameters", "limit must be an integer") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise kalshi_error(400, "invalid_parameters", f"limit must be between 1 and {MAX_LIMIT}")
        return limit

    @staticmethod
    def _cursor(anchor: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(anchor).encode()).decode()

    @staticmethod
    def _anchor(cursor: str) -> dict[str, Any]:
        try:
            return dict(json.loads(base64.urlsafe_b64decode(cursor.encode())))
        except (ValueError, TypeError):
            raise kalshi_error(400, "invalid_parameters", "invalid cursor") from None

    def listing(self, key: str, items: list[Any], query: dict[str, str]) -> dict[str, Any]:
        """Newest first by (time, id); ``min_ts``/``max_ts`` in seconds, strictly after/before."""
        limit = self._limit(query)
        rows = sorted(items, key=lambda x: (x.ms, x.id), reverse=True)
        if query.get("min_ts"):
            rows = [x for x in rows if x.ms / 1000 > int(query["min_ts"])]
        if query.get("max_ts"):
            rows = [x for x in rows if x.ms / 1000 < int(query["max_ts"])]
        if query.get("ticker"):
            rows = [x for x in rows if x.ticker == query["ticker"]]
        if query.get("cursor"):
            anchor = self._anchor(query["cursor"])
            rows = [x for x in rows if (x.ms, x.id) < (anchor["ms"], anchor["id"])]
        page = rows[:limit]
        more = len(rows) > limit
        return {key: [x.row() for x in page],
                "cursor": self._cursor({"ms": page[-1].ms, "id": page[-1].id}) if more else ""}

    def positions(self, book: Book, query: dict[str, str]) -> dict[str, Any]:
        limit = self._limit(query)
        wanted = {f for f in (query.get("count_filter") or "").split(",") if f}
        held = [p for p in book.positions if not wanted or ("position" in wanted and p.position)
                or "total_traded" in wanted]
        start = int(self._anchor(query["cursor"])["o"]) if query.get("cursor") else 0
        page = held[start:start + limit]
        more = len(held) > start + limit
        events: dict[str, dict[str, Any]] = {}
        for p in page:
            event = BY_TICKER[p.ticker].event_ticker if p.ticker in BY_TICKER else p.ticker
            entry = events.setdefault(event, {"event_ticker": event, "total_cost_dollars": Decimal(0),
                                              "event_exposure_dollars": Decimal(0)})
            entry["total_cost_dollars"] += p.exposure
            entry["event_exposure_dollars"] += p.exposure
        return {"market_positions": [p.row() for p in page],
                "event_positions": [{k: (money(v) if isinstance(v, Decimal) else v) for k, v in e.items()}
                                    for e in events.values()],
                "cursor": self._cursor({"o": start + limit}) if more else ""}
