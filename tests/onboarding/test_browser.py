"""Real Chromium through a real nginx TLS front: the whole onboarding of a Coinbase and a Kraken key
against the simulators, wallets, finish; and the same page over plain HTTP blocking itself."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import requests

from appliance.services.onboarding import default_public_url
from tests.onboarding.conftest import (
    BAD_CHECKSUM_EVM,
    VALID_EVM,
    audit_rows,
    audit_text,
    connections,
    new_employee,
    new_link,
    secrets_of,
    spki_args,
)
from tests.support.live import LiveServer, browser_page
from tests.support.sim import RunningSim
from tests.support.tls import TlsFront

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


class Api:
    """The admin's side, over the same TLS front (requests trusts the test certificate)."""

    def __init__(self, front: TlsFront, ta: Any) -> None:
        self.base = front.url
        self.verify = str(front.certificate.cert_path)
        self.seen: list[str] = []
        token = self.call("POST", "/api/v1/auth/token",
                          json={"username": "alice", "password": ta.personas["alice"].password})
        self.headers = {"Authorization": f"Bearer {token['access_token']}"}

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        headers = {**getattr(self, "headers", {}), **kwargs.pop("headers", {})}
        response = requests.request(method, self.base + path, headers=headers, verify=self.verify, timeout=30,
                                    allow_redirects=False, **kwargs)
        self.seen.append(response.text)
        assert response.status_code == expect, (path, response.status_code, response.text[:500])
        hsts = response.headers.get("Strict-Transport-Security", "")
        assert "includeSubDomains" in hsts and int(hsts.split("max-age=")[1].split(";")[0]) >= 31536000
        return response.json()


def choose(page: Any, venue: str) -> None:
    page.select_option("#venue-choice", venue)
    page.click("text=Show the steps")
    page.wait_for_load_state()


def submit_key(page: Any, key: dict[str, Any]) -> str:
    page.fill("#f-api_key", key["api_key"])
    page.fill("#f-api_secret", key["api_secret"])
    if key.get("passphrase") and page.locator("#f-passphrase").count():
        page.fill("#f-passphrase", key["passphrase"])
    page.click("text=Check and add this key")
    page.wait_for_load_state()
    return str(page.locator("[role=status]").inner_text())


def test_onboarding_coinbase_kraken_and_a_wallet_through_tls(ota: Any, sim: RunningSim, front: TlsFront,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api = Api(front, ota)
    person = api.call("POST", "/api/v1/employees", 201,
                      json={"name": "Erin Example", "email": "erin@example.com", "department": "Trading"})
    link = api.call("POST", f"/api/v1/employees/{person['id']}/onboarding-links", 201, json={})
    url = link["url"]
    # No public_url configured: the link names this machine over https, never the Host the request named.
    # The employee opens it where the appliance is reached, here the test's TLS front on its own port.
    assert url.startswith(f"{default_public_url()}/onboard/"), url
    token = url.rsplit("/", 1)[1]
    url = f"{front.url}/onboard/{token}"

    keys = {venue: [sim.create_key(venue, ["read"]), sim.create_key(venue, ["read", "trade"]),
                    sim.create_key(venue, ["read"])] for venue in ("coinbase", "kraken")}
    every_secret = [s for venue_keys in keys.values() for k in venue_keys for s in secrets_of(k)]
    bodies: list[str] = []
    hsts: dict[str, str] = {}

    def seen(response: Any) -> None:
        bodies.append(_text(response))
        hsts[response.url] = response.headers.get("strict-transport-security", "")

    with browser_page(args=spki_args(front)) as page:
        page.on("response", seen)
        page.goto(url)
        assert page.evaluate("window.isSecureContext") is True
        assert page.evaluate("location.protocol") == "https:"
        assert page.locator("#tls-warning").is_hidden()
        assert "__Host-vigatra-onboard" not in {c["name"] for c in page.context.cookies()}

        for venue, name in (("coinbase", "Coinbase"), ("kraken", "Kraken")):
            read_only, trading, read_only_again = keys[venue]
            choose(page, venue)
            assert f"Create a read-only key on {name}" in page.content()
            assert page.locator("ol.steps li.warning").count() >= 1  # the "leave Trade unticked" step
            assert page.locator("#f-api_key").is_enabled()

            status = submit_key(page, read_only)
            assert f"{name}: accepted" in status, status
            # The first submission bound the link to this browser; a second browser is refused.
            claim = {c["name"]: c for c in page.context.cookies()}["__Host-vigatra-onboard"]
            assert claim["secure"] and claim["httpOnly"] and claim["sameSite"] == "Lax"
            other = page.context.browser.new_context()
            try:
                assert other.new_page().goto(url).status == 409
            finally:
                other.close()

            choose(page, venue)
            status = submit_key(page, trading)
            assert f"{name}: not accepted" in status, status
            assert "trade" in status.lower()
            assert "delete this key" in status and "submit the new key" in status.lower(), status
            # The form is offered again on the same link.
            assert page.locator("#f-api_key").input_value() == ""

            status = submit_key(page, read_only_again)
            assert f"{name}: accepted" in status, status

        choose(page, "ethereum")
        page.fill("#w-address", BAD_CHECKSUM_EVM)
        page.click("text=Add address")
        page.wait_for_load_state()
        error = page.locator(".flash.error[role=alert]:not(#tls-warning)").inner_text()
        assert "Bad checksum" in error and "EIP-55" in error, error
        page.fill("#w-address", VALID_EVM.lower())  # no checksum: accepted, stored checksummed
        page.fill("#w-label", "MetaMask")
        page.click("text=Add address")
        page.wait_for_load_state()
        assert "address added" in page.locator("[role=status]").inner_text()
        assert VALID_EVM in page.content()

        page.click("text=I have added all my accounts")
        page.wait_for_load_state()
        assert "This link no longer works" in page.content()
        response = page.goto(url)
        assert response is not None and response.status == 404
        assert "invalid, expired or already used" in page.content()

    listed = api.call("GET", f"/api/v1/employees/{person['id']}/connections")["connections"]
    by_venue: dict[str, list[str]] = {}
    for item in listed:
        by_venue.setdefault(item["venue"], []).append(item["status"])
    assert sorted(by_venue["coinbase"]) == ["pending", "rejected", "superseded"], by_venue
    assert sorted(by_venue["kraken"]) == ["pending", "rejected", "superseded"], by_venue
    assert by_venue["ethereum"] == ["pending"]
    assert next(i for i in listed if i["venue"] == "ethereum")["address"] == VALID_EVM

    rows = connections(ota, person["id"])
    for row in rows:
        if row.kind != "wallet":
            assert row.key_fingerprint
        sealed = row.status == "pending" and row.kind != "wallet"
        assert (row.api_secret_sealed is not None) == sealed, (row.venue, row.status)

    events = audit_rows(ota)
    actions = [e["action"] for e in events]
    assert actions.count("onboarding.link_create") == 1
    assert actions.count("onboarding.open") == 1
    assert actions.count("onboarding.claim") == 1
    assert actions.count("onboarding.submit_key") == 6
    assert [e["outcome"] for e in events if e["action"] == "onboarding.submit_key"].count("denied") == 2
    assert actions.count("onboarding.submit_wallet") == 1
    assert actions.count("onboarding.finish") == 1
    onboarding_events = [e for e in events if e["action"].startswith("onboarding.") and e["actor_type"] == "employee"]
    assert all(e["ip_address"] == "127.0.0.1" for e in onboarding_events)

    assert any("Connect your accounts" in b for b in bodies) and any("Thank you" in b for b in bodies)
    assert any(u.endswith("/static/onboard.js") for u in hsts)
    for response_url, value in hsts.items():  # pages, the refused 404, the script: all over TLS
        assert "includeSubDomains" in value and int(value.split("max-age=")[1].split(";")[0]) >= 31536000, \
            response_url
    everything = "\n".join([*bodies, *api.seen, audit_text(events), caplog.text])
    for secret in every_secret:
        assert secret not in everything
    assert token not in audit_text(events)
    assert token not in caplog.text


def _text(response: Any) -> str:
    try:
        return str(response.text())
    except Exception:  # redirects and aborted loads have no body
        return ""


def test_plain_http_page_blocks_itself(ota: Any, live: LiveServer) -> None:
    """Directly at the app over http://127.0.0.1: Chromium calls that a secure context, so the
    script must (and does) check location.protocol too."""
    employee_id = new_employee(ota)
    _link_id, token = new_link(ota, employee_id)
    with browser_page() as page:
        page.goto(f"{live.url}/onboard/{token}?venue=kraken")
        assert page.evaluate("window.isSecureContext") is True
        assert page.evaluate("location.protocol") == "http:"
        assert page.locator("#tls-warning").is_visible()
        for selector in ("#f-api_key", "#f-api_secret", "text=Check and add this key",
                         "text=I have added all my accounts"):
            assert page.locator(selector).is_disabled(), selector
        page.goto(f"{live.url}/onboard/{token}?venue=ethereum")
        assert page.locator("#w-address").is_disabled()
        assert page.locator("#tls-warning").is_visible()
    assert connections(ota) == []


def test_script_blocks_the_form_even_when_the_server_believes_tls(ota: Any, live: LiveServer) -> None:
    """A misconfigured front that says X-Forwarded-Proto: https over plain HTTP: the server is
    fooled (the peer is a trusted proxy), the script in the browser is not."""
    employee_id = new_employee(ota)
    _link_id, token = new_link(ota, employee_id)
    with browser_page() as page:
        page.set_extra_http_headers({"X-Forwarded-Proto": "https"})
        page.goto(f"{live.url}/onboard/{token}?venue=coinbase")
        assert page.locator("#tls-warning").is_visible()
        assert page.locator("#f-api_key").is_disabled()
        assert page.locator("#f-api_secret").is_disabled()
        assert page.locator("text=Check and add this key").is_disabled()


def test_reopening_the_link_from_webmail_keeps_working(ota: Any, front: TlsFront) -> None:
    """The employee adds a wallet, closes the tab, and later clicks the link again in their webmail
    (a cross-site navigation): the same browser still holds the link."""
    employee_id = new_employee(ota)
    _link_id, token = new_link(ota, employee_id)
    url = f"{front.url}/onboard/{token}"
    webmail = front.url.replace("127.0.0.1", "localhost") + "/webmail"
    with browser_page(args=spki_args(front)) as page:
        assert page.goto(url).status == 200
        choose(page, "ethereum")
        page.fill("#w-address", VALID_EVM)
        page.click("text=Add address")
        page.wait_for_load_state()
        assert "__Host-vigatra-onboard" in {c["name"] for c in page.context.cookies()}
        page.route(webmail, lambda route: route.fulfill(
            status=200, content_type="text/html", body=f'<a id="link" href="{url}">your onboarding link</a>'))
        page.goto(webmail)
        with page.expect_navigation():
            page.click("#link")
        assert "Connect your accounts" in page.content()
        assert "already in use in another browser" not in page.content()
        assert "Added so far" in page.content() and VALID_EVM in page.content()
        assert page.locator("#venue-choice").is_enabled()
