"""Walking a history the venue serves only in time windows (Binance: 90 days a request, Bybit: 7 or 30 days,
KuCoin: 7 days), as fast as the venue's documented limits allow.

A run plans its windows, then reads them a batch at a time, the windows of a batch concurrently (the shared
limiter in the egress layer decides how fast they really go). One page is one batch: its records, and a cursor
that has advanced over the windows read without a hole.

- The first run walks backwards, newest window first, from now down to the oldest instant the venue serves
  (its opening, or its documented retention): the recent history, the one compliance reads first, is complete
  after the first page, and the coverage interval grows back in time page by page (``notes["complete_from"]``).
- Later runs walk forwards from the last run's end, less a look-back (records can be listed a little after their
  time) and never past a pending transfer's time (so it is read again until it has an outcome), then finish
  the backward walk if an earlier run left it unfinished.
- A window whose request would wait too long for the documented budget (Bybit allows 100 deposit-record queries
  a minute) ends the run: what was read is stored, the cursor stops before the hole, and the next poll goes on.
  Nothing is skipped, only deferred.
- ``Page.progress`` reports (windows read, windows planned) for the employee page.

The oldest instant is fixed at the first run and kept in the cursor, so a retention limit that slides with time
(Bybit's two years of trades) cannot make a later run claim less than the first one read.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.venues.base import Credentials, Page, TxRecord, TxStatus
from appliance.venues.ratelimits import BudgetDeferred

DAY_MS = 86_400_000
BATCH = 16  # windows per page: read concurrently, committed together


def now_ms() -> int:
    return int(time.time() * 1000)


def utc_from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms // 1000, dt.UTC) + dt.timedelta(milliseconds=ms % 1000)


@dataclass(frozen=True)
class WindowedStream:
    """How one stream is walked: ``read(client, start, end)`` returns every record of the window [start, end]
    (all its pages); ``span_ms`` is the venue's largest window; ``floor_ms`` the oldest instant it serves."""

    span_ms: int
    floor_ms: int
    read: Callable[[Any, int, int], list[TxRecord]]
    lookback_ms: int = DAY_MS
    notes: Mapping[str, Any] = field(default_factory=dict)
    # A standing gap to declare when the walk reaches the floor (history the API does not serve).
    gap: Mapping[str, Any] | None = None


def plan(cursor: Mapping[str, Any], spec: WindowedStream, now: int) -> dict[str, Any]:
    """The windows of a run: forward from the last run's end (less the look-back, and no later than the oldest
    pending record), then backward from the oldest instant covered down to the floor."""
    floor = int(cursor.get("floor") or spec.floor_ms)
    until = cursor.get("until")
    back = int(cursor.get("back", now + 1))
    windows: list[list[int]] = []
    if until is not None:
        start = int(until) - spec.lookback_ms
        if cursor.get("pending") is not None:
            start = min(start, int(cursor["pending"]))
        start = max(start, floor)
        while start <= now:
            end = min(start + spec.span_ms - 1, now)
            windows.append([start, end, 1])
            start = end + 1
    top = back - 1 if until is not None else now
    while top >= floor:
        bottom = max(top - spec.span_ms + 1, floor)
        windows.append([bottom, top, -1])
        top = bottom - 1
    return {"plan": windows, "run_end": now, "until": until, "back": back if until is not None else now + 1,
            "floor": floor, "pending_run": None, "done": 0, "total": len(windows)}


def walk(adapter: Any, creds: Credentials, cursor: Mapping[str, Any], spec: WindowedStream) -> Page:
    """One page of a windowed walk: the next batch of windows, read concurrently."""
    state = dict(cursor) if "plan" in cursor else plan(cursor, spec, now_ms())
    windows: list[list[int]] = [list(w) for w in state["plan"]]
    batch, rest = windows[:BATCH], windows[BATCH:]
    with adapter.window_pool(creds) as pool:
        results = pool.run(batch, lambda client, w: spec.read(client, w[0], w[1]))
    records: list[TxRecord] = []
    until, back = state["until"], int(state["back"])
    forward_open = backward_open = True  # no hole yet in the forward / backward chain
    deferred = False
    for window, result in zip(batch, results, strict=True):
        start, end, direction = window
        if isinstance(result, BudgetDeferred):
            deferred = True
            if direction > 0:
                forward_open = False
            else:
                backward_open = False
            continue
        records.extend(result)
        if direction > 0 and forward_open:
            until = end
        elif direction < 0 and backward_open:
            back = start
    pending = [r.occurred_at for r in records if r.status == TxStatus.PENDING]
    pending_run = state.get("pending_run")
    if pending:
        oldest = int(min(pending).timestamp() * 1000)
        pending_run = oldest if pending_run is None else min(int(pending_run), oldest)
    run_end = int(state["run_end"])
    first_run = state["until"] is None
    if first_run and back <= run_end:
        until = run_end  # the backward walk started at now: everything from ``back`` to the run's end is read
    notes: dict[str, Any] = dict(spec.notes)
    if back <= run_end:
        notes["complete_from"] = utc_from_ms(back).isoformat()
    complete_until = utc_from_ms(int(until)) if until is not None else None
    finished = deferred or not rest
    if finished:
        if back <= int(state["floor"]) and spec.gap is not None:
            notes["coverage_gap"] = dict(spec.gap)
        following: dict[str, Any] = {"back": back, "floor": int(state["floor"])}
        if until is not None:
            following["until"] = int(until)
        if pending_run is not None:
            following["pending"] = int(pending_run)
        if deferred:
            notes["deferred"] = "the venue's documented request budget is spent; the walk goes on at the next poll"
        return Page(records, following, True, complete_until=complete_until, notes=notes)
    done = int(state["done"]) + len(batch)
    following = {**state, "plan": rest, "until": until, "back": back, "pending_run": pending_run, "done": done}
    return Page(records, following, False, complete_until=complete_until, notes=notes,
                progress=(done, int(state["total"])))
