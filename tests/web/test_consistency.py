"""One way to write a time, an amount and a name on every page (appliance/web/display.py)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import ConfigError
from appliance.web import display
from tests.access.helpers import login_session
from tests.support import app as support_app

TEMPLATES = Path(__file__).resolve().parents[2] / "appliance" / "web" / "templates"
WINTER = dt.datetime(2026, 12, 12, 13, 5, 12, tzinfo=dt.UTC)
SUMMER = dt.datetime(2026, 7, 1, 23, 30, tzinfo=dt.UTC)


def test_no_template_formats_a_time_itself() -> None:
    for path in TEMPLATES.glob("*.html"):
        text = path.read_text()
        assert not re.search(r"strftime|isoformat", text), f"{path.name}: use |when, |day, |ago or |utc"


def test_times_read_in_the_firm_zone_with_utc_on_hover() -> None:
    assert display.time_text(WINTER, "Europe/Paris") == "2026-12-12 14:05 CET"
    assert display.time_text(SUMMER, "Europe/Paris") == "2026-07-02 01:30 CEST"
    assert display.time_text(SUMMER, "UTC") == "2026-07-01 23:30 UTC"
    assert display.time_text("2026-12-12T13:05:12Z", "America/New_York") == "2026-12-12 08:05 EST"
    shown = str(display.when(WINTER, "Asia/Tokyo"))
    assert shown == ('<time datetime="2026-12-12T13:05:12Z" title="2026-12-12 13:05:12 UTC">'
                     "2026-12-12 22:05 JST</time>")
    assert str(display.day(WINTER.replace(hour=23, minute=30), "Europe/Paris")).endswith(">2026-12-13</time>")
    assert str(display.when(None, "UTC", "never")) == "never"
    assert str(display.when(None, "UTC", "<b>")) == "&lt;b&gt;"  # the fallback text is escaped


def test_ago_in_words() -> None:
    now = WINTER
    assert display.ago_text(now - dt.timedelta(seconds=30), now) == "just now"
    assert display.ago_text(now - dt.timedelta(minutes=1), now) == "1 minute ago"
    assert display.ago_text(now - dt.timedelta(hours=5, minutes=59), now) == "5 hours ago"
    assert display.ago_text(now - dt.timedelta(days=2), now) == "2 days ago"
    assert display.ago_text(now + dt.timedelta(minutes=10), now) == "in 10 minutes"


@pytest.mark.parametrize(("value", "shown"), [
    ("0", "0"), ("1219320898.12345678", "1,219,320,898.12"), ("-27800000000", "-27,800,000,000"),
    ("12345678.12345678", "12,345,678.12"), ("1.23456789", "1.234568"), ("1.5", "1.5"),
    ("0.00000001", "0.00000001"), ("0.000000001", "< 0.00000001"), ("0.12300000", "0.123"), ("250", "250"),
])
def test_amounts_are_grouped_with_sensible_precision(value: str, shown: str) -> None:
    assert display.amount_text(Decimal(value)) == shown


def test_a_rounded_amount_keeps_the_exact_one_on_hover() -> None:
    assert str(display.amount(Decimal("1.23456789"))) == '<span class="qty" title="1.23456789">1.234568</span>'
    assert str(display.amount(Decimal("2.5"))) == '<span class="qty">2.5</span>'
    assert str(display.amount(None)) == ""


@pytest.mark.parametrize(("value", "shown"), [
    ("67321.456", "67,321.46"), ("1.23456", "1.2346"), ("0.000123456789", "0.000123457"), ("0.5", "0.5"),
])
def test_prices(value: str, shown: str) -> None:
    assert display.price_text(Decimal(value)) == shown


def test_money_and_compact_figures() -> None:
    assert display.money(Decimal("1234567.891"), "USD") == "1,234,567.89"
    assert display.money(None, "USD") == ""
    assert display.compact_money(Decimal("1250000"), "USD") == "1.2M"
    assert display.compact_money(Decimal("350000"), "USD") == "350k"
    assert display.compact_money(Decimal("980.40"), "USD") == "980"


def test_an_unknown_time_zone_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Mars/Olympus_Mons"):
        support_app.test_settings("sqlite:///x.db", tmp_path, "X", display={"time_zone": "Mars/Olympus_Mons"})


def test_alerts_show_employee_names_and_the_audit_trail_usernames(client: Any, ta: Any) -> None:
    from sqlalchemy import insert

    from appliance.store.models import Alert, Employee

    with ta.store.unit_of_work() as session:
        session.execute(insert(Employee), [{"name": "Grace Hopper", "email": "grace@firm.example"}])
        employee = session.query(Employee).one()
        session.execute(insert(Alert), [{"employee_id": employee.id, "kind": "rule_break", "title": "Big trade"}])
    login_session(client, ta, "alice")
    alerts = client.get("/alerts").get_data(as_text=True)
    assert "Grace Hopper" in alerts and f">#{employee.id}<" not in alerts
    assert "<time datetime=" in alerts
    audit = client.get("/audit").get_data(as_text=True)
    assert ">alice<" in audit


def test_no_inline_style_the_csp_would_block_and_a_favicon() -> None:
    for path in TEMPLATES.glob("**/*.html"):
        assert not re.search(r"\sstyle=|<style", path.read_text()), f"{path.name}: use a class in app.css"
    base = (TEMPLATES / "base.html").read_text()
    assert 'rel="icon"' in base
    css = (TEMPLATES.parent / "static" / "app.css").read_text()
    assert "@media print" in css


def test_reports_is_in_the_menu(client: Any, ta: Any) -> None:
    login_session(client, ta, "victor")
    assert re.search(r'<nav class="main"[^>]*>.*href="/reports"', client.get("/").get_data(as_text=True), re.S)
