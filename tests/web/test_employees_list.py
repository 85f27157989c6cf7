"""The employees list at 10,000 employees: search, filters, sort and both kinds of paging, per role, on both
databases. Every figure is checked against what was seeded, not against another query of the appliance."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert

from appliance.store.models import Alert, Connection, Employee, EmployeeValue
from tests.access.helpers import auth, login_session, token

EMPLOYEES = 10_000
DEPARTMENTS = ("Trading", "Research", "Operations", "Legal", "Sales")
BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def red(i: int) -> bool:
    return i % 97 == 0


def alerted(i: int) -> bool:
    return i % 89 == 0


def offboarded(i: int) -> bool:
    return i % 50 == 7


def seed(ta: Any) -> dict[int, int]:
    """10,000 employees, two connections each (one broken for every 97th), an open alert for every 89th and
    a value for every employee; returns seed number -> employee id."""
    with ta.store.unit_of_work() as session:
        session.execute(insert(Employee), [{
            "name": f"Person {i:05d}", "email": f"p{i:05d}@firm.example", "department": DEPARTMENTS[i % 5],
            "status": "offboarded" if offboarded(i) else "active", "created_at": BASE + dt.timedelta(minutes=i),
        } for i in range(EMPLOYEES)])
    with ta.store.read() as session:
        ids = {int(e.email[1:6]): e.id for e in session.query(Employee)}
    with ta.store.unit_of_work() as session:
        session.execute(insert(Connection), [{
            "employee_id": ids[i], "kind": "exchange", "venue": venue,
            "status": "broken" if venue == "kraken" and red(i) else "active",
        } for i in range(EMPLOYEES) for venue in ("binance", "kraken")])
        session.execute(insert(Alert), [{"employee_id": ids[i], "kind": "rule_break", "title": f"alert {i}",
                                         "status": "open"} for i in range(EMPLOYEES) if alerted(i)]
                        + [{"employee_id": ids[1], "kind": "rule_break", "title": "old", "status": "resolved"}])
        session.execute(insert(EmployeeValue), [{
            "employee_id": ids[i], "currency": "USD", "balances": Decimal(1000 + i), "positions": Decimal("2.50"),
            "balances_unpriced": 0, "positions_unpriced": 0, "as_of": BASE,
        } for i in range(EMPLOYEES)])
    return ids


def rows(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-employee-id="(\d+)"', html)]


def test_pages_search_filters_and_sort_in_the_ui(client: Any, ta: Any) -> None:
    ids = seed(ta)
    login_session(client, ta, "carol")  # Compliance: alerts yes, everyone's balances no (flagged scope)
    page1 = client.get("/employees").get_data(as_text=True)
    assert rows(page1) == [ids[i] for i in range(50)]
    assert "10,000 employees · page 1 of 200" in page1
    assert "Open alerts" in page1 and "Value (" not in page1  # the flagged scope shows no value column
    last = client.get("/employees?page=200").get_data(as_text=True)
    assert rows(last) == [ids[i] for i in range(9950, 10000)]
    past = client.get("/employees?page=201").get_data(as_text=True)
    assert rows(past) == [] and "There is no page 201" in past

    found = client.get("/employees?q=p0012").get_data(as_text=True)  # e-mail, any case
    assert rows(found) == [ids[i] for i in range(120, 130)]
    assert client.get("/employees?q=LEGAL&page=2").status_code == 200
    legal = [i for i in range(EMPLOYEES) if DEPARTMENTS[i % 5] == "Legal"]
    assert rows(client.get("/employees?q=legal&page=2").get_data(as_text=True)) == [ids[i] for i in legal[50:100]]
    assert "No employee matches" in client.get("/employees?q=100%25").get_data(as_text=True)  # % is literal

    reds = [i for i in range(EMPLOYEES) if red(i)]
    html = client.get("/employees?red=yes").get_data(as_text=True)
    assert rows(html) == [ids[i] for i in reds[:50]] and f"{len(reds)} employees match" in html
    alerting = [i for i in range(EMPLOYEES) if alerted(i) and not offboarded(i)]
    html = client.get("/employees?alerts=yes&status=active&page=2").get_data(as_text=True)
    assert rows(html) == [ids[i] for i in alerting[50:100]]
    both = [i for i in range(EMPLOYEES) if red(i) and not alerted(i)]
    assert rows(client.get("/employees?red=yes&alerts=no").get_data(as_text=True)) == [ids[i] for i in both[:50]]

    newest = client.get("/employees?sort=-added").get_data(as_text=True)
    assert rows(newest) == [ids[i] for i in range(EMPLOYEES - 1, EMPLOYEES - 51, -1)]
    assert rows(client.get("/employees?sort=-name&page=200").get_data(as_text=True)) == \
        [ids[i] for i in range(49, -1, -1)]


def test_bad_list_queries_are_refused_plainly(client: Any, ta: Any) -> None:
    login_session(client, ta, "carol")
    for query, field in (("page=0", "page"), ("page=x", "page"), ("sort=salary", "sort"), ("red=maybe", "red"),
                         ("q=" + "x" * 201, "q")):
        response = client.get(f"/employees?{query}")
        assert response.status_code == 400, query
        assert field in response.get_data(as_text=True)


def test_the_api_pages_with_a_cursor_and_shows_what_the_role_may_see(client: Any, ta: Any) -> None:
    ids = seed(ta)
    admin = auth(token(client, ta, "alice"))
    seen: list[int] = []
    cursor = None
    for _ in range(30):
        url = "/api/v1/employees?q=trading&sort=-department&limit=400" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=admin).get_json()
        assert body["total"] == EMPLOYEES // 5 and body["currency"] == "USD"
        seen += [e["id"] for e in body["employees"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    trading = [i for i in range(EMPLOYEES) if i % 5 == 0]
    assert seen == sorted((ids[i] for i in trading), reverse=True)  # one department: then newest id first
    first = client.get("/api/v1/employees?limit=1", headers=admin).get_json()["employees"][0]
    assert first["id"] == ids[0] and Decimal(first["value"]) == Decimal("1002.5") and first["open_alerts"] == 1
    assert first["red"] is True and first["connection_statuses"] == {"active": 1, "broken": 1}

    viewer = auth(token(client, ta, "victor"))  # Viewer: no alerts, no balances
    body = client.get("/api/v1/employees?limit=1", headers=viewer).get_json()
    assert body["employees"][0]["open_alerts"] is None and body["employees"][0]["value"] is None
    refused = client.get("/api/v1/employees?alerts=yes", headers=viewer)
    assert refused.status_code == 403 and "alerts:read" in refused.get_json()["error"]["message"]


@pytest.mark.parametrize("cursor", ["nonsense", "eyJzIjoibmFtZSJ9", "e30", "eyJzIjoiLWFkZGVkIiwiayI6MSwiaSI6MX0"])
def test_a_cursor_that_is_not_ours_is_refused(client: Any, ta: Any, cursor: str) -> None:
    response = client.get(f"/api/v1/employees?cursor={cursor}", headers=auth(token(client, ta, "alice")))
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "cursor"
