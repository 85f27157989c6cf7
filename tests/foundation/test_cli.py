"""The admin CLI: init, db, user, routes, doctor; exit codes 0 / 1 / 2; one line per failure."""

from __future__ import annotations

import base64
import re
import secrets
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from appliance.cli.main import cli


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


@pytest.fixture
def kek_env(monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"VIGATRA_TEST_KEK_{secrets.token_hex(3).upper()}"
    monkeypatch.setenv(name, base64.b64encode(secrets.token_bytes(32)).decode())
    return name


def init(tmp_path: Path, db_url: str, kek_env: str, *extra: str) -> tuple[Path, str]:
    data = tmp_path / "data"
    result = run("init", "--data-dir", str(data), "--database-url", db_url, "--key-provider", "env",
                 "--key-env", kek_env, *extra)
    assert result.exit_code == 0, result.output
    match = re.search(r"^admin password: (\S+)$", result.output, re.M)
    assert match, result.output
    return data / "vigatra.yaml", match.group(1)


def test_init_writes_config_database_and_admin(tmp_path: Path, empty_db_url: str, kek_env: str) -> None:
    config, password = init(tmp_path, empty_db_url, kek_env, "--admin-username", "root-admin")
    assert config.exists()
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    assert len(password) >= 20
    listing = run("--config", str(config), "user", "list")
    assert listing.exit_code == 0
    assert "root-admin" in listing.output
    assert "Admin" in listing.output
    current = run("--config", str(config), "db", "current")
    assert "up to date" in current.output
    check = run("--config", str(config), "db", "check")
    assert check.exit_code == 0, check.output


def test_second_init_refuses_and_changes_nothing(tmp_path: Path, empty_db_url: str, kek_env: str) -> None:
    config, _ = init(tmp_path, empty_db_url, kek_env)
    before = config.read_bytes()
    again = run("init", "--data-dir", str(tmp_path / "data"), "--database-url", empty_db_url, "--key-provider",
                "env", "--key-env", kek_env)
    assert again.exit_code == 1
    assert "already initialised" in again.output
    assert config.read_bytes() == before


def test_init_default_file_key_outside_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "srv" / "data"
    result = run("init", "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    key = tmp_path / "srv" / "data-kek.key"
    assert key.exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o400
    assert "admin password: " in result.output


def test_init_with_unreachable_database_is_one_line(tmp_path: Path, kek_env: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run("init", "--data-dir", str(tmp_path / "d"), "--database-url",
                 f"postgresql+psycopg://nobody@127.0.0.1:{port}/x", "--key-provider", "env", "--key-env", kek_env)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("vigatra: database error")
    assert not (tmp_path / "d" / "vigatra.yaml").exists()


def test_init_unusable_data_dir(tmp_path: Path, kek_env: str) -> None:
    # A path below a regular file cannot be created, whoever runs the test (root included).
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run("init", "--data-dir", str(blocker / "data"), "--key-provider", "env", "--key-env", kek_env)
    assert result.exit_code == 1
    assert result.output.startswith("vigatra: cannot use data dir")
    assert result.output.count("\n") == 1


def test_missing_config_is_one_line(tmp_path: Path) -> None:
    result = run("--config", str(tmp_path / "missing.yaml"), "db", "current")
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "does not exist" in result.output


def test_usage_error_exits_2() -> None:
    assert run("user", "create").exit_code == 2
    assert run("no-such-command").exit_code == 2


def test_help_works_without_config(tmp_path: Path) -> None:
    result = run("--config", str(tmp_path / "missing.yaml"), "--help")
    assert result.exit_code == 0
    assert "serve" in result.output


def test_user_create_with_password_stdin(tmp_path: Path, empty_db_url: str, kek_env: str) -> None:
    config, _ = init(tmp_path, empty_db_url, kek_env)
    ok = run("--config", str(config), "user", "create", "--username", "carol", "--role", "Compliance",
             "--password-stdin", input="a long enough passphrase for our officer\n")
    assert ok.exit_code == 0, ok.output
    assert re.search(r"^user id: \d+$", ok.output, re.M)
    weak = run("--config", str(config), "user", "create", "--username", "dave", "--role", "Viewer",
               "--password-stdin", input="password\n")
    assert weak.exit_code == 1
    assert "at least 15 characters" in weak.output
    dup = run("--config", str(config), "user", "create", "--username", "carol", "--role", "Viewer",
              "--password-stdin", input="another long passphrase here\n")
    assert dup.exit_code == 1
    assert "already exists" in dup.output
    disable = run("--config", str(config), "user", "disable", "carol")
    assert disable.exit_code == 0


def test_routes_lists_method_path_permission(tmp_path: Path, kek_env: str) -> None:
    config, _ = init(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", kek_env)
    result = run("--config", str(config), "routes")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert "GET /api/v1/employees employees:read" in lines
    assert "POST /api/v1/auth/token public" in lines
    assert "GET /healthz public" in lines
    assert all(len(line.split(" ")) == 3 for line in lines)


def test_doctor_reports_in_plain_words(tmp_path: Path, kek_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config, _ = init(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", kek_env, "--public-url",
                     "https://vigatra.example.internal")
    good = run("--config", str(config), "doctor", "--skip-network")
    assert good.exit_code == 0, good.output
    assert "key provider" in good.output
    monkeypatch.delenv(kek_env)
    bad = run("--config", str(config), "doctor", "--skip-network")
    assert bad.exit_code == 1
    assert "PROBLEM" in bad.output
