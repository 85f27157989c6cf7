"""The audit page shows the trail newest first, 100 a page, with who did it by name; the API keeps id order
(oldest first) by default, for incremental pulls, and gives newest first on request — both paged."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select

from appliance.store.models import AuditEvent
from tests.access.helpers import auth, login_session, token


def _events(ta: Any) -> int:
    with ta.store.read() as session:
        return int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())


def test_the_page_is_newest_first_and_pages_back(client: Any, ta: Any) -> None:
    login_session(client, ta, "carol")
    for _ in range(110):
        client.get("/api/v1/alerts", headers=auth(token(client, ta, "alice")))  # audited requests by alice
    html = client.get("/audit").get_data(as_text=True)
    ids = [int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)]
    assert len(ids) == 100 and ids == sorted(ids, reverse=True)
    assert ">alice<" in html and "user #" not in html  # names, not ids
    older = re.search(r'href="/audit\?before=(\d+)"', html)
    assert older is not None and int(older.group(1)) == ids[-1]
    page_two = client.get(f"/audit?before={ids[-1]}").get_data(as_text=True)
    later = [int(i) for i in re.findall(r'<tr data-id="(\d+)"', page_two)]
    assert later and max(later) < ids[-1] and later == sorted(later, reverse=True)
    assert "« Newest" in page_two
    alice = ta.personas["alice"].user_id
    only = client.get(f"/audit?user_id={alice}&action=alerts.list").get_data(as_text=True)
    assert f'<option value="{alice}" selected>alice</option>' in only
    rows = re.findall(r'<tr data-id="\d+">(.*?)</tr>', only, re.S)
    assert len(rows) == 100 and all("<td>alice</td><td>alerts.list</td>" in r for r in rows)
    assert client.get("/audit?before=abc").status_code == 400


def test_the_api_order_is_documented_and_both_orders_page(client: Any, ta: Any) -> None:
    headers = auth(token(client, ta, "alice"))
    for _ in range(5):
        client.get("/api/v1/alerts", headers=headers)
    assert _events(ta) >= 6
    oldest = client.get("/api/v1/audit?limit=3", headers=headers).get_json()
    ids = [e["id"] for e in oldest["events"]]
    assert ids == sorted(ids) and oldest["next_after"] == ids[-1] and oldest["next_before"] is None
    newest = client.get("/api/v1/audit?limit=3&order=newest", headers=headers).get_json()
    ids = [e["id"] for e in newest["events"]]
    assert ids == sorted(ids, reverse=True) and newest["next_before"] == ids[-1] and newest["next_after"] is None
    more = client.get(f"/api/v1/audit?limit=3&order=newest&before={ids[-1]}", headers=headers).get_json()
    assert all(e["id"] < ids[-1] for e in more["events"])
    mixed = client.get("/api/v1/audit?order=newest&after=1", headers=headers)
    assert mixed.status_code == 400 and "before" in mixed.get_data(as_text=True)
    assert client.get("/api/v1/audit?before=5", headers=headers).status_code == 400
    assert client.get("/api/v1/audit?order=sideways", headers=headers).status_code == 400
    document = client.get("/api/v1/openapi.json", headers=headers).get_json()
    order = next(p for p in document["paths"]["/api/v1/audit"]["get"]["parameters"] if p["name"] == "order")
    assert "oldest first" in order["description"] and "newest first" in order["description"]
