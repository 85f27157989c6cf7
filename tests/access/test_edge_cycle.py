"""The edge runs on Flask's own request hooks, registered first: its checks run before any other
before-request function, hooks that something else registers still run in Flask's order, and the edge
still has the last word — the audit record describes the response that actually leaves."""

from __future__ import annotations

from typing import Any

from flask import Response, after_this_request, jsonify
from sqlalchemy import select

from appliance.boundary.routes import requires
from appliance.store.models import AuditEvent
from tests.access.helpers import auth


def _last_event(ta: Any) -> tuple[str, int | None, str]:
    with ta.appliance.store.read() as session:
        event = session.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
        return event.action, event.status, event.request_id


def test_other_hooks_run_and_the_edge_audits_the_final_response(ta: Any) -> None:
    from appliance.app import create_app

    flask_app = create_app(ta.appliance)
    calls: list[str] = []

    @requires("employees:read", action="test.hooked")
    def hooked() -> Any:
        @after_this_request
        def per_request(response: Response) -> Response:
            calls.append("after_this_request")
            return response

        calls.append("view")
        return jsonify({"ok": True})

    flask_app.add_url_rule("/api/v1/test/hooked", "test_hooked", hooked)
    flask_app.before_request(lambda: calls.append("before") and None)

    @flask_app.after_request
    def teapot(response: Response) -> Response:
        calls.append("after")
        response.status_code = 418  # a late hook changes the status: the audit must say 418
        return response

    flask_app.teardown_request(lambda _exc: calls.append("teardown") and None)
    client = flask_app.test_client()
    issued = client.post("/api/v1/auth/token", base_url="https://localhost",
                         json={"username": "alice", "password": ta.personas["alice"].password})
    bearer = auth(issued.get_json()["access_token"])
    calls.clear()

    response = client.get("/api/v1/test/hooked", headers=bearer, base_url="https://localhost")

    assert response.status_code == 418
    assert calls == ["before", "view", "after_this_request", "after", "teardown"]
    assert _last_event(ta) == ("test.hooked", 418, response.headers["X-Request-ID"])


def test_a_refused_request_never_reaches_other_hooks_or_the_view(ta: Any) -> None:
    from appliance.app import create_app

    flask_app = create_app(ta.appliance)
    calls: list[str] = []
    flask_app.before_request(lambda: calls.append("before") and None)

    response = flask_app.test_client().get("/api/v1/employees", base_url="https://localhost",
                                           headers=auth("not-a-token"))

    assert response.status_code == 401
    assert calls == []  # the edge refused before any other before-request function ran


def test_a_route_added_after_start_is_guarded_by_its_own_declaration(ta: Any) -> None:
    from appliance.app import create_app

    flask_app = create_app(ta.appliance)

    @requires("users:write", action="test.guarded")
    def guarded() -> Any:
        return jsonify({"ok": True})

    flask_app.add_url_rule("/api/v1/test/guarded", "test_guarded", guarded)
    client = flask_app.test_client()

    def bearer(persona: str) -> dict[str, str]:
        issued = client.post("/api/v1/auth/token", base_url="https://localhost",
                             json={"username": persona, "password": ta.personas[persona].password})
        return auth(issued.get_json()["access_token"])

    refused = client.get("/api/v1/test/guarded", headers=bearer("victor"), base_url="https://localhost")
    allowed = client.get("/api/v1/test/guarded", headers=bearer("alice"), base_url="https://localhost")

    assert refused.status_code == 403
    assert allowed.status_code == 200
    assert _last_event(ta) == ("test.guarded", 200, allowed.headers["X-Request-ID"])
