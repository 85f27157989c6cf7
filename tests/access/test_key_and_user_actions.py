"""Nobody acts on a user or an API key that holds more than they do.

Security review, finding 1: a custom role holding ``apikeys:write`` (and no Admin permission) could
rotate an Admin's key and receive its new secret, over the API and in the dashboard. The rule now:
rotating or revoking a key is for its owner or a caller holding every permission the key grants,
and a new secret is shown to the owner only; disabling, enabling, setting the roles of, unlocking or
resetting the password of a user, and creating a key for them, needs every permission they hold.

The generated test walks every route that acts on a user or a key (found in the route table, so a
new one fails here until it is listed) with every pair of users, and checks each refusal changed
nothing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from appliance.boundary.routes import route_table
from appliance.rbac.actors import system_actor, user_actor
from appliance.services import identity
from appliance.store.models import ApiKey, User
from tests.access.helpers import auth, csrf_of, login_session, token


def _custom_role(ta: Any, name: str, permissions: list[str]) -> None:
    with ta.store.unit_of_work() as session:
        identity.create_role(session, system_actor("test"), name=name, permissions=permissions)
    ta.appliance.auth.load(ta.store)


def _give_roles(ta: Any, username: str, roles: list[str]) -> None:
    with ta.store.unit_of_work() as session:
        user = identity.user_by_name(session, username)
        identity.set_roles(session, system_actor("test"), user.id, roles)
    ta.appliance.auth.load(ta.store)


def test_a_key_manager_cannot_take_over_an_admins_key(client: Any, ta: Any, flask_app: Any) -> None:
    _custom_role(ta, "Key manager", ["apikeys:read", "apikeys:write"])
    _give_roles(ta, "victor", ["Viewer", "Key manager"])
    admin = auth(token(client, ta, "alice"))
    created = client.post("/api/v1/apikeys", json={"username": "alice", "name": "alice-siem"}, headers=admin)
    assert created.status_code == 201
    key_id, alice_key = created.get_json()["id"], created.get_json()["api_key"]
    manager = auth(token(client, ta, "victor"))

    over_api = client.post(f"/api/v1/apikeys/{key_id}/rotate", json={}, headers=manager)
    assert over_api.status_code in (403, 404)
    assert "api_key" not in over_api.get_json()
    assert client.post(f"/api/v1/apikeys/{key_id}/revoke", headers=manager).status_code in (403, 404)

    browser = flask_app.test_client()
    login_session(browser, ta, "victor")
    in_dashboard = browser.post(f"/admin/apikeys/{key_id}/rotate", data={"csrf_token": csrf_of(browser)})
    assert in_dashboard.status_code in (403, 404)
    assert b"vgk_" not in in_dashboard.data
    assert client.get("/api/v1/employees", headers=auth(alice_key)).status_code == 200  # untouched


def test_a_new_secret_is_shown_to_the_owner_only(client: Any, ta: Any) -> None:
    admin = auth(token(client, ta, "alice"))
    created = client.post("/api/v1/apikeys", json={"username": "victor", "name": "victor-reports"}, headers=admin)
    key_id, old = created.get_json()["id"], created.get_json()["api_key"]
    by_admin = client.post(f"/api/v1/apikeys/{key_id}/rotate", json={}, headers=admin)
    assert by_admin.status_code == 200
    assert by_admin.get_json()["api_key"] is None  # alice holds everything, but the key acts as victor
    assert client.get("/api/v1/employees", headers=auth(old)).status_code == 401  # the old secret died
    _custom_role(ta, "Key manager", ["apikeys:read", "apikeys:write"])
    _give_roles(ta, "victor", ["Viewer", "Key manager"])
    by_owner = client.post(f"/api/v1/apikeys/{key_id}/rotate", json={}, headers=auth(token(client, ta, "victor")))
    assert by_owner.status_code == 200
    assert client.get("/api/v1/employees", headers=auth(by_owner.get_json()["api_key"])).status_code == 200


def test_a_narrow_key_cannot_rotate_its_owners_wider_key(client: Any, ta: Any) -> None:
    _custom_role(ta, "Key manager", ["apikeys:read", "apikeys:write"])
    admin = auth(token(client, ta, "alice"))
    wide = client.post("/api/v1/apikeys", json={"username": "alice", "name": "alice-admin"}, headers=admin).get_json()
    narrow = client.post("/api/v1/apikeys", json={"username": "alice", "name": "alice-keys", "role": "Key manager"},
                         headers=admin).get_json()
    over_key = client.post(f"/api/v1/apikeys/{wide['id']}/rotate", json={}, headers=auth(narrow["api_key"]))
    assert over_key.status_code == 403 and "api_key" not in over_key.get_json()
    # Its own kind of key, it may rotate (it holds all that key grants), and the secret is its owner's.
    own = client.post(f"/api/v1/apikeys/{narrow['id']}/rotate", json={"overlap_hours": 1},
                      headers=auth(narrow["api_key"]))
    assert own.status_code == 200 and own.get_json()["api_key"].startswith("vgk_")


def test_a_user_manager_cannot_act_on_a_user_holding_more(client: Any, ta: Any) -> None:
    _custom_role(ta, "User manager", ["users:read", "users:write"])
    _give_roles(ta, "victor", ["Viewer", "User manager"])
    manager = auth(token(client, ta, "victor"))
    alice, carol, nora = (ta.personas[n].user_id for n in ("alice", "carol", "nora"))
    assert client.put(f"/api/v1/users/{carol}/active", json={"active": False}, headers=manager).status_code == 403
    assert client.put(f"/api/v1/users/{alice}/roles", json={"roles": ["Viewer"]}, headers=manager).status_code == 403
    assert client.get("/api/v1/alerts", headers=auth(token(client, ta, "carol"))).status_code == 200
    # nora holds nothing victor lacks: managing her is fine.
    assert client.put(f"/api/v1/users/{nora}/active", json={"active": False}, headers=manager).status_code == 200


def test_the_cli_resets_passwords_through_the_rule(ta: Any) -> None:
    from appliance.errors import Forbidden

    with ta.store.unit_of_work() as session:
        alice = identity.user_by_name(session, "alice")
        viewer = user_actor(ta.personas["victor"].user_id, "victor",
                            frozenset({"users:read", "users:write", "employees:read"}))
        with pytest.raises(Forbidden):
            identity.reset_password(session, viewer, alice.id, "a-brand-new-long-password", ta.settings.auth)
        with pytest.raises(Forbidden):
            identity.clear_lockout(session, viewer, alice.id)


# -- every route that acts on a user or a key x every pair of users ------------------------------------------

# Personas for the pairs: the defaults, managers of users and of keys short of Admin, and a flagged-scope
# manager next to a user holding the same permission at scope `all` (scope counts: flagged is less).
ROLES: dict[str, list[str]] = {
    "Key manager": ["apikeys:read", "apikeys:write"],
    "User manager": ["users:read", "users:write"],
    "Balances": ["balances:read"],
    "Flagged manager": ["users:read", "users:write", "apikeys:read", "apikeys:write", "balances:read:flagged"],
}
USERS: dict[str, list[str]] = {
    "alice": ["Admin"], "carol": ["Compliance"], "victor": ["Viewer"], "nora": [],
    "kim": ["Viewer", "Key manager"], "uma": ["User manager"], "cole": ["Compliance", "User manager", "Key manager"],
    "fay": ["Flagged manager"], "bea": ["Balances"],
}
# The key each user owns, bound to this role (a user without a role owns none). alice's second key carries
# only what kim holds: kim may rotate it, but the secret is alice's.
KEYS: dict[str, tuple[str, str]] = {
    "alice-admin": ("alice", "Admin"), "alice-keys": ("alice", "Key manager"), "carol-key": ("carol", "Compliance"),
    "victor-key": ("victor", "Viewer"), "kim-key": ("kim", "Key manager"), "uma-key": ("uma", "User manager"),
    "cole-key": ("cole", "Compliance"), "fay-key": ("fay", "Flagged manager"), "bea-key": ("bea", "Balances"),
}


@dataclass(frozen=True)
class Target:
    name: str  # a username or a key name
    id: int
    owner: str  # the key's owner; the user themself
    permissions: frozenset[str]  # what the user holds, or what the key grants
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Action:
    kind: str  # "user" | "key"
    web: bool
    # (target, harmful): method, path and body; harmful when the rule should refuse (disable, strip the roles),
    # else a call the rule allows that changes as little as possible (the pairs share one appliance).
    call: Callable[[Target, bool], tuple[str, str, dict[str, Any]]]


Call = Callable[[Target, bool], tuple[str, str, dict[str, Any]]]


def _user_call(path: str, method: str, harmful: Callable[[Target], dict[str, Any]],
               harmless: Callable[[Target], dict[str, Any]]) -> Call:
    return lambda t, bad: (method, path.format(id=t.id), harmful(t) if bad else harmless(t))


def _create_key_body(t: Target, _bad: bool) -> dict[str, Any]:
    # Bound to the smallest role the owner holds all of: the key's own permissions then rarely stop the call,
    # so what refuses it is the rule about its owner.
    return {"username": t.name, "name": f"pair-{secrets.token_hex(4)}", "role": SMALLEST_ROLE[t.name]}


ACTIONS: dict[str, Action] = {
    "api.set_user_roles": Action("user", False, _user_call("/api/v1/users/{id}/roles", "PUT",
                                                           lambda t: {"json": {"roles": []}},
                                                           lambda t: {"json": {"roles": list(t.roles)}})),
    "api.set_user_active": Action("user", False, _user_call("/api/v1/users/{id}/active", "PUT",
                                                            lambda t: {"json": {"active": False}},
                                                            lambda t: {"json": {"active": True}})),
    "api.create_key": Action("user", False, lambda t, bad: ("POST", "/api/v1/apikeys",
                                                            {"json": _create_key_body(t, bad)})),
    "web.users_roles": Action("user", True, _user_call("/admin/users/{id}/roles", "POST",
                                                       lambda t: {"data": {}},
                                                       lambda t: {"data": {"roles": list(t.roles)}})),
    "web.users_active": Action("user", True, _user_call("/admin/users/{id}/active", "POST",
                                                        lambda t: {"data": {"active": "0"}},
                                                        lambda t: {"data": {"active": "1"}})),
    "web.users_unlock": Action("user", True, _user_call("/admin/users/{id}/unlock", "POST",
                                                        lambda t: {"data": {}}, lambda t: {"data": {}})),
    "web.apikeys_create": Action("user", True, lambda t, bad: ("POST", "/admin/apikeys",
                                                               {"data": _create_key_body(t, bad)})),
    "api.rotate_key": Action("key", False, lambda t, bad: ("POST", f"/api/v1/apikeys/{t.id}/rotate", {"json": {}})),
    "web.apikeys_rotate": Action("key", True, lambda t, bad: ("POST", f"/admin/apikeys/{t.id}/rotate", {"data": {}})),
    # Revocations last: a revoked key can no longer be rotated.
    "api.revoke_key": Action("key", False, lambda t, bad: ("POST", f"/api/v1/apikeys/{t.id}/revoke", {"json": {}})),
    "web.apikeys_revoke": Action("key", True, lambda t, bad: ("POST", f"/admin/apikeys/{t.id}/revoke", {"data": {}})),
}
# Routes that name a user or a key in their path, or create something for a user named in the body.
ACTING_ON_A_BODY_USER = {"api.create_key", "web.apikeys_create"}
SMALLEST_ROLE: dict[str, str] = {}  # username -> the role with the fewest permissions they hold all of (_setup)


def test_every_route_acting_on_a_user_or_key_is_covered(flask_app: Any) -> None:
    acting = {row.endpoint for row in route_table(flask_app)
              if set(row.methods) - {"GET"} and ("<int:user_id>" in row.rule or "<int:key_id>" in row.rule)}
    assert acting | ACTING_ON_A_BODY_USER == set(ACTIONS), "list the new route in ACTIONS"


def _state_of(ta: Any, action: Action, target: Target) -> tuple[Any, ...]:
    with ta.store.read() as session:
        if action.kind == "key":
            key = session.get(ApiKey, target.id)
            assert key is not None
            return (key.secret_hash, key.previous_secret_hash, key.revoked_at, key.rotated_at)
        user = session.get(User, target.id)
        assert user is not None
        keys = session.execute(select(ApiKey.id).where(ApiKey.user_id == user.id).order_by(ApiKey.id)).all()
        return (user.is_active, sorted(r.name for r in user.roles), user.password_hash, user.token_epoch,
                user.failed_logins, user.locked_until, tuple(keys))


def _holds_all(caller: frozenset[str], wanted: frozenset[str]) -> bool:
    actor = user_actor(0, "probe", caller)
    return all(actor.can(p) for p in wanted)


def _setup(ta: Any) -> tuple[dict[str, str], dict[str, Target], dict[str, Target]]:
    admin = system_actor("test")
    passwords: dict[str, str] = {name: persona.password for name, persona in ta.personas.items()}
    users: dict[str, Target] = {}
    keys: dict[str, Target] = {}
    with ta.store.unit_of_work() as session:
        for name, perms in ROLES.items():
            identity.create_role(session, admin, name=name, permissions=perms)
        for name, roles in USERS.items():
            if name in passwords:
                identity.set_roles(session, admin, identity.user_by_name(session, name).id, roles)
            else:
                passwords[name] = f"pass-{secrets.token_urlsafe(16)}"
                identity.create_user(session, admin, ta.settings.auth, username=name, password=passwords[name],
                                     roles=roles)
        session.flush()
        for name in USERS:
            user = identity.user_by_name(session, name)
            session.refresh(user)
            users[name] = Target(name, user.id, name, frozenset(p.permission for r in user.roles
                                                                for p in r.permissions),
                                 tuple(sorted(r.name for r in user.roles)))
        role_permissions = {r.name: frozenset(p.permission for p in r.permissions)
                            for r in identity.list_roles(session)}
        for name, target in users.items():
            fitting = [r for r, perms in role_permissions.items() if perms and _holds_all(target.permissions, perms)]
            if fitting:
                SMALLEST_ROLE[name] = min(fitting, key=lambda r: (len(role_permissions[r]), r))
        for key_name, (owner, role) in KEYS.items():
            key, _secret = identity.create_api_key(session, admin, username=owner, name=key_name, role_name=role)
            keys[key_name] = Target(key_name, key.id, owner, role_permissions[role])
    ta.appliance.auth.load(ta.store)
    return passwords, users, keys


def _lock_everyone(ta: Any) -> None:
    """After sign-in: a lockout to clear, so a refused unlock visibly changes nothing."""
    with ta.store.unit_of_work() as session:
        for user in session.execute(select(User)).scalars():
            user.failed_logins = 3
            user.locked_until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)


def test_no_caller_acts_on_a_user_or_key_holding_more(client: Any, ta: Any, flask_app: Any) -> None:
    passwords, users, keys = _setup(ta)
    bearer: dict[str, dict[str, str]] = {}
    browsers: dict[str, Any] = {}
    for name in USERS:
        answer = client.post("/api/v1/auth/token", json={"username": name, "password": passwords[name]})
        assert answer.status_code == 200, name
        bearer[name] = auth(answer.get_json()["access_token"])
        browser = flask_app.test_client()
        browser.get("/login")
        signed_in = browser.post("/login", data={"username": name, "password": passwords[name],
                                                 "csrf_token": csrf_of(browser)})
        assert signed_in.status_code == 302, name
        browsers[name] = browser
    _lock_everyone(ta)

    problems: list[str] = []
    refusals = allowed_calls = 0
    for (endpoint, action), caller in itertools.product(ACTIONS.items(), USERS):
        held = users[caller].permissions
        route_permission = "apikeys:write" if action.kind == "key" or endpoint in ACTING_ON_A_BODY_USER \
            else "users:write"
        for target in (keys if action.kind == "key" else users).values():
            owner = action.kind == "key" and target.owner == caller
            rule_allows = owner or _holds_all(held, target.permissions)
            may_call = route_permission in held
            if endpoint in ACTING_ON_A_BODY_USER and target.name not in SMALLEST_ROLE:
                continue  # no role to bind a key of theirs to: refused for that reason, not for the rule's
            method, path, body = action.call(target, not rule_allows)
            before = _state_of(ta, action, target)
            if action.web:
                browser = browsers[caller]
                with browser.session_transaction() as web_session:
                    csrf = web_session.get("csrf")
                if csrf is None:  # only if someone was let act on the caller earlier
                    problems.append(f"{caller}'s session ended during the test")
                    continue
                body = {"data": {**body["data"], "csrf_token": csrf}}
                response = browser.open(path, method=method, **body)
            else:
                response = client.open(path, method=method, headers=bearer[caller], **body)
            where = f"{caller} -> {target.name}: {method} {path}"
            if not rule_allows or not may_call:
                refusals += 1
                if response.status_code not in (403, 404):
                    problems.append(f"{where}: {response.status_code}, want 403/404")
                if _state_of(ta, action, target) != before:
                    problems.append(f"{where}: refused, but the {action.kind} changed")
                if b"vgk_" in response.data:
                    problems.append(f"{where}: a refusal carried a key")
                continue
            allowed_calls += 1
            if response.status_code not in (200, 201, 302):
                problems.append(f"{where}: allowed by the rule, got {response.status_code}")
            if action.kind == "key" and not owner and b"vgk_" in response.data:
                problems.append(f"{where}: a new secret was shown to someone other than the owner")
    assert not problems, "\n".join(problems)
    assert refusals > 300 and allowed_calls > 100  # both sides of the rule were exercised
