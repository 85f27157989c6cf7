"""The Reports menu item per role, the Reports page's period pickers, and the print pages and CSVs it opens
(the same forms a browser submits: every field sent, empty ones meaning "not given")."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from tests.access.helpers import login_session


def fresh(client: Any) -> Any:
    """A new browser (no cookies) on the same app."""
    return type(client)(client.application, client.response_wrapper)


def nav_of(page: str) -> list[str]:
    found = re.search(r'<nav class="main"[^>]*>(.*?)</nav>', page, re.S)
    return re.findall(r">([^<]+)</a>", found.group(1)) if found else []


def test_the_menu_shows_reports_to_every_role_allowed(client: Any, ta: Any) -> None:
    seen = {}
    for persona in ("alice", "carol", "victor", "nora"):
        client = fresh(client)
        login_session(client, ta, persona)
        seen[persona] = nav_of(client.get("/account").get_data(as_text=True))
    assert "Reports" in seen["alice"] and "Reports" in seen["carol"] and "Reports" in seen["victor"]
    assert "Reports" not in seen["nora"], "no role: no reports:read, no menu item"
    client = fresh(client)
    login_session(client, ta, "nora")
    assert client.get("/reports").status_code == 403


def test_period_pickers_and_what_each_role_is_offered(client: Any, ta: Any) -> None:
    login_session(client, ta, "alice")
    page = client.get("/reports").get_data(as_text=True)
    assert 'id="holdings-form"' in page and 'type="date" name="as_of"' in page
    year = dt.datetime.now(dt.UTC).year
    assert re.search(rf'<option value="{year}Q[1-4]"', page) and f'<option value="{year}">' in page
    assert 'name="from"' in page and 'name="to"' in page and 'id="exam-pack"' in page
    client = fresh(client)
    login_session(client, ta, "victor")
    page = client.get("/reports").get_data(as_text=True)
    assert 'id="holdings-form"' not in page and 'id="exam-pack"' not in page, "a Viewer exports no records"
    assert 'id="roster-reports"' in page
    assert client.get("/reports/holdings").status_code == 403
    assert client.get("/reports/transactions?period=2026Q3").status_code == 403
    assert client.get("/reports/access-persons").status_code == 200


def test_the_forms_open_print_pages_and_csv(client: Any, ta: Any) -> None:
    login_session(client, ta, "alice")
    response = client.get("/reports/transactions?period=2026Q3&from=&to=&format=html")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    page = response.get_data(as_text=True)
    assert "2026Q3 (2026-07-01 to 2026-09-30, UTC)" in page and "<thead>" in page
    assert "<script" not in page and "style=" not in page and "<style" not in page
    assert "style-src 'self'" in response.headers["Content-Security-Policy"]
    custom = client.get("/reports/transactions?period=&from=2026-01-01&to=2026-01-31&format=csv")
    assert custom.status_code == 200 and custom.mimetype == "text/csv"
    assert custom.get_data(as_text=True).startswith("employee_external_id,employee,access_person,date,nature")
    held = client.get("/reports/holdings?as_of=2026-06-30&format=html")
    assert held.status_code == 200 and "as of the end of 2026-06-30 (UTC)" in held.get_data(as_text=True)
    bad = client.get("/reports/holdings?as_of=2026-06-31&format=html")
    assert bad.status_code == 400
    assert client.get("/reports/transactions?period=&from=&to=&format=html").status_code == 400
    assert client.get("/report-print.css").status_code == 404
    assert client.get("/static/report-print.css").status_code == 200
