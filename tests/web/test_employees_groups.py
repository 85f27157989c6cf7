"""The employees list by group (UI and API), following Next from page to page (each page starts after the last
one's cursor), and the red-connection banner's count, on both databases. Figures are checked against what was
seeded."""

from __future__ import annotations

import html as html_lib
import re
from typing import Any

from sqlalchemy import insert

from appliance.rbac.actors import system_actor
from appliance.services.rules import groups
from appliance.store.models import Connection, Employee
from tests.access.helpers import auth, login_session, token

EMPLOYEES = 300


def seed(ta: Any) -> tuple[dict[int, int], int, int]:
    """300 employees (every 7th with a broken connection); group "Desk" holds every 3rd of them, group "Empty"
    nobody. Returns seed number -> id and the two groups' ids."""
    with ta.store.unit_of_work() as session:
        session.execute(insert(Employee), [{"name": f"Person {i:03d}", "email": f"p{i:03d}@firm.example",
                                            "department": ("Trading", "Legal")[i % 2]} for i in range(EMPLOYEES)])
    with ta.store.read() as session:
        ids = {int(e.email[1:4]): e.id for e in session.query(Employee)}
    with ta.store.unit_of_work() as session:
        session.execute(insert(Connection), [{
            "employee_id": ids[i], "kind": "exchange", "venue": "kraken",
            "status": "broken" if i % 7 == 0 else "active"} for i in range(EMPLOYEES)])
        desk = groups.create(session, system_actor("test"), name="Desk",
                             employee_ids=[ids[i] for i in range(0, EMPLOYEES, 3)]).id
        empty = groups.create(session, system_actor("test"), name="Empty").id
    return ids, desk, empty


def rows(page: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-employee-id="(\d+)"', page)]


def next_link(page: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)"', page)
    return html_lib.unescape(found.group(1)) if found else None


def test_the_list_filters_by_group_and_next_pages_follow_on(client: Any, ta: Any) -> None:
    ids, desk, empty = seed(ta)
    login_session(client, ta, "carol")  # Compliance: groups:read
    first = client.get("/employees").get_data(as_text=True)
    assert 'name="group"' in first and f'<option value="{desk}">Desk</option>' in first
    assert '<span class="badge red">43</span> employee(s) with a broken connection' in first  # 0, 7, ..., 294

    members = [ids[i] for i in range(0, EMPLOYEES, 3)]
    url: str | None = f"/employees?group={desk}"
    seen: list[int] = []
    pages = 0
    while url is not None:
        page = client.get(url).get_data(as_text=True)
        assert "100 employees match" in page
        seen += rows(page)
        pages += 1
        url = next_link(page)
        assert url is None or (f"group={desk}" in url and "after=" in url)
    assert seen == members and pages == 2  # by name: Person 000, 003, ...

    trading = [ids[i] for i in range(0, EMPLOYEES, 3) if i % 2 == 0]
    page = client.get(f"/employees?group={desk}&q=trading&sort=-name").get_data(as_text=True)
    assert rows(page) == trading[::-1] and "50 employees match" in page
    red = [ids[i] for i in range(0, EMPLOYEES, 21)]
    assert rows(client.get(f"/employees?group={desk}&red=yes").get_data(as_text=True)) == red
    assert "No employee matches" in client.get(f"/employees?group={empty}").get_data(as_text=True)

    refused = client.get("/employees?group=999999")
    assert refused.status_code == 400 and "group" in refused.get_data(as_text=True)
    assert client.get("/employees?group=first").status_code == 400

    member = client.get(f"/employees/{ids[3]}").get_data(as_text=True)
    assert re.search(rf'groups: <a href="/groups/{desk}">Desk</a></p>', member)
    assert "groups:" not in client.get(f"/employees/{ids[1]}").get_data(as_text=True)


def test_a_next_page_cursor_made_for_another_order_is_refused(client: Any, ta: Any) -> None:
    seed(ta)
    login_session(client, ta, "carol")
    link = next_link(client.get("/employees?sort=-added").get_data(as_text=True))
    assert link is not None
    cursor = re.search(r"after=([^&]+)", link).group(1)  # type: ignore[union-attr]
    assert client.get(f"/employees?page=2&after={cursor}").status_code == 400  # sort=name
    assert client.get("/employees?page=2&after=nonsense").status_code == 400
    assert client.get(f"/employees?sort=-added&page=2&after={cursor}").status_code == 200


def test_the_api_filters_by_group_for_roles_that_read_groups(client: Any, ta: Any) -> None:
    ids, desk, _empty = seed(ta)
    admin = auth(token(client, ta, "alice"))
    body = client.get(f"/api/v1/employees?group={desk}&limit=60", headers=admin).get_json()
    assert body["total"] == 100 and [e["id"] for e in body["employees"]] == [ids[i] for i in range(0, 180, 3)]
    more = client.get(f"/api/v1/employees?group={desk}&limit=60&cursor={body['next_cursor']}", headers=admin)
    assert [e["id"] for e in more.get_json()["employees"]] == [ids[i] for i in range(180, EMPLOYEES, 3)]
    assert more.get_json()["next_cursor"] is None

    unknown = client.get("/api/v1/employees?group=999999", headers=admin)
    assert unknown.status_code == 400 and unknown.get_json()["error"]["field"] == "group"
    viewer = client.get(f"/api/v1/employees?group={desk}", headers=auth(token(client, ta, "victor")))
    assert viewer.status_code == 403 and "groups:read" in viewer.get_json()["error"]["message"]
    login_session(client, ta, "victor")
    assert 'name="group"' not in client.get("/employees").get_data(as_text=True)
