"""`vigatra doctor` warns when the appliance is reachable without TLS.

Security review, finding 14: loopback is trusted as a TLS proxy by default (the bundled nginx/Caddy
run there), so any local process can send ``X-Forwarded-Proto: https``; that stays, documented in
docs/SECURITY.md. What doctor now flags is the dangerous case around it: waitress (plain HTTP) bound
to an address the network reaches, or forwarded headers believed from hosts other than this one.
"""

from __future__ import annotations

import base64
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from appliance.cli.main import cli


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    name = f"VIGATRA_TEST_KEK_{secrets.token_hex(3).upper()}"
    monkeypatch.setenv(name, base64.b64encode(secrets.token_bytes(32)).decode())
    result = CliRunner().invoke(cli, ["init", "--data-dir", str(tmp_path / "data"), "--database-url",
                                      f"sqlite:///{tmp_path / 'v.db'}", "--key-provider", "env", "--key-env", name,
                                      "--public-url", "https://vigatra.corp.example"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return tmp_path / "data" / "vigatra.yaml"


def _doctor(config: Path, **server: Any) -> Any:
    raw = yaml.safe_load(config.read_text())
    raw["server"].update(server)
    config.write_text(yaml.safe_dump(raw))
    return CliRunner().invoke(cli, ["--config", str(config), "doctor", "--skip-network"], catch_exceptions=False)


def test_loopback_behind_the_front_is_fine(config: Path) -> None:
    result = _doctor(config)
    assert re.search(r"^listen address\s+ok\s+127\.0\.0\.1:8080 \(loopback", result.output, re.M), result.output
    assert re.search(r"^trusted proxies\s+ok\s+127\.0\.0\.1, ::1 \(loopback", result.output, re.M), result.output


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "vigatra.corp.example"])
def test_a_non_loopback_bind_is_flagged(config: Path, host: str) -> None:
    result = _doctor(config, host=host)
    assert result.exit_code == 1  # plain HTTP to the network is a problem to fix, not a note
    assert re.search(rf"^listen address\s+PROBLEM\s+server\.host is {re.escape(host)}: waitress would serve plain "
                     rf"HTTP", result.output, re.M), result.output


def test_forwarded_headers_believed_from_the_network_are_flagged(config: Path) -> None:
    result = _doctor(config, trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
    assert re.search(r"^trusted proxies\s+warning\s+X-Forwarded-Proto is believed from 10\.0\.0\.0/8",
                     result.output, re.M), result.output
