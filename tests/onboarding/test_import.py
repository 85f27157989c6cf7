"""CSV import of employees through the CLI, the dashboard upload and the API: all rows or none,
every bad row named with its line number."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.store.models import Employee
from tests.access.helpers import auth, login_session, token
from tests.onboarding.conftest import audit_rows, client_for, new_employee, run_cli

GOOD = (
    "name,email,department,external_id\n"
    "Ada Lovelace,ada@example.com,Research,HR-1\n"
    '"Hopper, Grace",GRACE@Example.com,"Engineering",HR-2\n'
    "Alan Turing,alan@example.com,,\n"
)


def employees(ta: Any) -> list[tuple[str, str, str, str | None]]:
    with ta.store.read() as session:
        return [(e.name, e.email, e.department, e.external_id)
                for e in session.execute(select(Employee).order_by(Employee.email)).scalars()]


@pytest.fixture(params=["cli", "dashboard", "api"])
def importer(request: pytest.FixtureRequest, ota: Any, oapp: Any,
             tmp_path: Path) -> Callable[[bytes], tuple[bool, str]]:
    if request.param == "cli":
        config = request.getfixturevalue("cli_config")

        def via_cli(data: bytes) -> tuple[bool, str]:
            path = tmp_path / "people.csv"
            path.write_bytes(data)
            result = run_cli(config, "employee", "import", str(path))
            return result.exit_code == 0, result.output

        return via_cli
    if request.param == "dashboard":
        browser = client_for(oapp, "https://localhost")
        login_session(browser, ota, "alice")

        def via_dashboard(data: bytes) -> tuple[bool, str]:
            with browser.session_transaction() as s:
                csrf = s["csrf"]
            response = browser.post("/employees/import", data={"csrf_token": csrf, "file": (io.BytesIO(data),
                                                                                              "people.csv")},
                                    content_type="multipart/form-data")
            if response.status_code == 302:
                return True, browser.get(response.headers["Location"]).text
            assert response.status_code == 400, (response.status_code, response.text[:300])
            return False, response.text

        return via_dashboard
    api = client_for(oapp, "https://localhost")
    headers = auth(token(api, ota, "alice"))

    def via_api(data: bytes) -> tuple[bool, str]:
        response = api.post("/api/v1/employees/import", data=data, headers={**headers, "Content-Type": "text/csv"})
        if response.status_code == 201:
            return True, response.text
        assert response.status_code == 400, (response.status_code, response.text[:300])
        return False, response.get_json()["error"]["message"]

    return via_api


def lines_named(text: str) -> list[int]:
    import html

    return sorted({int(n) for n in re.findall(r"line (\d+):", html.unescape(text))})


def rejected_lines(how: str, text: str) -> list[int]:
    if how == "api":
        return sorted(int(r["where"].split()[1]) for r in json.loads(text)["rows"] if r["kind"] == "rejected")
    return lines_named(text)


def test_good_file_imports_every_row(ota: Any, importer: Any, request: pytest.FixtureRequest) -> None:
    ok, text = importer(GOOD.encode())
    assert ok, text
    assert employees(ota) == [("Ada Lovelace", "ada@example.com", "Research", "HR-1"),
                              ("Alan Turing", "alan@example.com", "", None),
                              ("Hopper, Grace", "grace@example.com", "Engineering", "HR-2")]
    how = request.node.callspec.params["importer"]
    if how == "cli":
        assert text.splitlines() == ["created   ada@example.com", "created   grace@example.com",
                                     "created   alan@example.com",
                                     "roster: 3 created, 0 updated, 0 offboarded, 0 unchanged"]
    elif how == "dashboard":
        assert ('<div class="flash ok" role="status">3 employee(s) imported, 0 updated, 0 unchanged.</div>'
                in text), text[:2000]
    else:
        body = json.loads(text)
        with ota.store.read() as session:
            ids = sorted(session.execute(select(Employee.id)).scalars())
        assert body["imported"] == 3 and sorted(body["ids"]) == ids
        assert (body["created"], body["updated"], body["unchanged"], body["rejected"]) == (3, 0, 0, 0)
        assert [r["kind"] for r in body["rows"]] == ["created"] * 3


def test_bad_rows_are_rejected_by_line_and_the_good_ones_apply(ota: Any, importer: Any,
                                                               request: pytest.FixtureRequest) -> None:
    data = (
        "name,email,department,external_id\n"
        "Ada Lovelace,ada@example.com,Research,HR-1\n"  # 2 fine
        "Bob,not-an-email,Sales,HR-3\n"  # 3 bad e-mail
        ",nameless@example.com,Sales,\n"  # 4 no name
        "\n"  # 5 blank: skipped
        'Carl,carl@example.com,"Multi\nline",HR-4\n'  # 6-7 fine (quoted newline)
        "Dora,dora@example.com,Ops,HR-5,surplus\n"  # 8 too many fields
        "Eve,ADA@example.com,Ops,\n"  # 9 repeats line 2's e-mail
        "Finn,finn@example.com,Ops,HR-1\n"  # 10 repeats line 2's external id
    )
    how = request.node.callspec.params["importer"]
    ok, text = importer(data.encode())
    assert ok == (how != "cli")  # the CLI exits 1 when a row was rejected
    assert rejected_lines(how, text) == [3, 4, 8, 9, 10], text
    assert "repeats line 2" in text
    assert "not-an-email" in text
    assert [e[1] for e in employees(ota)] == ["ada@example.com", "carl@example.com"]


def test_existing_employees_are_updated_not_refused(ota: Any, importer: Any, request: pytest.FixtureRequest) -> None:
    new_employee(ota, email="ada@example.com", name="Ada Already")
    ok, text = importer(GOOD.replace("ada@example.com", "ADA@EXAMPLE.COM").encode())
    assert ok, text
    assert employees(ota)[0] == ("Ada Lovelace", "ada@example.com", "Research", "HR-1")
    if request.node.callspec.params["importer"] == "cli":
        assert "updated   ada@example.com: name 'Ada Already' -> 'Ada Lovelace'" in text
        assert text.splitlines()[-1] == "roster: 2 created, 1 updated, 0 offboarded, 0 unchanged"
    ok, text = importer(GOOD.encode())  # again: nothing changes
    assert ok, text
    if request.node.callspec.params["importer"] == "cli":
        assert text.splitlines()[-1] == "roster: 0 created, 0 updated, 0 offboarded, 3 unchanged"
    assert len(employees(ota)) == 3


def test_unknown_and_repeated_columns_are_refused(ota: Any, importer: Any) -> None:
    ok, text = importer(b"name,email,salary\nAda,ada@example.com,100\n")
    assert not ok and "salary" in text and lines_named(text) == [1]
    ok, text = importer(b"name,email,email\nAda,ada@example.com,ada2@example.com\n")
    assert not ok and lines_named(text) == [1] and "email" in text
    ok, text = importer(b"email,department\nada@example.com,R\n")
    assert not ok and "name" in text
    assert employees(ota) == []


def test_spreadsheet_exports_are_understood(ota: Any, importer: Any) -> None:
    """Excel's "CSV UTF-8": a BOM, CRLF line ends, headers as people write them, trailing empty
    columns."""
    data = ("\ufeffName,E-mail,Department,External ID,,\r\n"
            "Zoë Ångström,zoe@example.com,Forschung,HR-9,,\r\n"
            "Ada Lovelace,ada@example.com,,,,\r\n").encode()
    ok, text = importer(data)
    assert ok, text
    assert employees(ota) == [("Ada Lovelace", "ada@example.com", "", None),
                              ("Zoë Ångström", "zoe@example.com", "Forschung", "HR-9")]


def test_non_utf8_is_refused_with_the_line(ota: Any, importer: Any) -> None:
    data = "name,email\nAda,ada@example.com\nZoë,zoe@example.com\n".encode("latin-1")
    ok, text = importer(data)
    assert not ok
    assert "UTF-8" in text
    assert employees(ota) == []


def test_empty_and_header_only_files(ota: Any, importer: Any) -> None:
    for data, why in ((b"", "empty"), (b"name,email,department,external_id\n", "no rows")):
        ok, text = importer(data)
        assert not ok and why in text, (data, text[:300])
    assert employees(ota) == []


def test_a_giant_field_is_a_row_error_not_a_crash(ota: Any, importer: Any) -> None:
    data = f"name,email\nAda,ada@example.com\n{'x' * 200_000},big@example.com\n".encode()
    ok, text = importer(data)
    assert not ok
    assert "line 3" in text.replace("&#39;", "'"), text[:500]
    assert employees(ota) == []


def test_cli_prints_each_row_and_exits_1_on_a_rejected_one(ota: Any, cli_config: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("name,email\nAda,ada@example.com\nBob,bob@\n,x@example.com\n", encoding="utf-8")
    result = run_cli(cli_config, "employee", "import", str(path))
    assert result.exit_code == 1
    assert re.search(r"^rejected  line 3: .*bob@", result.output, re.M)
    assert re.search(r"^rejected  line 4: .*name", result.output, re.M)
    assert "roster: 1 created, 0 updated, 0 offboarded, 0 unchanged (2 rejected)" in result.output
    good = tmp_path / "good.csv"
    good.write_text(GOOD, encoding="utf-8")
    result = run_cli(cli_config, "employee", "import", str(good))
    assert result.exit_code == 0 and "roster: 2 created, 1 updated, 0 offboarded, 0 unchanged" in result.output
    listing = run_cli(cli_config, "employee", "list")
    assert listing.exit_code == 0 and "grace@example.com" in listing.output
    imports = [e for e in audit_rows(ota) if e["action"] == "employees.import"]
    assert len(imports) == 2 and '"imported": 3' in imports[1]["detail"]
    assert len([e for e in audit_rows(ota) if e["action"] == "roster.created"]) == 3
    assert len([e for e in audit_rows(ota) if e["action"] == "roster.updated"]) == 1
    missing = run_cli(cli_config, "employee", "import", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2
