"""API keys die with their owner's sessions and tokens.

Security review, finding 3: SECURITY.md says a password change, a disable/enable and a role removal
bump the owner's token epoch and kill sessions, tokens *and API keys*; a key kept answering 200.
A key now remembers the epoch its secret was issued under, and rotating it re-arms it under the
current one — without reviving the old secret through an overlap window.
"""

from __future__ import annotations

from typing import Any

import pytest

from appliance.auth import apikeys
from appliance.services import identity
from appliance.services.context import Appliance
from tests.access.helpers import api_key, auth, token


def _key_id(client: Any, ta: Any, name: str) -> int:
    keys = client.get("/api/v1/apikeys", headers=auth(token(client, ta, "alice"))).get_json()["api_keys"]
    return int(next(k["id"] for k in keys if k["name"] == name))


def _change_password(ta: Any, name: str) -> None:
    with ta.store.unit_of_work() as session:
        user = identity.user_by_name(session, name)
        identity.set_password(session, user.id, ta.personas[name].password, ta.settings.auth)
    ta.appliance.auth.load(ta.store)


@pytest.mark.parametrize("change", ["password", "disable-enable", "role-removed"])
def test_the_owners_epoch_kills_the_key(client: Any, ta: Any, change: str) -> None:
    key = api_key(client, ta, owner="carol", name="carol-siem")
    assert client.get("/api/v1/alerts", headers=auth(key)).status_code == 200
    admin = auth(token(client, ta, "alice"))
    carol = ta.personas["carol"].user_id
    if change == "password":
        _change_password(ta, "carol")
    elif change == "disable-enable":
        assert client.put(f"/api/v1/users/{carol}/active", json={"active": False}, headers=admin).status_code == 200
        assert client.put(f"/api/v1/users/{carol}/active", json={"active": True}, headers=admin).status_code == 200
    else:
        assert client.put(f"/api/v1/users/{carol}/roles", json={"roles": ["Compliance", "Viewer"]},
                          headers=admin).status_code == 200
        assert client.put(f"/api/v1/users/{carol}/roles", json={"roles": ["Compliance"]},
                          headers=admin).status_code == 200  # Viewer taken away again
    assert client.get("/api/v1/alerts", headers=auth(key)).status_code == 401
    # After a restart too: the state is the database's, not this process's memory.
    restarted = Appliance(ta.settings)
    restarted.open()
    try:
        known = restarted.auth.key(apikeys.split(key)[0])  # type: ignore[index]
        assert known is not None and known.revoked
    finally:
        restarted.close()
    listed = client.get("/api/v1/apikeys", headers=admin).get_json()["api_keys"]
    assert [k["status"] for k in listed if k["name"] == "carol-siem"] == ["stale"]


def test_rotation_re_arms_the_key_but_never_revives_the_old_secret(client: Any, ta: Any) -> None:
    old = api_key(client, ta, owner="alice", name="alice-siem")
    _change_password(ta, "alice")
    assert client.get("/api/v1/employees", headers=auth(old)).status_code == 401
    rotated = client.post(f"/api/v1/apikeys/{_key_id(client, ta, 'alice-siem')}/rotate", json={"overlap_hours": 24},
                          headers=auth(token(client, ta, "alice")))
    assert rotated.status_code == 200
    assert client.get("/api/v1/employees", headers=auth(rotated.get_json()["api_key"])).status_code == 200
    assert client.get("/api/v1/employees", headers=auth(old)).status_code == 401  # no overlap for a killed secret
    assert rotated.get_json()["status"] == "active"
