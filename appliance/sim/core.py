"""Simulator state shared by every venue: accounts, keys, activity, faults and the request log.

Each venue module (``appliance/sim/venues/<id>.py``) subclasses :class:`VenueSim`: it mints keys in
the venue's format, verifies the venue's request signature exactly as the venue does, and renders
the account in the venue's wire format (paths, field names, decimal strings, pagination, error
bodies). Everything here is in memory and guarded by one lock; the simulator is a test tool.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

PERMISSIONS = ("read", "trade", "transfer", "withdraw")
TRANSFER_STATUSES = ("ok", "pending", "failed", "cancelled", "rejected")


def now_ms() -> int:
    return int(time.time() * 1000)


def dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def fmt(value: Decimal, places: int | None = None) -> str:
    """Decimal string the way venues print them (no exponent)."""
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places))
    text = format(value, "f")
    return text


@dataclass
class Trade:
    id: str
    order_id: str
    base: str
    quote: str
    side: str  # buy | sell
    amount: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    timestamp: int  # ms
    taker: bool = True

    @property
    def cost(self) -> Decimal:
        return self.amount * self.price


@dataclass
class Transfer:
    id: str
    asset: str
    amount: Decimal
    timestamp: int  # ms
    txid: str
    address: str
    network: str
    fee: Decimal = Decimal(0)
    # ok | pending | failed | cancelled | rejected: each venue renders it with its own status vocabulary.
    # Only an "ok" transfer moved funds (the balances follow it); a pending one may later become any other.
    status: str = "ok"
    internal: bool = False  # between two users of the venue (off-chain): no txid, counterparty by uid/email


@dataclass
class Account:
    id: str
    balances: dict[str, Decimal] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    deposits: list[Transfer] = field(default_factory=list)
    withdrawals: list[Transfer] = field(default_factory=list)

    def ledger(self) -> dict[str, Any]:
        """Ground truth for tests: everything the venue knows about the account."""
        return {
            "account_id": self.id,
            "balances": {k: fmt(v) for k, v in sorted(self.balances.items())},
            "trades": [_plain(t) for t in self.trades],
            "deposits": [_plain(t) for t in self.deposits],
            "withdrawals": [_plain(t) for t in self.withdrawals],
        }


def _plain(obj: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = fmt(value) if isinstance(value, Decimal) else value
    return out


@dataclass
class Key:
    venue: str
    api_key: str
    api_secret: str
    passphrase: str | None
    permissions: set[str]
    account: Account
    revoked: bool = False
    created_at: int = field(default_factory=now_ms)
    last_nonce: int = 0
    seen_nonces: set[str] = field(default_factory=set)
    # Venue-specific extras (public keys for asymmetric signatures, portfolio ids...).
    extra: dict[str, Any] = field(default_factory=dict)

    def credentials(self) -> dict[str, Any]:
        out: dict[str, Any] = {"api_key": self.api_key, "api_secret": self.api_secret}
        if self.passphrase is not None:
            out["passphrase"] = self.passphrase
        return out


@dataclass
class Faults:
    """Injected misbehaviour for one venue. Counters are consumed request by request."""

    latency_ms: int = 0
    error_rate: float = 0.0  # fraction of requests answered 500
    burst_429: int = 0  # next N requests answered 429
    retry_after: int = 2  # seconds advertised with a 429
    fail_5xx: int = 0  # next N requests answered 503
    timeouts: int = 0  # next N requests stall for timeout_seconds, then 504
    timeout_seconds: float = 15.0
    malformed: int = 0  # next N requests answered 200 with a body that is not JSON
    outage: bool = False  # every request answered 503 until cleared
    clock_offset_seconds: float = 0.0  # the venue's clock runs this far ahead (negative: behind) of ours

    def update(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name not in {f.name for f in dataclasses.fields(self)}:
                raise ValueError(f"unknown fault {name!r}")
            setattr(self, name, type(getattr(self, name))(value))


@dataclass
class Request:
    """What reached the simulator, after the venue prefix was stripped."""

    venue: str
    method: str
    path: str  # venue path, e.g. /api/v3/account
    query: str  # raw query string, exactly as sent (signatures cover it)
    headers: dict[str, str]
    body: bytes

    @property
    def path_qs(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")

    def header(self, name: str, default: str = "") -> str:
        lname = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lname:
                return value
        return default

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Response:
    status: int
    body: Any  # dict/list -> JSON; str/bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, separators=(",", ":")).encode()


class VenueError(Exception):
    """Raised inside a venue handler to answer with the venue's own error body."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}")
        self.response = Response(status, body, headers or {})


ASSETS = ("BTC", "ETH", "SOL", "USDT", "USD", "USDC", "XRP", "ADA")


class VenueSim:
    """Base class of one venue. Subclasses set ``id`` and ``host`` and implement the hooks."""

    id: str = ""
    host: str = ""  # production host clients sign against (Coinbase and Bitstamp sign it)
    uses_passphrase = False
    # (base, quote) markets the venue lists; the venue module renders symbols in its own way.
    markets: tuple[tuple[str, str], ...] = (("BTC", "USDT"), ("ETH", "USDT"), ("SOL", "USDT"), ("ETH", "BTC"))

    # Largest page the venue serves per stream; the contract tests seed more than this.
    page_limits: dict[str, int] = {}
    # Pairs listed for quoting only (fiat and stablecoin legs pricing needs); no activity is seeded on them.
    quote_markets: tuple[tuple[str, str], ...] = ()

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.faults = Faults()
        self.keys: dict[str, Key] = {}
        self._ids = itertools.count(1_000_000)

    def server_time_ms(self) -> int:
        """The venue's clock: ours plus the injected offset (time endpoints and the Date header)."""
        return now_ms() + int(self.faults.clock_offset_seconds * 1000)

    # -- to implement -----------------------------------------------------------------------
    def mint_credentials(self) -> tuple[str, str, str | None, dict[str, Any]]:
        """Return (api_key, api_secret, passphrase or None, extra) in the venue's formats."""
        raise NotImplementedError

    def handle(self, req: Request) -> Response:
        """Authenticate, authorise and answer one request in the venue's wire format."""
        raise NotImplementedError

    def control(self, segs: list[str], method: str, body: dict[str, Any]) -> Response | None:
        """Venue-specific control paths: ``segs`` follow ``/_sim/<venue>/``. None: not one of ours, so the
        generic control API answers (venues without keys, such as wallets, add their own paths here)."""
        return None

    def rate_limit_response(self, retry_after: int) -> Response:
        """The venue's own 429 (body and headers)."""
        return Response(429, {"error": "rate limited"}, {"Retry-After": str(retry_after)})

    def outage_response(self) -> Response:
        return Response(503, "Service Unavailable", content_type="text/plain")

    # -- shared helpers ---------------------------------------------------------------------
    def next_id(self) -> str:
        return str(next(self._ids))

    def create_key(self, permissions: Iterable[str], *, history: dict[str, int] | None = None) -> Key:
        perms = set(permissions)
        unknown = perms - set(PERMISSIONS)
        if unknown:
            raise ValueError(f"unknown permissions {sorted(unknown)}")
        api_key, secret, passphrase, extra = self.mint_credentials()
        account = Account(id=secrets.token_hex(8))
        key = Key(self.id, api_key, secret, passphrase, perms, account, extra=extra)
        self.keys[api_key] = key
        self.seed(account, history or {"trades": 3, "deposits": 2, "withdrawals": 1})
        return key

    def seed(self, account: Account, history: dict[str, int]) -> None:
        account.balances.update({"BTC": Decimal("0.5"), "ETH": Decimal("4.25"), "USDT": Decimal("1520.75")})
        start = now_ms() - 90 * 24 * 3600 * 1000
        self.add_deposits(account, history.get("deposits", 0), start_ms=start)
        self.add_trades(account, history.get("trades", 0), start_ms=start + 3600_000)
        self.add_withdrawals(account, history.get("withdrawals", 0), start_ms=start + 7200_000)

    def _spread(self, count: int, start_ms: int | None) -> list[int]:
        end = now_ms() - 60_000
        begin = start_ms if start_ms is not None else end - 3600_000
        begin = min(begin, end - count)
        step = max(1, (end - begin) // max(count, 1))
        return [begin + i * step for i in range(count)]

    def add_trades(self, account: Account, count: int, *, start_ms: int | None = None,
                   explicit: list[dict[str, Any]] | None = None) -> list[Trade]:
        rng = self.state.rng
        made: list[Trade] = []
        specs = explicit or [{} for _ in range(count)]
        times = self._spread(len(specs), start_ms)
        for spec, ts in zip(specs, times, strict=True):
            base, quote = spec.get("base"), spec.get("quote")
            if not base or not quote:
                base, quote = rng.choice(self.markets)
            price = dec(spec.get("price", rng.choice(["43125.5", "2250.12", "98.765", "0.0521"])))
            amount = dec(spec.get("amount", rng.choice(["0.00000001", "0.015", "1.2345", "12345678.12345678"])))
            side = spec.get("side", rng.choice(["buy", "sell"]))
            trade = Trade(
                id=self.next_id(), order_id=self.next_id(), base=base, quote=quote, side=side, amount=amount,
                price=price, fee=dec(spec.get("fee", "0.001")), fee_asset=spec.get("fee_asset", quote),
                timestamp=int(spec.get("timestamp", ts)))
            account.trades.append(trade)
            signed = 1 if side == "buy" else -1
            account.balances[base] = account.balances.get(base, Decimal(0)) + signed * amount
            account.balances[quote] = account.balances.get(quote, Decimal(0)) - signed * trade.cost - trade.fee
            made.append(trade)
        account.trades.sort(key=lambda t: (t.timestamp, int(t.id)))
        return made

    def _transfers(self, count: int, start_ms: int | None, explicit: list[dict[str, Any]] | None) -> list[Transfer]:
        rng = self.state.rng
        specs = explicit or [{} for _ in range(count)]
        out = []
        for spec, ts in zip(specs, self._spread(len(specs), start_ms), strict=True):
            status = str(spec.get("status", "ok"))
            if status not in TRANSFER_STATUSES:
                raise ValueError(f"unknown transfer status {status!r}")
            internal = bool(spec.get("internal", False))
            out.append(Transfer(
                id=self.next_id(), asset=spec.get("asset", rng.choice(["BTC", "ETH", "USDT"])),
                amount=dec(spec.get("amount", rng.choice(["0.25", "1.5", "100.000001"]))),
                timestamp=int(spec.get("timestamp", ts)), txid="" if internal else secrets.token_hex(32),
                address=spec.get("address", "user@example.com" if internal else "0x" + secrets.token_hex(20)),
                network=spec.get("network", "ETH"), fee=dec(spec.get("fee", "0")), status=status,
                internal=internal))
        return out

    def add_deposits(self, account: Account, count: int, *, start_ms: int | None = None,
                     explicit: list[dict[str, Any]] | None = None) -> list[Transfer]:
        made = self._transfers(count, start_ms, explicit)
        for t in made:
            if t.status == "ok":
                self._book(account, t, deposit=True)
        account.deposits.extend(made)
        account.deposits.sort(key=lambda t: (t.timestamp, int(t.id)))
        return made

    def add_withdrawals(self, account: Account, count: int, *, start_ms: int | None = None,
                        explicit: list[dict[str, Any]] | None = None) -> list[Transfer]:
        made = self._transfers(count, start_ms, explicit)
        for t in made:
            # A withdrawal leaves the balance when it is requested (the venue holds the funds); one that fails or
            # is cancelled gives them back.
            if t.status in ("ok", "pending"):
                self._book(account, t, deposit=False)
        account.withdrawals.extend(made)
        account.withdrawals.sort(key=lambda t: (t.timestamp, int(t.id)))
        return made

    @staticmethod
    def _book(account: Account, t: Transfer, *, deposit: bool, sign: int = 1) -> None:
        delta = t.amount if deposit else -(t.amount + t.fee)
        account.balances[t.asset] = account.balances.get(t.asset, Decimal(0)) + sign * delta

    def settle_transfer(self, account: Account, transfer_id: str, status: str) -> Transfer:
        """A pending transfer's outcome (the control API): balances follow it as the venue's would."""
        if status not in TRANSFER_STATUSES or status == "pending":
            raise ValueError(f"a transfer settles as one of {', '.join(TRANSFER_STATUSES[2:])} or ok")
        for deposit, items in ((True, account.deposits), (False, account.withdrawals)):
            for t in items:
                if t.id != transfer_id:
                    continue
                if t.status != "pending":
                    raise ValueError(f"transfer {transfer_id} is {t.status}, not pending")
                if deposit and status == "ok":
                    self._book(account, t, deposit=True)
                if not deposit and status != "ok":
                    self._book(account, t, deposit=False, sign=-1)
                t.status = status
                self.transfers_changed(account)
                return t
        raise KeyError(f"no transfer {transfer_id}")

    def transfers_changed(self, account: Account) -> None:
        """A transfer's status changed: venues that cache a rendering of the account drop it."""

    def stream_ids(self, account: Account, stream: str) -> set[str]:
        """The venue ids an adapter must report for ``stream`` (tests compare against it)."""
        if stream == "trades":
            return {t.id for t in account.trades}
        if stream == "deposits":
            return {t.id for t in account.deposits}
        if stream == "withdrawals":
            return {t.id for t in account.withdrawals}
        raise NotImplementedError(f"{self.id} must say which ids its {stream!r} stream carries")

    def listed_markets(self) -> tuple[tuple[str, str], ...]:
        """Every pair the venue lists: the traded markets (or the venue's wider listings) and the quote-only ones."""
        own: tuple[tuple[str, str], ...] = getattr(self, "listings", None) or self.markets
        return tuple(dict.fromkeys((*own, *self.quote_markets)))

    def key_or_none(self, api_key: str) -> Key | None:
        key = self.keys.get(api_key)
        if key is None or key.revoked:
            return None
        return key


class SimState:
    """All venues, the request log and the lock that guards them."""

    def __init__(self, seed: int | None = None, max_log: int = 200_000) -> None:
        from appliance.sim.prices import PricePath

        self.lock = threading.RLock()
        self.prices = PricePath()  # the one price path every venue's market data follows
        self.rng = random.Random(seed)
        self.venues: dict[str, VenueSim] = {}
        self.log: list[dict[str, Any]] = []
        self.max_log = max_log

    def register(self, factory: Callable[[SimState], VenueSim]) -> None:
        venue = factory(self)
        self.venues[venue.id] = venue

    def record(self, req: Request) -> None:
        entry = {
            "venue": req.venue, "method": req.method, "path": req.path, "query": req.query,
            "headers": dict(req.headers), "body": req.body.decode("utf-8", "replace"), "time": now_ms(),
        }
        with self.lock:
            self.log.append(entry)
            if len(self.log) > self.max_log:
                del self.log[: len(self.log) - self.max_log]
