"""Prediction markets: Polymarket (public Data API, read by wallet address) and Kalshi (signed REST API).

Neither goes through ccxt (ccxt's ``polymarket`` class is Polymarket *Perps* and wants the wallet's
private key; Kalshi is not in ccxt 4.5.90), so both are small clients of our own over the egress layer.
This module holds what the two share:

- one HTTP call that turns transport failures, statuses and malformed bodies into ``errors.Venue*``;
- JSON decoding with ``parse_float=Decimal``, so amounts the venue sends as JSON numbers stay exact;
- :func:`newest_first_page`, the incremental cursor for feeds that can only be read newest first.

Why the cursor looks the way it does: both venues list history newest first and filter by a lower
time bound. A run walks from the top down to the newest second stored by the previous run (the
*mark*), skipping the ids already stored at exactly that second, and only when the walk is complete
does the mark move up to the newest second this run saw. Rows that arrive while a run is walking sit
above the run's first page and are picked up by the next run; an interrupted run resumes from its
venue cursor; so a second run adds nothing and nothing is skipped, provided the venue indexes rows in
time order (a row appearing later with a timestamp older than the mark would be missed: a stated limit).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from appliance.errors import (
    EgressRefused,
    VenueAuthError,
    VenueBadData,
    VenueError,
    VenuePermissionError,
    VenueRateLimited,
    VenueTransient,
)
from appliance.settings import Settings
from appliance.venues.base import Page, TxRecord, VenueAdapter, WalletAdapter
from appliance.venues.egress import Egress, retry_after_seconds

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# (status, parsed body or None) -> (venue error code, short message in the venue's words)
ErrorReader = Callable[[int, Any], tuple[str | None, str]]


def to_decimal(venue: str, value: Any, what: str) -> Decimal:
    """An exact Decimal from a venue value (string, int, or Decimal from ``parse_float=Decimal``)."""
    if isinstance(value, bool) or value is None or value == "":
        raise VenueBadData(venue, f"{what} is missing or not a number")
    if isinstance(value, Decimal) and value.is_finite():
        return value
    if isinstance(value, float):  # never produced by decode_json; kept exact for callers that pass floats
        return Decimal(repr(value))
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise VenueBadData(venue, f"{what} is not a number: {str(value)[:40]!r}") from None
    if not number.is_finite():
        raise VenueBadData(venue, f"{what} is not a finite number")
    return number


def optional_decimal(venue: str, value: Any, what: str) -> Decimal | None:
    return None if value is None or value == "" else to_decimal(venue, value, what)


def utc_from_seconds(venue: str, value: Any, what: str = "timestamp") -> dt.datetime:
    """Epoch seconds (int or exact decimal) as an aware UTC datetime, to the microsecond."""
    seconds = to_decimal(venue, value, what)
    return EPOCH + dt.timedelta(microseconds=int(seconds * 1_000_000))


def utc_from_iso(venue: str, value: Any, what: str = "time") -> dt.datetime:
    """RFC 3339 time (``2026-11-02T10:04:05.123456Z``) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        raise VenueBadData(venue, f"{what} is missing")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise VenueBadData(venue, f"{what} is not a time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def asset_label(name: str, outcome: str, limit: int = 64) -> str:
    """``<market>:<outcome>`` within the stored asset width (64): the market name is shortened, never the
    outcome, and the record's ``market`` field still identifies the market exactly."""
    return f"{name[:max(1, limit - len(outcome) - 1)]}:{outcome}"[:limit]


def plain_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A venue row kept as evidence, JSON-ready: numbers decoded as Decimal go back to their exact text."""
    return {k: (format(v, "f") if isinstance(v, Decimal) else v) for k, v in row.items()}


def scrub_error(exc: VenueError, secrets: Sequence[str]) -> VenueError:
    """The same classified error with any credential the venue echoed replaced (key ids do get echoed)."""
    text = exc.message.split(": ", 1)[1] if exc.message.startswith(f"{exc.venue}: ") else exc.message
    clean = text
    for secret in secrets:
        if secret:
            clean = clean.replace(secret, "<redacted>")
    if clean == text:
        return exc
    if isinstance(exc, VenueRateLimited):
        return VenueRateLimited(exc.venue, clean, retry_after=exc.retry_after, venue_code=exc.venue_code)
    return type(exc)(exc.venue, clean, venue_code=exc.venue_code)


def epoch_seconds(when: dt.datetime) -> int:
    """Whole seconds since the epoch (floor), the unit both venues filter by."""
    return int((when - EPOCH) // dt.timedelta(seconds=1))


def decode_json(venue: str, response: requests.Response) -> Any:
    try:
        return json.loads(response.content or b"null", parse_float=Decimal)
    except ValueError:
        raise VenueBadData(venue, f"the venue answered HTTP {response.status_code} with a body that is not JSON") \
            from None


def http_get(venue: str, session: requests.Session, url: str, *,
             params: Mapping[str, Any] | Sequence[tuple[str, str]] | None = None, auth: Any = None,
             read_error: ErrorReader) -> Any:
    """GET ``url`` through the venue's egress session and return the decoded JSON body.

    Statuses are classified here: 401 authentication, 403 permission, 429 rate limit (with the
    venue's Retry-After), 5xx and transport failures transient, anything else or a body that is not
    JSON bad data. Messages carry the venue's error code and words, never the URL or its query.
    """
    try:
        response = session.get(url, params=params if isinstance(params, Sequence) else dict(params or {}),
                               auth=auth)
    except EgressRefused:
        raise
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise VenueTransient(venue, f"venue unreachable ({type(exc).__name__})") from None
    except requests.RequestException as exc:
        raise VenueTransient(venue, f"request failed ({type(exc).__name__})") from None
    status = response.status_code
    if 200 <= status < 300:
        return decode_json(venue, response)
    try:
        body = json.loads(response.content or b"null", parse_float=Decimal)
    except ValueError:
        body = None
    code, text = read_error(status, body)
    if not text:
        text = (response.text or "").strip()[:120] if body is None else ""
    detail = f"HTTP {status}" + (f" {code}" if code else "") + (f": {text}" if text else "")
    raise classify_status(venue, status, detail, code, response.headers)


def classify_status(venue: str, status: int, detail: str, code: str | None, headers: Any) -> VenueError:
    if status == 401:
        return VenueAuthError(venue, f"authentication failed: the key is invalid, revoked or the signature was "
                                     f"refused ({detail})", venue_code=code)
    if status == 403:
        return VenuePermissionError(venue, f"permission denied ({detail})", venue_code=code)
    if status == 429:
        return VenueRateLimited(venue, f"rate limited ({detail})", retry_after=retry_after_seconds(headers),
                                venue_code=code)
    if status >= 500 or status in (408, 425):
        return VenueTransient(venue, f"venue unavailable ({detail})", venue_code=code)
    return VenueBadData(venue, f"the venue refused the request ({detail})", venue_code=code)


# -- incremental cursor for newest-first feeds ----------------------------------------------------

# One row of a feed: (whole epoch seconds, stable venue id, the record built from it).
FeedRow = tuple[int, str, TxRecord]
# fetch(phase, since_seconds or None, venue cursor or None) -> (rows newest first, next venue cursor or None)
Fetch = Callable[[str, int | None, str | None], tuple[list[FeedRow], str | None]]


def _raise_top(top: dict[str, Any] | None, ts: int, row_id: str) -> dict[str, Any]:
    if top is None or ts > top["ts"]:
        return {"ts": ts, "ids": [row_id]}
    if ts == top["ts"] and row_id not in top["ids"]:
        return {"ts": ts, "ids": [*top["ids"], row_id]}
    return top


def newest_first_page(cursor: Mapping[str, Any], phases: Sequence[str], fetch: Fetch, *,
                      settle: dt.timedelta = dt.timedelta(0)) -> Page:
    """One page of a newest-first feed (see the module docstring), walking ``phases`` in order
    (Kalshi reads live fills, then the historical archive).

    Cursor between runs: ``{"mark": {"ts", "ids"}}``. During a run it adds ``"run"``: the phase,
    the venue's own cursor, the newest second seen so far and when the run started. ``settle`` is how
    stale the venue's first page may be (a CDN cache): completeness is claimed only up to
    ``started - settle``.
    """
    mark: dict[str, Any] | None = dict(cursor["mark"]) if cursor.get("mark") else None
    run = dict(cursor.get("run") or {})
    started = run.get("started") or dt.datetime.now(dt.UTC).isoformat()
    phase_index = int(run.get("phase", 0))
    top: dict[str, Any] | None = run.get("top", mark)
    since = int(mark["ts"]) if mark else None
    seen_at_mark = set(mark["ids"]) if mark else set()
    rows, next_cursor = fetch(phases[phase_index], since, run.get("next"))
    records = []
    for ts, row_id, record in rows:
        if mark is not None and (ts < mark["ts"] or (ts == mark["ts"] and row_id in seen_at_mark)):
            continue  # stored by an earlier run
        records.append(record)
        top = _raise_top(top, ts, row_id)
    if next_cursor:
        state = {"phase": phase_index, "next": next_cursor, "top": top, "started": started}
        return Page(records, {"mark": mark, "run": state} if mark else {"run": state}, False)
    if phase_index + 1 < len(phases):
        state = {"phase": phase_index + 1, "next": None, "top": top, "started": started}
        return Page(records, {"mark": mark, "run": state} if mark else {"run": state}, False)
    complete = dt.datetime.fromisoformat(started) - settle
    return Page(records, {"mark": top} if top else {}, True, complete_until=complete)


# The adapters are imported last: their modules import the helpers above from this package.
from appliance.venues.predictions.kalshi import KalshiAdapter  # noqa: E402
from appliance.venues.predictions.polymarket import PolymarketAdapter  # noqa: E402

# Venues reached with an API key (the registry adds them to the exchanges).
KEYED_PREDICTION_ADAPTERS: tuple[type[VenueAdapter], ...] = (KalshiAdapter,)


def wallet_adapters(settings: Settings, egress: Egress) -> list[WalletAdapter]:
    """The address-only prediction venues enabled in ``settings`` (``venues.polymarket.enabled``)."""
    return [PolymarketAdapter(egress)] if settings.venue(PolymarketAdapter.id).enabled else []


__all__ = ["KEYED_PREDICTION_ADAPTERS", "KalshiAdapter", "PolymarketAdapter", "wallet_adapters"]
