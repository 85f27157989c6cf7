"""directory.oidc.ask_totp against the real OpenID provider: a user who enrolled TOTP is asked for the code after
the provider's callback (a pending step held in the browser's own session, five minutes, one try, stale once any
code was accepted); a user without enrolment signs in as the LDAP path lets them; ask_totp off, no code asked."""

from __future__ import annotations

import base64
import dataclasses
import os
from typing import Any
from urllib.parse import urlsplit

import pyotp
from sqlalchemy import select

from appliance.store.base import utcnow
from appliance.store.models import AuditEvent, User
from tests.directory.test_oidc import sign_in
from tests.portal.conftest import csrf_from
from tests.support import oidc as op
from tests.support.app import TestAppliance


def _ask_totp(ta: TestAppliance, on: bool = True) -> None:
    settings = ta.appliance.settings
    ta.appliance.settings = dataclasses.replace(settings, directory=dataclasses.replace(
        settings.directory, oidc=dataclasses.replace(settings.directory.oidc, ask_totp=on)))


def _enrol(ta: TestAppliance, username: str) -> pyotp.TOTP:
    secret = base64.b32encode(os.urandom(20)).decode("ascii")
    with ta.store.unit_of_work() as session:
        user = session.execute(select(User).where(User.username == username)).scalar_one()
        user.totp_secret_sealed = ta.appliance.keys.seal(session, secret, table="users", column="totp_secret_sealed",
                                                         row_id=user.id)
        user.mfa_enabled = True
        user.totp_last_step = 0
    return pyotp.TOTP(secret)


def _first_sign_in(ota_oidc: TestAppliance, oclient: Any, provider: op.OpenIdProvider, login: str) -> None:
    done = sign_in(oclient, provider.issuer, login)
    assert done.status_code == 302 and urlsplit(done.headers["Location"]).path == "/", done.text[:300]
    oclient.post("/logout", data={"csrf_token": _csrf(oclient)})


def _csrf(client: Any) -> str:
    with client.session_transaction() as s:
        return str(s.get("csrf", ""))


def _code_form(client: Any) -> str:
    page = client.get("/login/oidc/code")
    assert page.status_code == 200 and 'name="totp"' in page.text, page.text[:500]
    return csrf_from(page.text)


def _signed_in(client: Any) -> bool:
    return client.get("/").status_code == 200


def test_an_enrolled_user_is_asked_for_the_code_after_the_callback(
        ota_oidc: TestAppliance, oclient: Any, provider: op.OpenIdProvider) -> None:
    _first_sign_in(ota_oidc, oclient, provider, "olga")
    totp = _enrol(ota_oidc, "olga")
    _ask_totp(ota_oidc)
    back = sign_in(oclient, provider.issuer, "olga")
    assert back.status_code == 302 and urlsplit(back.headers["Location"]).path == "/login/oidc/code"
    assert not _signed_in(oclient)  # the provider's word alone opens nothing
    token = _code_form(oclient)
    wrong = oclient.post("/login/oidc/code", data={"csrf_token": token, "totp": "000000"
                                                   if totp.now() != "000000" else "111111"})
    assert wrong.status_code == 401 and not _signed_in(oclient)
    # One try: the pending step is gone; the person goes back through the provider.
    assert oclient.get("/login/oidc/code").status_code == 400
    sign_in(oclient, provider.issuer, "olga")
    done = oclient.post("/login/oidc/code", data={"csrf_token": _code_form(oclient), "totp": totp.now()})
    assert done.status_code == 302 and urlsplit(done.headers["Location"]).path == "/", done.text[:300]
    assert _signed_in(oclient)
    with ota_oidc.store.read() as session:
        details = list(session.execute(select(AuditEvent.detail).where(
            AuditEvent.action == "login.success")).scalars())
        failures = list(session.execute(select(AuditEvent.detail).where(
            AuditEvent.action == "login.failure")).scalars())
    assert any('"totp": true' in d for d in details)
    assert any("wrong one-time code" in d for d in failures)


def test_a_pending_step_cannot_be_replayed_after_a_code_was_accepted(
        ota_oidc: TestAppliance, oclient: Any, provider: op.OpenIdProvider) -> None:
    """The pending step lives in the browser's signed cookie: a copy of that cookie, replayed after the code was
    accepted, finds the step stale (the user's last accepted TOTP step moved on)."""
    _first_sign_in(ota_oidc, oclient, provider, "olga")
    totp = _enrol(ota_oidc, "olga")
    _ask_totp(ota_oidc)
    sign_in(oclient, provider.issuer, "olga")
    token = _code_form(oclient)
    saved = oclient.get_cookie("__Host-vigatra")
    assert saved is not None
    assert oclient.post("/login/oidc/code", data={"csrf_token": token, "totp": totp.now()}).status_code == 302
    oclient.set_cookie("__Host-vigatra", saved.value, domain="localhost", secure=True, path="/", httponly=True)
    step = int(utcnow().timestamp()) // 30
    replay = oclient.post("/login/oidc/code", data={"csrf_token": token, "totp": totp.at((step + 1) * 30)})
    assert replay.status_code == 401 and not _signed_in(oclient)
    with ota_oidc.store.read() as session:
        last = session.execute(select(AuditEvent.detail).where(AuditEvent.action == "login.failure").order_by(
            AuditEvent.id.desc()).limit(1)).scalar_one()
    assert "already used" in last


def test_without_enrolment_or_without_ask_totp_no_code_is_asked(
        ota_oidc: TestAppliance, oclient: Any, provider: op.OpenIdProvider) -> None:
    _ask_totp(ota_oidc)
    done = sign_in(oclient, provider.issuer, "ian")  # no TOTP enrolled: as the LDAP path, the provider suffices
    assert done.status_code == 302 and urlsplit(done.headers["Location"]).path == "/"
    oclient.post("/logout", data={"csrf_token": _csrf(oclient)})
    _enrol(ota_oidc, "ian")
    _ask_totp(ota_oidc, on=False)
    done = sign_in(oclient, provider.issuer, "ian")
    assert done.status_code == 302 and urlsplit(done.headers["Location"]).path == "/"


def test_the_code_page_without_a_pending_step_is_refused(oclient: Any) -> None:
    assert oclient.get("/login/oidc/code").status_code == 400
