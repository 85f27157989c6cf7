"""An appliance whose venues point at the simulators, with an EVM chain configured, and helpers to
drive the onboarding page, read the audit trail and run the CLI against the same database."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from tests.support.app import FAST_ARGON2, TestAppliance, build
from tests.support.live import LiveServer, find_chromium, start_live
from tests.support.proc import free_port
from tests.support.sim import RunningSim
from tests.support.tls import TlsFront, find_nginx, start_nginx

# EIP-55's own example addresses (eips.ethereum.org/EIPS/eip-55).
VALID_EVM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BAD_CHECKSUM_EVM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"  # last letter's case flipped


def sim_venues(sim: RunningSim) -> dict[str, Any]:
    from appliance.settings import VENUE_IDS

    return {v: {"base_url": sim.base_url(v), "requests_per_second": 1000} for v in VENUE_IDS}


def overrides(sim: RunningSim, **extra: Any) -> dict[str, Any]:
    """Settings overrides: venues at the simulators, and an EVM chain whose RPC port nobody serves
    (address validation needs no network)."""
    values: dict[str, Any] = {
        "venues": sim_venues(sim),
        "chains": {"evm": {"ethereum": {"rpc_url": f"http://127.0.0.1:{free_port()}"}}},
    }
    for section, more in extra.items():
        if isinstance(more, dict) and isinstance(values.get(section), dict):
            values[section] = {**values[section], **more}
        else:
            values[section] = more
    return values


@contextmanager
def appliance_with(db_url: str, data_dir: Path, sim: RunningSim, **extra: Any) -> Iterator[TestAppliance]:
    """An appliance built with ``overrides(sim, **extra)``, closed afterwards."""
    built = build(db_url, data_dir, **overrides(sim, **extra))
    try:
        yield built
    finally:
        built.appliance.close()


@pytest.fixture
def ota(db_url: str, tmp_path: Path, sim: RunningSim) -> Iterator[TestAppliance]:
    with appliance_with(db_url, tmp_path / "data", sim) as built:
        yield built


@pytest.fixture
def oapp(ota: TestAppliance) -> Any:
    from appliance.app import create_app

    return create_app(ota.appliance)


@pytest.fixture
def https(oapp: Any) -> Any:
    """A Flask client whose requests arrive over TLS from 127.0.0.1."""
    return client_for(oapp, "https://localhost")


@pytest.fixture
def plain(oapp: Any) -> Any:
    """A Flask client whose requests arrive over plain HTTP from 127.0.0.1."""
    return client_for(oapp, "http://localhost")


def client_for(app: Any, base_url: str, **environ: Any) -> Any:
    from flask.testing import FlaskClient

    class Client(FlaskClient):
        def open(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("base_url", base_url)
            if environ:
                kwargs.setdefault("environ_base", dict(environ))
            return super().open(*args, **kwargs)

    app.test_client_class = Client
    return app.test_client()


# --------------------------------------------------------------------------------------------
# Live server, TLS front, browser.


@pytest.fixture
def need_browser() -> None:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    for what, found in (("Chromium", find_chromium()), ("nginx", find_nginx())):
        if found is None:
            if ci:
                pytest.fail(f"{what} is missing in CI: `make test` must install it", pytrace=False)
            pytest.skip(f"{what} is not installed (make test installs it)")


@pytest.fixture
def live(oapp: Any, ota: TestAppliance, need_browser: None) -> Iterator[LiveServer]:
    server = start_live(oapp, threads=ota.settings.server.threads)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def front(live: LiveServer, tmp_path: Path) -> Iterator[TlsFront]:
    tls = start_nginx(tmp_path / "nginx", live.url)
    try:
        yield tls
    finally:
        tls.stop()


def spki_args(front: TlsFront) -> list[str]:
    return [f"--ignore-certificate-errors-spki-list={front.certificate.spki_sha256_b64}"]


# --------------------------------------------------------------------------------------------
# Store helpers.


def new_employee(ta: TestAppliance, email: str = "erin@example.com", name: str = "Erin Example") -> int:
    from appliance.services import employees

    with ta.store.unit_of_work() as session:
        return int(employees.create(session, name=name, email=email, department="Trading").id)


def new_link(ta: TestAppliance, employee_id: int, **kwargs: Any) -> tuple[int, str]:
    """(link id, token) — as an admin would get from the API or the CLI."""
    from appliance.rbac.actors import system_actor
    from appliance.services import onboarding

    with ta.store.unit_of_work() as session:
        row, token = onboarding.create_link(session, system_actor("test"), ta.settings, employee_id, **kwargs)
        return int(row.id), token


def connections(ta: TestAppliance, employee_id: int | None = None) -> list[Any]:
    from appliance.store.models import Connection

    with ta.store.read() as session:
        stmt = select(Connection).order_by(Connection.id)
        if employee_id is not None:
            stmt = stmt.where(Connection.employee_id == employee_id)
        rows = list(session.execute(stmt).scalars())
        session.expunge_all()
        return rows


def audit_rows(ta: TestAppliance) -> list[dict[str, Any]]:
    from appliance.store.models import AuditEvent

    with ta.store.read() as session:
        rows = session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()
        return [{c.key: getattr(r, c.key) for c in AuditEvent.__table__.columns} for r in rows]


def audit_text(rows: list[dict[str, Any]]) -> str:
    return "\n".join(" ".join(str(v) for v in row.values()) for row in rows)


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


def key_form(csrf: str, venue: str, key: dict[str, Any]) -> dict[str, str]:
    """The onboarding page's key form as a browser posts it; a passphrase only when the key has one."""
    form = {"csrf_token": csrf, "action": "key", "venue": venue, "api_key": key.get("api_key", ""),
            "api_secret": key.get("api_secret", "")}
    if key.get("passphrase"):
        form["passphrase"] = key["passphrase"]
    return form


def secrets_of(key: dict[str, Any]) -> list[str]:
    """Every credential string of a simulator key, and for PEM secrets each body line too."""
    values = [str(key[k]) for k in ("api_key", "api_secret", "passphrase") if key.get(k)]
    for value in list(values):
        values += [line for line in value.splitlines() if len(line) >= 24 and "-----" not in line]
    return values


# --------------------------------------------------------------------------------------------
# The CLI against the same database and KEK.


def write_config(ta: TestAppliance, path: Path, **extra: Any) -> Path:
    raw: dict[str, Any] = {
        "data_dir": str(ta.settings.data_dir),
        "appliance_id": ta.settings.appliance_id,
        "database": {"url": ta.settings.database.url},
        "keys": {"provider": "env", "env_var": ta.settings.keys.env_var},
        "auth": dict(FAST_ARGON2),
        "poller": {"enabled": False},
    }
    for section, values in extra.items():
        raw.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def cli_config(ota: TestAppliance, tmp_path: Path) -> Path:
    return write_config(ota, tmp_path / "vigatra.yaml")


def run_cli(config: Path, *args: str) -> Any:
    from appliance.cli.main import cli

    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
