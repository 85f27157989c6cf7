"""The keyring provider accepts only real backends (SECURITY.md: refuse PlaintextKeyring, fail, null, priority < 1)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.errors import NoKeyringError, PasswordDeleteError
from keyrings.alt.file import PlaintextKeyring

from appliance.crypto import KeyringKeyProvider, generate_dek, provider_from_settings
from appliance.errors import KeyProviderError
from tests.crypto.conftest import make_settings


class MemoryKeyring(KeyringBackend):
    """A test-local backend that keyring would recommend (priority >= 1)."""

    priority = 5

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


class LowPriorityKeyring(MemoryKeyring):
    priority = 0.9  # type: ignore[assignment]


class BrokenKeyring(MemoryKeyring):
    def get_password(self, service: str, username: str) -> str | None:
        raise NoKeyringError("no backend")


class MemoryAndPlaintextChain(chainer.ChainerBackend):
    backends: Any = [MemoryKeyring(), PlaintextKeyring()]


@pytest.fixture(autouse=True)
def _restore_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # PlaintextKeyring must not touch $HOME
    original = keyring.get_keyring()
    yield
    keyring.set_keyring(original)


@pytest.fixture(scope="module", autouse=True)
def _unregister_test_backends() -> Iterator[None]:
    yield
    # keyring registers every backend class for discovery; keep ours out of later tests.
    registry: set[type] = getattr(KeyringBackend, "_classes", set())
    for cls in (MemoryKeyring, LowPriorityKeyring, BrokenKeyring, MemoryAndPlaintextChain):
        registry.discard(cls)


@pytest.fixture
def provider(data_dir: Path) -> KeyringKeyProvider:
    result = provider_from_settings(make_settings(data_dir, provider="keyring", keyring_service="vigatra-test",
                                                  keyring_username="kek"))
    assert isinstance(result, KeyringKeyProvider)
    return result


def refusal(provider: KeyringKeyProvider) -> str:
    with pytest.raises(KeyProviderError) as info:
        provider.check()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("keyring provider: refusing backend")
    return message


def test_plaintext_keyring_is_refused_by_name(provider: KeyringKeyProvider, tmp_path: Path) -> None:
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "plaintext.cfg")
    keyring.set_keyring(backend)
    message = refusal(provider)
    assert "keyrings.alt.file.PlaintextKeyring" in message
    assert "plain file" in message
    with pytest.raises(KeyProviderError, match="PlaintextKeyring"):
        provider.create()
    assert not (tmp_path / "plaintext.cfg").exists()


def test_fail_and_null_keyrings_are_refused(provider: KeyringKeyProvider) -> None:
    keyring.set_keyring(fail.Keyring())
    assert "keyring.backends.fail.Keyring" in refusal(provider)
    keyring.set_keyring(null.Keyring())
    assert "keyring.backends.null.Keyring" in refusal(provider)


def test_low_priority_backend_is_refused(provider: KeyringKeyProvider) -> None:
    keyring.set_keyring(LowPriorityKeyring())
    message = refusal(provider)
    assert "LowPriorityKeyring" in message
    assert "priority 0.9" in message


def test_chain_containing_plaintext_is_refused(provider: KeyringKeyProvider) -> None:
    keyring.set_keyring(MemoryAndPlaintextChain())
    message = refusal(provider)
    assert "MemoryAndPlaintextChain" in message
    assert "PlaintextKeyring" in message


def test_no_keyring_error_is_one_clear_line(provider: KeyringKeyProvider) -> None:
    keyring.set_keyring(BrokenKeyring())
    with pytest.raises(KeyProviderError, match="no keyring backend is available") as info:
        provider.check()
    assert "\n" not in str(info.value)


def test_real_backend_works(provider: KeyringKeyProvider, data_dir: Path) -> None:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    with pytest.raises(KeyProviderError, match="does not exist"):
        provider.check()
    line = provider.create()
    assert "MemoryKeyring" in line
    stored = backend.entries[("vigatra-test", "kek")]
    assert len(base64.b64decode(stored, validate=True)) == 32
    assert stored not in line
    provider.check()
    assert provider.kek_id().startswith("keyring:")
    dek = generate_dek()
    assert provider.unwrap(provider.wrap(dek, context=b"dek:1"), context=b"dek:1") == dek
    with pytest.raises(KeyProviderError, match="already exists"):
        provider.create()
    assert backend.entries[("vigatra-test", "kek")] == stored


def test_malformed_entry_is_refused(provider: KeyringKeyProvider) -> None:
    backend = MemoryKeyring()
    backend.set_password("vigatra-test", "kek", base64.b64encode(os.urandom(8)).decode())
    keyring.set_keyring(backend)
    with pytest.raises(KeyProviderError, match="exactly 32 bytes"):
        provider.check()
