"""The one HTTP layer every outbound request goes through.

A :class:`VenueSession` is a ``requests.Session`` that ccxt (and our own clients) use as their
transport. It sees each request *after* it was signed, and before it leaves:

1. the host must be one of the venue's production hosts (anything else is refused and logged);
2. method + path must match the venue's read-only allowlist (orders, withdrawals, transfers and
   key management are refused inside the box, so even a key that could trade cannot be used to);
3. the shared limiter spaces requests: the venue's documented limits (``ratelimits``: per egress IP and per
   account, per endpoint, as each venue publishes them), or one configured budget per venue
   (``venues.<id>.requests_per_second``) that replaces them; and a venue's Retry-After is honoured by every
   request to that venue;
4. scheme and host are replaced by ``venues.<id>.base_url`` when configured (egress gateways,
   simulators) — after signing, so ccxt signs and maps errors exactly as against the real venue;
5. proxy, timeout and a neutral User-Agent are applied;
6. redirects are never followed: ``requests`` follows them inside ``send()``, after the checks above,
   carrying the signed request and the key headers to wherever the ``Location`` points. A venue
   that answers with a redirect gets a transient error (logged, and recorded by the sync engine
   like any failed poll), and nothing is sent to the second address.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from appliance.errors import EgressRefused, VenueTransient
from appliance.settings import VENUE_IDS, Settings, VenueSettings
from appliance.venues.ratelimits import BudgetDeferred, DocumentedLimits, RateLimit, deferral_deadline

log = logging.getLogger(__name__)

# The egress id of the Bitcoin (Esplora) endpoint; EVM chains use their configuration name.
BITCOIN_EGRESS_ID = "esplora"


@dataclass(frozen=True)
class EndpointRule:
    """An allowed request: HTTP method and a regular expression over the production URL path."""

    method: str
    pattern: str

    def matches(self, method: str, path: str) -> bool:
        return method.upper() == self.method and re.fullmatch(self.pattern, path) is not None


def read(method: str, *patterns: str) -> tuple[EndpointRule, ...]:
    return tuple(EndpointRule(method.upper(), p) for p in patterns)


class VenueLimiter:
    """A token bucket per venue (``rate`` None: no bucket, the documented limits apply), plus a "blocked
    until" set by a venue's Retry-After."""

    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate or 1.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.blocked_until = 0.0
        self.lock = threading.Lock()

    def acquire(self, max_wait: float = 120.0) -> float:
        """Wait for a token; returns seconds waited. Raises EgressRefused beyond ``max_wait``."""
        waited = 0.0
        deadline = deferral_deadline()
        while True:
            with self.lock:
                now = time.monotonic()
                delay = max(0.0, self.blocked_until - now)
                if self.rate is None:
                    if delay == 0.0:
                        return waited
                else:
                    self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                    self.updated = now
                    if delay == 0.0 and self.tokens >= 1.0:
                        self.tokens -= 1.0
                        return waited
                    if delay == 0.0:
                        delay = (1.0 - self.tokens) / self.rate
            if deadline is not None and waited + delay > deadline:
                raise BudgetDeferred("egress", delay)
            if waited + delay > max_wait:
                raise EgressRefused("egress", f"request budget exhausted (would wait {delay:.0f}s more)")
            time.sleep(delay)
            waited += delay

    def block_for(self, seconds: float) -> None:
        with self.lock:
            self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)

    def blocked_for(self) -> float:
        with self.lock:
            return max(0.0, self.blocked_until - time.monotonic())


class Egress:
    """Egress policy for the whole process: built once from settings, shared by every adapter."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._limiters: dict[str, VenueLimiter] = {}
        self._lock = threading.Lock()
        self.documented = DocumentedLimits()

    def limiter(self, venue_id: str) -> VenueLimiter:
        with self._lock:
            limiter = self._limiters.get(venue_id)
            if limiter is None:
                limiter = VenueLimiter(self.venue_rate(venue_id))
                self._limiters[venue_id] = limiter
            return limiter

    def venue_rate(self, venue_id: str) -> float | None:
        """The configured request budget of a venue (None: its documented limits apply), or of a chain
        endpoint (chains are configured apart)."""
        venue = self.settings.venues.get(venue_id)
        if venue is not None or venue_id in VENUE_IDS:
            rate = (venue or VenueSettings()).requests_per_second
            return rate if rate > 0 else None
        chain = self.settings.chains.evm.get(venue_id)
        if chain is not None:
            return chain.requests_per_second
        if venue_id == BITCOIN_EGRESS_ID:
            return self.settings.chains.bitcoin.requests_per_second
        return 5.0

    def base_url(self, venue_id: str) -> str:
        venue = self.settings.venues.get(venue_id)
        return venue.base_url.rstrip("/") if venue is not None else ""

    def destination_hosts(self, venue_id: str, production_hosts: Iterable[str]) -> list[str]:
        """Hosts actually contacted for a venue: the base_url's host, or the production hosts."""
        base = self.base_url(venue_id)
        if base:
            return [urlsplit(base).netloc]
        return list(production_hosts)

    def session(self, venue_id: str, hosts: Iterable[str], rules: Iterable[EndpointRule],
                limits: Iterable[RateLimit] = (), account: str = "") -> VenueSession:
        """A session for one client: ``limits`` are the venue's documented limits (applied unless a budget is
        configured), ``account`` an opaque key for per-account limits (a hash of the API key, never the key)."""
        return VenueSession(self, venue_id, tuple(hosts), tuple(rules), tuple(limits), account)

    @property
    def proxies(self) -> dict[str, str] | None:
        proxy = self.settings.egress.proxy
        return {"http": proxy, "https": proxy} if proxy else None


class VenueSession(requests.Session):
    """requests.Session that enforces the egress policy for one venue."""

    def __init__(self, egress: Egress, venue_id: str, hosts: tuple[str, ...], rules: tuple[EndpointRule, ...],
                 limits: tuple[RateLimit, ...] = (), account: str = "") -> None:
        super().__init__()
        self.egress = egress
        self.venue_id = venue_id
        self.hosts = hosts
        self.rules = rules
        self.limits = limits
        self.account = account
        self.trust_env = False  # proxies come from our settings only, never from the environment
        # HTTP status of the last answer (None: none yet, or the last request got no answer). Error
        # classification reads it: several venues say more with the status than with the body.
        self.last_status: int | None = None

    def check(self, method: str, url: str) -> tuple[str, str]:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host not in self.hosts:
            log.warning("egress refused: %s %s to host %s is not a %s host", method, parts.path, host, self.venue_id)
            raise EgressRefused(self.venue_id, f"host {host} is not on the egress allowlist")
        if not any(rule.matches(method, parts.path) for rule in self.rules):
            log.warning("egress refused: %s %s is not a read endpoint of %s", method, parts.path, self.venue_id)
            raise EgressRefused(self.venue_id, f"{method.upper()} {parts.path} is not on the read-only allowlist")
        base = self.egress.base_url(self.venue_id)
        target = url
        if base:
            target = base + parts.path + (f"?{parts.query}" if parts.query else "")
        return target, parts.path

    def request(self, method: str | bytes, url: str | bytes, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        method_s = method.decode() if isinstance(method, bytes) else method
        url_s = url.decode() if isinstance(url, bytes) else url
        self.last_status = None
        target, path = self.check(method_s, url_s)
        limiter = self.egress.limiter(self.venue_id)
        limiter.acquire()
        if limiter.rate is None and self.limits:
            self.egress.documented.acquire(self.venue_id, self.limits, path, self.account)
        headers = dict(kwargs.pop("headers", None) or {})
        for name in list(headers):
            if name.lower() == "user-agent":
                del headers[name]
        headers["User-Agent"] = self.egress.settings.egress.user_agent
        timeout: float = self.egress.settings.egress.timeout_seconds
        requested = kwargs.pop("timeout", None)
        if isinstance(requested, (int, float)):
            timeout = min(timeout, requested)
        kwargs["proxies"] = self.egress.proxies
        kwargs["verify"] = True
        kwargs["headers"] = headers
        kwargs["timeout"] = timeout
        kwargs["allow_redirects"] = False
        response = super().request(method_s, target, **kwargs)
        self.last_status = response.status_code
        if response.is_redirect:
            self._refuse_redirect(method_s, path, response)
        if response.status_code in (429, 418):
            limiter.block_for(retry_after_seconds(response.headers))
        return response

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        """Never a redirect to follow, whoever calls ``send()`` (requests' hook for the redirect loop)."""
        return None

    def _refuse_redirect(self, method: str, path: str, response: requests.Response) -> None:
        location = urlsplit(response.headers.get("Location", ""))
        where = location.hostname or "the same host"
        response.close()
        log.warning("egress: %s %s of %s answered HTTP %s redirecting to %s; not followed", method.upper(), path,
                    self.venue_id, response.status_code, where)
        raise VenueTransient(self.venue_id, f"the venue answered with a redirect (HTTP {response.status_code} to "
                                            f"{where}); redirects are never followed")


def retry_after_seconds(headers: Any, default: float = 30.0) -> float:
    """Seconds to wait from Retry-After (seconds or HTTP date) and common venue headers."""
    for name in ("Retry-After", "retry-after"):
        value = headers.get(name) if headers is not None else None
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                from email.utils import parsedate_to_datetime

                try:
                    when = parsedate_to_datetime(value)
                    return max(0.0, when.timestamp() - time.time())
                except (TypeError, ValueError):
                    return default
    return default


