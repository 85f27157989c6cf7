"""Polymarket Data API (``data-api.polymarket.com``, v1 and v2) and Gamma (``gamma-api.polymarket.com``).

Both hosts are served under ``/polymarket/`` (their paths do not collide). Wire facts it keeps
(VENUES.md §13, the v2 reference and responses captured from the live API):

- No keys: data is public per proxy wallet. Wallets are made through the control API.
- v2 (``/v2/positions``, ``/v2/trades``, ``/v2/activity``): ``{"data": [...], "pagination": {"limit",
  "offset", "has_more", "next_cursor"}}``, snake_case rows, amounts as JSON *numbers*. Cursors are
  opaque, signed and typed per endpoint (a tampered or foreign cursor is a 400 naming ``cursor``);
  ``offset`` is a 400. Feeds are newest first by (block timestamp, sequence); ``start``/``end`` are
  inclusive epoch seconds, an omitted ``start`` floors the window to three years back (``1`` = all).
  ``/v2/trades`` serves only taker rows unless ``taker_only=false``, and only sizes >= 0.01.
  ``/v2/activity`` drops DEPOSIT/WITHDRAWAL unless ``exclude_deposits_withdrawals=false`` and TIP
  unless named. ``/v2/positions`` (status OPEN by default) hides holdings under 0.1 shares; a cursor
  needs the ``user`` anchor re-sent. Errors: ``{"error", "code", "retryable", "trace_id", "parameter"?}``.
- v1 (``/positions``, ``/trades``, ``/activity``): bare camelCase arrays with ``limit``/``offset``.
- Gamma ``/markets``: camelCase markets; ``condition_ids`` repeated or comma-separated; closed markets
  only with ``closed=true``; 20 rows unless ``limit`` says otherwise; tags with ``include_tag=true``.
- Gamma by slug (docs.polymarket.com/developers/gamma-markets-api/get-markets, "Fetch by Slug": the slug is the
  path segment after ``/event/`` of a polymarket.com URL; ``GET /events?slug=`` and ``GET /markets?slug=``):
  a bare JSON array, empty for an unknown slug; an event carries its ``markets`` (the same market objects as
  ``/markets``). With a slug, closed rows come back unless ``closed`` is given [unverified: the page does not
  say how ``closed`` combines with ``slug``]; the event's ``closed`` is true when all its markets are.

Control API (``/_sim/polymarket/...``): ``POST wallets`` ``{"positions", "trades", "activity"}`` ->
``{"address"}``; ``POST wallets/<addr>/trades|activity|positions`` ``{"count": n}`` or explicit rows;
``GET wallets/<addr>/ledger`` (ground truth); ``POST cursors/rotate`` (every outstanding cursor expires).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from appliance.sim.core import Request, Response, VenueError, VenueSim, dec, fmt

THREE_YEARS = 3 * 365 * 24 * 3600
V2_MAX_LIMIT = 1000
TRADE_FLOOR = Decimal("0.01")
POSITION_FLOOR = Decimal("0.1")
V1_SIZE_THRESHOLD = Decimal(1)
ACTIVITY_TYPES = ("TRADE", "SPLIT", "MERGE", "REDEEM", "CONVERSION", "MIGRATION", "REWARD", "YIELD",
                  "MAKER_REBATE", "TAKER_REBATE", "REFERRAL_REWARD", "DEPOSIT", "WITHDRAWAL", "TIP")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def _hex(seed: str, length: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


def _token(seed: str) -> str:
    return str(int(hashlib.sha256(seed.encode()).hexdigest(), 16))[:77]


@dataclass(frozen=True)
class Market:
    question: str
    slug: str
    event_slug: str
    event_title: str
    event_id: str
    category: str  # Gamma's legacy field; often empty
    tags: tuple[tuple[str, str], ...]  # (label, slug)
    outcomes: tuple[str, str]
    yes_price: Decimal
    closed: bool = False

    @property
    def condition_id(self) -> str:
        return "0x" + _hex("condition:" + self.slug, 64)

    @property
    def gamma_id(self) -> str:
        return str(500000 + int(_hex("id:" + self.slug, 6), 16) % 400000)

    def token(self, index: int) -> str:
        return _token(f"token:{self.slug}:{index}")

    def price(self, index: int) -> Decimal:
        return self.yes_price if index == 0 else 1 - self.yes_price


MARKETS = (
    Market("Will the Fed cut rates at the December 2026 meeting?", "fed-cut-december-2026",
           "fed-decision-december-2026", "Fed decision in December", "1140001", "",
           (("Economy", "economy"), ("Fed Rates", "fed-rates")), ("Yes", "No"), Decimal("0.6125")),
    Market("Will the highest temperature in Austin be between 90-91°F on October 8?",
           "highest-temperature-in-austin-on-october-8-2026-90-91f", "highest-temperature-in-austin-on-october-8-2026",
           "Highest temperature in Austin on October 8?", "1141606", "",
           (("All", "all"), ("Weather", "weather")), ("Yes", "No"), Decimal("0.515"), closed=True),
    Market("Will Shakhtar Donetsk win the 2026-27 UEFA Champions League?",
           "will-shakhtar-donetsk-win-the-2026-27-uefa-champions-league-championship-20260701202025578",
           "uefa-champions-league-winner-2026-27", "UEFA Champions League Winner", "1139000", "Sports",
           (("Soccer", "soccer"),), ("Yes", "No"), Decimal("0.002")),
    Market("Acme Corp Q4 2026 earnings beat?", "acme-q4-2026-earnings-beat", "acme-q4-2026-earnings",
           "Acme Q4 2026 earnings", "1142100", "", (("Business", "business"), ("Earnings", "earnings")),
           ("Yes", "No"), Decimal("0.4380")),
    Market("Who will win the 2028 US presidential election?", "presidential-election-winner-2028-vance",
           "presidential-election-winner-2028", "Presidential Election Winner 2028", "1100000", "Politics",
           (("Politics", "politics"), ("Elections", "elections")), ("Vance", "Field"), Decimal("0.2850")),
)
# Markets Gamma lists but wallets are never given (so the seeded wallets stay as they were): the second market
# of an event, so that an event URL can name several markets.
GAMMA_ONLY = (
    Market("Will Gavin Newsom win the 2028 US presidential election?", "presidential-election-winner-2028-newsom",
           "presidential-election-winner-2028", "Presidential Election Winner 2028", "1100000", "Politics",
           (("Politics", "politics"), ("Elections", "elections")), ("Yes", "No"), Decimal("0.1520")),
)
GAMMA_MARKETS = MARKETS + GAMMA_ONLY
MARKETS_BY_CONDITION = {m.condition_id: m for m in MARKETS}


@dataclass
class Row:
    """One trade or activity entry. ``seq`` orders rows inside one block timestamp."""

    seq: int
    ts: int
    tx: str
    type: str  # TRADE, SPLIT, ...
    market: Market | None
    outcome_index: int
    side: str  # BUY/SELL for trades, IN/OUT for tips, "" otherwise
    size: Decimal
    price: Decimal
    usdc: Decimal
    taker: bool = True


@dataclass
class Position:
    market: Market
    outcome_index: int
    size: Decimal
    avg_price: Decimal
    last_event_at: int

    @property
    def current_value(self) -> Decimal:
        return self.size * self.market.price(self.outcome_index)


@dataclass
class Wallet:
    address: str
    positions: list[Position] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)  # trades and activity, one list (activity mirrors trades)

    def ledger(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "positions": [{"condition_id": p.market.condition_id, "token_id": p.market.token(p.outcome_index),
                           "outcome": p.market.outcomes[p.outcome_index], "size": fmt(p.size),
                           "avg_price": fmt(p.avg_price), "current_value": fmt(p.current_value),
                           "title": p.market.question} for p in self.positions],
            "trades": [_ledger_row(r) for r in self.rows if r.type == "TRADE"],
            "activity": [_ledger_row(r) for r in self.rows if r.type != "TRADE"],
        }


def _ledger_row(r: Row) -> dict[str, Any]:
    return {"transaction_hash": r.tx, "type": r.type, "timestamp": r.ts, "side": r.side, "size": fmt(r.size),
            "price": fmt(r.price), "usdc_size": fmt(r.usdc), "taker": r.taker,
            "condition_id": r.market.condition_id if r.market else "",
            "token_id": r.market.token(r.outcome_index) if r.market else "", "slug": r.market.slug if r.market else "",
            "outcome": r.market.outcomes[r.outcome_index] if r.market and r.type == "TRADE" else ""}


def encode(value: Any) -> str:
    """JSON with Decimals written as JSON numbers, digit for digit (Polymarket sends numbers)."""
    if isinstance(value, Decimal):
        text = fmt(value)
        return text if "." in text else text + ".0"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode(v) for v in value) + "]"
    return json.dumps(value)


def v2_error(status: int, code: str, message: str, parameter: str | None = None,
             headers: dict[str, str] | None = None) -> VenueError:
    body: dict[str, Any] = {"error": message, "code": code, "retryable": status in (429, 503),
                            "trace_id": secrets.token_hex(16)}
    if parameter:
        body["parameter"] = parameter
    return VenueError(status, body, headers)


class PolymarketSim(VenueSim):
    id = "polymarket"
    host = "data-api.polymarket.com"
    page_limits = {"trades": V2_MAX_LIMIT, "activity": V2_MAX_LIMIT}

    def __init__(self, state: Any) -> None:
        super().__init__(state)
        self.wallets: dict[str, Wallet] = {}
        self.cursor_secret = secrets.token_bytes(16)
        self._seq = itertools.count(937_000_000_000_000_000)

    # -- control API ----------------------------------------------------------------------------
    def control(self, segs: list[str], method: str, body: dict[str, Any]) -> Response | None:
        if segs == ["wallets"] and method == "POST":
            wallet = self.create_wallet(body.get("address"), int(body.get("positions", 4)),
                                        int(body.get("trades", 6)), int(body.get("activity", 6)))
            return Response(200, {"address": wallet.address})
        if segs == ["cursors", "rotate"] and method == "POST":
            self.cursor_secret = secrets.token_bytes(16)
            return Response(200, {"rotated": True})
        if len(segs) >= 3 and segs[0] == "wallets":
            found = self.wallets.get(segs[1].lower())
            if found is None:
                return Response(404, {"error": "unknown wallet"})
            return self._wallet_control(found, segs[2:], method, body)
        return None

    def _wallet_control(self, wallet: Wallet, rest: list[str], method: str, body: dict[str, Any]) -> Response | None:
        if rest == ["ledger"]:
            return Response(200, wallet.ledger())
        if rest == ["trades"] and method == "POST":
            made = self.add_trades_to(wallet, int(body.get("count", 0)), body.get("trades"), body.get("timestamp"))
            return Response(200, {"added": len(made), "transaction_hashes": [r.tx for r in made]})
        if rest == ["activity"] and method == "POST":
            made = self.add_activity(wallet, int(body.get("count", 0)), body.get("types"), body.get("timestamp"))
            return Response(200, {"added": len(made), "transaction_hashes": [r.tx for r in made]})
        if rest == ["positions"] and method == "POST":
            return Response(200, {"added": len(self.add_positions(wallet, int(body.get("count", 0)),
                                                                  body.get("positions")))})
        return None

    # -- seeding --------------------------------------------------------------------------------
    def create_wallet(self, address: str | None, positions: int, trades: int, activity: int) -> Wallet:
        address = (address or "0x" + secrets.token_hex(20)).lower()
        if not _ADDRESS.fullmatch(address):
            raise ValueError("address must be 0x + 40 hex")
        wallet = self.wallets.setdefault(address, Wallet(address))
        self.add_positions(wallet, positions)
        self.add_trades_to(wallet, trades, None, None, start=int(time.time()) - 90 * 24 * 3600)
        self.add_activity(wallet, activity, None, None, start=int(time.time()) - 80 * 24 * 3600)
        return wallet

    def _times(self, count: int, start: int | None, fixed: Any) -> list[int]:
        if fixed is not None:
            return [int(fixed)] * count
        end = int(time.time()) - 60
        begin = start if start is not None else end - 3600
        step = max(1, (end - begin) // max(count, 1))
        # Every third row shares its block second with the previous one (one block, several fills).
        return [begin + (i - (1 if i % 3 == 2 else 0)) * step for i in range(count)]

    def add_trades_to(self, wallet: Wallet, count: int, explicit: list[dict[str, Any]] | None, fixed_ts: Any,
                      start: int | None = None) -> list[Row]:
        rng = self.state.rng
        specs = explicit or [{} for _ in range(count)]
        made = []
        for spec, ts in zip(specs, self._times(len(specs), start, fixed_ts), strict=True):
            market = MARKETS_BY_CONDITION.get(spec.get("condition_id", "")) or rng.choice(MARKETS)
            index = int(spec.get("outcome_index", rng.choice((0, 1))))
            size = dec(spec.get("size", rng.choice(["22.84", "5", "7.44", "1000.123456", "0.05", "313726.28"])))
            price = dec(spec.get("price", rng.choice(["0.52", "0.002", "0.9", "0.6699", "0.5", "0.999"])))
            row = Row(seq=next(self._seq), ts=int(spec.get("timestamp", ts)), tx="0x" + secrets.token_hex(32),
                      type="TRADE", market=market, outcome_index=index,
                      side=spec.get("side", rng.choice(("BUY", "SELL"))), size=size, price=price, usdc=size * price,
                      taker=bool(spec.get("taker", rng.random() < 0.65)))
            wallet.rows.append(row)
            made.append(row)
        return made

    def add_activity(self, wallet: Wallet, count: int, types: list[str] | None, fixed_ts: Any,
                     start: int | None = None) -> list[Row]:
        rng = self.state.rng
        cycle = itertools.cycle(types or ["REDEEM", "DEPOSIT", "SPLIT", "WITHDRAWAL", "REWARD", "MERGE", "TIP",
                                          "CONVERSION", "MAKER_REBATE"])
        made = []
        for ts in self._times(count, start, fixed_ts):
            kind = next(cycle)
            market = None if kind in ("DEPOSIT", "WITHDRAWAL", "TIP", "REWARD", "MAKER_REBATE") else rng.choice(MARKETS)
            usdc = dec(rng.choice(["100", "12.16184", "0.000001", "2500.5", "31.130816"]))
            side = rng.choice(("IN", "OUT")) if kind == "TIP" else ""
            size = usdc if kind in ("SPLIT", "MERGE", "REDEEM", "CONVERSION") else Decimal(0)
            row = Row(seq=next(self._seq), ts=ts, tx="0x" + secrets.token_hex(32), type=kind, market=market,
                      outcome_index=0, side=side, size=size, price=Decimal(0), usdc=usdc)
            wallet.rows.append(row)
            made.append(row)
        return made

    def add_positions(self, wallet: Wallet, count: int, explicit: list[dict[str, Any]] | None = None
                      ) -> list[Position]:
        rng = self.state.rng
        made = []
        for spec in explicit or [{} for _ in range(count)]:
            market = MARKETS_BY_CONDITION.get(spec.get("condition_id", "")) or MARKETS[len(wallet.positions) %
                                                                                      len(MARKETS)]
            position = Position(market, int(spec.get("outcome_index", rng.choice((0, 1)))),
                                dec(spec.get("size", rng.choice(["28.09", "35.44", "1520.000001", "0.5", "77"]))),
                                dec(spec.get("avg_price", rng.choice(["0.6699", "0.55", "0.0123", "0.9"]))),
                                int(time.time()) - rng.randint(3600, 30 * 86400))
            wallet.positions.append(position)
            made.append(position)
        return made

    # -- errors ---------------------------------------------------------------------------------
    def rate_limit_response(self, retry_after: int) -> Response:
        return v2_error(429, "rate_limited", "Too Many Requests", headers={"Retry-After": str(retry_after)}).response

    def outage_response(self) -> Response:
        return v2_error(503, "dependency_unavailable", "upstream unavailable").response

    # -- dispatch -------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.method != "GET":
            raise v2_error(405, "method_not_allowed", "method not allowed")
        query = {k: v for k, v in parse_qs(req.query, keep_blank_values=True).items()}
        routes = {"/v2/positions": self.v2_positions, "/v2/trades": self.v2_trades, "/v2/activity": self.v2_activity,
                  "/positions": self.v1_positions, "/trades": self.v1_trades, "/activity": self.v1_activity,
                  "/markets": self.gamma_markets, "/events": self.gamma_events}
        handler = routes.get(req.path.rstrip("/") or "/")
        if handler is None:
            raise v2_error(404, "not_found", f"no route {req.path}")
        return Response(200, encode(handler(query)))

    # -- v2 -------------------------------------------------------------------------------------
    def _one(self, query: dict[str, list[str]], name: str, default: str | None = None) -> str | None:
        values = query.get(name)
        return values[-1] if values else default

    def _user(self, query: dict[str, list[str]], required: bool = True) -> Wallet | None:
        user = self._one(query, "user")
        if user is None:
            if required:
                raise v2_error(400, "invalid_request", "required query param 'user' not provided", "user")
            return None
        if not _ADDRESS.fullmatch(user):
            raise v2_error(400, "invalid_request", f"invalid address '{user[:50]}'", "user")
        return self.wallets.get(user.lower()) or Wallet(user.lower())

    def _int(self, query: dict[str, list[str]], name: str, default: int) -> int:
        raw = self._one(query, name)
        if raw in (None, ""):
            return default
        try:
            return int(raw)
        except ValueError:
            raise v2_error(400, "invalid_request", f"'{name}' must be an integer", name) from None

    def _limit(self, query: dict[str, list[str]]) -> int:
        if "offset" in query:
            raise v2_error(400, "invalid_request", "offset is not supported on v2; use cursor", "offset")
        limit = self._int(query, "limit", 100)
        if limit < 0 or limit > V2_MAX_LIMIT:
            raise v2_error(400, "invalid_request", f"limit must be between 0 and {V2_MAX_LIMIT}", "limit")
        return limit

    def _mint(self, kind: str, params: dict[str, Any]) -> str:
        data = json.dumps({"type": kind, "params": params}, separators=(",", ":"), sort_keys=True)
        sig = hmac.new(self.cursor_secret, data.encode(), hashlib.sha256).hexdigest()[:32]
        text = json.dumps({"data": json.loads(data), "sig": sig}, separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def _open(self, kind: str, cursor: str) -> dict[str, Any]:
        try:
            outer = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            data = json.dumps(outer["data"], separators=(",", ":"), sort_keys=True)
            expected = hmac.new(self.cursor_secret, data.encode(), hashlib.sha256).hexdigest()[:32]
            if not hmac.compare_digest(expected, str(outer["sig"])) or outer["data"]["type"] != kind:
                raise ValueError
            return dict(outer["data"]["params"])
        except (ValueError, KeyError, TypeError):
            raise v2_error(400, "invalid_request", "invalid or expired cursor", "cursor") from None

    def _page(self, kind: str, rows: list[Row], query: dict[str, list[str]],
              render: Any) -> dict[str, Any]:
        """A keyset page of ``rows`` (already filtered, newest first by (ts, seq))."""
        cursor = self._one(query, "cursor")
        if cursor:
            anchor = self._open(kind, cursor)
            limit = int(anchor["l"])
            rows = [r for r in rows if (r.ts, r.seq) < (anchor["ts"], anchor["sq"])]
        else:
            limit = self._limit(query)
        page, more = rows[:limit], len(rows) > limit
        next_cursor = self._mint(kind, {"l": limit, "ts": page[-1].ts, "sq": page[-1].seq}) if more else None
        return {"data": [render(r) for r in page],
                "pagination": {"limit": limit, "offset": 0, "has_more": more, "next_cursor": next_cursor}}

    def _window(self, query: dict[str, list[str]], rows: list[Row]) -> list[Row]:
        now = int(time.time())
        start = self._int(query, "start", 0) or now - THREE_YEARS
        end = self._int(query, "end", 0) or now + 86400
        window = [r for r in rows if start <= r.ts <= end]
        return sorted(window, key=lambda r: (r.ts, r.seq), reverse=True)

    def v2_trades(self, query: dict[str, list[str]]) -> Any:
        wallet = self._user(query)
        assert wallet is not None
        taker_only = (self._one(query, "taker_only", "true") or "true").lower() != "false"
        floor = dec(self._one(query, "filter_amount", "0") or "0") or TRADE_FLOOR
        side = self._one(query, "side")
        rows = [r for r in wallet.rows if r.type == "TRADE" and (r.taker or not taker_only) and r.size >= floor
                and (side is None or r.side == side.upper())]
        return self._page("trades", self._window(query, rows), query, lambda r: self.trade_v2(wallet, r))

    def v2_activity(self, query: dict[str, list[str]]) -> Any:
        wallet = self._user(query)
        assert wallet is not None
        named = [t for t in (self._one(query, "type", "") or "").split(",") if t]
        unknown = [t for t in named if t not in ACTIVITY_TYPES]
        if unknown:
            raise v2_error(400, "invalid_request", f"unknown activity type '{unknown[0][:30]}'", "type")
        types = set(named) if named else set(ACTIVITY_TYPES) - {"TIP"}
        if (self._one(query, "exclude_deposits_withdrawals", "true") or "true").lower() != "false":
            types -= {"DEPOSIT", "WITHDRAWAL"}
        rows = [r for r in wallet.rows if r.type in types]
        return self._page("activity", self._window(query, rows), query, lambda r: self.activity_v2(wallet, r))

    def v2_positions(self, query: dict[str, list[str]]) -> Any:
        wallet = self._user(query)
        assert wallet is not None
        status = (self._one(query, "status", "OPEN") or "OPEN").upper()
        floor = dec(self._one(query, "filter_amount", "0") or "0") or POSITION_FLOOR
        held = [p for p in wallet.positions if p.size >= floor]
        if status == "REDEEMABLE":
            held = [p for p in held if p.market.closed]
        elif status == "CLOSED":
            held = []
        elif status != "OPEN":
            raise v2_error(400, "invalid_request", "status must be OPEN, REDEEMABLE or CLOSED", "status")
        held.sort(key=lambda p: (p.current_value, p.market.token(p.outcome_index)), reverse=True)
        cursor = self._one(query, "cursor")
        if cursor:
            anchor = self._open("positions", cursor)
            start, limit = int(anchor["o"]), int(anchor["l"])
        else:
            start, limit = 0, self._limit(query)
        page, more = held[start:start + limit], len(held) > start + limit
        next_cursor = self._mint("positions", {"l": limit, "o": start + limit, "st": status}) if more else None
        return {"data": [self.position_v2(wallet, p) for p in page],
                "pagination": {"limit": limit, "offset": 0, "has_more": more, "next_cursor": next_cursor}}

    def trade_v2(self, wallet: Wallet, r: Row) -> dict[str, Any]:
        m = r.market
        assert m is not None
        return {"proxy_wallet": wallet.address, "side": r.side, "token_id": m.token(r.outcome_index),
                "condition_id": m.condition_id, "size": r.size, "price": r.price, "timestamp": r.ts,
                "title": m.question, "slug": m.slug, "icon": "", "event_slug": m.event_slug,
                "outcome": m.outcomes[r.outcome_index], "outcome_index": r.outcome_index, "name": "",
                "pseudonym": "Scary-Barrel", "bio": "", "profile_image": "", "profile_image_optimized": "",
                "transaction_hash": r.tx}

    def activity_v2(self, wallet: Wallet, r: Row) -> dict[str, Any]:
        m = r.market
        return {"proxy_wallet": wallet.address, "timestamp": r.ts, "condition_id": m.condition_id if m else "",
                "type": r.type, "size": r.size, "usdc_size": r.usdc, "transaction_hash": r.tx, "price": r.price,
                "token_id": m.token(r.outcome_index) if m and r.type == "TRADE" else "", "side": r.side,
                "outcome_index": r.outcome_index if m else 999, "title": m.question if m else "",
                "slug": m.slug if m else "", "icon": "", "event_slug": m.event_slug if m else "",
                "outcome": m.outcomes[r.outcome_index] if m and r.type == "TRADE" else "", "name": "",
                "pseudonym": "Scary-Barrel", "bio": "", "profile_image": "", "profile_image_optimized": ""}

    def position_v2(self, wallet: Wallet, p: Position) -> dict[str, Any]:
        m = p.market
        cost = p.size * p.avg_price
        return {"proxy_wallet": wallet.address, "token_id": m.token(p.outcome_index), "condition_id": m.condition_id,
                "current_size": p.size, "avg_price": p.avg_price, "entry_cost_usdc": cost,
                "entry_fees_usdc": Decimal(0),
                "total_cost_usdc": cost, "current_price": m.price(p.outcome_index), "current_value": p.current_value,
                "total_size": p.size, "realized_pnl": Decimal(0), "unrealized_pnl": p.current_value - cost,
                "status": "OPEN", "redeemable": m.closed, "mergeable": False, "negative_risk": False,
                "archived": False, "title": m.question, "slug": m.slug, "icon": "", "event_id": m.event_id,
                "event_slug": m.event_slug, "outcome": m.outcomes[p.outcome_index], "outcome_index": p.outcome_index,
                "opposite_outcome": m.outcomes[1 - p.outcome_index], "opposite_token_id": m.token(1 - p.outcome_index),
                "end_date": "2026-12-31", "last_event_at": p.last_event_at, "first_entry_at": p.last_event_at,
                "name": "", "profile_image": "", "verified": False}

    # -- v1 -------------------------------------------------------------------------------------
    def _v1_slice(self, query: dict[str, list[str]], items: list[Any], max_limit: int, max_offset: int) -> list[Any]:
        limit = min(self._int(query, "limit", 100), max_limit)
        offset = self._int(query, "offset", 0)
        if offset > max_offset:
            raise VenueError(400, {"error": f"offset must be <= {max_offset}"})
        return items[offset:offset + limit]

    def v1_positions(self, query: dict[str, list[str]]) -> Any:
        wallet = self._user(query)
        assert wallet is not None
        threshold = dec(self._one(query, "sizeThreshold", "1") or "1")
        held = sorted((p for p in wallet.positions if p.size >= threshold), key=lambda p: p.size, reverse=True)
        return [camel(self.position_v2(wallet, p), {"current_size": "size", "token_id": "asset",
                                                     "current_price": "curPrice", "opposite_token_id": "oppositeAsset"})
                for p in self._v1_slice(query, held, 500, 10000)]

    def v1_trades(self, query: dict[str, list[str]]) -> Any:
        wallet = self._user(query)
        assert wallet is not None
        taker_only = (self._one(query, "takerOnly", "true") or "true").lower() != "false"
        rows = sorted((r for r in wallet.rows if r.type == "TRADE" and (r.taker or not taker_only)),
                      key=lambda r: (r.ts, r.seq), reverse=True)
        return [camel(self.trade_v2(wallet, r), {"token_id": "asset"})
                for r in self._v1_slice(query, rows, 10000, 10000)]

    def v1_activity(self, query: dict[str, list[str]]) -> Any:
        wallet = self._user(query)
        assert wallet is not None
        rows = sorted((r for r in wallet.rows if r.type not in ("DEPOSIT", "WITHDRAWAL", "TIP")),
                      key=lambda r: (r.ts, r.seq), reverse=True)
        return [camel(self.activity_v2(wallet, r), {"token_id": "asset"})
                for r in self._v1_slice(query, rows, 500, 5000)]

    # -- Gamma ----------------------------------------------------------------------------------
    def gamma_markets(self, query: dict[str, list[str]]) -> Any:
        wanted = {c.lower() for value in query.get("condition_ids", []) for c in value.split(",") if c}
        slugs = set(query.get("slug", []))
        closed = self._closed_filter(query, bool(slugs))
        limit = self._int(query, "limit", 20)
        offset = self._int(query, "offset", 0)
        include_tag = (self._one(query, "include_tag", "false") or "false").lower() == "true"
        found = [m for m in GAMMA_MARKETS if (closed is None or m.closed == closed)
                 and (not wanted or m.condition_id in wanted) and (not slugs or m.slug in slugs)]
        return [self.gamma_market(m, include_tag) for m in found[offset:offset + limit]]

    def _closed_filter(self, query: dict[str, list[str]], by_slug: bool) -> bool | None:
        given = self._one(query, "closed")
        if given is None:
            return None if by_slug else False
        return given.lower() == "true"

    def gamma_events(self, query: dict[str, list[str]]) -> Any:
        slugs = set(query.get("slug", []))
        closed = self._closed_filter(query, bool(slugs))
        limit = self._int(query, "limit", 20)
        offset = self._int(query, "offset", 0)
        events: dict[str, list[Market]] = {}
        for m in GAMMA_MARKETS:
            events.setdefault(m.event_slug, []).append(m)
        out = []
        for slug, markets in events.items():
            ended = all(m.closed for m in markets)
            if (slugs and slug not in slugs) or (closed is not None and ended != closed):
                continue
            first = markets[0]
            out.append({"id": first.event_id, "ticker": slug, "slug": slug, "title": first.event_title,
                        "active": True, "closed": ended, "endDate": "2026-12-31T12:00:00Z",
                        "markets": [self.gamma_market(m, False) for m in markets]})
        return out[offset:offset + limit]

    def gamma_market(self, m: Market, include_tag: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": m.gamma_id, "question": m.question, "conditionId": m.condition_id, "slug": m.slug,
            "endDate": "2026-12-31T12:00:00Z", "category": m.category, "outcomes": json.dumps(list(m.outcomes)),
            "outcomePrices": json.dumps([fmt(m.price(0)), fmt(m.price(1))]),
            "clobTokenIds": json.dumps([m.token(0), m.token(1)]), "active": True, "closed": m.closed,
            "volume": "1250000.5", "events": [{"id": m.event_id, "slug": m.event_slug, "title": m.event_title}],
        }
        if include_tag:
            out["tags"] = [{"id": str(100 + i), "label": label, "slug": slug} for i, (label, slug) in enumerate(m.tags)]
        return out


def camel(row: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """A v2 row in v1's camelCase spelling."""
    out = {}
    for key, value in row.items():
        name = renames.get(key) or re.sub(r"_([a-z])", lambda mo: mo.group(1).upper(), key)
        out[name] = value
    return out
