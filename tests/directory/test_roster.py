"""`vigatra roster sync` against a real OpenLDAP server (slapd) and HR export files, on both databases.

The directory's roster is the staff group (carl, vera and the nested trading desk: dan, emma); the trading
desk is also the access-person group.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.store.models import Alert, AttestationTask, AuditEvent, Employee
from tests.directory.conftest import ldap_overrides
from tests.onboarding.conftest import run_cli, write_config
from tests.support import slapd as seed
from tests.support.app import TestAppliance, build
from tests.support.slapd import Slapd

ROSTER_LDAP = {"enabled": True, "group": seed.STAFF, "access_person_group": seed.ACCESS_PERSONS,
               "department_attribute": "departmentNumber"}


@pytest.fixture
def rta(db_url: str, tmp_path: Path, slapd: Slapd, ldap_secret: str) -> Iterator[tuple[TestAppliance, Path]]:
    drop = tmp_path / "hr-drop"
    drop.mkdir()
    extra = ldap_overrides(slapd, ldap_secret)
    extra["roster"] = {"ldap": ROSTER_LDAP, "files": {"directory": str(drop)}, "max_departures_percent": 20}
    built = build(db_url, tmp_path / "data", **extra)
    config = write_config(built, tmp_path / "vigatra.yaml", **extra)
    try:
        yield built, config
    finally:
        built.appliance.close()


def _employees(ta: TestAppliance) -> dict[str, tuple[str, str, str | None, str, bool, str]]:
    with ta.store.read() as session:
        return {e.email: (e.name, e.department, e.external_id, e.manager_email, e.access_person, e.status)
                for e in session.execute(select(Employee)).scalars()}


def _audit(ta: TestAppliance, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    with ta.store.read() as session:
        return [(a, json.loads(d or "{}")) for a, d in session.execute(
            select(AuditEvent.action, AuditEvent.detail).where(AuditEvent.action.like(prefix + "%"))
            .order_by(AuditEvent.id))]


def test_ldap_roster_dry_run_then_apply_then_a_departure(rta: tuple[TestAppliance, Path], slapd: Slapd) -> None:
    ta, config = rta
    refused = run_cli(config, "roster", "sync", "--source", "ldap")
    assert refused.exit_code == 1 and "--dry-run" in refused.output and _employees(ta) == {}

    dry = run_cli(config, "roster", "sync", "--source", "ldap", "--dry-run")
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert lines[0] == "ldap: read 4 employee(s) from the directory (dry run: nothing changed)"
    assert sorted(line.split()[1] for line in lines[1:-1]) == ["carl@example.org", "dan@example.org",
                                                                "emma@example.org", "vera@example.org"]
    assert all(line.startswith("created ") for line in lines[1:-1])
    assert lines[-1] == "roster: 4 created, 0 updated, 0 offboarded, 0 unchanged"
    assert _employees(ta) == {}

    applied = run_cli(config, "roster", "sync", "--source", "ldap")
    assert applied.exit_code == 0, applied.output
    assert applied.output.splitlines()[-1] == "roster: 4 created, 0 updated, 0 offboarded, 0 unchanged"
    people = _employees(ta)
    assert people["carl@example.org"] == ("Carl Compliance", "Compliance", "E1002", "alice.dir@example.org", False,
                                          "active")
    assert people["emma@example.org"] == ("Emma Twohats", "Trading", "E1005", "dan@example.org", True, "active")
    assert people["dan@example.org"][4] and not people["vera@example.org"][4]  # access persons: the desk
    assert [a for a, _ in _audit(ta, "roster.")].count("roster.created") == 4

    again = run_cli(config, "roster", "sync", "--source", "ldap")
    assert again.output.splitlines()[-1] == "roster: 0 created, 0 updated, 0 offboarded, 4 unchanged"

    slapd.set_attribute(seed.person_dn("vera"), "departmentNumber", "Risk")
    slapd.remove_member(seed.STAFF, seed.person_dn("carl"))
    try:
        held = run_cli(config, "roster", "sync", "--source", "ldap")
        assert held.exit_code == 1 and "max_departures_percent" in held.output  # 1 of 4 > 20 %
        assert _employees(ta)["carl@example.org"][5] == "active"
        done = run_cli(config, "roster", "sync", "--source", "ldap", "--allow-mass-departures")
        assert done.exit_code == 0, done.output
        assert "updated   vera@example.org: department 'Operations' -> 'Risk'" in done.output
        assert "offboarded carl@example.org" in done.output
        assert done.output.splitlines()[-1] == "roster: 0 created, 1 updated, 1 offboarded, 2 unchanged"
    finally:
        slapd.add_member(seed.STAFF, seed.person_dn("carl"))
        slapd.set_attribute(seed.person_dn("vera"), "departmentNumber", "Operations")
    assert _employees(ta)["carl@example.org"][5] == "offboarded"
    with ta.store.read() as session:
        alert = session.execute(select(Alert).where(Alert.kind == "employee_departed")).scalar_one()
        assert alert.severity == "info" and "carl" not in (alert.detail or {}).get("reason", "")
    offboarded = [d for a, d in _audit(ta, "roster.offboarded")]
    assert offboarded and offboarded[0]["source"] == "ldap"


def test_hr_export_files(rta: tuple[TestAppliance, Path]) -> None:
    ta, config = rta
    drop = Path(ta.settings.roster.files.directory)
    (drop / "hr-2026-12-01.csv").write_text(
        "Name,E-mail,Department,Employee Number,Manager,Access Person\n"
        "Ada Lovelace,ada@example.com,Research,HR-1,,yes\n"
        "Grace Hopper,grace@example.com,Engineering,HR-2,ada@example.com,no\n"
        "Alan Turing,alan@example.com,Research,HR-3,ada@example.com,no\n"
        "Bad Row,not-an-email,Research,HR-4,,no\n", encoding="utf-8")
    dry = run_cli(config, "roster", "sync", "--source", "files", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "rejected  line 5: not-an-email" in dry.output
    assert dry.output.splitlines()[-1] == "roster: 3 created, 0 updated, 0 offboarded, 0 unchanged (1 rejected)"
    assert (drop / "hr-2026-12-01.csv").exists()  # a dry run moves nothing
    applied = run_cli(config, "roster", "sync", "--source", "files")
    assert applied.exit_code == 0, applied.output
    assert (drop / "processed" / "hr-2026-12-01.csv").exists()
    assert _employees(ta)["grace@example.com"][3] == "ada@example.com"
    assert _employees(ta)["ada@example.com"][4] is True
    with ta.store.read() as session:  # the new access person's initial-holdings task, made by the run
        ada = session.execute(select(Employee).where(Employee.email == "ada@example.com")).scalar_one()
        task = session.execute(select(AttestationTask).where(AttestationTask.employee_id == ada.id)).scalar_one()
        assert ada.access_person_since is not None
        assert task.status == "open" and task.due == ada.access_person_since + dt.timedelta(days=10)

    # The next export, as JSON: Grace renamed, Alan gone (1 of 3 > 20 %: held back, then allowed).
    (drop / "hr-2026-12-02.json").write_text(json.dumps([
        {"name": "Ada Lovelace", "email": "ada@example.com", "department": "Research", "employee_number": "HR-1",
         "access_person": True},
        {"name": "Grace Brewster Hopper", "email": "grace@example.com", "department": "Engineering",
         "employee_number": "HR-2", "manager": "ada@example.com", "access_person": False}]), encoding="utf-8")
    held = run_cli(config, "roster", "sync", "--source", "files")
    assert held.exit_code == 1 and "max_departures_percent" in held.output
    assert (drop / "hr-2026-12-02.json").exists()
    done = run_cli(config, "roster", "sync", "--source", "files", "--allow-mass-departures")
    assert done.exit_code == 0, done.output
    assert "updated   grace@example.com: name 'Grace Hopper' -> 'Grace Brewster Hopper'" in done.output
    assert done.output.splitlines()[-1] == "roster: 0 created, 1 updated, 1 offboarded, 1 unchanged"
    assert _employees(ta)["alan@example.com"][5] == "offboarded"

    (drop / "broken.json").write_text('{"not": "a list"}', encoding="utf-8")
    broken = run_cli(config, "roster", "sync", "--source", "files")
    assert broken.exit_code == 1 and "list of objects" in broken.output
    assert (drop / "rejected" / "broken.json").exists()


def test_a_record_whose_number_and_email_name_two_employees_is_rejected(rta: tuple[TestAppliance, Path]) -> None:
    ta, config = rta
    drop = Path(ta.settings.roster.files.directory)
    (drop / "one.csv").write_text("name,email,employee_number\nAda,ada@example.com,HR-1\nBob,bob@example.com,HR-2\n",
                                  encoding="utf-8")
    assert run_cli(config, "roster", "sync", "--source", "files", "--dry-run").exit_code == 0
    assert run_cli(config, "roster", "sync", "--source", "files").exit_code == 0
    (drop / "two.csv").write_text("name,email,employee_number\nAda,bob@example.com,HR-1\nBob,bob@example.com,HR-2\n",
                                  encoding="utf-8")
    result = run_cli(config, "roster", "sync", "--source", "files", "--allow-mass-departures")
    assert "rejected  line 2: bob@example.com: employee number HR-1 is employee" in result.output
    assert _employees(ta)["ada@example.com"] == ("Ada", "", "HR-1", "", False, "active")  # not departures
    assert _employees(ta)["bob@example.com"][5] == "active"
    assert result.output.splitlines()[-1] == "roster: 0 created, 0 updated, 0 offboarded, 0 unchanged (2 rejected)"


def test_the_scheduled_run_only_shows_until_an_admin_applied_once(rta: tuple[TestAppliance, Path]) -> None:
    from appliance.poller.jobs import extra_jobs, roster_ldap
    from appliance.store.models import RosterState

    ta, config = rta
    assert {"roster_ldap", "roster_files", "directory_sync"} <= {j.id for j in extra_jobs(ta.settings)}
    roster_ldap(ta.appliance)
    assert _employees(ta) == {}
    with ta.store.read() as session:
        state = session.get(RosterState, "ldap")
        assert state is not None and state.first_applied_at is None and len(state.pending or []) == 4
    assert run_cli(config, "roster", "sync", "--source", "ldap").exit_code == 1  # no person reviewed it yet
    assert run_cli(config, "roster", "sync", "--source", "ldap", "--dry-run").exit_code == 0
    assert run_cli(config, "roster", "sync", "--source", "ldap").exit_code == 0
    roster_ldap(ta.appliance)  # applies from now on
    assert len(_employees(ta)) == 4
