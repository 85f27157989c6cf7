"""No inbound write surface: venues never push to us, and the only routes that take data from
someone who is neither signed in nor holding an API key are the login form, the token endpoint and
the onboarding page (which itself needs a valid one-time token), and the employee portal's sign-in pages
(an e-mail address to send a link to, or a valid one-time link)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from appliance.boundary.routes import PUBLIC, route_table
from appliance.store.models import Connection, Employee
from tests.support.routes import calls

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# The portal's sign-in pages: asking for a link by e-mail address, using a one-time link, and a user name and
# password checked by a bind to the firm's directory. The TOTP code asked after the OpenID provider vouched for a
# dashboard user (refused unless this browser's session holds that provider's fresh answer).
ANONYMOUS_INPUT = {("POST", "/login"), ("POST", "/api/v1/auth/token"), ("POST", "/onboard/<token>"),
                   ("POST", "/me/sign-in"), ("POST", "/me/sign-in/<token>"), ("POST", "/me/sign-in/directory"),
                   ("POST", "/login/oidc/code")}
# Single sign-on: the OpenID provider sends the browser back with a one-time code (a GET, refused unless its
# state matches the one this browser's session holds). A browser redirect, not a push from a venue.
SSO_RETURN = "/login/oidc/callback"

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the route table is not stored


def test_only_login_token_and_onboarding_accept_data_anonymously(flask_app: Any) -> None:
    table = route_table(flask_app)
    flagged = {row.rule for row in table if row.accepts_data_anonymously}
    assert flagged == {rule for _method, rule in ANONYMOUS_INPUT} | {SSO_RETURN}
    assert all(row.permission == PUBLIC for row in table if row.accepts_data_anonymously)
    public_writes = {(m, row.rule) for row in table if row.permission == PUBLIC for m in row.methods
                     if m in WRITE_METHODS}
    assert public_writes == ANONYMOUS_INPUT
    # Every other public route is read-only (health, static files, the GET side of the three, the redirect to
    # the OpenID provider, for the dashboard and for the portal).
    assert {row.rule for row in table if row.permission == PUBLIC and not row.accepts_data_anonymously} == {
        "/healthz", "/static/<path:filename>", "/login/oidc", "/me/sign-in/sso"}
    assert not [row.rule for row in table if any(w in row.rule.lower() for w in ("webhook", "callback", "push"))
                and row.rule != SSO_RETURN]


def test_every_other_write_route_refuses_an_anonymous_caller(flask_app: Any, client: Any, ta: Any) -> None:
    with ta.store.read() as session:
        before = [session.execute(select(func.count()).select_from(m)).scalar_one() for m in (Employee, Connection)]
    tried = 0
    for call in calls(flask_app):
        if call.method not in WRITE_METHODS or (call.method, call.row.rule) in ANONYMOUS_INPUT:
            continue
        response = client.open(call.path, method=call.method, json={"name": "x", "email": "x@example.com"})
        tried += 1
        refused = response.status_code in (401, 403) or (
            response.status_code in (302, 303) and "/login" in response.headers.get("Location", ""))
        assert refused, (call.method, call.path, response.status_code)
    assert tried > 20
    # An onboarding post without a valid link is refused before anything is read or stored.
    response = client.post("/onboard/" + "x" * 43, data={"action": "key", "venue": "kraken", "api_key": "k",
                                                          "api_secret": "s"})
    assert response.status_code in (403, 404)
    with ta.store.read() as session:
        after = [session.execute(select(func.count()).select_from(m)).scalar_one() for m in (Employee, Connection)]
    assert after == before
