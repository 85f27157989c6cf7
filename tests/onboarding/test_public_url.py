"""Onboarding links name server.public_url, never the request's Host.

Security review, finding 9: with ``server.public_url`` unset, a request carrying ``Host: evil.example``
produced ``https://evil.example/onboard/<token>``: whoever could get an admin's request through with
another Host (a misconfigured proxy, a DNS trick) had the employee's key submitted to their server.
Links now come from configuration only; `vigatra init` writes ``public_url`` (``--public-url``,
default the machine's name) and `vigatra doctor` flags it when missing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from appliance.cli.main import cli
from tests.access.helpers import auth, token
from tests.onboarding.conftest import appliance_with, client_for, csrf_from, new_employee
from tests.support.sim import RunningSim


def _links(ta: Any, app: Any, employee_id: int) -> list[str]:
    """A link over the API and one from the dashboard, both asked for with the Host header of another site."""
    api = client_for(app, "https://localhost")
    answer = api.post(f"/api/v1/employees/{employee_id}/onboarding-links", json={},
                      headers={**auth(token(api, ta, "alice")), "Host": "evil.example"})
    assert answer.status_code == 201, answer.get_json()
    browser = client_for(app, "https://evil.example")  # the whole session under the other name
    csrf = csrf_from(browser.get("/login").text)
    signed_in = browser.post("/login", data={"username": "carol", "password": ta.personas["carol"].password,
                                             "csrf_token": csrf})
    assert signed_in.status_code == 302
    csrf = csrf_from(browser.get(f"/employees/{employee_id}").text)
    page = browser.post(f"/employees/{employee_id}/links", data={"csrf_token": csrf})
    assert page.status_code == 200
    (from_page,) = re.findall(r"https?://[^\s<\"]+/onboard/[A-Za-z0-9_-]+", page.text)
    return [answer.get_json()["url"], from_page]


def test_links_never_take_the_requests_host(ota: Any, oapp: Any) -> None:
    employee_id = new_employee(ota)
    for url in _links(ota, oapp, employee_id):
        assert "evil.example" not in url
        from appliance.services.onboarding import default_public_url, public_base

        assert url.startswith(f"{public_base(ota.settings)}/onboard/")
        assert url.startswith(f"{default_public_url()}/onboard/")  # no public_url in this configuration


def test_links_take_the_configured_public_url(db_url: str, tmp_path: Path, sim: RunningSim) -> None:
    from appliance.app import create_app

    with appliance_with(db_url, tmp_path / "data", sim, server={"public_url": "https://vigatra.corp.example"}) as ta:
        app = create_app(ta.appliance)
        for url in _links(ta, app, new_employee(ta)):
            assert url.startswith("https://vigatra.corp.example/onboard/"), url


def _init(tmp_path: Path, kek_var: str, *extra: str) -> Any:
    return CliRunner().invoke(cli, ["init", "--data-dir", str(tmp_path / "data"), "--database-url",
                                    f"sqlite:///{tmp_path / 'v.db'}", "--key-provider", "env", "--key-env", kek_var,
                                    *extra], catch_exceptions=False)


def _written(tmp_path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((tmp_path / "data" / "vigatra.yaml").read_text())
    return loaded


def test_init_writes_the_public_url(tmp_path: Path, monkeypatch: Any) -> None:
    import base64
    import secrets

    from appliance.services.onboarding import default_public_url

    monkeypatch.setenv("VIGATRA_TEST_KEK_PUBLIC", base64.b64encode(secrets.token_bytes(32)).decode())
    given = _init(tmp_path / "a", "VIGATRA_TEST_KEK_PUBLIC", "--public-url", "https://vigatra.corp.example/")
    assert given.exit_code == 0, given.output
    assert _written(tmp_path / "a")["server"]["public_url"] == "https://vigatra.corp.example"
    assert "public url: https://vigatra.corp.example" in given.output
    default = _init(tmp_path / "b", "VIGATRA_TEST_KEK_PUBLIC", "--yes")
    assert default.exit_code == 0, default.output
    assert _written(tmp_path / "b")["server"]["public_url"] == default_public_url()
    refused = _init(tmp_path / "c", "VIGATRA_TEST_KEK_PUBLIC", "--public-url", "http://vigatra.corp.example")
    assert refused.exit_code == 1 and "public_url" in refused.output and "https://" in refused.output
    assert not (tmp_path / "c" / "data" / "vigatra.yaml").exists()


def test_doctor_flags_a_missing_public_url(tmp_path: Path, monkeypatch: Any) -> None:
    import base64
    import secrets

    monkeypatch.setenv("VIGATRA_TEST_KEK_DOCTOR", base64.b64encode(secrets.token_bytes(32)).decode())
    assert _init(tmp_path, "VIGATRA_TEST_KEK_DOCTOR", "--public-url", "https://vigatra.corp.example").exit_code == 0
    config = tmp_path / "data" / "vigatra.yaml"
    fine = CliRunner().invoke(cli, ["--config", str(config), "doctor", "--skip-network"], catch_exceptions=False)
    assert re.search(r"public_url\s+ok\s+https://vigatra\.corp\.example", fine.output), fine.output
    raw = _written(tmp_path)
    del raw["server"]["public_url"]
    config.write_text(yaml.safe_dump(raw))
    missing = CliRunner().invoke(cli, ["--config", str(config), "doctor", "--skip-network"], catch_exceptions=False)
    assert missing.exit_code == 1  # links would name this machine: a problem to fix before employees get them
    assert re.search(r"public_url\s+PROBLEM\s+server\.public_url is not set: onboarding links name",
                     missing.output), missing.output
