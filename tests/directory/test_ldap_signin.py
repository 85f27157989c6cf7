"""Dashboard sign-in against a real OpenLDAP server (slapd, tests/support/slapd.py).

Personas in the directory: alice-dir (Admin), carl (Compliance through a group nested in the mapped one),
vera (Viewer), dan (no mapped group), emma (Admin and Viewer). The local personas alice, carol, victor and
nora stay local accounts: the break-glass way in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.auth.directory import DirectoryRefused, DirectoryUnavailable
from appliance.auth.directory.ldap import LdapDirectory
from appliance.errors import Conflict, Unauthenticated
from appliance.rbac.actors import system_actor
from appliance.services import identity
from appliance.services.directory.signin import sign_in
from appliance.services.directory.sync import sync_ldap_users
from appliance.settings import LdapSettings
from appliance.store.models import AuditEvent, User
from tests.access.helpers import auth
from tests.directory.conftest import ldap_overrides
from tests.support import slapd as seed
from tests.support.app import build
from tests.support.proc import free_port
from tests.support.slapd import Slapd


def _sign_in(dta: Any, slapd: Slapd, name: str, password: str | None = None) -> User:
    outcome = sign_in(dta.appliance, username=name, password=password or slapd.passwords[name], ip="127.0.0.1",
                      totp_code=None)
    with dta.store.read() as session:
        user = session.get(User, outcome.user_id)
        assert user is not None
        session.expunge(user)
        return user


def _roles(dta: Any, username: str) -> set[str]:
    with dta.store.read() as session:
        user = session.execute(select(User).where(User.username == username)).scalar_one()
        return {r.name for r in user.roles}


def _user(dta: Any, username: str) -> User:
    with dta.store.read() as session:
        user = session.execute(select(User).where(User.username == username)).scalar_one()
        session.expunge(user)
        return user


def test_first_sign_in_creates_the_user_with_the_roles_of_their_groups(dta: Any, slapd: Slapd) -> None:
    user = _sign_in(dta, slapd, "alice-dir")
    assert (user.source, user.email, user.display_name) == ("ldap", "alice.dir@example.org", "Alice Directory")
    assert user.directory_dn == seed.person_dn("alice-dir") and user.directory_id
    assert not user.password_hash.startswith("$argon2")
    assert _roles(dta, "alice-dir") == {"Admin"}
    _sign_in(dta, slapd, "emma")
    assert _roles(dta, "emma") == {"Admin", "Viewer"}


def test_a_nested_group_gives_its_parent_groups_role(dta: Any, slapd: Slapd) -> None:
    # carl is in compliance-team, which is a member of vigatra-compliance (the mapped group).
    _sign_in(dta, slapd, "carl")
    assert _roles(dta, "carl") == {"Compliance"}


def test_wrong_password_unknown_name_and_no_mapped_group_get_the_same_answer(dta: Any, slapd: Slapd) -> None:
    reasons = []
    for name, password in (("carl", "not-carls-password"), ("nobody", "whatever-password"),
                           ("dan", slapd.passwords["dan"])):
        with pytest.raises(Unauthenticated) as refused:
            sign_in(dta.appliance, username=name, password=password, ip="127.0.0.1", totp_code=None)
        assert refused.value.message == "invalid username or password"
        reasons.append(refused.value.detail["reason"])
    assert "wrong password" in reasons[0] and "no such account" in reasons[1] and "role_map" in reasons[2]
    with dta.store.read() as session:
        assert session.execute(select(User).where(User.username.in_(["carl", "nobody", "dan"]))).first() is None


def test_an_empty_password_is_refused_before_the_directory_sees_it(dta: Any, slapd: Slapd) -> None:
    directory = LdapDirectory(dta.settings.directory.ldap, seed.SERVICE_PASSWORD)
    with pytest.raises(DirectoryRefused):
        directory.authenticate("carl", "")


def test_a_removed_group_removes_the_role_and_kills_the_token(dta: Any, dclient: Any, slapd: Slapd) -> None:
    response = dclient.post("/api/v1/auth/token", json={"username": "emma", "password": slapd.passwords["emma"]})
    assert response.status_code == 200, response.get_json()
    token = response.get_json()["access_token"]
    assert dclient.get("/api/v1/users", headers=auth(token)).status_code == 200  # an Admin lists users
    slapd.remove_member(seed.ADMINS, seed.person_dn("emma"))
    try:
        report = sync_ldap_users(dta.appliance)
        assert [c.roles_removed for c in report.changes] == [("Admin",)]
        assert _roles(dta, "emma") == {"Viewer"}
        assert dclient.get("/api/v1/users", headers=auth(token)).status_code == 401  # the epoch moved
        again = _sign_in(dta, slapd, "emma")  # a fresh sign-in gets the Viewer role only
        assert again.is_active and _roles(dta, "emma") == {"Viewer"}
    finally:
        slapd.add_member(seed.ADMINS, seed.person_dn("emma"))
    _sign_in(dta, slapd, "emma")  # the role comes back with the group, at sign-in as at sync
    assert _roles(dta, "emma") == {"Admin", "Viewer"}
    with dta.store.read() as session:
        details = [json.loads(detail) for detail in session.execute(
            select(AuditEvent.detail).where(AuditEvent.action == "directory.account_sync")).scalars()]
    assert any(d["roles_removed"] == ["Admin"] and d["via"] == "sync" for d in details)
    assert any(d["roles_added"] == ["Admin"] and d["via"] == "sign-in" and not d["created"] for d in details)


def test_a_locked_directory_account_is_disabled_here_and_its_keys_die(dta: Any, dclient: Any, slapd: Slapd) -> None:
    user = _sign_in(dta, slapd, "vera")
    with dta.store.unit_of_work() as session:
        _key, secret = identity.create_api_key(session, system_actor("test"), username="vera", name="report")
    dta.appliance.auth.load(dta.store)
    assert dclient.get("/api/v1/employees", headers=auth(secret)).status_code == 200
    slapd.lock(seed.person_dn("vera"))
    try:
        report = sync_ldap_users(dta.appliance)
        assert [c.disabled for c in report.changes] == [True]
        disabled = _user(dta, "vera")
        assert not disabled.is_active and disabled.disabled_by == "directory"
        assert disabled.token_epoch > user.token_epoch
        state = dta.appliance.auth.user(user.id)
        assert state is not None and not state.active
        assert dclient.get("/api/v1/employees", headers=auth(secret)).status_code == 401
        with pytest.raises(Unauthenticated):
            sign_in(dta.appliance, username="vera", password=slapd.passwords["vera"], ip="127.0.0.1", totp_code=None)
    finally:
        slapd.unlock(seed.person_dn("vera"))
    report = sync_ldap_users(dta.appliance)
    assert [c.enabled for c in report.changes] == [True]
    assert _user(dta, "vera").is_active


def test_an_account_an_admin_disabled_stays_disabled_whatever_the_directory_says(dta: Any, slapd: Slapd) -> None:
    user = _sign_in(dta, slapd, "vera")
    with dta.store.unit_of_work() as session:
        identity.set_active(session, system_actor("test"), user.id, False)
    sync_ldap_users(dta.appliance)
    assert not _user(dta, "vera").is_active
    with pytest.raises(Unauthenticated):
        sign_in(dta.appliance, username="vera", password=slapd.passwords["vera"], ip="127.0.0.1", totp_code=None)


def test_a_deleted_directory_account_is_disabled_here(dta: Any, slapd: Slapd) -> None:
    slapd.add_person("gone", "Gone Soon", "gone@example.org", "E1999", "gone-directory-password")
    slapd.add_member(seed.VIEWERS, seed.person_dn("gone"))
    try:
        _sign_in(dta, slapd, "gone", "gone-directory-password")
    finally:
        slapd.remove_member(seed.VIEWERS, seed.person_dn("gone"))
        slapd.delete(seed.person_dn("gone"))
    sync_ldap_users(dta.appliance)
    assert not _user(dta, "gone").is_active


def test_directory_users_roles_and_passwords_are_not_edited_here(dta: Any, slapd: Slapd) -> None:
    user = _sign_in(dta, slapd, "carl")
    with dta.store.unit_of_work() as session, pytest.raises(Conflict, match="directory"):
        identity.set_roles(session, system_actor("test"), user.id, ["Admin"])
    with dta.store.unit_of_work() as session, pytest.raises(Conflict, match="directory"):
        identity.reset_password(session, system_actor("test"), user.id, "a brand new long passphrase",
                                dta.settings.auth)


def test_the_last_local_admin_remains_whatever_directory_admins_there_are(dta: Any, slapd: Slapd) -> None:
    _sign_in(dta, slapd, "alice-dir")  # a directory Admin
    alice = dta.personas["alice"]
    with dta.store.unit_of_work() as session, pytest.raises(Conflict, match="last active"):
        identity.set_active(session, system_actor("test"), alice.user_id, False)


def test_a_directory_name_never_takes_over_a_local_account(dta: Any, slapd: Slapd) -> None:
    with dta.store.unit_of_work() as session:
        identity.create_user(session, system_actor("test"), dta.settings.auth, username="carl",
                             password="a local account's long passphrase", roles=["Viewer"])
    with pytest.raises(Unauthenticated):  # the directory's carl password is checked against the local account
        sign_in(dta.appliance, username="carl", password=slapd.passwords["carl"], ip="127.0.0.1", totp_code=None)
    assert _user(dta, "carl").source == "local"


def test_local_accounts_sign_in_while_the_directory_is_down(db_url: str, tmp_path: Path, slapd: Slapd,
                                                            ldap_secret: str) -> None:
    down = build(db_url, tmp_path / "data", **ldap_overrides(slapd, ldap_secret,
                                                              url=f"ldaps://localhost:{free_port()}"))
    try:
        alice = down.personas["alice"]
        assert sign_in(down.appliance, username="alice", password=alice.password, ip="127.0.0.1",
                       totp_code=None).user_id == alice.user_id
        with pytest.raises(DirectoryUnavailable, match="cannot reach"):
            sign_in(down.appliance, username="carl", password=slapd.passwords["carl"], ip="127.0.0.1",
                    totp_code=None)
        with pytest.raises(DirectoryUnavailable):
            sync_ldap_users(down.appliance)
    finally:
        down.appliance.close()


def test_web_sign_in_with_the_directory(dta: Any, dclient: Any, slapd: Slapd) -> None:
    dclient.get("/login")
    with dclient.session_transaction() as s:
        csrf = s["csrf"]
    response = dclient.post("/login", data={"username": "carl", "password": slapd.passwords["carl"],
                                            "csrf_token": csrf})
    assert response.status_code == 302, response.data[:500]
    assert dclient.get("/").status_code == 200
    with dclient.session_transaction() as s:
        csrf = s["csrf"]
    wrong = dclient.post("/login", data={"username": "vera", "password": "wrong-password-here",
                                         "csrf_token": csrf})
    assert wrong.status_code == 401 and b"Invalid username or password" in wrong.data


@pytest.mark.parametrize("how", ["ldaps", "starttls"])
def test_tls_is_checked_against_the_configured_ca(slapd: Slapd, how: str, tmp_path: Path) -> None:
    url = slapd.ldaps_url if how == "ldaps" else slapd.starttls_url
    trusted = LdapSettings(enabled=True, url=url, ca_file=slapd.ca.cert_path, server_type="openldap",
                           bind_dn=seed.SERVICE_DN, user_base=seed.PEOPLE, group_base=seed.GROUPS)
    person = LdapDirectory(trusted, seed.SERVICE_PASSWORD).authenticate("carl", slapd.passwords["carl"])
    assert person.login == "carl"
    other_ca = seed.make_ca(tmp_path, "Another CA")
    untrusted = LdapSettings(enabled=True, url=url, ca_file=other_ca.cert_path, server_type="openldap",
                             bind_dn=seed.SERVICE_DN, user_base=seed.PEOPLE)
    with pytest.raises(DirectoryUnavailable, match=r"not trusted|certificate"):
        LdapDirectory(untrusted, seed.SERVICE_PASSWORD).authenticate("carl", slapd.passwords["carl"])


def test_doctor_checks_the_directory_in_plain_words(dta: Any, slapd: Slapd, ldap_secret: str,
                                                    tmp_path: Path) -> None:
    import dataclasses

    from appliance.services.directory.doctor import check_ldap

    good = {f.check: (f.status, f.message) for f in check_ldap(dta.settings)}
    assert good["directory bind"][0] == "ok" and "signed in over TLS" in good["directory bind"][1]
    assert good["directory search"] == ("ok", f"5 account(s) under {seed.PEOPLE} match the user filter")
    assert good["directory group"][0] == "ok" and "direct member" in good["directory group"][1]
    ldap = dta.settings.directory.ldap
    wrong_ca = dataclasses.replace(dta.settings, directory=dataclasses.replace(
        dta.settings.directory, ldap=dataclasses.replace(ldap, ca_file=seed.make_ca(tmp_path, "Other").cert_path)))
    (finding,) = check_ldap(wrong_ca)
    assert finding.status == "PROBLEM" and "not trusted" in finding.message and "ca_file" in finding.message
    no_secret = dataclasses.replace(dta.settings, directory=dataclasses.replace(
        dta.settings.directory, ldap=dataclasses.replace(ldap, bind_password_secret="no-such-secret")))
    (finding,) = check_ldap(no_secret)
    assert finding.status == "PROBLEM" and "VIGATRA_SECRET_NO_SUCH_SECRET" in finding.message
    assert seed.SERVICE_PASSWORD not in repr(check_ldap(dta.settings))


def test_a_missing_service_password_is_the_directory_being_unavailable(db_url: str, tmp_path: Path,
                                                                        slapd: Slapd) -> None:
    missing = build(db_url, tmp_path / "data", **ldap_overrides(slapd, "no-such-secret-here"))
    try:
        with pytest.raises(DirectoryUnavailable, match="password is missing"):
            sign_in(missing.appliance, username="carl", password=slapd.passwords["carl"], ip="127.0.0.1",
                    totp_code=None)
        alice = missing.personas["alice"]
        assert sign_in(missing.appliance, username="alice", password=alice.password, ip="127.0.0.1",
                       totp_code=None).user_id == alice.user_id
    finally:
        missing.appliance.close()
