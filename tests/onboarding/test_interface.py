"""The interface acceptance checks use: the CLI's output lines, the form's fields, the bind check."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.errors import ConfigError
from appliance.serve import check_bind
from appliance.services.onboarding import default_public_url
from appliance.store.models import Employee
from tests.onboarding.conftest import audit_rows, new_employee, new_link, run_cli, write_config
from tests.support.app import test_settings as settings_for


def test_employee_add_prints_the_id(ota: Any, cli_config: Path) -> None:
    result = run_cli(cli_config, "employee", "add", "--name", "Nell Newcomer", "--email", "Nell@Example.com",
                     "--department", "Treasury")
    assert result.exit_code == 0, result.output
    match = re.fullmatch(r"employee id: (\d+)\n", result.output)
    assert match, result.output
    with ota.store.read() as session:
        person = session.get(Employee, int(match.group(1)))
        assert person is not None
        assert (person.name, person.email, person.department) == ("Nell Newcomer", "nell@example.com", "Treasury")
    created = [e for e in audit_rows(ota) if e["action"] == "employees.create"]
    assert [(e["actor_type"], e["resource_id"]) for e in created] == [("system", match.group(1))]
    again = run_cli(cli_config, "employee", "add", "--name", "Nell Again", "--email", "nell@example.com")
    assert again.exit_code == 1
    assert again.output.count("\n") == 1 and "already exists" in again.output


def test_onboard_link_prints_a_working_url(ota: Any, tmp_path: Path, https: Any) -> None:
    employee_id = new_employee(ota)
    config = write_config(ota, tmp_path / "public.yaml", server={"public_url": "https://vigatra.example.com"})
    result = run_cli(config, "onboard", "link", "--employee", str(employee_id))
    assert result.exit_code == 0, result.output
    match = re.fullmatch(r"onboarding url: (https://vigatra\.example\.com/onboard/([A-Za-z0-9_-]{22,}))\n",
                         result.output)
    assert match, result.output
    assert https.get(f"/onboard/{match.group(2)}").status_code == 200

    default = run_cli(write_config(ota, tmp_path / "plain.yaml"), "onboard", "link", "--employee", str(employee_id))
    assert default.exit_code == 0
    # No public_url: this machine's name over https (what vigatra init proposes), never the bind address.
    assert re.search(rf"^onboarding url: {re.escape(default_public_url())}/onboard/\S+$", default.output, re.M)
    assert "server.public_url" in default.output  # the hint, on stderr

    missing = run_cli(config, "onboard", "link", "--employee", "99999")
    assert missing.exit_code == 1 and "not found" in missing.output


def test_demo_links_stay_on_plain_http_only_when_allowed(ota: Any, tmp_path: Path) -> None:
    employee_id = new_employee(ota)
    config = write_config(ota, tmp_path / "demo.yaml", server={"dev_allow_insecure_onboarding": True})
    result = run_cli(config, "onboard", "link", "--employee", str(employee_id))
    assert result.exit_code == 0, result.output
    assert re.search(r"^onboarding url: http://127\.0\.0\.1:8080/onboard/\S+$", result.output, re.M)


class Forms(HTMLParser):
    """Every form with its method, action and named controls (each control's attributes, plus its
    ``tag``); every label's target."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.labels: set[str] = set()
        self.ids: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"method": (a.get("method") or "get").lower(), "action": a.get("action"),
                               "fields": {}})
        elif tag in ("input", "textarea", "select") and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = {**a, "tag": tag}
            if a.get("id"):
                self.ids[str(a["id"])] = str(a.get("type") or tag)
        elif tag == "label" and a.get("for"):
            self.labels.add(str(a["for"]))


def forms_of(html: str) -> Forms:
    parser = Forms()
    parser.feed(html)
    return parser


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("venue", "fields", "secret_control"), [
    ("coinbase", {"venue", "api_key", "api_secret", "csrf_token", "action"}, "textarea"),  # a PEM private key
    ("kraken", {"venue", "api_key", "api_secret", "csrf_token", "action"}, "password"),
    ("okx", {"venue", "api_key", "api_secret", "passphrase", "csrf_token", "action"}, "password"),
    ("kucoin", {"venue", "api_key", "api_secret", "passphrase", "csrf_token", "action"}, "password"),
])
def test_key_form_fields(ota: Any, https: Any, venue: str, fields: set[str], secret_control: str) -> None:
    _link_id, value = new_link(ota, new_employee(ota))
    page = https.get(f"/onboard/{value}?venue={venue}")
    assert page.status_code == 200
    parsed = forms_of(page.text)
    posts = [f for f in parsed.forms if f["method"] == "post"]
    key_form = next(f for f in posts if "api_key" in f["fields"])
    assert set(key_form["fields"]) == fields
    assert key_form["fields"]["venue"]["value"] == venue
    controls = {name: "textarea" if a["tag"] == "textarea" else a.get("type") for name, a in key_form["fields"].items()}
    # The secret is never echoed on screen: a masked input, or a textarea only for a multi-line PEM key.
    assert controls["api_secret"] == secret_control
    if "passphrase" in controls:
        assert controls["passphrase"] == "password"
    for form in posts:
        assert form["action"] == ""  # posts to its own URL: /onboard/<token>
        assert form["fields"]["csrf_token"]["value"]
    for control_id, kind in parsed.ids.items():
        if kind != "hidden":
            assert control_id in parsed.labels, f"{control_id} has no <label>"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_wallet_form_fields(ota: Any, https: Any) -> None:
    _link_id, value = new_link(ota, new_employee(ota))
    parsed = forms_of(https.get(f"/onboard/{value}?venue=ethereum").text)
    wallet = next(f for f in parsed.forms if "address" in f["fields"])
    assert wallet["method"] == "post" and wallet["action"] == ""
    assert {"chain", "address", "csrf_token"} <= set(wallet["fields"])
    assert wallet["fields"]["chain"]["value"] == "ethereum"


def test_insecure_onboarding_refused_off_loopback(tmp_path: Path) -> None:
    insecure = settings_for("sqlite:///unused.db", tmp_path, "VIGATRA_TEST_UNUSED",
                             server={"dev_allow_insecure_onboarding": True})
    for host in ("0.0.0.0", "192.0.2.10", "::", "appliance.example.com"):
        with pytest.raises(ConfigError, match="dev_allow_insecure_onboarding"):
            check_bind(insecure, host)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_bind(insecure, host)
    secure = settings_for("sqlite:///unused.db", tmp_path, "VIGATRA_TEST_UNUSED")
    for host in ("0.0.0.0", "192.0.2.10", "127.0.0.1"):
        check_bind(secure, host)


def test_serve_refuses_before_binding(tmp_path: Path) -> None:
    """`vigatra serve --host 0.0.0.0` with the demo flag: one line, exit 1, nothing listening."""
    from tests.support.proc import free_port

    config = tmp_path / "vigatra.yaml"
    config.write_text(f"data_dir: {tmp_path}\nserver:\n  dev_allow_insecure_onboarding: true\n", encoding="utf-8")
    port = free_port()
    result = run_cli(config, "serve", "--host", "0.0.0.0", "--port", str(port))
    assert result.exit_code == 1
    assert "dev_allow_insecure_onboarding" in result.output and "0.0.0.0" in result.output


def test_employee_list_shows_status(ota: Any, cli_config: Path) -> None:
    first = new_employee(ota, email="a@example.com", name="Alpha")
    new_employee(ota, email="b@example.com", name="Beta")
    assert run_cli(cli_config, "employee", "offboard", str(first)).exit_code == 0
    listing = run_cli(cli_config, "employee", "list")
    assert listing.exit_code == 0
    rows = {line.split()[1]: line for line in listing.output.splitlines()[1:]}
    assert "offboarded" in rows["Alpha"] and "active" in rows["Beta"]
    with ota.store.read() as session:
        assert session.execute(select(Employee.status).where(Employee.id == first)).scalar_one() == "offboarded"
