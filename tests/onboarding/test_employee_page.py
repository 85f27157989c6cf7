"""The employee page after onboarding: the key's scope as the probe found it, and what creating a link
answers.

Security review, finding 12: a connection rejected for its trade permission was shown with Scope
"read-only, verified". Finding 8: a user holding only ``onboarding:write`` got the employee page
(name, e-mail, wallet address, coverage) in the answer to ``POST /employees/<id>/links``; the answer
is now the link only.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from appliance.rbac.actors import system_actor
from appliance.services import identity
from tests.access.helpers import csrf_of, login_session
from tests.onboarding.conftest import VALID_EVM, client_for, csrf_from, key_form, new_employee, new_link
from tests.support.sim import RunningSim


def _scope_cells(html: str) -> list[str]:
    """The Scope column of the connections table, as text."""
    rows = re.findall(r'<tr data-connection-id="\d+">(.*?)</tr>', html, re.S)
    return [re.sub(r"<[^>]+>", "", re.findall(r"<td>(.*?)</td>", row, re.S)[2]).strip() for row in rows]


@pytest.mark.parametrize(("venue", "permissions", "shown"), [
    ("kraken", ["read", "trade"], "rejected: trade"),
    ("kraken", ["read", "withdraw"], "rejected: withdraw"),
    ("coinbase", ["read", "transfer"], "rejected: transfer, withdraw"),  # Coinbase's transfer is a withdrawal
    ("kraken", ["read"], "read-only, verified"),
])
def test_the_scope_column_says_what_the_probe_found(ota: Any, oapp: Any, sim: RunningSim, venue: str,
                                                     permissions: list[str], shown: str) -> None:
    employee_id = new_employee(ota)
    _link_id, value = new_link(ota, employee_id)
    employee = client_for(oapp, "https://localhost")
    form = employee.get(f"/onboard/{value}?venue={venue}")
    key = sim.create_key(venue, permissions)
    employee.post(f"/onboard/{value}", data=key_form(csrf_from(form.text), venue, key))
    admin = client_for(oapp, "https://localhost")
    login_session(admin, ota, "alice")
    page = admin.get(f"/employees/{employee_id}")
    assert page.status_code == 200
    assert _scope_cells(page.text) == [shown]


def test_creating_a_link_answers_with_the_link_only(ota: Any, oapp: Any) -> None:
    with ota.store.unit_of_work() as session:
        identity.create_role(session, system_actor("t"), name="Onboarder", permissions=["onboarding:write"])
        identity.set_roles(session, system_actor("t"), ota.personas["nora"].user_id, ["Onboarder"])
    ota.appliance.auth.load(ota.store)
    employee_id = new_employee(ota, email="wally@example.com", name="Wally Walletholder")
    _link_id, value = new_link(ota, employee_id)
    employee = client_for(oapp, "https://localhost")
    form = employee.get(f"/onboard/{value}")
    employee.post(f"/onboard/{value}", data={"csrf_token": csrf_from(form.text), "action": "wallet",
                                             "chain": "ethereum", "address": VALID_EVM, "label": "hot wallet"})
    onboarder = client_for(oapp, "https://localhost")
    login_session(onboarder, ota, "nora")
    answer = onboarder.post(f"/employees/{employee_id}/links", data={"csrf_token": csrf_of(onboarder),
                                                                     "purpose": "reonboard"})
    assert answer.status_code == 200
    assert "/onboard/" in answer.text  # the link
    for detail in ("Wally", "wally@example.com", VALID_EVM, VALID_EVM.lower(), "hot wallet", "Trading", "Coverage"):
        assert detail not in answer.text, detail
    assert onboarder.get(f"/employees/{employee_id}").status_code == 403  # and no way round it
