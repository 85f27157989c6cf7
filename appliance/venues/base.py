"""The one small interface every venue adapter implements, and the plain records it returns.

Adapters are database-free: they take credentials and a cursor, talk to the venue through the
egress layer, and return dataclasses with Decimal amounts and timezone-aware UTC times, or raise
one of the classified ``errors.Venue*`` exceptions. The sync service records the outcomes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from appliance.venues.egress import Egress, EndpointRule
from appliance.venues.ratelimits import RateLimit

_log = logging.getLogger(__name__)


class Stream(enum.StrEnum):
    TRADES = "trades"
    DEPOSITS = "deposits"
    WITHDRAWALS = "withdrawals"
    LEDGER = "ledger"
    TRANSFERS = "transfers"  # chains: token and native transfers
    FILLS = "fills"  # prediction markets
    SETTLEMENTS = "settlements"
    ACTIVITY = "activity"


class TxStatus(enum.StrEnum):
    """A record's outcome at the venue. Trades and ledger entries are completed when listed; deposits and
    withdrawals are listed while pending and may end failed or cancelled. Only completed ones moved funds."""

    COMPLETED = "completed"
    PENDING = "pending"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Kind(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    TRANSFER_IN = "transfer_in"
    TRANSFER_OUT = "transfer_out"
    FEE = "fee"
    REWARD = "reward"
    SETTLEMENT = "settlement"
    OTHER = "other"


@dataclass(frozen=True)
class Credentials:
    """Plaintext credentials, alive only for the duration of a venue call. Never printable."""

    api_key: str = ""
    api_secret: str = ""
    passphrase: str = ""

    def __repr__(self) -> str:
        return "Credentials(<redacted>)"

    __str__ = __repr__

    def secrets(self) -> tuple[str, ...]:
        """Every non-empty value, for scrubbing evidence and messages."""
        return tuple(v for v in (self.api_key, self.api_secret, self.passphrase) if v)


@dataclass(frozen=True)
class CredentialField:
    name: str  # api_key | api_secret | passphrase
    label: str
    help: str = ""
    multiline: bool = False  # PEM private keys
    required: bool = True


@dataclass(frozen=True)
class GuideStep:
    text: str
    warning: bool = False  # rendered prominently: "leave Trade unticked"


Tri = bool | None  # true / false / unknown


@dataclass(frozen=True)
class Scope:
    """A key's effective scope as the venue reports it, with the raw evidence (minus secrets)."""

    read: Tri
    trade: Tri
    transfer: Tri
    withdraw: Tri
    verified: bool  # the venue answered a permission query (False: could not be probed)
    evidence: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # What the key will not let us read, in words for the employee (the key is still acceptable): shown at
    # onboarding, and the matching streams are recorded as coverage gaps by the sync.
    limitations: tuple[str, ...] = ()

    @property
    def escalated(self) -> bool:
        """Any dangerous permission known to be present."""
        return bool(self.trade) or bool(self.transfer) or bool(self.withdraw)

    @property
    def read_only(self) -> bool:
        return self.verified and self.read is True and not self.escalated and None not in (
            self.trade, self.transfer, self.withdraw)

    def granted(self) -> list[str]:
        return [name for name in ("trade", "transfer", "withdraw") if getattr(self, name)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read, "trade": self.trade, "transfer": self.transfer, "withdraw": self.withdraw,
            "verified": self.verified, "evidence": dict(self.evidence), "notes": list(self.notes),
            "limitations": list(self.limitations),
        }


@dataclass(frozen=True)
class Balance:
    asset: str
    amount: Decimal
    account: str = ""  # spot, funding, a token contract...


@dataclass(frozen=True)
class TxRecord:
    stream: str
    venue_tx_id: str
    kind: str
    occurred_at: dt.datetime
    asset: str
    amount: Decimal
    market: str = ""
    quote_asset: str | None = None
    quote_amount: Decimal | None = None
    price: Decimal | None = None
    fee_asset: str | None = None
    fee_amount: Decimal | None = None
    block_number: int | None = None
    block_hash: str | None = None
    raw: Mapping[str, Any] | None = None
    status: str = TxStatus.COMPLETED

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware UTC")
        if self.status not in set(TxStatus):
            raise ValueError(f"status must be one of {', '.join(TxStatus)}, got {self.status!r}")
        for name in ("amount", "quote_amount", "price", "fee_amount"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Decimal):
                raise TypeError(f"{name} must be Decimal, got {type(value).__name__}")


@dataclass(frozen=True)
class PositionRecord:
    market_id: str
    outcome: str
    size: Decimal
    market_title: str = ""
    category: str = ""
    avg_price: Decimal | None = None
    current_value: Decimal | None = None


@dataclass(frozen=True)
class Page:
    """One page of a stream. Store ``records`` and ``cursor`` in one transaction, then ask again
    with ``cursor`` until ``done``.

    ``complete_until`` states that the stream's history is known complete up to that instant once
    this page is stored (None: this page proves nothing about completeness yet). ``notes`` carries
    coverage caveats such as the markets a symbol-per-query venue was asked about; a venue whose
    trades can only be asked for market by market, from a market list the appliance derives, sets
    ``notes["market_list"] = "derived"`` on its last page, and the stream's coverage then carries a
    standing ``unverified_markets`` gap that names the markets read.

    ``notes["coverage_gap"] = {"reason", "detail"}`` (see :func:`coverage_gap`) says the stream cannot be read
    for this account for a reason no retry fixes (a permission the key lacks, a sub-account the venue serves
    no records to, a history window the API does not reach): the sync records it as a standing gap, shown on
    the employee page and in reports, instead of failing the poll.
    """

    records: list[TxRecord]
    cursor: dict[str, Any]
    done: bool
    complete_until: dt.datetime | None = None
    notes: Mapping[str, Any] = field(default_factory=dict)
    # A long walk's progress (units done, units planned), e.g. history windows of a first sync.
    progress: tuple[int, int] | None = None


def transfer_status(venue: str, table: Mapping[str, TxStatus], value: Any) -> TxStatus:
    """A venue's transfer status in our terms. One the venue's documentation does not list is held as pending:
    not counted, and read again at the next run (until the venue reports one we know), never guessed final."""
    status = table.get(str(value))
    if status is None:
        _log.warning("%s: undocumented transfer status %r, held as pending", venue, str(value)[:40])
        return TxStatus.PENDING
    return status


# Reasons of standing gaps an adapter may declare (Page.notes["coverage_gap"]).
VENUE_LIMITATION = "venue_limitation"  # the key or account cannot read this stream; closed when it reads again
HISTORY_LIMIT = "history_limit"  # the API serves no records before this; only a statement import fills it
NOT_READ = "not_read"  # records the API serves that the adapter does not read yet; a statement import fills it


def coverage_gap(reason: str, detail: str, *, start: dt.datetime | None = None,
                 end: dt.datetime | None = None) -> dict[str, Any]:
    """A ``Page.notes["coverage_gap"]`` value: a standing gap of this stream, ``start``..``end`` (None: from the
    start of the stream's coverage / still open)."""
    note: dict[str, Any] = {"reason": reason, "detail": detail}
    if start is not None:
        note["start"] = start.isoformat()
    if end is not None:
        note["end"] = end.isoformat()
    return note


class VenueAdapter(ABC):
    """One external source (exchange, chain, prediction market) behind one interface."""

    id: ClassVar[str]
    name: ClassVar[str]
    kind: ClassVar[str] = "exchange"  # exchange | prediction (Kalshi)
    credential_fields: ClassVar[tuple[CredentialField, ...]] = ()
    guide: ClassVar[tuple[GuideStep, ...]] = ()
    streams: ClassVar[tuple[str, ...]] = ()
    # Production hosts the venue is reached at (before any base_url rewrite).
    hosts: ClassVar[tuple[str, ...]] = ()
    # The read endpoints this adapter may call; anything else is refused inside the box.
    read_endpoints: ClassVar[tuple[EndpointRule, ...]] = ()
    # Whether the venue offers a permission query; False -> unverified_policy decides.
    can_probe_scope: ClassVar[bool] = True
    # How far back the venue serves history (None: all of it); shown as a coverage caveat.
    history_limit_days: ClassVar[int | None] = None
    # The venue's documented request limits (applied unless venues.<id>.requests_per_second sets a budget).
    rate_limits: ClassVar[tuple[RateLimit, ...]] = ()

    def __init__(self, egress: Egress) -> None:
        self.egress = egress

    @contextlib.contextmanager
    def reusing(self, creds: Credentials) -> Iterator[None]:
        """A scope (one sync of one connection, in this thread) within which the adapter may keep what
        it builds for ``creds`` — an authenticated client, its connection — and reuse it from page to
        page. Everything kept is dropped when the scope ends. By default nothing is kept."""
        yield

    @abstractmethod
    def probe_scope(self, creds: Credentials) -> Scope:
        """Ask the venue what the key may do. Raises VenueAuthError for an invalid key."""

    @abstractmethod
    def fetch_balances(self, creds: Credentials) -> list[Balance]:
        """Current balances (non-zero)."""

    @abstractmethod
    def fetch_transactions(self, creds: Credentials, stream: str, cursor: Mapping[str, Any]) -> Page:
        """The next page of ``stream`` after ``cursor`` (``{}`` for the first call)."""

    def fetch_positions(self, creds: Credentials) -> list[PositionRecord]:
        """Prediction positions; exchanges and wallets have none."""
        return []

    def cannot_read(self, scope: Scope) -> str:
        """What the employee must add to a key that cannot read the account, in the venue's own words."""
        return (f"This {self.name} key cannot read your account. Create a key with read (view) permission, "
                "following the steps above.")

    def regenerate_instructions(self, scope: Scope) -> str:
        """What the employee must do to get a key we can accept, in the venue's own words."""
        granted = ", ".join(scope.granted()) or "unknown permissions"
        return (f"This {self.name} key has {granted} permission. Delete it, then create a new key with "
                "read-only access, following the steps above, and submit the new key.")


class WalletAdapter(ABC):
    """A source read by public address only: chains, and prediction markets whose data is public
    per wallet (Polymarket). No credentials exist, so nothing can leak but the address itself.

    ``id`` is the venue string stored on the connection (``ethereum``, ``polygon``, ``bitcoin``,
    ``polymarket``...). Records and pages are the same dataclasses as for exchanges.
    """

    id: str
    name: str
    kind: str = "wallet"  # wallet | prediction
    streams: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()

    @abstractmethod
    def validate_address(self, address: str) -> str:
        """The address in canonical form, or errors.Invalid saying exactly what is wrong
        (bad checksum, wrong network, unsupported type)."""

    @abstractmethod
    def fetch_balances(self, address: str) -> list[Balance]:
        """Current balances of the address (or of every address an extended public key covers)."""

    @abstractmethod
    def fetch_transactions(self, address: str, stream: str, cursor: Mapping[str, Any]) -> Page:
        """The next page of ``stream`` after ``cursor``."""

    def fetch_positions(self, address: str) -> list[PositionRecord]:
        return []

    def reconcilable(self, asset: str, account: str) -> bool:
        """Whether the balance of (asset, account) must equal the net of the recorded transfers
        (true only where the adapter sees the whole history of that holding). A mismatch is recorded
        as a coverage gap, never papered over."""
        return False
