"""The employee page's coverage, as a timeline rather than timestamps: per connection and stream, when its
records are known complete, when they are known missing (and why, in plain words), and which gaps were filled
later — from the coverage intervals the sync engine and statement imports record. The SVG is drawn by
web/timeline.py; the same spans are listed in a table for screen readers and print."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from markupsafe import Markup

from appliance.store.base import utcnow
from appliance.web import display
from appliance.web.timeline import Lane, Span, coverage_timeline

GAP_WORDS = {
    "auth_error": "the venue refused the key",
    "permission_error": "the key lacks a read permission",
    "rate_limited": "the venue asked to slow down",
    "bad_data": "the venue sent unreadable data",
    "refused": "the egress rules refused the venue's address",
    "venue_down": "the venue did not answer",
    "history_limit": "the venue's API serves no older records (a statement import fills it)",
    "venue_limitation": "the key or account cannot read this (a statement import fills it)",
    "not_read": "records the appliance does not read from the API yet (a statement import fills it)",
    "unverified_markets": "trades read only for the markets seen in balances and transfers",
    "inconsistent_data": "the balance does not match the recorded transfers",
}
KIND_WORDS = {"covered": "records complete", "gap": "records missing", "filled": "records missing, filled later"}


def _time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def timeline(connections: list[dict[str, Any]], tz_name: str, *, now: dt.datetime | None = None
             ) -> dict[str, Any] | None:
    """The chart and its table for the connections as services.connections.connection_json gives them (their
    details already follow the reader's scope); None when there is no connection."""
    if not connections:
        return None
    now = now or utcnow()
    lanes: list[Lane] = []
    rows: list[dict[str, Any]] = []
    starts: list[dt.datetime] = []
    for c in connections:
        name = c["label"] or c["venue"]
        by_stream: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for cov in c["coverage"]:
            by_stream[cov["stream"]].append(cov)
        if not by_stream:
            lanes.append(Lane(f"{name}", ()))
            rows.append({"connection": name, "stream": "", "kind": "none", "what": "nothing read yet",
                         "from": None, "to": None, "detail": ""})
            continue
        for stream, covs in sorted(by_stream.items()):
            spans = []
            # complete first, so the gaps are drawn over it
            for cov in sorted(covs, key=lambda v: (v["kind"] != "complete", v["from"] or "")):
                start, end = _time(cov["from"]), _time(cov["to"])
                if start is None:
                    continue
                kind = "covered" if cov["kind"] == "complete" else "filled" if cov["closed_at"] else "gap"
                shown_end = end or now
                what = KIND_WORDS[kind]
                if kind != "covered":
                    what += f": {GAP_WORDS.get(cov['reason'], (cov['reason'] or 'unknown').replace('_', ' '))}"
                until = display.time_text(shown_end, tz_name) if end is not None else "now"
                spans.append(Span(start, shown_end, kind,
                                  f"{stream}: {what}, {display.time_text(start, tz_name)} to {until}"))
                starts.append(start)
                rows.append({"connection": name, "stream": stream, "kind": kind, "what": what, "from": start,
                             "to": end, "detail": cov["detail"] if kind != "covered" else ""})
            lanes.append(Lane(f"{name} · {stream}", spans))
    begin = min(starts, default=now - dt.timedelta(days=1))
    if now - begin < dt.timedelta(hours=1):
        begin = now - dt.timedelta(hours=1)
    gaps = sum(1 for r in rows if r["kind"] == "gap")
    filled = sum(1 for r in rows if r["kind"] == "filled")
    desc = (f"{len(lanes)} stream(s) from {display.time_text(begin, tz_name)} to now: "
            f"{gaps} open gap(s), {filled} filled gap(s); every span is in the table below.")
    svg: Markup = coverage_timeline(lanes, start=begin, end=now, title="Coverage of this employee's records",
                                    desc=desc, start_label=display.day_text(begin, tz_name), end_label="now")
    rows.sort(key=lambda r: (r["connection"], r["stream"], r["from"] or now))
    return {"svg": svg, "rows": rows, "gaps": gaps, "filled": filled, "since": begin}
