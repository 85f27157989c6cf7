"""The pages: menus per role, lists, rules, groups and cases worked through forms, names instead of
ids, refused forms that keep what was typed and say what is missing, and the employee page saying
why the employee is visible."""

from __future__ import annotations

import re
from typing import Any

from tests.access.helpers import csrf_of, login_session
from tests.conduct.conftest import QUIET, add_trades, days_ago, employee_of, sync
from tests.support.sim import RunningSim
from tests.sync.conftest import https_client, onboard


def web(sta: Any, name: str) -> Any:
    client = https_client(sta)
    login_session(client, sta, name)
    return client


def menu(client: Any) -> list[str]:
    page = client.get("/").get_data(as_text=True)
    nav = page.split('<nav class="main"', 1)[1].split("</nav>", 1)[0]
    return re.findall(r">([A-Za-z ]+)</a>", nav)


def test_menus_offer_what_each_role_may_open(sta: Any) -> None:
    assert menu(web(sta, "carol")) == ["Employees", "Alerts", "Attestations", "Lists", "Rules", "Groups", "Holdings",
                                       "Large trades",
                                       "Predictions", "Reports", "Audit", "System"]
    assert menu(web(sta, "victor")) == ["Employees", "Rules", "Reports"]
    assert "Lists" in menu(web(sta, "alice")) and "Reports" in menu(web(sta, "alice"))
    for name in ("carol", "victor"):
        client = web(sta, name)
        for label, path in (("Reports", "/reports"), ("Rules", "/rules")):
            assert client.get(path).status_code == 200, (name, label)
    assert web(sta, "carol").get("/predictions").status_code == 200


def test_case_worked_through_the_pages(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    add_trades(sim, "kraken", key, [{"base": "SOL", "quote": "USDT", "side": "buy", "amount": "3", "price": "98",
                                     "when": days_ago(2)}])
    sync(sta, cid)
    employee = employee_of(sta, cid)
    carol = web(sta, "carol")
    page = carol.get(f"/employees/{employee}").get_data(as_text=True)
    assert "no open or recent alert" in page and "Latest transactions" not in page

    # A list from the page: it raises a critical alert at once.
    response = carol.post("/lists", data={"csrf_token": csrf_of(carol), "name": "Falcon", "kind": "restricted",
                                          "type": "asset", "value": "SOL", "note": "deal FALCON"})
    assert response.status_code == 302
    listing = carol.get(response.headers["Location"]).get_data(as_text=True)
    assert "1 new alert(s)" in listing and "Restricted: Falcon" in listing and "deal FALCON" in listing

    queue = carol.get("/alerts").get_data(as_text=True)
    person = re.search(r"<h1>([^<]+) <span", carol.get(f"/employees/{employee}").get_data(as_text=True))
    assert person is not None
    assert person.group(1) in queue and "Restricted: Falcon" in queue
    alert_id = int(re.search(r'data-alert-id="(\d+)"', queue).group(1))  # type: ignore[union-attr]

    # The employee page now says why the records show.
    page = carol.get(f"/employees/{employee}").get_data(as_text=True)
    assert "Why you see" in page and f"alert #{alert_id}" in page and "Latest transactions" in page

    case = f"/alerts/{alert_id}"
    page = carol.get(case).get_data(as_text=True)
    assert "list entry" in page.lower() and "transaction" in page and "deal FALCON" not in page
    record = re.search(r'href="(/employees/\d+/records/transaction/\d+)"', page)
    assert record is not None and carol.get(record.group(1)).status_code == 200

    # Closing without a reason: refused, the form keeps what was typed and says what is missing.
    refused = carol.post(f"{case}/status", data={"csrf_token": csrf_of(carol), "status": "resolved", "reason": ""})
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    assert "a reason is required" in text and 'value="resolved" selected' in text
    refused = carol.post(f"{case}/notes", data={"csrf_token": csrf_of(carol), "text": "   "})
    assert refused.status_code == 400 and "write the note" in refused.get_data(as_text=True)

    carol.post(f"{case}/assign", data={"csrf_token": csrf_of(carol), "user_id": str(sta.personas["alice"].user_id)})
    carol.post(f"{case}/notes", data={"csrf_token": csrf_of(carol), "text": "Asked for the pre-clearance form."})
    carol.post(f"{case}/status", data={"csrf_token": csrf_of(carol), "status": "investigating"})
    done = carol.post(f"{case}/status", data={"csrf_token": csrf_of(carol), "status": "dismissed",
                                              "reason": "pre-cleared on the 3rd"})
    assert done.status_code == 302
    page = carol.get(case).get_data(as_text=True)
    assert 'id="case-assignee">alice<' in page and "Asked for the pre-clearance form." in page
    assert "assigned it to alice" in page and "from investigating to dismissed: pre-cleared on the 3rd" in page


def test_flag_form_on_the_employee_page_keeps_input(sta: Any) -> None:
    alice = web(sta, "alice")
    alice.post("/employees", data={"csrf_token": csrf_of(alice), "name": "Fay Flag", "email": "fay@example.com"})
    carol = web(sta, "carol")
    employees = carol.get("/employees").get_data(as_text=True)
    employee = int(re.search(r'data-employee-id="(\d+)"', employees).group(1))  # type: ignore[union-attr]
    refused = carol.post("/alerts", data={"csrf_token": csrf_of(carol), "employee_id": str(employee),
                                          "title": "Desk tip", "reason": "", "back": str(employee)})
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    assert "reason is required" in text and 'value="Desk tip"' in text and "Fay Flag" in text
    done = carol.post("/alerts", data={"csrf_token": csrf_of(carol), "employee_id": str(employee),
                                       "title": "Desk tip", "reason": "heard on the desk"})
    assert done.status_code == 302
    page = carol.get(f"/employees/{employee}").get_data(as_text=True)
    assert "Why you see" in page and "heard on the desk" in page


def test_rule_and_group_forms(sta: Any) -> None:
    carol = web(sta, "carol")
    refused = carol.post("/rules", data={"csrf_token": csrf_of(carol), "name": "Blackout", "kind": "blackout",
                                         "start": "2026-10-01", "end": ""})
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    assert "params.start and params.end" in text and 'value="Blackout"' in text
    created = carol.post("/groups", data={"csrf_token": csrf_of(carol), "name": "Deal team"})
    assert created.status_code == 302
    group_page = carol.get(created.headers["Location"]).get_data(as_text=True)
    assert "No members yet." in group_page
    made = carol.post("/rules", data={"csrf_token": csrf_of(carol), "name": "Q4 blackout", "kind": "blackout",
                                      "start": "2026-10-01", "end": "2026-10-31", "groups": "1"})
    assert made.status_code == 302
    page = carol.get(made.headers["Location"]).get_data(as_text=True)
    assert "group Deal team" in page and "trades in any asset" in page
    assert "Q4 blackout" in web(sta, "victor").get("/rules").get_data(as_text=True)
    assert web(sta, "victor").get("/lists").status_code == 403
