"""`vigatra prices import FILE`: prices for sites without exchange egress, used like fetched ones, marked imported.

The file is CSV (RFC 4180), UTF-8 (a BOM is fine), one price a line, with a header naming the five columns in
any order (case-insensitive)::

    asset,currency,time,price,source
    BTC,USD,2026-01-05T00:00:00Z,43125.50,ECB reference rates
    ETH,EUR,2026-01-05T16:00:00+01:00,2250.1,Bloomberg BGN
    USDT,USD,2026-01-05,1.0002,custodian statement

- ``asset``, ``currency``: codes as the venues spell them (upper case is stored; BTC, USDT, EUR), not equal.
- ``time``: the instant the price is for, ISO 8601 with ``Z`` or an offset (stored in UTC), or a date alone
  (midnight UTC). A time without a zone is refused rather than guessed; a time in the future is refused.
- ``price``: how many ``currency`` one ``asset`` is worth: a plain positive decimal (``43125.50``; no
  thousands separators, no exponent).
- ``source``: where the price comes from (1-64 characters); values priced from it show ``import:<source>``.

All rows or none: every bad line is reported with its number. Importing the same file again changes nothing;
a row naming an (asset, currency, time, source) already stored with another price is refused — a stored price
is evidence and is never rewritten (import the correction under another source name).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from appliance.errors import Invalid
from appliance.services.valuation.book import insert_ignoring_duplicates
from appliance.store.base import utcnow
from appliance.store.models import PriceObservation

COLUMNS = ("asset", "currency", "time", "price", "source")
MAX_BYTES = 64 * 1024 * 1024
MAX_ROWS = 1_000_000
MAX_PROBLEMS = 50
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
_PRICE = re.compile(r"^[0-9]{1,18}(\.[0-9]{1,18})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SOURCE = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")
IMPORT_PREFIX = "import:"
LOOKUP_BATCH = 400


@dataclass(frozen=True)
class ImportedPrice:
    line: int
    asset: str
    currency: str
    at: dt.datetime
    price: Decimal
    source: str  # as stored: import:<name>


@dataclass(frozen=True)
class ImportResult:
    rows: int
    added: int
    unchanged: int
    sources: tuple[str, ...]
    sha256: str


def parse(data: bytes, *, now: dt.datetime | None = None) -> list[ImportedPrice]:
    """The file's prices, or Invalid listing every bad line (``detail["errors"]``: line and message)."""
    if len(data) > MAX_BYTES:
        raise Invalid(f"nothing was imported: the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise Invalid(f"nothing was imported: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    latest = (now or utcnow()) + dt.timedelta(minutes=5)
    problems: list[tuple[int, str]] = []
    prices: list[ImportedPrice] = []
    seen: dict[tuple[str, str, dt.datetime, str], int] = {}
    header: list[str] | None = None
    try:
        for cells in reader:
            line = reader.line_num
            if header is None:
                header = [c.strip().lower() for c in cells]
                _check_header(header)
                continue
            if not any(c.strip() for c in cells):
                continue
            if len(prices) + len(problems) >= MAX_ROWS:
                raise Invalid(f"nothing was imported: more than {MAX_ROWS:,} rows; split the file")
            if len(cells) != len(header):
                problems.append((line, f"{len(cells)} field(s); the header names {len(header)}"))
                continue
            try:
                price = _row(line, dict(zip(header, cells, strict=True)), latest)
            except ValueError as exc:
                problems.append((line, str(exc)))
                continue
            key = (price.asset, price.currency, price.at, price.source)
            if key in seen:
                problems.append((line, f"repeats line {seen[key]} (same asset, currency, time and source)"))
                continue
            seen[key] = line
            prices.append(price)
    except csv.Error as exc:
        problems.append((reader.line_num, f"unreadable CSV ({exc})"[:200]))
    if header is None:
        raise Invalid(f"nothing was imported: the file is empty (line 1 must name the columns {', '.join(COLUMNS)})")
    _raise_problems(problems)
    if not prices:
        raise Invalid("nothing was imported: the file has no rows")
    return prices


def _check_header(header: list[str]) -> None:
    missing = [c for c in COLUMNS if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if missing or unknown or repeated:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(repr(u) for u in unknown)}"] if unknown else []) + (
            [f"repeated {', '.join(repeated)}"] if repeated else [])
        raise Invalid(f"nothing was imported: line 1 must name the columns {', '.join(COLUMNS)} "
                      f"({'; '.join(parts)})")


def _row(line: int, row: dict[str, str], latest: dt.datetime) -> ImportedPrice:
    asset, currency = row["asset"].strip(), row["currency"].strip()
    for name, code in (("asset", asset), ("currency", currency)):
        if not _CODE.match(code):
            raise ValueError(f"{name} {code[:40]!r} is not a code such as BTC or USD (letters, digits, . - _; "
                             "up to 32)")
    asset, currency = asset.upper(), currency.upper()
    if asset == currency:
        raise ValueError(f"asset and currency are both {asset}")
    at = _time(row["time"].strip())
    if at > latest:
        raise ValueError(f"time {row['time'].strip()} is in the future")
    text = row["price"].strip()
    if not _PRICE.match(text):
        raise ValueError(f"price {text[:40]!r} is not a plain decimal such as 43125.50")
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"price {text[:40]!r} is not a number") from None
    if price <= 0:
        raise ValueError("price must be greater than zero")
    source = row["source"].strip()
    if not _SOURCE.match(source):
        raise ValueError("source must be 1 to 64 characters without control characters")
    return ImportedPrice(line, asset, currency, at, price, IMPORT_PREFIX + source)


def _time(text: str) -> dt.datetime:
    if _DATE.match(text):
        try:
            return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
        except ValueError:
            raise ValueError(f"time {text!r} is not a date") from None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text[:40]!r} is not an ISO 8601 time such as 2026-01-05T10:00:00Z") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"time {text!r} has no time zone: write Z for UTC (2026-01-05T10:00:00Z) or an offset")
    return parsed.astimezone(dt.UTC)


def _raise_problems(problems: list[tuple[int, str]]) -> None:
    if not problems:
        return
    listing = "; ".join(f"line {line}: {message}" for line, message in problems[:MAX_PROBLEMS])
    more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
    raise Invalid(f"nothing was imported: {len(problems)} bad row(s): {listing}{more}",
                  detail={"errors": [{"line": line, "message": message} for line, message in problems]})


def import_prices(session: Session, data: bytes, *, now: dt.datetime | None = None) -> ImportResult:
    """Parse and store; all rows or none. Rows already stored with the same price are left as they are."""
    now = now or utcnow()
    prices = parse(data, now=now)
    stored = _stored(session, prices)
    problems: list[tuple[int, str]] = []
    fresh: list[ImportedPrice] = []
    for p in prices:
        existing = stored.get((p.asset, p.currency, p.at, p.source))
        if existing is None:
            fresh.append(p)
        elif existing != p.price:
            problems.append((p.line, f"{p.asset}/{p.currency} at {p.at:%Y-%m-%dT%H:%M:%SZ} from "
                                     f"{p.source.removeprefix(IMPORT_PREFIX)!r} is already stored as {existing:f}; "
                                     "a stored price is never changed (import a correction under another source)"))
    _raise_problems(problems)
    insert_ignoring_duplicates(session, PriceObservation, [
        {"kind": "import", "source": p.source, "asset": p.asset, "currency": p.currency, "timeframe": "", "at": p.at,
         "price": p.price, "fetched_at": now} for p in fresh])
    session.flush()
    return ImportResult(len(prices), len(fresh), len(prices) - len(fresh),
                        tuple(sorted({p.source.removeprefix(IMPORT_PREFIX) for p in prices})),
                        hashlib.sha256(data).hexdigest())


def _stored(session: Session, prices: list[ImportedPrice]) -> dict[tuple[str, str, dt.datetime, str], Decimal]:
    out: dict[tuple[str, str, dt.datetime, str], Decimal] = {}
    pairs = sorted({(p.asset, p.currency) for p in prices})
    for start in range(0, len(pairs), LOOKUP_BATCH):
        chunk = pairs[start:start + LOOKUP_BATCH]
        stmt = select(PriceObservation.asset, PriceObservation.currency, PriceObservation.at, PriceObservation.source,
                      PriceObservation.price).where(
            PriceObservation.kind == "import",
            or_(*(and_(PriceObservation.asset == a, PriceObservation.currency == c) for a, c in chunk)))
        for asset, currency, at, source, price in session.execute(stmt):
            out[(asset, currency, at, source)] = price
    return out
