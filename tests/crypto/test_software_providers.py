"""File, env and systemd key providers, and what all software providers share (wrap, derive, kek_id)."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.crypto import (
    EnvKeyProvider,
    FileKeyProvider,
    KeyringKeyProvider,
    Pkcs11KeyProvider,
    SystemdKeyProvider,
    generate_dek,
    provider_from_settings,
)
from appliance.errors import IntegrityFailure, KeyProviderError
from tests.crypto.conftest import make_settings, write_key_file

CONTEXT = b"vigatra-dek:1"


def file_provider(data_dir: Path, path: Path) -> FileKeyProvider:
    provider = provider_from_settings(make_settings(data_dir, provider="file", file_path=path))
    assert isinstance(provider, FileKeyProvider)
    return provider


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------
# Factory


def test_factory_builds_each_provider_without_touching_the_key(data_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "kek.key"
    expected = {"file": FileKeyProvider, "env": EnvKeyProvider, "systemd": SystemdKeyProvider,
                "keyring": KeyringKeyProvider, "pkcs11": Pkcs11KeyProvider}
    for kind, cls in expected.items():
        provider = provider_from_settings(make_settings(data_dir, provider=kind, file_path=missing,
                                                        pkcs11_module=tmp_path / "missing.so"))
        assert type(provider) is cls
        assert provider.name == kind
        assert kind in provider.describe()


def test_crypto_imports_no_framework_store_or_hsm_library() -> None:
    code = ("import sys, appliance.crypto; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('flask', 'click', 'sqlalchemy', 'pkcs11') "
            "or m.startswith('appliance.store')]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# File provider


def test_good_file_works(data_dir: Path, etc_dir: Path) -> None:
    path = etc_dir / "kek.key"
    raw = write_key_file(path)
    provider = file_provider(data_dir, path)
    provider.check()
    kek_id = provider.kek_id()
    assert kek_id.startswith("file:")
    assert len(kek_id.split(":")[1]) == 16
    assert raw.hex()[:16] not in kek_id
    dek = generate_dek()
    wrapped = provider.wrap(dek, context=CONTEXT)
    assert dek not in wrapped
    assert provider.unwrap(wrapped, context=CONTEXT) == dek
    assert str(path) in provider.describe()
    assert base64.b64encode(raw).decode() not in repr(provider) + provider.describe()


def test_mode_0600_is_accepted(data_dir: Path, etc_dir: Path) -> None:
    path = etc_dir / "kek.key"
    write_key_file(path, mode=0o600)
    file_provider(data_dir, path).check()


@pytest.mark.parametrize("mode", [0o644, 0o440, 0o604, 0o420, 0o402])
def test_group_or_world_access_is_refused(data_dir: Path, etc_dir: Path, mode: int) -> None:
    path = etc_dir / "kek.key"
    write_key_file(path, mode=mode)
    with pytest.raises(KeyProviderError) as info:
        file_provider(data_dir, path).check()
    message = one_line(info)
    assert str(path) in message
    assert f"{mode:04o}" in message
    assert message.startswith("file provider:")


def test_file_inside_data_dir_is_refused(data_dir: Path) -> None:
    path = data_dir / "kek.key"
    write_key_file(path)
    with pytest.raises(KeyProviderError) as info:
        file_provider(data_dir, path).check()
    message = one_line(info)
    assert str(path) in message
    assert "inside data_dir" in message


def test_file_reached_through_a_symlinked_dir_inside_data_dir_is_refused(data_dir: Path, etc_dir: Path) -> None:
    (data_dir / "keys").mkdir()
    write_key_file(data_dir / "keys" / "kek.key")
    (etc_dir / "link").symlink_to(data_dir / "keys")
    with pytest.raises(KeyProviderError, match="inside data_dir"):
        file_provider(data_dir, etc_dir / "link" / "kek.key").check()


@pytest.mark.parametrize("content", [
    # Fixed bytes, not random: xdist workers must collect identical parameter ids.
    "not base64 at all!", base64.b64encode(bytes(range(16))).decode(), base64.b64encode(bytes(range(33))).decode(), "",
])
def test_wrong_content_is_refused(data_dir: Path, etc_dir: Path, content: str) -> None:
    path = etc_dir / "kek.key"
    write_key_file(path, content=content)
    with pytest.raises(KeyProviderError) as info:
        file_provider(data_dir, path).check()
    message = one_line(info)
    assert str(path) in message
    assert "exactly 32 bytes" in message
    if content:
        assert content not in message


def test_missing_file_is_refused(data_dir: Path, etc_dir: Path) -> None:
    path = etc_dir / "absent.key"
    with pytest.raises(KeyProviderError) as info:
        file_provider(data_dir, path).check()
    assert str(path) in one_line(info)
    assert "does not exist" in str(info.value)


def test_symlink_is_refused(data_dir: Path, etc_dir: Path) -> None:
    real = etc_dir / "real.key"
    write_key_file(real)
    link = etc_dir / "kek.key"
    link.symlink_to(real)
    with pytest.raises(KeyProviderError, match="symbolic link") as info:
        file_provider(data_dir, link).check()
    assert str(link) in one_line(info)


def test_directory_is_refused(data_dir: Path, etc_dir: Path) -> None:
    path = etc_dir / "kek.key"
    path.mkdir(mode=0o700)
    with pytest.raises(KeyProviderError, match="not a regular file"):
        file_provider(data_dir, path).check()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_file_owned_by_another_user_is_refused(data_dir: Path, etc_dir: Path) -> None:
    path = etc_dir / "kek.key"
    write_key_file(path)
    os.chown(path, 65534, 65534)
    with pytest.raises(KeyProviderError) as info:
        file_provider(data_dir, path).check()
    message = one_line(info)
    assert str(path) in message
    assert "owned by uid 65534" in message


def test_create_writes_0400_and_refuses_to_overwrite(data_dir: Path, etc_dir: Path) -> None:
    path = etc_dir / "kek.key"
    provider = file_provider(data_dir, path)
    line = provider.create()
    assert str(path) in line
    assert "0400" in line
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert path.stat().st_uid == os.geteuid()
    assert len(base64.b64decode(path.read_text().strip(), validate=True)) == 32
    before = path.read_bytes()
    kek_id = provider.kek_id()
    with pytest.raises(KeyProviderError, match="already exists") as info:
        provider.create()
    assert str(path) in one_line(info)
    assert path.read_bytes() == before
    assert file_provider(data_dir, path).kek_id() == kek_id


def test_create_refuses_inside_data_dir_and_missing_directory(data_dir: Path, etc_dir: Path) -> None:
    with pytest.raises(KeyProviderError, match="inside data_dir"):
        file_provider(data_dir, data_dir / "kek.key").create()
    assert not (data_dir / "kek.key").exists()
    with pytest.raises(KeyProviderError, match="does not exist"):
        file_provider(data_dir, etc_dir / "missing" / "kek.key").create()


def test_create_refuses_a_dangling_symlink(data_dir: Path, etc_dir: Path) -> None:
    link = etc_dir / "kek.key"
    link.symlink_to(etc_dir / "target.key")
    with pytest.raises(KeyProviderError, match="already exists"):
        file_provider(data_dir, link).create()
    assert not (etc_dir / "target.key").exists()


# ---------------------------------------------------------------------------------------------
# Wrap / unwrap / derive (shared by the software providers)


@pytest.fixture
def provider(data_dir: Path, etc_dir: Path) -> FileKeyProvider:
    path = etc_dir / "kek.key"
    write_key_file(path)
    return file_provider(data_dir, path)


def test_wrap_is_randomised_and_context_bound(provider: FileKeyProvider) -> None:
    dek = generate_dek()
    a = provider.wrap(dek, context=CONTEXT)
    b = provider.wrap(dek, context=CONTEXT)
    assert a != b
    assert a[0] == 0x01
    assert len(a) == 1 + 8 + 12 + 32 + 16
    assert a[1:9].hex() == provider.kek_id().split(":")[1]
    with pytest.raises(IntegrityFailure, match="failed authentication"):
        provider.unwrap(a, context=b"vigatra-dek:2")


def test_every_bit_flip_of_a_wrapped_key_fails(provider: FileKeyProvider) -> None:
    wrapped = provider.wrap(generate_dek(), context=CONTEXT)
    for index in range(len(wrapped)):
        for bit in range(8):
            tampered = bytearray(wrapped)
            tampered[index] ^= 1 << bit
            with pytest.raises((IntegrityFailure, KeyProviderError)):
                provider.unwrap(bytes(tampered), context=CONTEXT)


def test_truncated_or_unknown_format_wrapped_key(provider: FileKeyProvider) -> None:
    wrapped = provider.wrap(generate_dek(), context=CONTEXT)
    with pytest.raises(IntegrityFailure, match="truncated"):
        provider.unwrap(wrapped[:-1], context=CONTEXT)
    with pytest.raises(IntegrityFailure, match="unknown format 0x07"):
        provider.unwrap(b"\x07" + wrapped[1:], context=CONTEXT)
    with pytest.raises(KeyProviderError, match="pkcs11 provider"):
        provider.unwrap(b"\x02" + wrapped[1:], context=CONTEXT)


def test_another_kek_reports_kek_unavailable(provider: FileKeyProvider, data_dir: Path, etc_dir: Path) -> None:
    wrapped = provider.wrap(generate_dek(), context=CONTEXT)
    other_path = etc_dir / "other.key"
    write_key_file(other_path)
    other = file_provider(data_dir, other_path)
    with pytest.raises(KeyProviderError, match="KEK unavailable") as info:
        other.unwrap(wrapped, context=CONTEXT)
    assert other.kek_id() in str(info.value)


def test_derive_is_deterministic_per_kek_and_label(provider: FileKeyProvider, data_dir: Path,
                                                   etc_dir: Path) -> None:
    seed = provider.derive("audit-signing")
    assert len(seed) == 32
    assert provider.derive("audit-signing") == seed
    assert provider.derive("jwt-hmac") != seed
    assert file_provider(data_dir, etc_dir / "kek.key").derive("audit-signing") == seed
    other_path = etc_dir / "other.key"
    write_key_file(other_path)
    assert file_provider(data_dir, other_path).derive("audit-signing") != seed
    with pytest.raises(ValueError, match="label"):
        provider.derive("")


def test_wrap_validates_arguments(provider: FileKeyProvider) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        provider.wrap(b"short", context=CONTEXT)
    with pytest.raises(ValueError, match="context"):
        provider.wrap(generate_dek(), context=b"")


def test_the_same_kek_opens_across_software_providers(provider: FileKeyProvider, data_dir: Path,
                                                       etc_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    dek = generate_dek()
    wrapped = provider.wrap(dek, context=CONTEXT)
    text = (etc_dir / "kek.key").read_text()
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "vigatra-kek").write_text(text)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("VIGATRA_KEK", text.strip())
    for kind in ("env", "systemd"):
        moved = provider_from_settings(make_settings(data_dir, provider=kind))
        assert moved.unwrap(wrapped, context=CONTEXT) == dek
        assert moved.derive("audit-signing") == provider.derive("audit-signing")
        assert moved.kek_id() == f"{kind}:{provider.kek_id().split(':')[1]}"


# ---------------------------------------------------------------------------------------------
# Env provider


def test_env_provider(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(data_dir, provider="env", env_var="TEST_VIGATRA_KEK")
    monkeypatch.delenv("TEST_VIGATRA_KEK", raising=False)
    with pytest.raises(KeyProviderError, match="TEST_VIGATRA_KEK is not set") as info:
        provider_from_settings(settings).check()
    one_line(info)
    monkeypatch.setenv("TEST_VIGATRA_KEK", "c2hvcnQ=")
    with pytest.raises(KeyProviderError, match="TEST_VIGATRA_KEK does not hold a KEK") as info:
        provider_from_settings(settings).check()
    assert "c2hvcnQ=" not in str(info.value)
    monkeypatch.setenv("TEST_VIGATRA_KEK", base64.b64encode(os.urandom(32)).decode())
    provider = provider_from_settings(settings)
    assert provider.kek_id().startswith("env:")
    dek = generate_dek()
    assert provider.unwrap(provider.wrap(dek, context=CONTEXT), context=CONTEXT) == dek
    with pytest.raises(KeyProviderError, match="cannot create"):
        provider.create()


# ---------------------------------------------------------------------------------------------
# systemd provider


def test_systemd_provider_with_a_fake_credentials_directory(data_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(data_dir, provider="systemd", systemd_credential="vigatra-kek")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(KeyProviderError, match=r"\$CREDENTIALS_DIRECTORY is not set") as info:
        provider_from_settings(settings).check()
    assert "LoadCredentialEncrypted=vigatra-kek" in one_line(info)

    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o500)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with pytest.raises(KeyProviderError, match="does not exist") as info:
        provider_from_settings(settings).check()
    assert str(creds / "vigatra-kek") in one_line(info)

    creds.chmod(0o700)
    write_key_file(creds / "vigatra-kek", content="garbage")
    with pytest.raises(KeyProviderError, match="does not hold a KEK"):
        provider_from_settings(settings).check()

    (creds / "vigatra-kek").chmod(0o600)
    write_key_file(creds / "vigatra-kek")
    provider = provider_from_settings(settings)
    provider.check()
    assert provider.kek_id().startswith("systemd:")
    dek = generate_dek()
    assert provider.unwrap(provider.wrap(dek, context=CONTEXT), context=CONTEXT) == dek
    with pytest.raises(KeyProviderError, match="systemd-creds encrypt"):
        provider.create()


def test_systemd_credential_name_cannot_escape_the_directory(data_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = make_settings(data_dir, provider="systemd", systemd_credential="../etc/kek")
    with pytest.raises(KeyProviderError, match="not a valid credential name"):
        provider_from_settings(settings).check()
