"""How every page writes times, amounts and money: one format each, everywhere.

- Times: ``2026-12-12 14:05 CET`` in the firm's time zone (``display.time_zone``), inside a ``<time>`` element
  whose ``datetime`` is the UTC instant and whose tooltip is the UTC time (``2026-12-12 13:05:12 UTC``). Exports
  and the API keep UTC. ``|day`` is the date alone, ``|ago`` "5 minutes ago" (same element, same tooltip).
- Quantities of an asset (``|amount``): thousands grouped, no exponent, precision by size (two decimals from
  1,000 up, up to six from 1, up to eight below), trailing zeros dropped; the exact stored value is the tooltip
  whenever the shown one is rounded. A non-zero amount too small to show reads ``< 0.00000001``.
- Prices (``|price``): grouped, two decimals from 100 up, four from 1, six significant digits below.
- Money in the firm's currency (``|money(currency)``): rounded to the currency's minor unit, grouped.

Templates never call ``strftime`` or print a Decimal raw: these filters are the only way a time or a number
reaches a page (tests/web/test_consistency.py walks the templates for it).
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from markupsafe import Markup, escape

from appliance.services.valuation import read as valuation

UTC_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
LOCAL_FORMAT = "%Y-%m-%d %H:%M"
SMALLEST = Decimal("0.00000001")
Stamp = dt.datetime | str  # a stored time, or the ISO text an API serialiser made of one


def aware(value: dt.datetime | str) -> dt.datetime:
    """A stored time as an aware UTC datetime: naive values are UTC as the store keeps them, and the ISO text
    the API's serialisers give (``...Z``) is read back."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


@functools.cache
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def local(value: Stamp, tz_name: str) -> dt.datetime:
    """``value`` (aware; naive values are UTC as the store keeps them) in the firm's time zone."""
    return aware(value).astimezone(zone(tz_name))


def utc_text(value: Stamp) -> str:
    return aware(value).astimezone(dt.UTC).strftime(UTC_FORMAT)


def iso_utc(value: Stamp) -> str:
    return aware(value).astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def time_text(value: Stamp, tz_name: str) -> str:
    """The one way a time reads on a page: ``2026-12-12 14:05 CET``."""
    shown = local(value, tz_name)
    return f"{shown.strftime(LOCAL_FORMAT)} {shown.strftime('%Z') or tz_name}"


def day_text(value: Stamp, tz_name: str) -> str:
    return local(value, tz_name).strftime("%Y-%m-%d")


def _tag(template: str, *values: object) -> Markup:
    """``template`` (a literal) with every value escaped: Markup.format's result, by one C-level str.format
    (Markup.format runs Python's string.Formatter, which a page of 50 transactions felt)."""
    return Markup(template.format(*(escape(v) for v in values)))  # noqa: S704 - every value is escaped


def _element(value: Stamp, text: str) -> Markup:
    return _tag('<time datetime="{}" title="{}">{}</time>', iso_utc(value), utc_text(value), text)


def when(value: Stamp | None, tz_name: str, missing: str = "") -> Markup:
    if value is None:
        return escape(missing)
    return _element(value, time_text(value, tz_name))


def day(value: Stamp | dt.date | None, tz_name: str, missing: str = "") -> Markup:
    """A time's day in the firm's zone; a calendar date (a due date, a period's end) as it is."""
    if value is None:
        return escape(missing)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return Markup('<time datetime="{}">{}</time>').format(value.isoformat(), value.isoformat())
    return _element(value, day_text(value, tz_name))


def ago_text(value: Stamp, now: dt.datetime | None = None) -> str:
    """"just now", "5 minutes ago", "3 hours ago", "2 days ago"; "in 5 minutes" for a future time."""
    value = aware(value)
    seconds = int(((now or dt.datetime.now(dt.UTC)) - value).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        return "just now"
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            phrase = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"in {phrase}" if future else f"{phrase} ago"
    return "just now"  # unreachable: seconds >= 60 matched a minute


def ago(value: Stamp | None, missing: str = "never") -> Markup:
    if value is None:
        return escape(missing)
    return _element(value, ago_text(value))


# -- numbers -------------------------------------------------------------------------------------------------

def _grouped(value: Decimal, places: int, *, strip: bool = True) -> str:
    quantized = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN) if places else value.quantize(
        Decimal(1), rounding=ROUND_HALF_EVEN)
    text = f"{quantized:,.{places}f}"
    if strip and "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def amount_text(value: Decimal) -> str:
    """A quantity as a page shows it (see the module docstring)."""
    size = abs(value)
    if size == 0:
        return "0"
    if size >= 1000:
        return _grouped(value, 2, strip=False) if value != value.to_integral_value() else _grouped(value, 0)
    if size >= 1:
        return _grouped(value, 6)
    if size < SMALLEST / 2:
        return f"{'-' if value < 0 else ''}< {SMALLEST:f}"
    return _grouped(value, 8)


def _exact(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def amount(value: Decimal | int | None) -> Markup:
    if value is None:
        return Markup("")
    value = Decimal(value)
    shown = amount_text(value)
    exact = _exact(value)
    if shown.replace(",", "") == exact:
        return _tag('<span class="qty">{}</span>', shown)
    return _tag('<span class="qty" title="{}">{}</span>', exact, shown)


def price_text(value: Decimal) -> str:
    size = abs(value)
    if size == 0:
        return "0"
    if size >= 100:
        return _grouped(value, 2, strip=False)
    if size >= 1:
        return _grouped(value, 4)
    digits = 6 - (size.adjusted() + 1)  # six significant digits
    return _grouped(value, min(max(digits, 1), 12))


def price(value: Decimal | None) -> Markup:
    if value is None:
        return Markup("")
    value = Decimal(value)
    shown = price_text(value)
    exact = _exact(value)
    if shown.replace(",", "") == exact:
        return _tag('<span class="qty">{}</span>', shown)
    return _tag('<span class="qty" title="{}">{}</span>', exact, shown)


def money(value: Decimal | int | None, currency: str) -> str:
    """A value rounded to the currency's minor unit, with thousands separators."""
    shown = valuation.rounded(None if value is None else Decimal(value), currency)
    return "" if shown is None else f"{shown:,}"


def compact_money(value: Decimal | None, currency: str) -> str:
    """Short figures for chart labels and headline tiles: 1.2M, 350k, 980."""
    if value is None:
        return ""
    size = abs(value)
    for limit, suffix in ((Decimal(10) ** 9, "bn"), (Decimal(10) ** 6, "M"), (Decimal(10) ** 3, "k")):
        if size >= limit:
            # Rounded explicitly: a format spec would follow the thread's decimal context, which libraries
            # in this process may have changed (1.25M read 1.3M after one did).
            scaled = (value / limit).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)
            return f"{scaled}".rstrip("0").rstrip(".") + suffix
    return money(value, currency).split(".")[0] if size >= 100 else money(value, currency)


def count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def plural(n: int, singular: str, many: str | None = None) -> str:
    return f"{n:,} {singular if n == 1 else (many or singular + 's')}"


def install(blueprint: Any, tz_of: Any) -> None:
    """Register the filters on the UI blueprint; ``tz_of()`` answers the firm's time zone name."""
    blueprint.add_app_template_filter(lambda v, missing="": when(v, tz_of(), missing), "when")
    blueprint.add_app_template_filter(lambda v, missing="": day(v, tz_of(), missing), "day")
    blueprint.add_app_template_filter(ago, "ago")
    blueprint.add_app_template_filter(lambda v: "" if v is None else utc_text(v), "utc")  # inside attributes
    blueprint.add_app_template_filter(amount, "amount")
    blueprint.add_app_template_filter(price, "price")
    blueprint.add_app_template_filter(money, "money")
    blueprint.add_app_template_filter(compact_money, "compact_money")
    blueprint.add_app_template_filter(count, "count")
    blueprint.add_app_template_global(plural, "plural")
