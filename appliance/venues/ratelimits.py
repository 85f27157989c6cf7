"""Venues' documented request limits, enforced before a request leaves (the shared limiter).

Venues publish their limits in two shapes, and both are kept as published:

- a *window*: at most ``count`` units in any ``seconds`` (Binance: 6,000 request weight a minute per IP;
  Bybit: 100 deposit-record queries a minute per account). Each request spends its endpoint's weight.
- a *bucket*: a counter that drains at a steady rate and refuses above a ceiling (Kraken: ceiling 15, decay
  0.33 a second, a history query costs 2).

A limit applies to every request of the venue (``path=None``) or to the endpoints whose path matches; it is
shared by the whole process (``per_account=False``: venues count per egress IP) or kept per account
(``per_account=True``: per UID or per key, as the venue documents). Every adapter declares its limits with
the documentation page they come from (docs/VENUES-SOURCES.md).

A wait the caller cannot afford raises :class:`BudgetDeferred` (``deferring``): a long history walk then stops
for this poll and resumes at the next one, instead of holding a poll worker for a minute.
"""

from __future__ import annotations

import collections
import contextlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from appliance.errors import EgressRefused


class BudgetDeferred(Exception):
    """The documented budget has no room before the caller's deadline; try this request at a later poll."""

    def __init__(self, venue: str, wait: float) -> None:
        super().__init__(f"{venue}: request budget exhausted for {wait:.1f}s")
        self.venue = venue
        self.wait = wait


@dataclass(frozen=True)
class RateLimit:
    """One documented limit: ``count`` units per ``seconds`` (window), or a ``count`` ceiling draining at
    ``count/seconds`` a second when ``bucket`` (Kraken's counter). ``weights`` maps path patterns to the units
    a request spends (default 1); ``path`` restricts the limit to matching paths."""

    count: float
    seconds: float
    path: str | None = None
    per_account: bool = False
    bucket: bool = False
    weights: tuple[tuple[str, float], ...] = ()
    source: str = ""  # the documentation page the numbers come from

    def applies(self, path: str) -> bool:
        return self.path is None or re.fullmatch(self.path, path) is not None

    def weight(self, path: str) -> float:
        for pattern, units in self.weights:
            if re.fullmatch(pattern, path):
                return units
        return 1.0


@dataclass
class _Window:
    """At most ``count`` units in any ``seconds``: (time, units) events, oldest first."""

    count: float
    seconds: float
    events: collections.deque[tuple[float, float]] = field(default_factory=collections.deque)
    spent: float = 0.0

    def wait_for(self, units: float, now: float) -> float:
        while self.events and self.events[0][0] <= now - self.seconds:
            self.spent -= self.events.popleft()[1]
        if self.spent + units <= self.count:
            return 0.0
        # The earliest instant enough old events have left the window.
        needed, freed = self.spent + units - self.count, 0.0
        for when, spent in self.events:
            freed += spent
            if freed >= needed:
                return max(0.0, when + self.seconds - now)
        return self.seconds

    def take(self, units: float, now: float) -> None:
        self.events.append((now, units))
        self.spent += units

    def idle(self, now: float) -> bool:
        return not self.events or self.events[-1][0] <= now - self.seconds


@dataclass
class _Bucket:
    """A counter that drains ``count/seconds`` a second and refuses above ``count``."""

    count: float
    seconds: float
    level: float = 0.0
    updated: float = field(default_factory=time.monotonic)

    def wait_for(self, units: float, now: float) -> float:
        rate = self.count / self.seconds
        self.level = max(0.0, self.level - (now - self.updated) * rate)
        self.updated = now
        excess = self.level + units - self.count
        return excess / rate if excess > 0 else 0.0

    def take(self, units: float, now: float) -> None:
        self.level += units

    def idle(self, now: float) -> bool:
        return self.level - (now - self.updated) * self.count / self.seconds <= 0.0


_deadline = threading.local()


def deferral_deadline() -> float | None:
    """The longest wait this thread accepts before deferring (None: no deferral in effect)."""
    value = getattr(_deadline, "value", None)
    return float(value) if value is not None else None


@contextlib.contextmanager
def deferring(max_wait: float) -> Iterator[None]:
    """Within this block (this thread), a request that would wait longer than ``max_wait`` seconds for the
    documented budget raises :class:`BudgetDeferred` instead of waiting."""
    outer = getattr(_deadline, "value", None)
    _deadline.value = max_wait
    try:
        yield
    finally:
        _deadline.value = outer


class DocumentedLimits:
    """The process-wide state of every venue's documented limits (one per Egress)."""

    SWEEP_EVERY = 4096  # acquisitions between two sweeps of idle per-account states

    def __init__(self, max_wait: float = 120.0) -> None:
        self.max_wait = max_wait
        self._states: dict[tuple[str, int, str], _Window | _Bucket] = {}
        self._lock = threading.Lock()
        self._since_sweep = 0

    def _sweep(self, now: float) -> None:
        """Forget states that hold nothing any more (every event out of its window, the bucket drained): a
        state per account would otherwise stay for every account ever synced."""
        for key in [k for k, state in self._states.items() if state.idle(now)]:
            del self._states[key]

    def _state(self, venue: str, index: int, limit: RateLimit, account: str) -> _Window | _Bucket:
        key = (venue, index, account if limit.per_account else "")
        state = self._states.get(key)
        if state is None:
            state = (_Bucket(limit.count, limit.seconds) if limit.bucket else _Window(limit.count, limit.seconds))
            self._states[key] = state
        return state

    def acquire(self, venue: str, limits: tuple[RateLimit, ...], path: str, account: str) -> float:
        """Wait until every limit that applies has room for this request, then spend it. Returns seconds
        waited. Raises BudgetDeferred past a ``deferring`` deadline, EgressRefused past ``max_wait``."""
        applicable = [(i, limit) for i, limit in enumerate(limits) if limit.applies(path)]
        if not applicable:
            return 0.0
        deadline = deferral_deadline()
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                states = [(self._state(venue, i, limit, account), limit.weight(path)) for i, limit in applicable]
                wait = max(state.wait_for(units, now) for state, units in states)
                if wait <= 0.0:
                    for state, units in states:
                        state.take(units, now)
                    self._since_sweep += 1
                    if self._since_sweep >= self.SWEEP_EVERY:
                        self._since_sweep = 0
                        self._sweep(now)
                    return waited
            if deadline is not None and waited + wait > deadline:
                raise BudgetDeferred(venue, wait)
            if waited + wait > self.max_wait:
                raise EgressRefused(venue, f"request budget exhausted (would wait {wait:.0f}s more)")
            time.sleep(min(wait, 1.0))
            waited += min(wait, 1.0)
