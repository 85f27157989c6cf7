"""Notifications through a real SMTP server on loopback (aiosmtpd): STARTTLS with a verified
certificate, AUTH with the password from the key provider, nothing sent before the commit, and no
financial figure in any body."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from appliance.errors import ConfigError
from appliance.settings import settings_from_mapping
from appliance.store.models import MailOutbox, User
from tests.conduct.conftest import QUIET, Api, add_trades, days_ago, employee_of, sync
from tests.support.sim import RunningSim
from tests.support.smtp import MailServer, smtp_server
from tests.sync.conftest import https_client, onboard

MAILBOX = "compliance@example.com"


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[MailServer]:
    os.environ["VIGATRA_SECRET_SMTP_PASSWORD"] = "relay-password-for-tests"
    try:
        with smtp_server(tmp_path / "smtp", tls=True, login=("vigatra", "relay-password-for-tests")) as server:
            yield server
    finally:
        os.environ.pop("VIGATRA_SECRET_SMTP_PASSWORD", None)


def mailing(sta_factory: Any, server: MailServer, **smtp: Any) -> Any:
    return sta_factory(server={"public_url": "https://vigatra.example.com"}, notifications={
        "compliance_mailbox": [MAILBOX], "smtp": {
            "host": server.host, "port": server.port, "starttls": True, "ca_file": str(server.ca_file),
            "sender": "vigatra@example.com", "username": "vigatra", "timeout_seconds": 10, **smtp}})


def test_critical_alert_mail_arrives_without_figures(sta_factory: Any, sim: RunningSim, relay: MailServer) -> None:
    sta = mailing(sta_factory, relay)
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    add_trades(sim, "kraken", key, [{"base": "SOL", "quote": "USDT", "side": "buy", "amount": "3.25",
                                     "price": "98.5", "when": days_ago(2)}])
    sync(sta, cid)
    carol = Api(https_client(sta), sta, "carol")
    created = carol.post("/lists", {"name": "Deal Falcon", "kind": "restricted", "entries": [
        {"type": "asset", "value": "SOL", "note": "FALCON-7"}]})
    assert relay.messages() == [], "nothing is sent from inside the request: the outbox waits for the commit"
    (alert,) = carol.get(f"/alerts?rule_id={created['rules'][0]['id']}")["alerts"]

    report = sta.appliance.mailer.deliver_pending()
    assert len(report.sent) == 1 and not report.failed
    (mail,) = relay.messages()
    assert mail.recipients == [MAILBOX] and mail.tls and mail.authenticated_as == "vigatra"
    assert mail.message["From"] == "vigatra@example.com" and mail.message["Auto-Submitted"] == "auto-generated"
    assert f"#{alert['id']}" in mail.message["Subject"]
    body = mail.body
    assert f"https://vigatra.example.com/alerts/{alert['id']}" in body
    person = carol.get(f"/employees/{employee_of(sta, cid)}")
    for secret in ("3.25", "98.5", "SOL", "FALCON", "Kraken", person["name"], person["email"]):
        assert secret not in body and secret not in mail.message["Subject"], secret
    # No figure at all besides the alert's number: no amount, price, value or balance.
    assert set(re.findall(r"\d+(?:[.,]\d+)?", body.replace(str(alert["id"]), ""))) == set()
    with sta.store.read() as session:
        row = session.execute(select(MailOutbox)).scalar_one()
        assert row.status == "sent" and row.body_sealed is None and row.recipients == [MAILBOX]
    assert sta.appliance.mailer.deliver_pending().sent == [], "sent once"


def test_assignment_mails_the_assignee(sta_factory: Any, relay: MailServer) -> None:
    sta = mailing(sta_factory, relay)
    with sta.store.unit_of_work() as session:
        session.execute(update(User).where(User.username == "carol").values(email="carol@example.com",
                                                                             display_name="Carol Compliance"))
    sta.appliance.auth.load(sta.store)
    alice = Api(https_client(sta), sta, "alice")
    employee = alice.post("/employees", {"name": "Erin Example", "email": "erin@example.com"})["id"]
    alert = alice.post("/alerts", {"employee_id": employee, "title": "Tip-off from the desk", "reason": "call"})
    sta.appliance.mailer.deliver_pending()
    relay.received.clear()
    alice.post(f"/alerts/{alert['id']}/assign", {"user_id": sta.personas["carol"].user_id}, status=200)
    sta.appliance.mailer.deliver_pending()
    (mail,) = relay.messages()
    assert sorted(mail.recipients) == ["carol@example.com", MAILBOX]
    assert "assigned to Carol Compliance" in mail.message["Subject"]
    assert "Erin" not in mail.body


def test_nothing_is_sent_for_a_rolled_back_change(sta_factory: Any, relay: MailServer) -> None:
    sta = mailing(sta_factory, relay)
    def change_that_fails() -> None:
        with sta.store.unit_of_work() as session:
            sta.appliance.mailer.queue(session, to=[MAILBOX], subject="s", text="t", purpose="test")
            raise RuntimeError("the change fails after deciding to mail")

    with pytest.raises(RuntimeError):
        change_that_fails()
    assert sta.appliance.mailer.deliver_pending().sent == []
    with sta.store.read() as session:
        assert session.execute(select(MailOutbox)).first() is None
    assert relay.messages() == []


def test_a_relay_without_starttls_is_refused(sta_factory: Any, tmp_path: Path) -> None:
    with smtp_server(tmp_path / "plain", tls=False) as plain:
        sta = sta_factory(notifications={"compliance_mailbox": [MAILBOX], "smtp": {
            "host": plain.host, "port": plain.port, "sender": "vigatra@example.com"}})
        with sta.store.unit_of_work() as session:
            sta.appliance.mailer.queue(session, to=[MAILBOX], subject="s", text="t", purpose="test")
        report = sta.appliance.mailer.deliver_pending()
        assert report.failed and plain.messages() == []
        with sta.store.read() as session:
            row = session.execute(select(MailOutbox)).scalar_one()
            assert row.status == "failed" and "STARTTLS" in row.last_error


def test_wrong_password_is_a_failure_naming_the_user_not_the_password(sta_factory: Any, relay: MailServer) -> None:
    sta = mailing(sta_factory, relay)
    os.environ["VIGATRA_SECRET_SMTP_PASSWORD"] = "not-the-password"
    with sta.store.unit_of_work() as session:
        sta.appliance.mailer.queue(session, to=[MAILBOX], subject="s", text="t", purpose="test")
    sta.appliance.mailer.deliver_pending()
    with sta.store.read() as session:
        status, error = session.execute(select(MailOutbox.status, MailOutbox.last_error)).one()
    assert status == "failed" and "credentials of vigatra" in error and "not-the-password" not in error


def test_settings_refuse_moved_and_unsafe_keys() -> None:
    base: dict[str, Any] = {"data_dir": "/var/lib/vigatra"}
    with pytest.raises(ConfigError, match=r"moved to 'notifications\.smtp\.host'"):
        settings_from_mapping({**base, "onboarding": {"smtp_host": "mail"}})
    with pytest.raises(ConfigError, match="sender"):
        settings_from_mapping({**base, "notifications": {"smtp": {"host": "mail.example.com"}}})
    with pytest.raises(ConfigError, match="starttls"):
        settings_from_mapping({**base, "notifications": {"smtp": {
            "host": "mail.example.com", "sender": "v@example.com", "username": "u", "starttls": False}}})
    with pytest.raises(ConfigError, match="compliance_mailbox"):
        settings_from_mapping({**base, "notifications": {"compliance_mailbox": ["not an address"]}})


def test_onboarding_link_emailed_from_the_employee_page(sta_factory: Any, relay: MailServer) -> None:
    from tests.access.helpers import csrf_of, login_session

    sta = mailing(sta_factory, relay)
    client = https_client(sta)
    login_session(client, sta, "carol")
    alice = Api(https_client(sta), sta, "alice")
    employee = alice.post("/employees", {"name": "Olga Onboard", "email": "olga@example.com"})["id"]
    page = client.get(f"/employees/{employee}").get_data(as_text=True)
    assert "E-mail a new link to olga@example.com" in page
    response = client.post(f"/employees/{employee}/links", data={"csrf_token": csrf_of(client), "purpose": "initial",
                                                                  "deliver": "email"})
    assert response.status_code == 302
    sta.appliance.mailer.deliver_pending()
    (mail,) = relay.messages()
    assert mail.recipients == ["olga@example.com"] and "Olga Onboard" in mail.body
    link = re.search(r"https://vigatra\.example\.com/onboard/[A-Za-z0-9_-]{40,}", mail.body)
    assert link is not None
    token = link.group(0).rsplit("/", 1)[1]
    # The link in the e-mail is a working one-time link; the outbox kept no copy of it.
    assert client.get(f"/onboard/{token}").status_code == 200
    with sta.store.read() as session:
        row = session.execute(select(MailOutbox)).scalar_one()
        assert row.body_sealed is None and row.purpose == "onboarding"
