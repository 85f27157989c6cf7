"""The PKCS#11 provider against a real SoftHSM2 token (no mocks): keys stay inside, errors are one line."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.crypto import FileKeyProvider, Pkcs11KeyProvider, generate_dek, provider_from_settings
from appliance.crypto.kek import KeyProvider
from appliance.errors import IntegrityFailure, KeyProviderError
from tests.crypto.conftest import SoftHsm, make_settings, write_key_file

CONTEXT = b"vigatra-dek:1"
Closing = Callable[[KeyProvider], KeyProvider]


@pytest.fixture
def pin_file(tmp_path: Path, softhsm: SoftHsm) -> Path:
    path = tmp_path / "pin"
    path.write_text(softhsm.pin + "\n")
    path.chmod(0o400)
    return path


@pytest.fixture
def hsm_provider(softhsm: SoftHsm, data_dir: Path, pin_file: Path, closing: Closing) -> Pkcs11KeyProvider:
    provider = provider_from_settings(softhsm.settings(data_dir, pin_file))
    assert isinstance(provider, Pkcs11KeyProvider)
    closing(provider)
    provider.create()
    return provider


@pytest.fixture
def test_session(softhsm: SoftHsm) -> Iterator[object]:
    """A session of the test's own, to inspect objects the provider created."""
    import pkcs11
    from pkcs11 import exceptions as px

    token = pkcs11.lib(str(softhsm.module)).get_token(token_label=softhsm.token_label)
    try:
        session = token.open(user_pin=softhsm.pin, rw=True)
    except px.UserAlreadyLoggedIn:
        session = token.open(rw=True)
    yield session
    session.close()


def test_create_wrap_unwrap_derive(hsm_provider: Pkcs11KeyProvider) -> None:
    dek = generate_dek()
    wrapped = hsm_provider.wrap(dek, context=CONTEXT)
    assert wrapped[0] == 0x02
    assert len(wrapped) == 1 + 8 + 12 + 32 + 16
    assert dek not in wrapped
    assert hsm_provider.wrap(dek, context=CONTEXT) != wrapped
    assert hsm_provider.unwrap(wrapped, context=CONTEXT) == dek
    with pytest.raises(IntegrityFailure, match="failed authentication"):
        hsm_provider.unwrap(wrapped, context=b"vigatra-dek:2")
    tampered = bytearray(wrapped)
    tampered[-5] ^= 0x10
    with pytest.raises(IntegrityFailure):
        hsm_provider.unwrap(bytes(tampered), context=CONTEXT)
    with pytest.raises(IntegrityFailure, match="truncated"):
        hsm_provider.unwrap(wrapped[:30], context=CONTEXT)

    seed = hsm_provider.derive("audit-signing")
    assert len(seed) == 32
    assert hsm_provider.derive("audit-signing") == seed
    assert hsm_provider.derive("jwt-hmac") != seed
    kek_id = hsm_provider.kek_id()
    assert kek_id.startswith("pkcs11:")
    assert len(kek_id.split(":")[1]) == 16
    assert wrapped[1:9].hex() == kek_id.split(":")[1]


def test_a_new_process_view_gets_the_same_keys(hsm_provider: Pkcs11KeyProvider, softhsm: SoftHsm,
                                               data_dir: Path, pin_file: Path, closing: Closing) -> None:
    dek = generate_dek()
    wrapped = hsm_provider.wrap(dek, context=CONTEXT)
    seed = hsm_provider.derive("audit-signing")
    kek_id = hsm_provider.kek_id()
    hsm_provider.close()
    again = closing(provider_from_settings(softhsm.settings(data_dir, pin_file, key_label=hsm_provider.key_label)))
    again.check()
    assert again.kek_id() == kek_id
    assert again.derive("audit-signing") == seed
    assert again.unwrap(wrapped, context=CONTEXT) == dek


def test_keys_are_non_extractable_and_sensitive(hsm_provider: Pkcs11KeyProvider, test_session: object) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass

    session: pkcs11.Session = test_session  # type: ignore[assignment]
    for label, key_type in ((hsm_provider.key_label, KeyType.AES), (hsm_provider.derive_label,
                                                                     KeyType.GENERIC_SECRET)):
        key = session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=key_type, label=label)
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        assert key[Attribute.TOKEN] is True
        assert key[Attribute.PRIVATE] is True
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[Attribute.VALUE]
    kek = session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=hsm_provider.key_label)
    assert kek[Attribute.VALUE_LEN] == 32
    # Nor can it be exported wrapped under a key we control.
    exporter = session.generate_key(KeyType.AES, 256, label="test-exporter", template={
        Attribute.WRAP: True, Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False})
    with pytest.raises(pkcs11.exceptions.KeyUnextractable):
        exporter.wrap_key(kek, mechanism=pkcs11.Mechanism.AES_KEY_WRAP)  # type: ignore[attr-defined]


def test_create_refuses_when_keys_exist(hsm_provider: Pkcs11KeyProvider) -> None:
    with pytest.raises(KeyProviderError, match="already exists") as info:
        hsm_provider.create()
    assert hsm_provider.key_label in str(info.value)
    assert hsm_provider.kek_id().startswith("pkcs11:")  # the existing key still works


def test_blobs_of_another_kek_or_provider_are_kek_unavailable(*, hsm_provider: Pkcs11KeyProvider,
                                                              softhsm: SoftHsm, data_dir: Path, pin_file: Path,
                                                              etc_dir: Path, closing: Closing) -> None:
    other = closing(provider_from_settings(softhsm.settings(data_dir, pin_file)))
    other.create()
    wrapped = other.wrap(generate_dek(), context=CONTEXT)
    with pytest.raises(KeyProviderError, match="KEK unavailable"):
        hsm_provider.unwrap(wrapped, context=CONTEXT)

    key_file = etc_dir / "kek.key"
    write_key_file(key_file)
    software = FileKeyProvider(make_settings(data_dir, file_path=key_file))
    with pytest.raises(KeyProviderError, match=r"KEK unavailable.*software provider"):
        hsm_provider.unwrap(software.wrap(generate_dek(), context=CONTEXT), context=CONTEXT)
    with pytest.raises(KeyProviderError, match=r"KEK unavailable.*pkcs11"):
        software.unwrap(hsm_provider.wrap(generate_dek(), context=CONTEXT), context=CONTEXT)


def test_concurrent_use_from_threads(hsm_provider: Pkcs11KeyProvider) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                dek = generate_dek()
                assert hsm_provider.unwrap(hsm_provider.wrap(dek, context=CONTEXT), context=CONTEXT) == dek
                assert len(hsm_provider.derive("x")) == 32
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_wrong_pin(softhsm: SoftHsm, data_dir: Path, tmp_path: Path, closing: Closing) -> None:
    bad = tmp_path / "bad-pin"
    bad.write_text("not-the-pin")
    bad.chmod(0o400)
    provider = closing(provider_from_settings(softhsm.settings(data_dir, bad)))
    with pytest.raises(KeyProviderError) as info:
        provider.check()
    message = str(info.value)
    assert message == f"pkcs11 provider: wrong PIN for token {softhsm.token_label!r}"
    assert "not-the-pin" not in message


def test_pin_file_readable_by_others_is_refused(softhsm: SoftHsm, data_dir: Path, pin_file: Path,
                                                closing: Closing) -> None:
    pin_file.chmod(0o644)
    provider = closing(provider_from_settings(softhsm.settings(data_dir, pin_file)))
    with pytest.raises(KeyProviderError, match=r"PIN file .* has mode 0644") as info:
        provider.check()
    assert str(pin_file) in str(info.value)


def test_pin_from_the_systemd_credential(softhsm: SoftHsm, data_dir: Path, tmp_path: Path, closing: Closing,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "vigatra-pkcs11-pin").write_text(softhsm.pin)
    settings = make_settings(data_dir, provider="pkcs11", pkcs11_module=softhsm.module,
                             pkcs11_token_label=softhsm.token_label, pkcs11_key_label="kek-from-credential")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    provider = closing(provider_from_settings(settings))
    with pytest.raises(KeyProviderError, match="no PIN"):
        provider.check()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    provider.create()
    provider.check()
    assert provider.kek_id().startswith("pkcs11:")


def test_missing_module(softhsm: SoftHsm, data_dir: Path, pin_file: Path, tmp_path: Path, closing: Closing) -> None:
    missing = tmp_path / "libnothing.so"
    provider = closing(provider_from_settings(softhsm.settings(data_dir, pin_file, pkcs11_module=missing)))
    with pytest.raises(KeyProviderError) as info:
        provider.check()
    assert str(info.value) == f"pkcs11 provider: module {missing} does not exist (keys.pkcs11_module)"


def test_module_that_is_not_pkcs11(softhsm: SoftHsm, data_dir: Path, pin_file: Path, tmp_path: Path,
                                   closing: Closing) -> None:
    bogus = tmp_path / "bogus.so"
    bogus.write_bytes(b"not an ELF file")
    provider = closing(provider_from_settings(softhsm.settings(data_dir, pin_file, pkcs11_module=bogus)))
    with pytest.raises(KeyProviderError, match=f"cannot load module {bogus}"):
        provider.check()


def test_missing_token_and_missing_key(softhsm: SoftHsm, data_dir: Path, pin_file: Path, closing: Closing) -> None:
    no_token = closing(provider_from_settings(softhsm.settings(data_dir, pin_file, pkcs11_token_label="absent")))
    with pytest.raises(KeyProviderError, match=r"no token labelled 'absent'.*HSM unavailable"):
        no_token.check()
    no_key = closing(provider_from_settings(softhsm.settings(data_dir, pin_file, key_label="never-created")))
    with pytest.raises(KeyProviderError, match=r"key 'never-created' not found.*KEK unavailable") as info:
        no_key.check()
    assert "\n" not in str(info.value)


def test_extractable_key_is_refused(softhsm: SoftHsm, data_dir: Path, pin_file: Path, closing: Closing,
                                    test_session: object) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType

    session: pkcs11.Session = test_session  # type: ignore[assignment]
    session.generate_key(KeyType.AES, 256, label="weak-kek", store=True,
                         template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False})
    session.generate_key(KeyType.GENERIC_SECRET, 256, label="weak-kek-derive", store=True,
                         template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True})
    provider = closing(provider_from_settings(softhsm.settings(data_dir, pin_file, key_label="weak-kek")))
    with pytest.raises(KeyProviderError, match=r"'weak-kek' .* is extractable or not sensitive"):
        provider.check()


def test_describe_and_repr_name_the_token_only(hsm_provider: Pkcs11KeyProvider, softhsm: SoftHsm) -> None:
    text = hsm_provider.describe() + repr(hsm_provider)
    assert softhsm.token_label in text
    assert hsm_provider.key_label in text
    assert softhsm.pin not in text
    assert os.fspath(softhsm.module) in text


def test_a_lost_session_is_reopened_once(hsm_provider: Pkcs11KeyProvider) -> None:
    dek = generate_dek()
    wrapped = hsm_provider.wrap(dek, context=CONTEXT)
    handles = hsm_provider._handles
    assert handles is not None
    handles.session.close()  # as if the HSM had restarted under us
    assert hsm_provider.unwrap(wrapped, context=CONTEXT) == dek
    assert hsm_provider._handles is not handles
