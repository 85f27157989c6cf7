"""Key and wallet submissions through the Flask client over TLS: probe before any write, sealed
only when read-only, the venue's own explanation otherwise, re-onboarding supersedes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.store.base import utcnow
from tests.onboarding.conftest import (
    BAD_CHECKSUM_EVM,
    VALID_EVM,
    appliance_with,
    audit_rows,
    audit_text,
    client_for,
    connections,
    csrf_from,
    key_form,
    new_employee,
    new_link,
    secrets_of,
)
from tests.support.sim import RunningSim


class Page:
    """One employee's browser on one link."""

    def __init__(self, client: Any, token: str) -> None:
        self.client = client
        self.url = f"/onboard/{token}"
        response = client.get(self.url)
        assert response.status_code == 200, response.text[:300]
        self.csrf = csrf_from(response.text)

    def key(self, venue: str, key: dict[str, Any]) -> Any:
        return self.client.post(self.url, data=key_form(self.csrf, venue, key))

    def wallet(self, chain: str, address: str, label: str = "") -> Any:
        return self.client.post(self.url, data={"csrf_token": self.csrf, "action": "wallet", "chain": chain,
                                                "address": address, "label": label})


@pytest.fixture
def page(ota: Any, https: Any) -> Page:
    _link_id, value = new_link(ota, new_employee(ota))
    return Page(https, value)


@pytest.mark.parametrize(("venue", "danger"), [("coinbase", "trade"), ("coinbase", "transfer"),
                                               ("kraken", "trade"), ("kraken", "withdraw"), ("okx", "trade"),
                                               ("kucoin", "withdraw")])
def test_dangerous_keys_are_refused_with_the_venues_instructions(ota: Any, page: Page, sim: RunningSim, venue: str,
                                                                 danger: str) -> None:
    key = sim.create_key(venue, ["read", danger])
    response = page.key(venue, key)
    assert response.status_code == 422
    assert "not accepted" in response.text
    # The venue's own instructions, not the page's fixed "read-only" wording.
    assert "submit the new key" in response.text.lower()
    (row,) = connections(ota)
    assert row.status == "rejected" and row.venue == venue
    assert row.api_key_sealed is None and row.api_secret_sealed is None and row.passphrase_sealed is None
    assert row.scope and row.scope.get(danger) is True
    stored = " ".join(str(v) for v in vars(row).values())
    for secret in secrets_of(key):
        assert secret not in stored
        assert secret not in response.text


@pytest.mark.parametrize("venue", ["coinbase", "kraken", "okx"])
def test_read_only_keys_are_sealed(ota: Any, page: Page, sim: RunningSim, venue: str) -> None:
    key = sim.create_key(venue, ["read"])
    response = page.key(venue, key)
    assert response.status_code == 200 and "accepted" in response.text
    (row,) = connections(ota)
    assert row.status == "pending" and row.scope_verified
    assert row.api_key_sealed and row.api_secret_sealed
    assert (row.passphrase_sealed is not None) == bool(key.get("passphrase"))
    sealed = {column: bytes(value) for column in ("api_key_sealed", "api_secret_sealed", "passphrase_sealed")
              if (value := getattr(row, column)) is not None}
    for secret in secrets_of(key):  # each credential (and PEM body line) is in no sealed column
        for column, blob in sealed.items():
            assert secret.encode() not in blob, column
        assert secret not in response.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_probe_precedes_every_write(ota: Any, page: Page, sim: RunningSim, monkeypatch: Any) -> None:
    """While the venue is being asked, no transaction is open: the database is writable by others."""
    from appliance.services import onboarding

    seen: list[int] = []
    real = onboarding.probe

    def probe_and_write(*args: Any, **kwargs: Any) -> Any:
        with ota.store.unit_of_work() as session:  # would block (SQLite) if the request held a write lock
            from appliance.store.models import Employee

            seen.append(len(session.query(Employee).all()))
        assert connections(ota) == []
        return real(*args, **kwargs)

    monkeypatch.setattr(onboarding, "probe", probe_and_write)
    assert page.key("kraken", sim.create_key("kraken", ["read"])).status_code == 200
    assert seen == [1]


def test_wrong_secret_and_garbage_are_explained_not_crashed(ota: Any, page: Page, sim: RunningSim) -> None:
    key = sim.create_key("kraken", ["read"])
    other = sim.create_key("kraken", ["read"])
    wrong = page.key("kraken", {"api_key": key["api_key"], "api_secret": other["api_secret"]})
    assert wrong.status_code == 422 and "did not accept this key" in wrong.text
    for venue, garbage in (("kraken", "not base64 at all!"), ("coinbase", "-----BEGIN EC PRIVATE KEY-----\nxx")):
        response = page.key(venue, {"api_key": "k" * 20, "api_secret": garbage})
        assert response.status_code == 422, (venue, response.status_code)
        assert "not accepted" in response.text
        # Not "could not be reached, try later": the secret itself is the likely culprit.
        assert "copied the whole key and secret" in response.text or "did not accept this key" in response.text
    assert all(c.status == "rejected" and c.api_secret_sealed is None for c in connections(ota))


def test_missing_fields_and_unknown_venues(ota: Any, page: Page, sim: RunningSim) -> None:
    key = sim.create_key("okx", ["read"])
    no_passphrase = page.key("okx", {"api_key": key["api_key"], "api_secret": key["api_secret"]})
    assert no_passphrase.status_code == 400 and "Fill in" in no_passphrase.text
    assert page.key("mtgox", key).status_code == 400
    assert page.key("ethereum", key).status_code == 400  # a chain is not a keyed venue
    assert page.wallet("kraken", VALID_EVM).status_code == 400
    assert connections(ota) == []


def test_venue_unreachable_is_a_retry_message(ota: Any, page: Page, sim: RunningSim) -> None:
    key = sim.create_key("kraken", ["read"])
    sim.control("POST", "kraken/faults", {"outage": True})
    try:
        response = page.key("kraken", key)
    finally:
        sim.clear_faults()
    assert response.status_code == 422
    assert "could not be reached" in response.text
    assert all(c.api_secret_sealed is None for c in connections(ota))
    assert page.key("kraken", key).status_code == 200  # the same link, a moment later


def test_wallets_validated_and_deduplicated(ota: Any, page: Page) -> None:
    bad = page.wallet("ethereum", BAD_CHECKSUM_EVM)
    assert bad.status_code == 400 and "Bad checksum" in bad.text
    assert page.wallet("ethereum", "0x" + "ab" * 32).status_code == 400  # a tx hash / private key
    assert page.wallet("ethereum", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq").status_code == 400
    good = page.wallet("ethereum", VALID_EVM.upper().replace("0X", "0x"), label="<script>alert(1)</script>")
    assert good.status_code == 200
    assert "<script>alert(1)</script>" not in good.text
    again = page.wallet("ethereum", VALID_EVM)
    assert again.status_code == 400 and "already registered" in again.text
    (row,) = connections(ota)
    assert row.address == VALID_EVM and row.status == "pending" and row.kind == "wallet"


def test_reonboarding_supersedes_the_old_key(ota: Any, oapp: Any, sim: RunningSim) -> None:
    employee_id = new_employee(ota)
    _first_id, first = new_link(ota, employee_id)
    old_key, new_key, trade_key = (sim.create_key("kraken", ["read"]), sim.create_key("kraken", ["read"]),
                                   sim.create_key("kraken", ["read", "trade"]))
    browser = client_for(oapp, "https://localhost")
    page = Page(browser, first)
    assert page.key("kraken", old_key).status_code == 200
    assert browser.post(page.url, data={"csrf_token": page.csrf, "action": "finish"}).status_code == 200
    # What the first key's polls stored: a balance and a position, still open (current).
    from appliance.store.models import BalanceSnapshot, PredictionPosition

    observed = utcnow() - dt.timedelta(hours=1)
    with ota.store.unit_of_work() as session:
        first_id = connections(ota)[0].id
        session.add(BalanceSnapshot(connection_id=first_id, asset="BTC", amount=Decimal("1.5"), valid_from=observed,
                                    observed_until=observed))
        session.add(PredictionPosition(connection_id=first_id, market_id="m1", outcome="Yes", size=Decimal(10),
                                       valid_from=observed, observed_until=observed))
    _second_id, second = new_link(ota, employee_id, purpose="reonboard")
    page = Page(client_for(oapp, "https://localhost"), second)
    assert page.key("kraken", trade_key).status_code == 422
    assert [c.status for c in connections(ota)] == ["pending", "rejected"]  # a refused key replaces nothing
    assert page.key("kraken", new_key).status_code == 200
    rows = connections(ota)
    assert [c.status for c in rows] == ["superseded", "rejected", "pending"]
    assert rows[0].api_key_sealed is None and rows[0].api_secret_sealed is None and rows[0].next_poll_at is None
    assert rows[2].api_secret_sealed is not None
    # The old connection's balance and position are closed when it is superseded: the account is read by the
    # new connection from now on, and what is held now counts it once.
    with ota.store.read() as session:
        for table in (BalanceSnapshot, PredictionPosition):
            (closed,) = session.execute(select(table.valid_to).where(table.connection_id == first_id)).scalars()
            assert closed is not None and observed < closed <= utcnow()


def test_egress_ip_hint_in_the_guide(db_url: str, tmp_path: Path, sim: RunningSim) -> None:
    from appliance.app import create_app

    with appliance_with(db_url, tmp_path / "data", sim, egress={"egress_ip": "203.0.113.5"}) as built:
        app = create_app(built.appliance)
        _link_id, value = new_link(built, new_employee(built))
        html = client_for(app, "https://localhost").get(f"/onboard/{value}?venue=kraken").text
        assert "203.0.113.5" in html


def test_no_secret_in_any_audit_row(ota: Any, page: Page, sim: RunningSim) -> None:
    keys = [sim.create_key("kraken", ["read"]), sim.create_key("coinbase", ["read", "trade"]),
            sim.create_key("okx", ["read"])]
    for venue, key in zip(("kraken", "coinbase", "okx"), keys, strict=True):
        page.key(venue, key)
    text = audit_text(audit_rows(ota))
    assert text.count("onboarding.submit_key") == 3
    for key in keys:
        for secret in secrets_of(key):
            assert secret not in text


@pytest.mark.parametrize("change", [{"api_key": "AK\x00EY"}, {"api_secret": "x" * 10_001}, {"bogus": "1"},
                                    {"action": "steal"}])
def test_a_malformed_submission_is_refused_on_the_page_and_stores_nothing(ota: Any, page: Page, sim: RunningSim,
                                                                         change: dict[str, str]) -> None:
    """The form is checked against its schema (web/forms.py) once the TLS and CSRF gates passed: a NUL, an
    oversized secret, an unknown field or an unknown step is named on the page, and nothing is stored."""
    form = {**key_form(page.csrf, "kraken", sim.create_key("kraken", ["read"])), **change}
    response = page.client.post(page.url, data=form)
    assert response.status_code == 400, response.text[:300]
    field = next(iter(change))
    assert field in response.text
    assert connections(ota) == []
    assert not [k for k in ("AK\x00EY",) if k in audit_text(audit_rows(ota))]
