"""The employee portal's test helpers: employees with records of their own, and browsers (Flask test
clients over HTTPS from loopback) signed in to the portal through a real one-time link."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient

from appliance.store.base import utcnow


class HttpsClient(FlaskClient):
    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("base_url", "https://localhost")
        return super().open(*args, **kwargs)


def browser(flask_app: Any) -> Any:
    flask_app.test_client_class = HttpsClient
    return flask_app.test_client()


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


def new_employee(ta: Any, name: str = "Erin", department: str = "") -> int:
    from appliance.services import employees

    with ta.store.unit_of_work() as session:
        return int(employees.create(session, name=name, email=f"{secrets.token_hex(4)}@example.com",
                                    department=department).id)


def printed_link(ta: Any, employee_id: int) -> str:
    """A link as `vigatra employee portal-link` makes it; returns the token."""
    from appliance.rbac.actors import system_actor
    from appliance.services import portal

    with ta.store.unit_of_work() as session:
        _row, token = portal.create_link(session, system_actor("t"), ta.settings, employee_id, channel="printed")
    return token


def sign_in(client: Any, token: str) -> Any:
    page = client.get(f"/me/sign-in/{token}")
    assert page.status_code == 200, page.text[:500]
    return client.post(f"/me/sign-in/{token}", data={"csrf_token": csrf_from(page.text)})


def signed_in(flask_app: Any, ta: Any, employee_id: int) -> Any:
    client = browser(flask_app)
    response = sign_in(client, printed_link(ta, employee_id))
    assert response.status_code == 302 and response.headers["Location"].endswith("/me"), response.text[:500]
    return client


def csrf_of(client: Any) -> str:
    """The CSRF token of the client's session: the portal's (from its cookie) or the dashboard's."""
    from appliance.boundary.csrf import employee_csrf_token

    cookie = client.get_cookie("__Host-vigatra-employee")
    if cookie is not None:
        return employee_csrf_token(cookie.value)
    with client.session_transaction() as s:
        return str(s["csrf"])


def give_records(ta: Any, employee_id: int, marker: str) -> dict[str, int]:
    """A connection with a balance, a trade and a position, and a pre-clearance request, all named by
    ``marker`` (an asset symbol) so a test can tell whose they are."""
    from appliance.store.models import (
        BalanceSnapshot,
        Connection,
        PreclearanceRequest,
        PredictionPosition,
        Transaction,
    )

    now = utcnow()
    with ta.store.unit_of_work() as session:
        connection = Connection(employee_id=employee_id, kind="exchange", venue="kraken", label=f"kraken {marker}",
                                status="active", key_fingerprint=secrets.token_hex(8))
        session.add(connection)
        session.flush()
        balance = BalanceSnapshot(connection_id=connection.id, asset=marker, amount=Decimal("1.5"),
                                  valid_from=now, observed_until=now)
        trade = Transaction(connection_id=connection.id, stream="trades", venue_tx_id=secrets.token_hex(6),
                            kind="buy", occurred_at=now - dt.timedelta(hours=1), asset=marker,
                            amount=Decimal("1.5"), market=f"{marker}/USD")
        position = PredictionPosition(connection_id=connection.id, market_id=f"MKT-{marker}", outcome="yes",
                                      size=Decimal(10), valid_from=now, observed_until=now)
        request = PreclearanceRequest(employee_id=employee_id, kind="asset", asset=marker, side="buy",
                                      quantity=Decimal(2), submitted_via="portal", status="pending")
        session.add_all([balance, trade, position, request])
        session.flush()
        return {"connection": connection.id, "balance": balance.id, "transaction": trade.id,
                "position": position.id, "request": request.id}


def give_task(ta: Any, employee_id: int, marker: str) -> dict[str, int]:
    """A quarterly task and a code-of-ethics version to acknowledge, the employee's own."""
    import hashlib

    from appliance.store.models import AttestationCampaign, AttestationTask, CodeVersion

    today = utcnow().date()
    with ta.store.unit_of_work() as session:
        text = f"Code of ethics for {marker}".encode()
        version = CodeVersion(version=int(secrets.randbelow(10**6)) + 1, title=f"Code {marker}",
                              media_type="text/plain", content=text, sha256=hashlib.sha256(text).hexdigest(),
                              size=len(text))
        session.add(version)
        session.flush()
        quarter = AttestationCampaign(kind="quarterly_transactions", period=f"Q-{marker}"[:8],
                                      period_start=today.replace(day=1), period_end=today, due=today,
                                      title=f"Quarterly {marker}")
        ack = AttestationCampaign(kind="code_acknowledgement", code_version_id=version.id, due=today,
                                  title=f"Acknowledge {marker}")
        session.add_all([quarter, ack])
        session.flush()
        task = AttestationTask(campaign_id=quarter.id, employee_id=employee_id, due=today)
        session.add_all([task, AttestationTask(campaign_id=ack.id, employee_id=employee_id, due=today)])
        session.flush()
        return {"task": task.id, "code_version": version.id}


@pytest.fixture
def two(ta: Any) -> dict[str, Any]:
    """Erin and Frank, each with records and tasks of their own."""
    erin, frank = new_employee(ta, "Erin"), new_employee(ta, "Frank")
    return {"erin": erin, "frank": frank,
            "erin_records": {**give_records(ta, erin, "ERINCOIN"), **give_task(ta, erin, "ERIN")},
            "frank_records": {**give_records(ta, frank, "FRANKCOIN"), **give_task(ta, frank, "FRANK")}}
