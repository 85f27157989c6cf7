"""The kinds of campaign, what their period means, and when each report is due."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from appliance.errors import Invalid
from appliance.settings import Settings

KINDS = ("initial_holdings", "quarterly_transactions", "annual_holdings", "code_acknowledgement")
HOLDINGS_KINDS = ("initial_holdings", "annual_holdings")
LABELS = {"initial_holdings": "Initial holdings report", "quarterly_transactions": "Quarterly transactions report",
          "annual_holdings": "Annual holdings report", "code_acknowledgement": "Code of ethics acknowledgement"}
QUARTER = re.compile(r"^([0-9]{4})Q([1-4])$")
YEAR = re.compile(r"^([0-9]{4})$")


@dataclass(frozen=True)
class Period:
    """A campaign's period: transactions from ``start`` to ``end`` (both included), holdings as of ``as_of``."""

    label: str
    start: dt.date | None
    end: dt.date | None
    as_of: dt.date | None


def check_kind(kind: Any) -> str:
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}", field="kind")
    return str(kind)


def parse_period(kind: str, period: Any) -> Period:
    """'2026Q3' for quarterly transactions, '2026' for annual holdings, null (or absent) for the others."""
    if kind in ("initial_holdings", "code_acknowledgement"):
        if period not in (None, ""):
            raise Invalid(f"a {kind} campaign has no period (give null)", field="period")
        return Period("", None, None, None)
    if not isinstance(period, str):
        raise Invalid(f"a {kind} campaign needs a period: "
                      f"{'a quarter such as 2026Q3' if kind == 'quarterly_transactions' else 'a year such as 2026'}",
                      field="period")
    if kind == "quarterly_transactions":
        match = QUARTER.match(period.strip())
        if not match:
            raise Invalid(f"period must be a quarter such as 2026Q3, got {period[:20]!r}", field="period")
        year, quarter = int(match.group(1)), int(match.group(2))
        _check_year(year)
        start = dt.date(year, 3 * quarter - 2, 1)
        end = (dt.date(year + (quarter == 4), 1 if quarter == 4 else 3 * quarter + 1, 1) - dt.timedelta(days=1))
        return Period(f"{year}Q{quarter}", start, end, None)
    match = YEAR.match(period.strip())
    if not match:
        raise Invalid(f"period must be a year such as 2026, got {period[:20]!r}", field="period")
    year = int(match.group(1))
    _check_year(year)
    return Period(str(year), dt.date(year, 1, 1), dt.date(year, 12, 31), dt.date(year, 12, 31))


def _check_year(year: int) -> None:
    if not 2000 <= year <= 2100:
        raise Invalid("the period's year must be between 2000 and 2100", field="period")


def default_due(settings: Settings, kind: str, period: Period, today: dt.date) -> dt.date | None:
    """The rule's due date; None for initial holdings (each task's own: access-person date + N days)."""
    cfg = settings.attestations
    if kind == "quarterly_transactions":
        assert period.end is not None
        return period.end + dt.timedelta(days=cfg.quarterly_due_days)
    if kind == "annual_holdings":
        assert period.end is not None
        month, day = int(cfg.annual_due[:2]), int(cfg.annual_due[3:])
        year = period.end.year + 1
        if month == 2 and day == 29 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
            day = 28
        return dt.date(year, month, day)
    if kind == "code_acknowledgement":
        return today + dt.timedelta(days=cfg.acknowledgement_due_days)
    return None


def initial_due(settings: Settings, since: dt.date) -> dt.date:
    return since + dt.timedelta(days=settings.attestations.initial_due_days)


def title(kind: str, period: Period, version: int | None = None) -> str:
    if kind == "code_acknowledgement" and version is not None:
        return f"{LABELS[kind]}: version {version}"
    return f"{LABELS[kind]} {period.label}".strip()
