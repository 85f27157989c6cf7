"""Onboarding links: random and hashed, single browser, finished/expired/revoked links are dead,
guessing is throttled per real client IP, and generation, use and expiry are audited."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, select, update

from appliance.store.models import OnboardingToken
from tests.access.helpers import auth, login_session, token
from tests.onboarding.conftest import (
    VALID_EVM,
    appliance_with,
    audit_rows,
    client_for,
    connections,
    csrf_from,
    key_form,
    new_employee,
    new_link,
    run_cli,
)
from tests.support.sim import RunningSim

DEAD = b"invalid, expired or already used"


def api_link(https: Any, ta: Any, employee_id: int, who: str = "alice") -> dict[str, Any]:
    response = https.post(f"/api/v1/employees/{employee_id}/onboarding-links", json={},
                          headers=auth(token(https, ta, who)))
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def token_of(url: str) -> str:
    return url.rsplit("/onboard/", 1)[1]


def everything_stored(ta: Any) -> str:
    """Every value of every row of every table, as text."""
    meta = MetaData()
    with warnings.catch_warnings():  # SQLite cannot reflect expression indexes (lower(name)); rows are what counts
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
        meta.reflect(bind=ta.store.engine)
    parts: list[str] = []
    with ta.store.engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                parts.extend(v.hex() + " " + v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row)
    return "\n".join(parts)


def test_tokens_are_long_random_and_stored_only_as_hashes(ota: Any, https: Any, db_url: str) -> None:
    employee_id = new_employee(ota)
    links = [api_link(https, ota, employee_id) for _ in range(3)]
    tokens = [token_of(link["url"]) for link in links]
    assert len(set(tokens)) == 3
    for value in tokens:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        assert len(raw) * 8 >= 128
    stored = everything_stored(ota)
    with ota.store.read() as session:
        hashes = {r.id: r.token_hash for r in session.execute(select(OnboardingToken)).scalars()}
    for link, value in zip(links, tokens, strict=True):
        assert value not in stored
        assert hashes[link["id"]] == hashlib.sha256(value.encode()).hexdigest()
    if db_url.startswith("sqlite:///"):
        on_disk = b"".join(p.read_bytes() for p in Path(db_url[len("sqlite:///"):]).parent.glob("vigatra.db*"))
        for value in tokens:
            assert value.encode() not in on_disk


def test_completed_link_is_dead_even_in_its_own_browser(ota: Any, https: Any, sim: RunningSim) -> None:
    employee_id = new_employee(ota)
    link_id, value = new_link(ota, employee_id)
    csrf = csrf_from(https.get(f"/onboard/{value}?venue=ethereum").text)
    added = https.post(f"/onboard/{value}", data={"csrf_token": csrf, "action": "wallet", "chain": "ethereum",
                                                  "address": VALID_EVM})
    assert added.status_code == 200
    done = https.post(f"/onboard/{value}", data={"csrf_token": csrf, "action": "finish"})
    assert done.status_code == 200 and b"no longer works" in done.data
    assert https.get(f"/onboard/{value}").status_code == 404
    key = sim.create_key("kraken", ["read"])
    again = https.post(f"/onboard/{value}", data=key_form(csrf, "kraken", key))
    assert again.status_code == 404 and DEAD in again.data
    assert [c.venue for c in connections(ota)] == ["ethereum"]
    refused = [e for e in audit_rows(ota) if e["action"] == "onboarding.link_refused"]
    assert [(e["resource_id"], e["outcome"]) for e in refused] == [(str(link_id), "denied")] * 2
    assert all('"state": "completed"' in e["detail"] for e in refused)


def test_expired_link_is_dead_and_its_use_audited(ota: Any, https: Any, sim: RunningSim) -> None:
    employee_id = new_employee(ota)
    link_id, value = new_link(ota, employee_id)
    csrf = csrf_from(https.get(f"/onboard/{value}?venue=kraken").text)  # open while still valid
    with ota.store.unit_of_work() as session:
        session.execute(update(OnboardingToken).where(OnboardingToken.id == link_id).values(
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    assert https.get(f"/onboard/{value}").status_code == 404
    key = sim.create_key("kraken", ["read"])
    late = https.post(f"/onboard/{value}", data=key_form(csrf, "kraken", key))
    assert late.status_code == 404 and DEAD in late.data
    assert connections(ota) == []
    refused = [e for e in audit_rows(ota) if e["action"] == "onboarding.link_refused"]
    assert len(refused) == 2 and all('"state": "expired"' in e["detail"] for e in refused)
    assert all(e["resource_id"] == str(link_id) for e in refused)


def test_link_ttl_comes_from_the_settings(db_url: str, tmp_path: Path, sim: RunningSim) -> None:
    from appliance.app import create_app

    with appliance_with(db_url, tmp_path / "data", sim, onboarding={"link_ttl_days": 3}) as built:
        https = client_for(create_app(built.appliance), "https://localhost")
        link = api_link(https, built, new_employee(built))
    expires = dt.datetime.fromisoformat(link["expires_at"].replace("Z", "+00:00"))
    days = (expires - dt.datetime.now(dt.UTC)).total_seconds() / 86400
    assert 2.99 < days <= 3.0  # not the default 7


def test_revoked_link_is_dead_even_with_the_page_open(ota: Any, https: Any, sim: RunningSim) -> None:
    employee_id = new_employee(ota)
    link = api_link(https, ota, employee_id, who="carol")
    value = token_of(link["url"])
    csrf = csrf_from(https.get(f"/onboard/{value}?venue=kraken").text)
    revoked = https.post(f"/api/v1/onboarding-links/{link['id']}/revoke", headers=auth(token(https, ota, "carol")))
    assert revoked.status_code == 200 and revoked.get_json()["state"] == "revoked"
    key = sim.create_key("kraken", ["read"])
    late = https.post(f"/onboard/{value}", data=key_form(csrf, "kraken", key))
    assert late.status_code == 404
    assert https.get(f"/onboard/{value}").status_code == 404
    assert connections(ota) == []
    events = audit_rows(ota)
    assert [e["action"] for e in events if e["action"] == "onboarding.link_revoke"] == ["onboarding.link_revoke"]
    refused = [e for e in events if e["action"] == "onboarding.link_refused"]
    assert len(refused) == 2 and all('"state": "revoked"' in e["detail"] for e in refused)


def test_revoke_from_the_employee_page(ota: Any, oapp: Any) -> None:
    employee_id = new_employee(ota)
    browser = client_for(oapp, "https://localhost")
    login_session(browser, ota, "carol")
    page = browser.post(f"/employees/{employee_id}/links", data={"csrf_token": _csrf(browser), "purpose": "initial"})
    assert page.status_code == 200
    url = page.text.split("/onboard/", 1)[1].split('"', 1)[0].split("<", 1)[0]
    with ota.store.read() as session:
        link_id = session.execute(select(OnboardingToken.id)).scalar_one()
    gone = browser.post(f"/employees/{employee_id}/links/{link_id}/revoke", data={"csrf_token": _csrf(browser)})
    assert gone.status_code == 302
    employee = client_for(oapp, "https://localhost")
    assert employee.get(f"/onboard/{url}").status_code == 404
    actions = [e["action"] for e in audit_rows(ota)]
    assert "onboarding.link_create" in actions and "onboarding.link_revoke" in actions


def _csrf(client: Any) -> str:
    with client.session_transaction() as s:
        return str(s["csrf"])


def test_a_second_browser_is_refused(ota: Any, oapp: Any, sim: RunningSim) -> None:
    employee_id = new_employee(ota)
    _link_id, value = new_link(ota, employee_id)
    first = client_for(oapp, "https://localhost")
    second = client_for(oapp, "https://localhost")
    csrf = csrf_from(first.get(f"/onboard/{value}?venue=kraken").text)
    assert first.post(f"/onboard/{value}", data=key_form(csrf, "kraken", sim.create_key("kraken", ["read"]))
                      ).status_code == 200  # the first submission binds the link to this browser
    refused = second.get(f"/onboard/{value}")
    assert refused.status_code == 409 and b"another browser" in refused.data
    assert b"Kraken" not in refused.data  # nothing of what was added shows
    # The second browser has a CSRF token of its own from elsewhere: still refused.
    second.get("/login")
    stolen = second.post(f"/onboard/{value}", data=key_form(_csrf(second), "kraken",
                                                           sim.create_key("kraken", ["read"])))
    assert stolen.status_code == 409 and b"another browser" in stolen.data
    assert len(connections(ota)) == 1
    assert first.post(f"/onboard/{value}", data={"csrf_token": csrf, "action": "finish"}).status_code == 200


def test_a_mail_scanner_fetching_the_link_does_not_take_it(ota: Any, oapp: Any, sim: RunningSim) -> None:
    """Safe-links scanners and chat previews GET (or HEAD) e-mailed links before the employee."""
    employee_id = new_employee(ota)
    link_id, value = new_link(ota, employee_id)
    scanner = client_for(oapp, "https://localhost", REMOTE_ADDR="192.0.2.99")
    assert scanner.head(f"/onboard/{value}").status_code == 200
    assert scanner.get(f"/onboard/{value}").status_code == 200
    assert scanner.get(f"/onboard/{value}?venue=kraken").status_code == 200
    employee = client_for(oapp, "https://localhost")
    csrf = csrf_from(employee.get(f"/onboard/{value}?venue=kraken").text)
    accepted = employee.post(f"/onboard/{value}", data=key_form(csrf, "kraken", sim.create_key("kraken", ["read"])))
    assert accepted.status_code == 200
    assert "__Host-vigatra-onboard=" in accepted.headers.get("Set-Cookie", "")
    assert scanner.get(f"/onboard/{value}").status_code == 409
    events = [(e["action"], e["ip_address"]) for e in audit_rows(ota) if e["resource_id"] == str(link_id)]
    assert events[:2] == [("onboarding.open", "192.0.2.99"), ("onboarding.claim", "127.0.0.1")]


def test_missing_or_wrong_csrf_token_is_refused(ota: Any, https: Any, sim: RunningSim) -> None:
    employee_id = new_employee(ota)
    _link_id, value = new_link(ota, employee_id)
    https.get(f"/onboard/{value}?venue=kraken")
    key = sim.create_key("kraken", ["read"])
    form = key_form("not-the-token", "kraken", key)
    assert https.post(f"/onboard/{value}", data=form).status_code == 403
    del form["csrf_token"]
    assert https.post(f"/onboard/{value}", data=form).status_code == 403
    # A GET changes nothing: the page takes no such parameter and says so.
    assert https.get(f"/onboard/{value}?action=finish").status_code == 400
    assert connections(ota) == []


def test_guessing_is_throttled_per_client_ip(ota: Any, oapp: Any) -> None:
    import secrets

    limit = ota.settings.onboarding.failed_lookups_per_window
    guesser = client_for(oapp, "https://localhost", REMOTE_ADDR="203.0.113.9")
    codes = [guesser.get(f"/onboard/{secrets.token_urlsafe(32)}").status_code for _ in range(limit + 10)]
    first_429 = codes.index(429)
    assert set(codes[:first_429]) == {404}
    assert first_429 <= limit + 1
    assert set(codes[first_429:]) == {429}
    throttled = guesser.get(f"/onboard/{secrets.token_urlsafe(32)}")
    assert int(throttled.headers["Retry-After"]) > 0
    # Rotating a forged X-Forwarded-For from an untrusted peer changes nothing...
    forged = [guesser.get(f"/onboard/{secrets.token_urlsafe(32)}", headers={"X-Forwarded-For": f"10.0.0.{i}"})
              .status_code for i in range(5)]
    assert forged == [429] * 5
    # ...while the real clients behind the trusted front are told apart.
    other = client_for(oapp, "https://localhost")
    assert other.get(f"/onboard/{secrets.token_urlsafe(32)}",
                     headers={"X-Forwarded-For": "192.0.2.44", "X-Forwarded-Proto": "https"}).status_code == 404


def test_concurrent_guesses_are_counted_without_errors(ota: Any, oapp: Any) -> None:
    """Guessers hammer in parallel: every answer is 404 or 429, never a 500 from the throttle row."""
    import secrets

    limit = ota.settings.onboarding.failed_lookups_per_window
    results: list[int] = []
    barrier = threading.Barrier(8)

    def guess() -> None:
        client = client_for(oapp, "https://localhost", REMOTE_ADDR="203.0.113.77")
        barrier.wait()
        for _ in range(6):
            results.append(client.get(f"/onboard/{secrets.token_urlsafe(32)}").status_code)

    threads = [threading.Thread(target=guess) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) <= {404, 429}, results
    assert results.count(404) <= limit + 8  # in-flight requests may pass the check just before the lock
    assert 429 in results


def test_link_generation_and_use_are_audited(ota: Any, https: Any, sim: RunningSim, cli_config: Path) -> None:
    employee_id = new_employee(ota)
    link = api_link(https, ota, employee_id, who="carol")
    cli = run_cli(cli_config, "onboard", "link", "--employee", str(employee_id), "--purpose", "reonboard")
    assert cli.exit_code == 0, cli.output
    value = token_of(link["url"])
    csrf = csrf_from(https.get(f"/onboard/{value}?venue=kraken").text)
    https.post(f"/onboard/{value}", data=key_form(csrf, "kraken", sim.create_key("kraken", ["read", "trade"])))
    https.post(f"/onboard/{value}", data=key_form(csrf, "kraken", sim.create_key("kraken", ["read"])))
    https.post(f"/onboard/{value}", data={"csrf_token": csrf, "action": "finish"})
    events = audit_rows(ota)
    created = [e for e in events if e["action"] == "onboarding.link_create"]
    assert [(e["actor_type"], e["user_id"]) for e in created] == [
        ("user", ota.personas["carol"].user_id), ("system", None)]
    assert '"purpose": "reonboard"' in created[1]["detail"]
    use = [(e["action"], e["outcome"], e["status"]) for e in events
           if e["actor_type"] == "employee" and e["resource_type"] in ("onboarding", "connections")]
    assert use == [("onboarding.open", "success", 200), ("onboarding.claim", "success", 200),
                   ("onboarding.submit_key", "denied", 422),
                   ("onboarding.submit_key", "success", 200), ("onboarding.finish", "success", 200)]
    for e in events:
        assert value not in " ".join(str(v) for v in e.values())


def test_viewer_and_no_role_cannot_make_links(ota: Any, https: Any) -> None:
    employee_id = new_employee(ota)
    for who in ("victor", "nora"):
        response = https.post(f"/api/v1/employees/{employee_id}/onboarding-links", json={},
                              headers=auth(token(https, ota, who)))
        assert response.status_code == 403
    with ota.store.read() as session:
        assert session.execute(select(OnboardingToken)).first() is None


def test_no_links_for_offboarded_or_unknown_employees(ota: Any, https: Any) -> None:
    employee_id = new_employee(ota)
    alice = auth(token(https, ota, "alice"))
    assert https.post(f"/api/v1/employees/{employee_id}/offboard", headers=alice).status_code == 200
    assert https.post(f"/api/v1/employees/{employee_id}/onboarding-links", json={}, headers=alice).status_code == 409
    assert https.post("/api/v1/employees/99999/onboarding-links", json={}, headers=alice).status_code == 404
    bad = https.post(f"/api/v1/employees/{employee_id}/onboarding-links", json={"purpose": "admin"}, headers=alice)
    assert bad.status_code in (400, 409)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_offboarding_kills_an_open_page(ota: Any, https: Any, sim: RunningSim) -> None:
    from appliance.services import employees

    employee_id = new_employee(ota)
    _link_id, value = new_link(ota, employee_id)
    csrf = csrf_from(https.get(f"/onboard/{value}?venue=kraken").text)
    with ota.store.unit_of_work() as session:
        employees.offboard(session, employee_id)
    response = https.post(f"/onboard/{value}", data=key_form(csrf, "kraken", sim.create_key("kraken", ["read"])))
    assert response.status_code == 404
    assert connections(ota) == []
