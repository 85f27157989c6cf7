"""Report periods: a calendar quarter (``2026Q3``), a year (``2026``), or custom days (from/to, inclusive).

Days are UTC days: a period runs from the first day's midnight UTC to the midnight after its last day
(exclusive), and "holdings as of a day" are those at the end of that day (the next midnight, exclusive)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from appliance.errors import Invalid

_QUARTER = re.compile(r"([0-9]{4})[Qq]([1-4])")
_YEAR = re.compile(r"[0-9]{4}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A custom period longer than this is refused (a typo in a year, not a report anyone files).
MAX_DAYS = 366 * 5
FIRST_YEAR = 2000


@dataclass(frozen=True)
class Period:
    label: str
    first: dt.date
    last: dt.date  # inclusive

    @property
    def since(self) -> dt.datetime:
        return start_of(self.first)

    @property
    def until(self) -> dt.datetime:
        return start_of(self.last + dt.timedelta(days=1))

    @property
    def slug(self) -> str:
        return self.label if "Q" in self.label or len(self.label) == 4 else f"{self.first}_{self.last}"

    def text(self) -> str:
        return f"{self.label} ({self.first.isoformat()} to {self.last.isoformat()}, UTC)"


def start_of(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def end_of(day: dt.date) -> dt.datetime:
    """The instant a day's holdings are taken at: the next midnight UTC (exclusive)."""
    return start_of(day + dt.timedelta(days=1))


def parse_day(text: str, field: str) -> dt.date:
    if not isinstance(text, str) or not _DAY.fullmatch(text):
        raise Invalid(f"{field} must be a date written YYYY-MM-DD", field=field)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{field}: {text} is not a calendar date", field=field) from None
    if day.year < FIRST_YEAR:
        raise Invalid(f"{field} must be in {FIRST_YEAR} or later", field=field)
    return day


def parse_period(text: str, field: str = "period") -> Period:
    """``2026Q3`` or ``2026``; Invalid otherwise."""
    if isinstance(text, str) and (found := _QUARTER.fullmatch(text)):
        year, quarter = int(found[1]), int(found[2])
        _check_year(year, field)
        first = dt.date(year, 3 * quarter - 2, 1)
        after = dt.date(year + 1, 1, 1) if quarter == 4 else dt.date(year, 3 * quarter + 1, 1)
        return Period(f"{year}Q{quarter}", first, after - dt.timedelta(days=1))
    if isinstance(text, str) and _YEAR.fullmatch(text):
        year = int(text)
        _check_year(year, field)
        return Period(str(year), dt.date(year, 1, 1), dt.date(year, 12, 31))
    raise Invalid(f"{field} must be a quarter like 2026Q3 or a year like 2026", field=field)


def _check_year(year: int, field: str) -> None:
    if not FIRST_YEAR <= year <= 9998:
        raise Invalid(f"{field}: the year must be between {FIRST_YEAR} and 9998", field=field)


def custom(first: dt.date, last: dt.date) -> Period:
    if last < first:
        raise Invalid("to must be on or after from", field="to")
    if (last - first).days >= MAX_DAYS:
        raise Invalid(f"a custom period is at most {MAX_DAYS} days", field="to")
    return Period(f"{first.isoformat()}..{last.isoformat()}", first, last)


def resolve(period: str | None, first: str | None, last: str | None) -> Period:
    """One period from either ``period`` or ``from`` and ``to`` (days, inclusive), never both."""
    if period and (first or last):
        raise Invalid("give either a period or from/to dates, not both", field="period")
    if period:
        return parse_period(period)
    if not first or not last:
        raise Invalid("give a period (2026Q3, 2026) or both from and to (YYYY-MM-DD)",
                      field="from" if not first else "to")
    return custom(parse_day(first, "from"), parse_day(last, "to"))


def pickers(today: dt.date | None = None) -> dict[str, object]:
    """The Reports page's choices: today, the last eight quarters (newest first: the current one, then the
    last one closed) and the last three years."""
    from appliance.store.base import utcnow

    today = today or utcnow().date()
    year, quarter = today.year, (today.month - 1) // 3 + 1
    quarters = []
    for _ in range(8):
        quarters.append(f"{year}Q{quarter}")
        year, quarter = (year, quarter - 1) if quarter > 1 else (year - 1, 4)
    return {"today": today.isoformat(), "quarters": quarters, "years": [str(today.year - i) for i in range(3)]}
