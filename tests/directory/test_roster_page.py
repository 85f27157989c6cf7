"""The Roster page (Admin only): the last sync of each source, a dry run's diff, applying exactly the reviewed
diff (refused when the directory changed since), held-back mass departures and their override, and the HR file
drops processed and rejected. Against the real slapd and a drop folder, both databases; then per role in
Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.store.models import AuditEvent, Employee
from tests.access.helpers import login_session
from tests.directory.conftest import ldap_overrides
from tests.directory.test_roster import ROSTER_LDAP
from tests.portal.conftest import HttpsClient
from tests.support import slapd as seed
from tests.support.app import TestAppliance, build
from tests.support.slapd import Slapd


@pytest.fixture
def page_ta(db_url: str, tmp_path: Path, slapd: Slapd, ldap_secret: str) -> Iterator[tuple[TestAppliance, Path]]:
    drop = tmp_path / "hr-drop"
    drop.mkdir()
    extra = ldap_overrides(slapd, ldap_secret)
    extra["roster"] = {"ldap": ROSTER_LDAP, "files": {"directory": str(drop)}, "max_departures_percent": 20}
    built = build(db_url, tmp_path / "data", **extra)
    try:
        yield built, drop
    finally:
        built.appliance.close()


def _client(ta: TestAppliance, persona: str) -> Any:
    from appliance.app import create_app

    flask_app = create_app(ta.appliance)
    flask_app.test_client_class = HttpsClient
    client = flask_app.test_client()
    login_session(client, ta, persona)
    return client


def _csrf(client: Any) -> str:
    with client.session_transaction() as s:
        return str(s["csrf"])


def _dry_run(client: Any, source: str) -> tuple[Any, str]:
    response = client.post("/admin/roster/dry-run", data={"csrf_token": _csrf(client), "source": source})
    assert response.status_code == 200, response.text[:800]
    digest = re.search(r'name="digest" value="([0-9a-f]{64})"', response.text)
    assert digest, response.text[:2000]
    return response, digest.group(1)


def _apply(client: Any, source: str, digest: str, *, allow: bool = False) -> Any:
    data = {"csrf_token": _csrf(client), "source": source, "digest": digest}
    if allow:
        data["allow_mass_departures"] = "1"
    return client.post("/admin/roster/apply", data=data)


def _active(ta: TestAppliance) -> set[str]:
    with ta.store.read() as session:
        return {e.email for e in session.execute(select(Employee).where(Employee.status == "active")).scalars()}


def test_dry_run_shows_the_diff_and_apply_takes_only_the_reviewed_one(
        page_ta: tuple[TestAppliance, Path], slapd: Slapd) -> None:
    ta, _drop = page_ta
    alice = _client(ta, "alice")
    page = alice.get("/admin/roster")
    assert page.status_code == 200 and "Never applied" in page.text and 'href="/admin/roster"' in page.text
    shown, digest = _dry_run(alice, "ldap")
    assert "roster: 4 created, 0 updated, 0 offboarded, 0 unchanged" in shown.text
    assert all(f"created   {who}@example.org" in shown.text for who in ("carl", "vera", "dan", "emma"))
    assert _active(ta) == set()
    # The directory changes after the review: the reviewed diff is no longer what would be applied.
    slapd.add_member(seed.STAFF, seed.person_dn("alice-dir"))
    try:
        refused = _apply(alice, "ldap", digest)
        assert refused.status_code == 409 and "changed since the dry run you reviewed" in refused.text
        assert _active(ta) == set()
    finally:
        slapd.remove_member(seed.STAFF, seed.person_dn("alice-dir"))
    _shown, digest = _dry_run(alice, "ldap")
    applied = _apply(alice, "ldap", digest)
    assert applied.status_code == 302
    assert _active(ta) == {"carl@example.org", "vera@example.org", "dan@example.org", "emma@example.org"}
    after = alice.get("/admin/roster").text
    assert "Applied since" in after and "roster: 4 created" in after
    with ta.store.read() as session:
        actions = [a for a, in session.execute(select(AuditEvent.action).where(
            AuditEvent.action.like("roster.%")).order_by(AuditEvent.id))]
    assert actions.count("roster.created") == 4 and "roster.dry_run" in actions and "roster.apply" in actions


def _csv(rows: list[tuple[str, str, str]]) -> str:
    return "name,email,employee_number\n" + "".join(f"{n},{e},{k}\n" for n, e, k in rows)


def test_files_mass_departures_are_held_back_until_overridden_and_drops_are_listed(
        page_ta: tuple[TestAppliance, Path]) -> None:
    ta, drop = page_ta
    alice = _client(ta, "alice")
    people = [(f"Person {i}", f"p{i}@example.com", f"H{i}") for i in range(5)]
    (drop / "roster-1.csv").write_text(_csv(people))
    _shown, digest = _dry_run(alice, "files")
    assert _apply(alice, "files", digest).status_code == 302 and len(_active(ta)) == 5
    (drop / "roster-2.csv").write_text(_csv(people[:1]))
    shown, digest = _dry_run(alice, "files")
    assert "4 offboarded" in shown.text and 'name="allow_mass_departures"' in shown.text
    held = _apply(alice, "files", digest)
    assert held.status_code == 409 and "roster.max_departures_percent" in held.text and len(_active(ta)) == 5
    assert _apply(alice, "files", digest, allow=True).status_code == 302
    assert _active(ta) == {"p0@example.com"}
    (drop / "broken.json").write_text("{not json")
    refused = _apply(alice, "files", "0" * 64)
    assert refused.status_code == 409 and "refused and moved" in refused.text
    listing = alice.get("/admin/roster").text
    processed = listing.split('class="processed"')[1].split("</table>")[0]
    rejected = listing.split('class="rejected"')[1].split("</table>")[0]
    assert "roster-1.csv" in processed and "roster-2.csv" in processed and "broken.json" in rejected


@pytest.mark.parametrize("persona", ["carol", "victor"])
def test_compliance_and_viewer_are_refused(page_ta: tuple[TestAppliance, Path], persona: str) -> None:
    ta, _drop = page_ta
    client = _client(ta, persona)
    assert client.get("/admin/roster").status_code == 403
    assert client.post("/admin/roster/dry-run", data={"csrf_token": _csrf(client), "source": "ldap"}
                       ).status_code == 403
    assert 'href="/admin/roster"' not in client.get("/").text
    with ta.store.read() as session:
        refused = session.execute(select(AuditEvent.outcome, AuditEvent.detail).where(
            AuditEvent.action == "roster.view")).all()
    assert refused and all(o == "denied" for o, _d in refused), refused
    assert all(json.loads(d or "{}") is not None for _o, d in refused)


def test_the_roster_page_per_role_in_chromium(db_url: str, tmp_path: Path) -> None:
    from appliance.app import create_app
    from tests.browser.test_dashboard import sign_in, watch_console
    from tests.support.live import browser_page, find_chromium, start_live

    if find_chromium() is None:
        pytest.fail("Chromium is needed: `make test` installs it", pytrace=False)
    drop = tmp_path / "hr-drop"
    drop.mkdir()
    (drop / "roster.csv").write_text(_csv([("Ann Hr", "ann@example.com", "H1"), ("Bo Hr", "bo@example.com", "H2")]))
    ta = build(db_url, tmp_path / "data", roster={"files": {"directory": str(drop)}})
    live = start_live(create_app(ta.appliance))
    try:
        with browser_page() as page:
            problems = watch_console(page)
            sign_in(page, live.url, "alice", ta.personas["alice"].password)
            page.click("nav >> text=Roster")
            page.wait_for_url(f"{live.url}/admin/roster")
            page.click("button.dry-run")
            page.wait_for_selector("#diff-files")
            assert "roster: 2 created" in page.inner_text("#diff-files")
            page.click("button.apply")
            page.wait_for_url(f"{live.url}/admin/roster")
            assert "2 created" in page.content() and "roster.csv" in page.inner_text("table.processed")
            assert problems == [], problems
        assert _active(ta) == {"ann@example.com", "bo@example.com"}
        for persona in ("carol", "victor"):
            with browser_page() as page:
                sign_in(page, live.url, persona, ta.personas[persona].password)
                assert page.locator("nav >> text=Roster").count() == 0
                response = page.goto(f"{live.url}/admin/roster")
                assert response is not None and response.status == 403, persona
    finally:
        live.stop()
        ta.appliance.close()
