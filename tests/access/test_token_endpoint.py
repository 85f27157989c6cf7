"""The token endpoint refuses a one-time password.

Security review, finding 6: ``must_change_password`` bound only the web UI: ``POST /api/v1/auth/token``
with the password `vigatra init` printed returned a 24 h token that could create roles. Until the
password is changed, the endpoint answers 403 ``password_change_required`` (after checking the
password, so the answer reveals nothing to someone who does not know it), and the refusal is audited.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from appliance.rbac.actors import system_actor
from appliance.services import identity
from appliance.store.models import AuditEvent
from tests.access.helpers import auth, csrf_of

ONE_TIME = "the password printed by the installer"
CHOSEN = "a passphrase the admin chose themselves"


def _first_admin(ta: Any) -> int:
    with ta.store.unit_of_work() as session:
        user = identity.create_user(session, system_actor("init"), ta.settings.auth, username="root-admin",
                                    password=ONE_TIME, roles=["Admin"], must_change_password=True)
        user_id = int(user.id)
    ta.appliance.auth.load(ta.store)
    return user_id


def test_a_one_time_password_buys_no_token(client: Any, ta: Any) -> None:
    user_id = _first_admin(ta)
    refused = client.post("/api/v1/auth/token", json={"username": "root-admin", "password": ONE_TIME})
    assert refused.status_code == 403
    body = refused.get_json()
    assert body["error"]["code"] == "password_change_required"
    assert "access_token" not in body and "change" in body["error"]["message"]
    wrong = client.post("/api/v1/auth/token", json={"username": "root-admin", "password": "x" * 20})
    assert wrong.status_code == 401  # the refusal above is only for someone who knows the password
    with ta.store.read() as session:
        event = session.execute(select(AuditEvent).where(AuditEvent.action == "token.refused")).scalar_one()
        assert (event.user_id, event.outcome, event.status) == (user_id, "denied", 403)
    assert ONE_TIME not in refused.text


def test_after_the_change_the_token_is_issued(client: Any, ta: Any) -> None:
    _first_admin(ta)
    client.get("/login")
    client.post("/login", data={"username": "root-admin", "password": ONE_TIME, "csrf_token": csrf_of(client)})
    changed = client.post("/account/password", data={"current_password": ONE_TIME, "new_password": CHOSEN,
                                                      "confirm_password": CHOSEN, "csrf_token": csrf_of(client)})
    assert changed.status_code == 302
    issued = client.post("/api/v1/auth/token", json={"username": "root-admin", "password": CHOSEN})
    assert issued.status_code == 200
    assert client.post("/api/v1/roles", json={"name": "Auditors", "permissions": ["audit:read"]},
                       headers=auth(issued.get_json()["access_token"])).status_code == 201
