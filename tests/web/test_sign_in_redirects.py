"""Where signing in leads.

Security review, finding 7: ``/login?next=/%09/evil.example/x`` sent a signed-in user off-site (a
browser drops the tab and reads ``//evil.example/x``). Only a same-origin path is accepted, after
removing control characters and backslashes; a list of known bypass forms stays on the site.

Finding 13: a first sign-in with the one-time password landed on ``/``, which answers 403 "change
your password first", and its "Back to the start page" link looped. It now goes straight to the
password form, and the refusal page links there.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from appliance.rbac.actors import system_actor
from appliance.services import identity
from tests.access.helpers import csrf_of, login_session

BYPASSES = [
    "//evil.example/x", "///evil.example/x", "////evil.example", "/\\evil.example", "\\\\evil.example",
    "/\\/evil.example", "\\/evil.example", "/\t/evil.example/x", "/\n/evil.example", "/\r\n/evil.example",
    "/\x00/evil.example", "/\x0b/evil.example", "\t//evil.example", " //evil.example", "\x01//evil.example",
    "https://evil.example", "HTTPS://evil.example", "http:evil.example", "https:/evil.example",
    "//evil.example@localhost", "javascript:alert(1)", "data:text/html,x", "/%2F/evil.example",
    "%2F%2Fevil.example", "/\u0009/evil.example", "\\\\\\evil.example",
]


def browser_target(location: str, base: str = "https://localhost/login") -> str:
    """Where a browser goes for a Location header (WHATWG URL parsing in short): tabs and newlines are
    dropped anywhere, leading and trailing C0 controls and spaces stripped, backslashes read as slashes."""
    value = re.sub(r"[\t\n\r]", "", location).strip("".join(map(chr, range(0x21))))
    return urljoin(base, value.replace("\\", "/"))


def _next(value: str) -> str:
    return "/login?next=" + quote(value, safe="")


def _refused_outright(target: str, response: Any) -> bool:
    """A query carrying a control character may be refused as bad input (400, no Location at all): that
    sends nobody anywhere either. Any other answer must be a redirect."""
    has_control = any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in target)
    return has_control and response.status_code == 400 and "Location" not in response.headers


def test_a_signed_in_user_is_never_sent_off_site(client: Any, ta: Any) -> None:
    login_session(client, ta, "alice")
    off_site = []
    for target in BYPASSES:
        response = client.get(_next(target))
        if _refused_outright(target, response):
            continue
        assert response.status_code == 302, repr(target)
        if urlsplit(browser_target(response.headers["Location"])).hostname != "localhost":
            off_site.append(f"{target!r} -> {response.headers['Location']!r}")
    assert off_site == []


def test_the_browser_model_of_the_test_is_right() -> None:
    assert urlsplit(browser_target("/\t/evil.example/x")).hostname == "evil.example"
    assert urlsplit(browser_target("/\\evil.example")).hostname == "evil.example"
    assert urlsplit(browser_target("/employees")).hostname == "localhost"


def test_signing_in_never_sends_anyone_off_site(client: Any, ta: Any) -> None:
    for target in BYPASSES:
        client.get("/login")
        response = client.post(_next(target), data={"username": "victor", "password": ta.personas["victor"].password,
                                                     "csrf_token": csrf_of(client)})
        if _refused_outright(target, response):
            continue
        assert response.status_code == 302, repr(target)
        assert urlsplit(browser_target(response.headers["Location"])).hostname == "localhost", repr(target)
        client.post("/logout", data={"csrf_token": csrf_of(client)})


def test_a_path_on_the_site_is_kept(client: Any, ta: Any) -> None:
    login_session(client, ta, "alice")
    response = client.get(_next("/employees?status=red"))
    assert response.headers["Location"] == "/employees?status=red"


def _first_sign_in(client: Any, ta: Any) -> Any:
    with ta.store.unit_of_work() as session:
        identity.create_user(session, system_actor("init"), ta.settings.auth, username="first-admin",
                             password="the one-time password of the install", roles=["Admin"],
                             must_change_password=True)
    ta.appliance.auth.load(ta.store)
    client.get("/login")
    return client.post("/login", data={"username": "first-admin", "password": "the one-time password of the install",
                                       "csrf_token": csrf_of(client)})


def test_the_first_sign_in_lands_on_the_password_form(client: Any, ta: Any) -> None:
    response = _first_sign_in(client, ta)
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"
    page = client.get("/account")
    assert page.status_code == 200 and "Choose a new password" in page.text
    assert 'action="/account/password"' in page.text


def test_a_refused_page_links_to_what_must_be_done_first(client: Any, ta: Any) -> None:
    _first_sign_in(client, ta)
    refused = client.get("/")
    assert refused.status_code == 403
    links = re.findall(r'<main.*?</main>', refused.text, re.S) or [refused.text]
    assert 'href="/account"' in links[0]
    assert 'href="/"' not in links[0]  # no way back into the loop
    assert client.get("/login").headers["Location"] == "/account"  # nor through the sign-in page
