"""`vigatra keys init|status` and the start-up refusals, through the CLI as an operator runs them.

Covers issue 3 item 4 (init idempotent, status never shows a key byte), the file provider's
permission checks at CLI and `serve` start (SECURITY.md reviewer test 5), the systemd provider with
a fake $CREDENTIALS_DIRECTORY, and "bad input / faults: one clear line, exit 1, nothing overwritten".
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select, update

from appliance.store.models import AuditEvent, Connection, KeyVersion
from appliance.store.session import Store
from tests.keys.conftest import Box, Token, new_kek_text, write_kek

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def key_rows(store: Store) -> list[tuple[int, str, bytes, str]]:
    with store.read() as session:
        return [(v.version, v.status, v.wrapped_key, v.kek_id)
                for v in session.execute(select(KeyVersion).order_by(KeyVersion.version)).scalars()]


def audit_actions(store: Store) -> list[str]:
    with store.read() as session:
        return list(session.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def test_init_creates_the_kek_and_first_key_then_changes_nothing(bare_box: Box) -> None:
    first = bare_box.cli("keys", "init")
    assert first.exit_code == 0, first.output
    assert "wrote a new KEK" in first.output
    assert "created data key version 1" in first.output
    assert bare_box.kek_file.stat().st_mode & 0o777 == 0o400
    kek = bare_box.kek_file.read_bytes()
    rows = key_rows(bare_box.store)
    assert [(v, s) for v, s, _w, _k in rows] == [(1, "active")]
    assert audit_actions(bare_box.store) == ["keys.init"]

    second = bare_box.cli("keys", "init")
    assert second.exit_code == 0, second.output
    assert "nothing was changed" in second.output
    assert bare_box.kek_file.read_bytes() == kek
    assert key_rows(bare_box.store) == rows
    assert audit_actions(bare_box.store) == ["keys.init"]


def test_init_never_creates_a_kek_next_to_existing_data_keys(box: Box) -> None:
    box.kek_file.chmod(0o600)
    box.kek_file.unlink()
    rows = key_rows(box.store)
    result = box.cli("keys", "init")
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert not box.kek_file.exists()
    assert key_rows(box.store) == rows


@sqlite_only
def test_init_with_env_provider_says_how_to_provide_the_key(bare_box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    bare_box.write_config(provider="env", env_var="VIGATRA_TEST_KEYS_INIT_KEK")
    monkeypatch.delenv("VIGATRA_TEST_KEYS_INIT_KEK", raising=False)
    missing = bare_box.cli("keys", "init")
    assert missing.exit_code == 1
    assert "VIGATRA_TEST_KEYS_INIT_KEK is not set" in missing.output
    assert "head -c 32 /dev/urandom | base64" in missing.output
    assert key_rows(bare_box.store) == []

    monkeypatch.setenv("VIGATRA_TEST_KEYS_INIT_KEK", new_kek_text())
    done = bare_box.cli("keys", "init")
    assert done.exit_code == 0, done.output
    assert "created data key version 1" in done.output
    assert [r[3].split(":")[0] for r in key_rows(bare_box.store)] == ["env"]


def test_status_shows_versions_and_counts_never_key_bytes(box: Box) -> None:
    keys = box.service()
    box.seed(keys, connections=3, users=1)
    result = box.cli("keys", "status")
    assert result.exit_code == 0, result.output
    kek_id = keys.provider.kek_id()
    assert f"file provider: KEK file {box.kek_file}" in result.output
    assert f"KEK id:   {kek_id}" in result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("1 "))
    assert line.split()[:2] == ["1", "active"] and line.split()[-2:] == ["yes", "10"]
    kek_text = box.kek_file.read_text().strip()
    dek = keys._deks[1]
    for secret in (kek_text, base64.b64decode(kek_text).hex(), dek.hex(), base64.b64encode(dek).decode()):
        assert secret not in result.output
    with box.store.read() as session:
        wrapped = session.get(KeyVersion, 1).wrapped_key
    assert wrapped.hex() not in result.output and base64.b64encode(wrapped).decode() not in result.output


@sqlite_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_group_or_world_readable_kek_file_is_refused_by_the_cli_and_serve(box: Box, mode: int) -> None:
    box.kek_file.chmod(mode)
    for command in (["keys", "status"], ["keys", "verify"]):
        result = box.cli(*command)
        assert result.exit_code == 1
        assert f"has mode {mode:04o}: group or others can access it" in result.output
    served = box.cli_subprocess("serve", "--port", "0", timeout=60)
    assert served.returncode == 1
    lines = [ln for ln in served.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vigatra: file provider: KEK file")
    assert f"mode {mode:04o}" in lines[0]


@sqlite_only
def test_kek_file_inside_the_data_dir_is_refused(box: Box) -> None:
    inside = box.data_dir / "kek.key"
    write_kek(inside, box.kek_file.read_text().strip())
    box.write_config(provider="file", file_path=inside)
    result = box.cli("keys", "verify")
    assert result.exit_code == 1
    assert "is inside data_dir" in result.output
    served = box.cli_subprocess("serve", "--port", "0", timeout=60)
    assert served.returncode == 1 and "is inside data_dir" in served.stderr


@sqlite_only
def test_systemd_provider_with_a_fake_credentials_directory(bare_box: Box, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    bare_box.write_config(provider="systemd", systemd_credential="vigatra-kek")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    unset = bare_box.cli("keys", "init")
    assert unset.exit_code == 1
    assert "$CREDENTIALS_DIRECTORY is not set (KEK unavailable)" in unset.output
    assert "systemd-creds encrypt" in unset.output

    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    missing = bare_box.cli("keys", "init")
    assert missing.exit_code == 1
    assert f"credential {creds / 'vigatra-kek'} does not exist (KEK unavailable)" in missing.output

    write_kek(creds / "vigatra-kek")
    done = bare_box.cli("keys", "init")
    assert done.exit_code == 0, done.output
    status = bare_box.cli("keys", "status")
    assert status.exit_code == 0, status.output
    assert "systemd provider: credential vigatra-kek" in status.output
    assert "KEK id:   systemd:" in status.output
    assert bare_box.cli("keys", "verify").exit_code == 0


def test_wrong_kek_fails_with_one_line_and_overwrites_nothing(box: Box) -> None:
    box.seed(box.service(), connections=2)
    rows = key_rows(box.store)
    write_kek(box.kek_file)  # a different, well-formed KEK
    for command in (["keys", "verify"], ["keys", "rotate"], ["keys", "status"], ["keys", "init"]):
        result = box.cli(*command)
        assert result.exit_code == 1, command
        assert "KEK unavailable" in result.output, command
        assert result.output.strip().splitlines()[-1].startswith("vigatra: "), command
    assert key_rows(box.store) == rows
    assert audit_actions(box.store) == []


def test_missing_kek_file_names_the_file(box: Box) -> None:
    box.kek_file.chmod(0o600)
    box.kek_file.unlink()
    result = box.cli("keys", "rotate")
    assert result.exit_code == 1
    assert result.output.strip() == f"vigatra: file provider: KEK file {box.kek_file} does not exist"


@sqlite_only
def test_hsm_unavailable_is_one_line_naming_the_provider(box: Box, tmp_path: Path) -> None:
    pin = tmp_path / "pin"
    write_kek(pin, "1234")
    box.write_config(provider="pkcs11", pkcs11_module=tmp_path / "no-such-libsofthsm2.so",
                     pkcs11_token_label="vigatra", pkcs11_key_label="k", pkcs11_pin_file=pin)
    for command in (["keys", "status"], ["keys", "verify"], ["keys", "rotate"]):
        result = box.cli(*command)
        assert result.exit_code == 1
        assert f"vigatra: pkcs11 provider: module {tmp_path / 'no-such-libsofthsm2.so'} does not exist" in result.output


def test_help_works_without_a_config(tmp_path: Path) -> None:
    from tests.keys.conftest import CLI

    result = subprocess.run([*CLI, "--config", str(tmp_path / "missing.yaml"), "keys", "rotate", "--help"],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0 and "--batch-size" in result.stdout


@sqlite_only
def test_init_with_pkcs11_creates_the_hsm_keys_once(bare_box: Box, token: Token) -> None:
    # A subprocess: SoftHSM2 reads SOFTHSM2_CONF once per process (see test_rewrap.py).
    bare_box.write_config(provider="pkcs11", pkcs11_module=token.module, pkcs11_token_label=token.label,
                          pkcs11_key_label="vigatra-kek-init", pkcs11_pin_file=token.pin_file)
    first = bare_box.cli_subprocess("keys", "init", env=token.env)
    assert first.returncode == 0, first.stderr
    assert "generated non-extractable AES-256 key 'vigatra-kek-init'" in first.stdout
    assert "created data key version 1 (active), wrapped under KEK pkcs11:" in first.stdout
    second = bare_box.cli_subprocess("keys", "init", env=token.env)
    assert second.returncode == 0 and "nothing was changed" in second.stdout
    assert [(v, s) for v, s, _w, _k in key_rows(bare_box.store)] == [(1, "active")]
    wrong_pin = bare_box.etc / "wrong.pin"
    write_kek(wrong_pin, "0000-wrong")
    bare_box.write_config(provider="pkcs11", pkcs11_module=token.module, pkcs11_token_label=token.label,
                          pkcs11_key_label="vigatra-kek-init", pkcs11_pin_file=wrong_pin)
    refused = bare_box.cli_subprocess("keys", "verify", env=token.env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"vigatra: pkcs11 provider: wrong PIN for token '{token.label}'"


@sqlite_only
def test_keyring_provider_refuses_the_plaintext_backend(bare_box: Box) -> None:
    bare_box.write_config(provider="keyring", keyring_service="vigatra-keys-test")
    result = bare_box.cli_subprocess("keys", "init", env={
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring", "XDG_DATA_HOME": str(bare_box.etc)})
    assert result.returncode == 1
    assert "refusing backend keyrings.alt.file.PlaintextKeyring: it stores secrets base64-encoded" in result.stderr
    assert key_rows(bare_box.store) == []


def test_rotate_stops_at_a_broken_value_naming_it_and_loses_nothing(box: Box) -> None:
    keys = box.service()
    seeded = box.seed(keys, connections=3)
    victim = seeded.connection_ids[1]
    with box.store.unit_of_work() as session:
        blob = session.execute(select(Connection.passphrase_sealed).where(Connection.id == victim)).scalar_one()
        session.execute(update(Connection).where(Connection.id == victim).values(passphrase_sealed=blob[:20]))
    result = box.cli("keys", "rotate", "--batch-size", "1")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"vigatra: sealed value connections.passphrase_sealed row {victim} is truncated (20 bytes)")
    verify = box.cli("keys", "verify")
    assert [ln.split(": ")[0] for ln in verify.output.splitlines() if ln.startswith("FAILED")] == [
        f"FAILED connections.passphrase_sealed row {victim}"]
    assert [(v, s) for v, s, _w, _k in key_rows(box.store)] == [(1, "retiring"), (2, "active")]
