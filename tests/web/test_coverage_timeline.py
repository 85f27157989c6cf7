"""The employee page's coverage is a timeline (server-side SVG with a title, a description and a tooltip per
span) with the same spans in a table, in plain words — not a list of raw timestamps."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import insert

from appliance.store.base import utcnow
from appliance.store.models import Connection, CoverageInterval, Employee
from appliance.web.coverage import timeline
from tests.access.helpers import login_session


def seed(ta: Any) -> dt.datetime:
    now = utcnow()
    with ta.store.unit_of_work() as session:
        session.execute(insert(Employee), [{"id": 1, "name": "Ada", "email": "ada@firm.example"}])
        session.execute(insert(Connection), [
            {"id": 1, "employee_id": 1, "kind": "exchange", "venue": "kraken", "label": "Kraken", "status": "broken"},
            {"id": 2, "employee_id": 1, "kind": "exchange", "venue": "gemini", "label": "Gemini", "status": "pending"}])
        session.execute(insert(CoverageInterval), [
            {"connection_id": 1, "stream": "trades", "kind": "complete", "start_at": now - dt.timedelta(days=20),
             "end_at": now - dt.timedelta(hours=6)},
            {"connection_id": 1, "stream": "trades", "kind": "gap", "start_at": now - dt.timedelta(days=8),
             "end_at": now - dt.timedelta(days=7), "reason": "venue_down", "closed_at": now - dt.timedelta(days=6)},
            {"connection_id": 1, "stream": "trades", "kind": "gap", "start_at": now - dt.timedelta(hours=6),
             "reason": "auth_error"},
            {"connection_id": 1, "stream": "ledger", "kind": "gap", "start_at": now - dt.timedelta(days=20),
             "reason": "history_limit", "detail": "Kraken serves no ledger entries before this"}])
    return now


def test_the_employee_page_draws_the_coverage_timeline(client: Any, ta: Any) -> None:
    seed(ta)
    login_session(client, ta, "alice")
    html = client.get("/employees/1").get_data(as_text=True)
    svg = re.search(r'<svg class="chart timeline".*?</svg>', html, re.S)
    assert svg is not None and "<title id=" in svg.group(0) and "<desc id=" in svg.group(0)
    assert svg.group(0).count('class="timeline-covered"') == 1 and svg.group(0).count('class="timeline-gap"') == 2
    assert svg.group(0).count('class="timeline-filled"') == 1
    assert "Kraken · trades" in svg.group(0) and "Gemini" in svg.group(0)  # a lane for a connection not read yet
    table = re.search(r'<table class="compact" id="coverage-table">.*?</table>', html, re.S)
    assert table is not None
    kinds = re.findall(r'<tr data-kind="(\w+)">', table.group(0))
    assert sorted(kinds) == ["covered", "filled", "gap", "gap", "none"]
    assert "the venue refused the key" in table.group(0) and "missing, filled later" in table.group(0)
    assert "Kraken serves no ledger entries before this" in table.group(0)  # the detail behind a disclosure
    assert '<span class="badge red">2 gaps open</span>' in html  # the connections table summarises


def test_spans_outside_the_window_are_clipped_and_an_empty_employee_has_none() -> None:
    now = dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC)
    connection = {"label": "Kraken", "venue": "kraken", "coverage": [
        {"stream": "trades", "kind": "complete", "from": "2026-12-01T00:00:00Z", "to": None, "reason": "",
         "detail": "", "closed_at": None}]}
    drawn = timeline([connection], "Europe/London", now=now)
    assert drawn is not None and drawn["gaps"] == 0 and drawn["since"] == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    width = re.search(r'class="timeline-covered" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', str(drawn["svg"]))
    assert width is not None and float(width.group(1)) + float(width.group(2)) <= 632.1  # ends at "now"
    assert drawn["rows"][0]["to"] is None  # still complete now
    assert timeline([], "UTC", now=now) is None
