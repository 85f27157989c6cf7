"""OpenID Connect sign-in against a real OpenID provider on loopback (panva's oidc-provider, tests/support/oidc.py):
the code flow with PKCE scripted and in Chromium, group -> role mapping from the groups claim, and ID tokens
that must be refused (tampered, another client's, a replayed nonce).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from sqlalchemy import select

from appliance.auth.directory import DirectoryRefused, DirectoryUnavailable
from appliance.services.directory.oidc import OidcProvider
from appliance.store.models import AuditEvent, User
from appliance.venues.egress import Egress
from tests.directory.conftest import SECRET_NAME, oidc_overrides
from tests.support import oidc as op
from tests.support.app import TestAppliance, build


def log_in_at_provider(authorize_url: str, issuer: str, login: str) -> str:
    """What a person does at the provider's login page (its development form: any password), scripted with
    requests; returns the URL the provider sends the browser back to."""
    browser = requests.Session()
    url = authorize_url
    for _ in range(12):
        response = browser.get(url, allow_redirects=False, timeout=10)
        if response.is_redirect:
            url = urljoin(url, response.headers["Location"])
            if not url.startswith(issuer):
                return url
            continue
        form = re.search(r'<form[^>]*action="([^"]+)"', response.text)
        assert form, response.text[:500]
        prompt = re.search(r'name="prompt" value="(\w+)"', response.text)
        data = {"prompt": prompt.group(1) if prompt else "login"}
        if data["prompt"] == "login":
            data.update(login=login, password="any password at the test provider")
        posted = browser.post(urljoin(url, form.group(1)), data=data, allow_redirects=False, timeout=10)
        assert posted.is_redirect, posted.text[:500]
        url = urljoin(url, posted.headers["Location"])
        if not url.startswith(issuer):
            return url
    raise AssertionError("the provider never sent the browser back")


def sign_in(oclient: Any, issuer: str, login: str) -> Any:
    started = oclient.get("/login/oidc")
    assert started.status_code == 302, started.data[:300]
    authorize = started.headers["Location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["nonce"][0] and query["state"][0] and query["client_id"] == [op.CLIENT_ID]
    back = log_in_at_provider(authorize, issuer, login)
    assert back.startswith("https://localhost/login/oidc/callback?"), back
    return oclient.get(back.removeprefix("https://localhost"))


def _user(ta: TestAppliance, username: str) -> User | None:
    with ta.store.read() as session:
        user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
        if user is not None:
            session.expunge(user)
        return user


def test_code_flow_with_pkce_signs_in_with_the_roles_of_the_groups_claim(
        ota_oidc: TestAppliance, oclient: Any, provider: op.OpenIdProvider) -> None:
    page = oclient.get("/login")
    assert b"Sign in with single sign-on" in page.data
    done = sign_in(oclient, provider.issuer, "olga")
    assert done.status_code == 302 and urlsplit(done.headers["Location"]).path == "/", done.data[:300]
    assert oclient.get("/").status_code == 200
    user = _user(ota_oidc, "olga")
    assert user is not None and user.source == "oidc" and user.directory_id == f"{provider.issuer}|olga"
    assert user.email == "olga@example.org"
    state = ota_oidc.appliance.auth.user(user.id)
    assert state is not None and state.role_names == ("Compliance",)
    with ota_oidc.store.read() as session:
        actions = list(session.execute(select(AuditEvent.action).where(AuditEvent.user_id == user.id)).scalars())
    assert "login.success" in actions


def test_no_mapped_group_no_account(ota_oidc: TestAppliance, oclient: Any, provider: op.OpenIdProvider) -> None:
    refused = sign_in(oclient, provider.issuer, "nils")
    assert refused.status_code == 401 and b"no role is mapped" in refused.data
    assert _user(ota_oidc, "nils") is None


def test_a_callback_without_the_pending_state_is_refused(oclient: Any, provider: op.OpenIdProvider) -> None:
    started = oclient.get("/login/oidc")
    back = log_in_at_provider(started.headers["Location"], provider.issuer, "ian")
    code = parse_qs(urlsplit(back).query)["code"][0]
    forged = oclient.get(f"/login/oidc/callback?code={code}&state=not-the-state")
    assert forged.status_code == 400
    replay = oclient.get(back.removeprefix("https://localhost"))  # the pending state was used up by the forgery
    assert replay.status_code == 400


def _id_token(provider: op.OpenIdProvider, client_id: str, secret: str, nonce: str) -> str:
    """A real ID token for ``client_id``, through the provider's code flow with PKCE (scripted)."""
    from authlib.integrations.requests_client import OAuth2Session

    client = OAuth2Session(client_id, secret, scope="openid profile email", code_challenge_method="S256",
                           redirect_uri="https://localhost/login/oidc/callback")
    verifier = "v" * 64
    url, _state = client.create_authorization_url(provider.issuer + "/auth", code_verifier=verifier, nonce=nonce)
    back = log_in_at_provider(url, provider.issuer, "ian")
    token = client.fetch_token(provider.issuer + "/token", authorization_response=back, code_verifier=verifier)
    return str(token["id_token"])


def test_tampered_foreign_and_replayed_id_tokens_are_refused(ota_oidc: TestAppliance,
                                                             provider: op.OpenIdProvider) -> None:
    checker = OidcProvider(ota_oidc.settings, op.CLIENT_SECRET, Egress(ota_oidc.settings))
    good = _id_token(provider, op.CLIENT_ID, op.CLIENT_SECRET, "nonce-1")
    assert checker.verify_id_token(good, nonce="nonce-1")["sub"] == "ian"

    header, payload, signature = good.split(".")
    flipped = payload[:10] + ("A" if payload[10] != "A" else "B") + payload[11:]
    with pytest.raises(DirectoryRefused, match="signature"):
        checker.verify_id_token(f"{header}.{flipped}.{signature}", nonce="nonce-1")
    with pytest.raises(DirectoryRefused, match="signature"):
        checker.verify_id_token(f"{header}.{payload}.{signature[:-4]}AAAA", nonce="nonce-1")
    with pytest.raises(DirectoryRefused, match="nonce"):
        checker.verify_id_token(good, nonce="another-nonce")

    foreign = _id_token(provider, op.OTHER_CLIENT_ID, op.OTHER_CLIENT_SECRET, "nonce-2")
    with pytest.raises(DirectoryRefused, match="aud"):
        checker.verify_id_token(foreign, nonce="nonce-2")


def test_discovery_must_name_the_same_issuer(ota_oidc: TestAppliance, provider: op.OpenIdProvider) -> None:
    settings = ota_oidc.settings
    other = dataclasses.replace(settings, directory=dataclasses.replace(
        settings.directory, oidc=dataclasses.replace(settings.directory.oidc, issuer=provider.issuer + "/")))
    with pytest.raises(DirectoryUnavailable, match="names the issuer"):
        OidcProvider(other, op.CLIENT_SECRET, Egress(other)).metadata()


def test_the_code_flow_in_chromium(db_url: str, tmp_path: Path) -> None:
    """A person clicks the single sign-on button, signs in at the provider's page, and lands on the dashboard."""
    from appliance.app import create_app
    from tests.onboarding.conftest import spki_args
    from tests.support.live import browser_page, find_chromium, start_live
    from tests.support.tls import find_nginx, start_nginx

    if find_chromium() is None or find_nginx() is None:
        pytest.fail("Chromium and nginx are needed: `make test` installs them", pytrace=False)
    os.environ["VIGATRA_SECRET_" + SECRET_NAME.upper().replace("-", "_")] = op.CLIENT_SECRET
    ta = build(db_url, tmp_path / "data", **oidc_overrides("http://127.0.0.1:1"))
    live = start_live(create_app(ta.appliance))
    front = start_nginx(tmp_path / "nginx", live.url)
    provider = op.start_provider([front.url + "/login/oidc/callback"], tmp_path)
    try:
        # The front's and the provider's addresses are known only now: point the running appliance at them.
        settings = ta.appliance.settings
        ta.appliance.settings = dataclasses.replace(
            settings, server=dataclasses.replace(settings.server, public_url=front.url),
            directory=dataclasses.replace(settings.directory, oidc=dataclasses.replace(
                settings.directory.oidc, issuer=provider.issuer)))
        with browser_page(args=spki_args(front)) as page:
            page.goto(front.url + "/login")
            page.click("#sso")
            page.wait_for_url(re.compile(re.escape(provider.issuer) + "/interaction/.*"))
            page.fill("input[name=login]", "ian")
            page.fill("input[name=password]", "any password at the test provider")
            page.click("button[type=submit]")
            page.wait_for_selector("button:has-text('Continue')")  # the consent page
            page.click("button:has-text('Continue')")
            page.wait_for_url(front.url + "/", timeout=20_000)
            assert "ian" in page.content()
        user = _user(ta, "ian")
        assert user is not None and user.source == "oidc"
        state = ta.appliance.auth.user(user.id)
        assert state is not None and state.role_names == ("Admin",)
    finally:
        provider.stop()
        front.stop()
        live.stop()
        ta.appliance.close()


def test_doctor_reads_the_discovery_document(ota_oidc: TestAppliance, provider: op.OpenIdProvider) -> None:
    from appliance.services.directory.doctor import check_oidc

    (finding,) = check_oidc(ota_oidc.settings)
    assert finding.status == "ok" and "https://localhost/login/oidc/callback" in finding.message
    settings = ota_oidc.settings
    down = dataclasses.replace(settings, directory=dataclasses.replace(
        settings.directory, oidc=dataclasses.replace(settings.directory.oidc, issuer="http://127.0.0.1:9")))
    (finding,) = check_oidc(down)
    assert finding.status == "PROBLEM" and "cannot reach the OpenID provider" in finding.message
    assert op.CLIENT_SECRET not in repr(check_oidc(settings))
