"""Shared machinery of the ccxt-backed exchange adapters.

- A fresh ccxt instance per operation: per scope probe, per call outside a sync, and per sync of one
  connection (``reusing``: building a ccxt instance costs more CPU than the request it makes, and a
  sync makes several). Never shared between connections or threads. Classification does not depend
  on the instance's history: Binance maps a revoked key to DDoSProtection once an instance has
  authenticated, so errors are classified from the venue's own code as well (below).
- ccxt's own rate limiter off; our per-venue limiter in the egress layer instead.
- The transport is the egress layer's VenueSession, so the allowlist and base_url rewrite apply
  after ccxt has signed.
- Markets are loaded once per venue with a credential-less instance and shared by all accounts.
- Every ccxt exception is classified into ``errors.Venue*`` from, in this order: the HTTP status, where the
  venue documents what a status means (``http_status_errors``: Coinbase's 401 is always an invalid key, whatever
  the body); the venue's own error code (``error_codes``, which for gRPC-gateway venues include the gRPC status
  names and numbers, ``GRPC_STATUS_ERRORS``); and last ccxt's class, because ccxt's mapping is inconsistent across
  venues (VENUES.md §0) and an unrecognised body must not hide a status that says what happened.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeVar

import ccxt

from appliance.errors import (
    EgressRefused,
    VenueAuthError,
    VenueBadData,
    VenueError,
    VenuePermissionError,
    VenueRateLimited,
    VenueTransient,
)
from appliance.venues.base import Credentials, VenueAdapter
from appliance.venues.egress import Egress, retry_after_seconds
from appliance.venues.ratelimits import BudgetDeferred, deferring

log = logging.getLogger(__name__)

T = TypeVar("T")

# google.rpc.Code, as gRPC-gateway APIs (Coinbase Advanced Trade) send it: {"error": NAME, "code": NUMBER,
# "message", "details"}. Names and numbers from https://grpc.github.io/grpc/core/md_doc_statuscodes.html.
_GRPC = {
    "UNAUTHENTICATED": (16, VenueAuthError),
    "PERMISSION_DENIED": (7, VenuePermissionError),
    "RESOURCE_EXHAUSTED": (8, VenueRateLimited),
    "UNAVAILABLE": (14, VenueTransient),
    "DEADLINE_EXCEEDED": (4, VenueTransient),
    "INTERNAL": (13, VenueTransient),
    "ABORTED": (10, VenueTransient),
    "UNKNOWN": (2, VenueTransient),
    "CANCELLED": (1, VenueTransient),
    "INVALID_ARGUMENT": (3, VenueBadData),
    "NOT_FOUND": (5, VenueBadData),
    "FAILED_PRECONDITION": (9, VenueBadData),
    "OUT_OF_RANGE": (11, VenueBadData),
    "UNIMPLEMENTED": (12, VenueBadData),
    "DATA_LOSS": (15, VenueTransient),
}
GRPC_STATUS_ERRORS: dict[str, type[VenueError]] = {
    **{name: cls for name, (_number, cls) in _GRPC.items()},
    **{f"grpc:{number}": cls for _name, (number, cls) in _GRPC.items()},
}
GRPC_NAMES = {number: name for name, (number, _cls) in _GRPC.items()}

# A history walk reads this many windows at once (the shared limiter decides how fast they actually go), and a
# window request that would wait longer than DEFER_AFTER seconds for the documented budget is left for the next
# poll instead of holding the poll worker.
WINDOW_WORKERS = 8
DEFER_AFTER = 3.0
U = TypeVar("U")

_market_cache: dict[tuple[str, str], Any] = {}
_market_lock = threading.Lock()

_URL = re.compile(r"https?://\S+")
_JSON_TAIL = re.compile(r"[\[{].*[\]}]", re.S)


def to_decimal(value: Any) -> Decimal | None:
    """Exact Decimal from a venue value. ccxt hands us strings when the venue sent strings."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        # Only reached when a venue sends JSON numbers; repr() is the shortest exact round-trip.
        return Decimal(repr(value))
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise VenueBadData("venue", f"not a number: {str(value)[:40]!r}") from None


def scrub_evidence(value: Any, secrets: tuple[str, ...]) -> Any:
    """A permission response minus key material: no key fields, no value containing a credential."""
    if isinstance(value, Mapping):
        return {k: scrub_evidence(v, secrets) for k, v in value.items() if k not in ("apiKey", "secret")}
    if isinstance(value, list):
        return [scrub_evidence(v, secrets) for v in value]
    if isinstance(value, str) and any(s in value for s in secrets):
        return "<redacted>"
    return value


class MonotonicNonce:
    """Millisecond nonces, strictly increasing across every client of this process.

    Venues that want a nonce greater than the last one per key (Kraken, Gemini) would refuse two
    fresh ccxt instances sharing a key within one millisecond; one counter per venue avoids it.
    """

    def __init__(self) -> None:
        self.last = 0
        self.lock = threading.Lock()

    def __call__(self) -> int:
        with self.lock:
            self.last = max(self.last + 1, int(time.time() * 1000))
            return self.last


def account_key(creds: Credentials | None) -> str:
    """An opaque key for per-account request limits: a hash of the API key (never the key itself)."""
    if creds is None or not creds.api_key:
        return ""
    return hashlib.sha256(creds.api_key.encode()).hexdigest()[:16]


class WindowPool:
    """Worker threads for one walk (or one sync, inside ``reusing``), each with its own authenticated client:
    ccxt clients are not thread-safe, and building one costs more CPU than the request it makes."""

    def __init__(self, adapter: CcxtAdapter, creds: Credentials, workers: int) -> None:
        self.adapter = adapter
        self.creds = creds
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{adapter.id}-window")
        self.local = threading.local()

    def _client(self) -> Any:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.adapter.new_client(self.creds)
            client.set_markets_from_exchange(self.adapter.markets())
            self.local.client = client
        return client

    def run(self, items: Sequence[T], read: Callable[[Any, T], U]) -> list[U | BudgetDeferred]:
        """``read(client, item)`` for every item, concurrently; each result in item order, or the BudgetDeferred
        of an item whose request would have waited too long for the documented budget. Any other error is
        raised (after every started item finished: nothing is left running)."""
        def task(item: T) -> U | BudgetDeferred:
            with deferring(DEFER_AFTER):
                try:
                    return read(self._client(), item)
                except BudgetDeferred as deferred:
                    return deferred

        futures = [self.executor.submit(task, item) for item in items]
        results: list[U | BudgetDeferred] = []
        failure: BaseException | None = None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # noqa: BLE001 - re-raised below, once every worker is done
                failure = failure or exc
        if failure is not None:
            raise failure
        return results

    def close(self) -> None:
        self.executor.shutdown(wait=True)


class CcxtAdapter(VenueAdapter):
    """Base for exchanges reached through ccxt. Subclasses set the class attributes below."""

    ccxt_id: ClassVar[str]
    # Options that keep load_markets public-only and ccxt's behaviour explicit (per venue).
    ccxt_options: ClassVar[Mapping[str, Any]] = {}
    # ``has`` overrides, e.g. {"fetchCurrencies": False} where currencies need signed calls.
    ccxt_has: ClassVar[Mapping[str, Any]] = {}
    # Venue error codes (as they appear in bodies) -> our error class.
    error_codes: ClassVar[Mapping[str, type[VenueError]]] = {}
    # HTTP statuses whose meaning the venue documents whatever the body says -> our error class; consulted
    # first. Left empty where a status is shared by several meanings (OKX answers 401 for an invalid key and
    # for a missing permission; Binance 403 is its firewall, Bybit 403 its IP rate limit).
    http_status_errors: ClassVar[Mapping[int, type[VenueError]]] = {}

    def __init__(self, egress: Egress) -> None:
        super().__init__(egress)
        self._scope = threading.local()  # this thread's (credentials, client) inside reusing()

    # -- clients ------------------------------------------------------------------------------
    def new_client(self, creds: Credentials | None = None) -> Any:
        cls = getattr(ccxt, self.ccxt_id)
        config: dict[str, Any] = {
            "enableRateLimit": False,
            "timeout": self.egress.settings.egress.timeout_seconds * 1000,
            "options": json.loads(json.dumps(dict(self.ccxt_options))),
        }
        if creds is not None:
            config["apiKey"] = creds.api_key
            config["secret"] = creds.api_secret
            if creds.passphrase:
                config["password"] = creds.passphrase
        client = cls(config)
        for name, value in self.ccxt_has.items():
            client.has[name] = value
        client.session = self.egress.session(self.id, self.hosts, self.read_endpoints, self.rate_limits,
                                             account_key(creds))
        # ccxt logs request headers (API keys) at DEBUG; never let that through.
        client.logger.setLevel(logging.WARNING)
        return client

    def client(self, creds: Credentials) -> Any:
        """An authenticated client with the venue's shared markets already set: fresh, or inside
        ``reusing(creds)`` the one this thread built for these credentials."""
        scope = getattr(self._scope, "value", None)
        if scope is not None and scope[0] is creds and scope[1] is not None:
            return scope[1]
        client = self.new_client(creds)
        client.set_markets_from_exchange(self.markets())
        if scope is not None and scope[0] is creds:
            self._scope.value = (creds, client)
        return client

    @contextmanager
    def reusing(self, creds: Credentials) -> Iterator[None]:
        outer = getattr(self._scope, "value", None)
        outer_pool = getattr(self._scope, "pool", None)
        self._scope.value = (creds, None)
        self._scope.pool = None
        try:
            yield
        finally:
            pool = getattr(self._scope, "pool", None)
            self._scope.value = outer  # the client (and the secret it holds) goes with the scope
            self._scope.pool = outer_pool
            if pool is not None:
                pool.close()

    @contextmanager
    def window_pool(self, creds: Credentials) -> Iterator[WindowPool]:
        """The worker pool of this sync (kept inside ``reusing(creds)``), or one for this call only."""
        scope = getattr(self._scope, "value", None)
        if scope is not None and scope[0] is creds:
            pool = getattr(self._scope, "pool", None)
            if pool is None:
                pool = self._scope.pool = WindowPool(self, creds, WINDOW_WORKERS)
            yield pool
            return
        pool = WindowPool(self, creds, WINDOW_WORKERS)
        try:
            yield pool
        finally:
            pool.close()

    def markets(self) -> Any:
        """A credential-less client holding this venue's markets, loaded once per process."""
        key = (self.id, self.egress.base_url(self.id))
        with _market_lock:
            cached = _market_cache.get(key)
        if cached is not None:
            return cached
        public = self.new_client(None)
        self.call(public.load_markets, creds=None)
        with _market_lock:
            _market_cache.setdefault(key, public)
            return _market_cache[key]

    # -- error classification ------------------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any, creds: Credentials | None, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except EgressRefused:
            raise
        except VenueError:
            raise
        except ccxt.BaseError as exc:
            raise self.classify(exc, creds, getattr(fn, "__self__", None)) from None
        except (TypeError, KeyError, ValueError, AttributeError, InvalidOperation, IndexError) as exc:
            # ccxt's parsers fail like this on bodies that are not what the venue documents.
            log.warning("%s: unexpected response shape (%s)", self.id, type(exc).__name__)
            raise VenueBadData(self.id, f"unexpected response from the venue ({type(exc).__name__})") from None

    def classify(self, exc: Exception, creds: Credentials | None, client: Any = None) -> VenueError:
        secrets = creds.secrets() if creds is not None else ()
        text = self.safe_text(str(exc), secrets)
        code = self.venue_code(str(exc))
        status = self.http_status(exc, client)
        by_status = self.http_status_errors.get(status) if status is not None else None
        if by_status is not None:
            if by_status is VenueRateLimited:
                return VenueRateLimited(self.id, f"rate limited ({text})", retry_after=self._retry_after(client),
                                        venue_code=code)
            return by_status(self.id, self.describe(by_status, text), venue_code=code)
        if code is not None and code in self.error_codes:
            cls = self.error_codes[code]
            if cls is VenueRateLimited:
                return VenueRateLimited(self.id, f"rate limited ({text})", retry_after=self._retry_after(client),
                                        venue_code=code)
            return cls(self.id, self.describe(cls, text), venue_code=code)
        if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
            return VenueRateLimited(self.id, f"rate limited ({text})", retry_after=self._retry_after(client),
                                    venue_code=code)
        # PermissionDenied subclasses AuthenticationError in ccxt: test it first.
        if isinstance(exc, ccxt.PermissionDenied):
            return VenuePermissionError(self.id, self.describe(VenuePermissionError, text), venue_code=code)
        if isinstance(exc, (ccxt.AuthenticationError, ccxt.AccountSuspended)):
            return VenueAuthError(self.id, self.describe(VenueAuthError, text), venue_code=code)
        if isinstance(exc, (ccxt.BadResponse, ccxt.NullResponse)):
            return VenueBadData(self.id, f"unexpected response from the venue ({text})", venue_code=code)
        if isinstance(exc, (ccxt.NetworkError, ccxt.ExchangeNotAvailable, ccxt.OnMaintenance, ccxt.InvalidNonce)):
            return VenueTransient(self.id, f"venue unavailable ({text})", venue_code=code)
        return VenueTransient(self.id, f"venue error ({text})", venue_code=code)

    @staticmethod
    def http_status(exc: Exception, client: Any) -> int | None:
        """The HTTP status of the answer that failed: from the egress session of the client that sent it (ccxt
        puts it in its message only when no venue handler raised first). None for a request that got no answer
        (the session forgets the previous status before each request)."""
        status = getattr(getattr(client, "session", None), "last_status", None)
        return status if isinstance(status, int) else None

    @staticmethod
    def describe(error: type[VenueError], text: str) -> str:
        what = {
            VenueAuthError: "authentication failed: the key is invalid, revoked or expired",
            VenuePermissionError: "permission denied for this key",
            VenueBadData: "unexpected response from the venue",
            VenueTransient: "venue unavailable",
        }.get(error, "venue error")
        return f"{what} ({text})" if text else what

    def _retry_after(self, client: Any) -> float:
        headers = getattr(client, "last_response_headers", None)
        return retry_after_seconds(headers or {}, default=30.0)

    def safe_text(self, message: str, secrets: tuple[str, ...]) -> str:
        """The venue's own words (its JSON error body) without URLs, query strings or secrets."""
        body = _JSON_TAIL.search(message)
        text = body.group(0) if body else message
        text = _URL.sub("<url>", text)
        for secret in secrets:
            if secret:
                text = text.replace(secret, "<redacted>")
        text = text.replace(self.ccxt_id + " ", "").strip()
        return text[:300]

    def venue_code(self, message: str) -> str | None:
        """The venue's error code from the body ccxt put in the message; override per venue."""
        body = _JSON_TAIL.search(message)
        if not body:
            return None
        try:
            parsed = json.loads(body.group(0))
        except ValueError:
            return None
        if isinstance(parsed, dict):
            for key in ("code", "retCode", "reason", "error_code"):
                if key in parsed and parsed[key] not in (None, "", 0, "0"):
                    return str(parsed[key])
            errors = parsed.get("error")
            if isinstance(errors, list) and errors:
                return str(errors[0])
            if isinstance(errors, str):
                return errors
        return None
