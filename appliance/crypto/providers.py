"""Key providers: where the KEK comes from, and the only code that ever holds it.

SECURITY.md ranks them: PKCS#11 HSM (hsm.py, the key never leaves the token), systemd
``LoadCredentialEncrypted=``, a 0400 file outside the data dir, the environment, and the OS keyring
(refused on headless servers where it would silently fall back to a plaintext file).

The four software providers share one implementation (:class:`SoftwareKeyProvider`): the KEK is
32 random bytes, stored base64-encoded. Nothing uses those bytes directly; HKDF-SHA256 derives
a separate key per purpose (wrapping, the fingerprint behind ``kek_id()``, each ``derive()``
label), so one key is never used by two algorithms. Because the derivation is the same for all
four, moving the same KEK from a file into a systemd credential needs no rewrap.

Every failure to obtain a key is a :class:`KeyProviderError` whose message is one line naming the
provider and the file, variable or backend, never the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import threading
from abc import abstractmethod
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.crypto.hsm import Pkcs11KeyProvider
from appliance.crypto.kek import (
    DEK_LEN,
    DERIVED_LEN,
    INFO_KEK_ID,
    INFO_WRAP,
    KEK_FINGERPRINT_LEN,
    KEK_UNAVAILABLE,
    WRAP_FORMAT_SOFTWARE,
    KeyProvider,
    check_context,
    check_dek,
    check_label,
    check_secret_name,
    new_nonce,
    pack_wrapped,
    read_protected_file,
    secret_text,
    tag_failure,
    unpack_wrapped,
    wrap_aad,
)
from appliance.errors import KeyProviderError
from appliance.settings import SECRET_ENV_PREFIX, Settings

__all__ = [
    "EnvKeyProvider",
    "FileKeyProvider",
    "KeyProvider",
    "KeyringKeyProvider",
    "Pkcs11KeyProvider",
    "SoftwareKeyProvider",
    "SystemdKeyProvider",
    "provider_from_settings",
]

log = logging.getLogger(__name__)

KEK_LEN = 32
_HKDF_SALT = b"vigatra-kek-v1"
_GENERATE_HINT = "head -c 32 /dev/urandom | base64"


def provider_from_settings(settings: Settings) -> KeyProvider:
    """The provider ``keys.provider`` names. Touches no key: call ``check()`` to load it."""
    kind = settings.keys.provider
    providers: dict[str, type[KeyProvider]] = {
        "file": FileKeyProvider,
        "env": EnvKeyProvider,
        "systemd": SystemdKeyProvider,
        "keyring": KeyringKeyProvider,
        "pkcs11": Pkcs11KeyProvider,
    }
    if kind not in providers:  # settings validate the Literal; this guards hand-built Settings
        raise KeyProviderError(f"unknown key provider {kind!r} (known: {', '.join(providers)})")
    return providers[kind](settings)


def parse_kek(text: bytes | str, *, where: str) -> bytes:
    """Decode the stored form of a software KEK: base64 of exactly 32 bytes, surrounding whitespace allowed."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    try:
        kek = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        kek = b""
    if len(kek) != KEK_LEN:
        raise KeyProviderError(f"{where} does not hold a KEK: expected base64 of exactly {KEK_LEN} bytes "
                               f"(generate one with `{_GENERATE_HINT}`)")
    return kek


def new_kek_text() -> str:
    return base64.b64encode(os.urandom(KEK_LEN)).decode("ascii")


class _Material:
    """Keys derived from one software KEK. Holds the KEK because derive() needs it; no repr of it."""

    __slots__ = ("_kek", "fingerprint", "wrapper")

    def __init__(self, kek: bytes) -> None:
        self._kek = kek
        self.wrapper = AESGCM(self._hkdf(INFO_WRAP))
        self.fingerprint = hashlib.sha256(self._hkdf(INFO_KEK_ID)).digest()[:KEK_FINGERPRINT_LEN]

    def _hkdf(self, info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=DERIVED_LEN, salt=_HKDF_SALT, info=info).derive(self._kek)

    def derive(self, info: bytes) -> bytes:
        return self._hkdf(info)

    def __repr__(self) -> str:
        return "<KEK material>"


class SoftwareKeyProvider(KeyProvider):
    """A KEK held as bytes by this process. Subclasses only say where the base64 text comes from."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._lock = threading.Lock()
        self._material: _Material | None = None

    @abstractmethod
    def _load(self) -> bytes:
        """Return the raw 32-byte KEK or raise KeyProviderError naming the source."""

    def check(self) -> None:
        material = _Material(self._load())
        with self._lock:
            self._material = material

    def close(self) -> None:
        with self._lock:
            self._material = None

    def _keys(self) -> _Material:
        with self._lock:
            material = self._material
        if material is None:
            self.check()
            with self._lock:
                material = self._material
        if material is None:  # closed by another thread between check() and here
            raise KeyProviderError(f"{self.name} provider: {KEK_UNAVAILABLE} (the provider was closed)")
        return material

    def kek_id(self) -> str:
        return f"{self.name}:{self._keys().fingerprint.hex()}"

    def wrap(self, dek: bytes, *, context: bytes) -> bytes:
        check_dek(dek)
        check_context(context)
        keys = self._keys()
        nonce = new_nonce()
        aad = wrap_aad(WRAP_FORMAT_SOFTWARE, keys.fingerprint, context)
        return pack_wrapped(WRAP_FORMAT_SOFTWARE, keys.fingerprint, nonce, keys.wrapper.encrypt(nonce, dek, aad))

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        check_context(context)
        keys = self._keys()
        parts = unpack_wrapped(wrapped, fmt=WRAP_FORMAT_SOFTWARE, provider=self.name,
                               kek_id=f"{self.name}:{keys.fingerprint.hex()}", context=context)
        try:
            dek = keys.wrapper.decrypt(parts.nonce, parts.ciphertext,
                                       wrap_aad(WRAP_FORMAT_SOFTWARE, parts.fingerprint, context))
        except InvalidTag:
            raise tag_failure(context) from None
        if len(dek) != DEK_LEN:
            raise tag_failure(context)
        return dek

    def derive(self, label: str) -> bytes:
        return self._keys().derive(check_label(label))


# ---------------------------------------------------------------------------------------------


def _inside(path: Path, directory: Path) -> bool:
    resolved = Path(os.path.realpath(path))
    base = Path(os.path.realpath(directory))
    return resolved == base or resolved.is_relative_to(base)


class FileKeyProvider(SoftwareKeyProvider):
    """A file outside the data dir, owned by the service user, mode 0400 (SECURITY.md)."""

    name = "file"

    @property
    def path(self) -> Path:
        return self.settings.keys.file_path

    def describe(self) -> str:
        return f"file provider: KEK file {self.path}"

    def _refuse_data_dir(self) -> None:
        # A backup of the data dir must not carry the key that decrypts it.
        if _inside(self.path, self.settings.data_dir):
            raise KeyProviderError(f"file provider: KEK file {self.path} is inside data_dir {self.settings.data_dir}; "
                                   "keep it outside so backups of the data do not carry the key")

    def _load(self) -> bytes:
        self._refuse_data_dir()
        content = read_protected_file(self.path, provider=self.name, what="KEK file")
        return parse_kek(content, where=f"file provider: KEK file {self.path}")

    def create(self) -> str:
        self._refuse_data_dir()
        path = self.path
        if os.path.lexists(path):
            raise KeyProviderError(f"file provider: KEK file {path} already exists; refusing to overwrite it "
                                   "(the data keys wrapped under it would be lost)")
        if not path.parent.is_dir():
            raise KeyProviderError(f"file provider: directory {path.parent} for the KEK file does not exist")
        text = new_kek_text()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
        except FileExistsError:
            raise KeyProviderError(f"file provider: KEK file {path} already exists; refusing to overwrite it") from None
        except OSError as exc:
            raise KeyProviderError(f"file provider: cannot create KEK file {path}: {exc.strerror}") from None
        try:
            os.fchmod(fd, 0o400)  # the umask may only have narrowed it; make it exact
            os.write(fd, (text + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(path.parent)
        self.close()
        return (f"file provider: wrote a new KEK to {path} (mode 0400, owner uid {os.geteuid()}); "
                "back it up offline: without it the database cannot be decrypted")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the file itself was synced
    finally:
        os.close(fd)


class EnvKeyProvider(SoftwareKeyProvider):
    """The weakest provider: children inherit it and `systemctl show` displays it if set in the unit."""

    name = "env"

    @property
    def variable(self) -> str:
        return self.settings.keys.env_var

    def describe(self) -> str:
        return f"env provider: environment variable {self.variable} (weakest: inherited by child processes)"

    def _load(self) -> bytes:
        value = os.environ.get(self.variable)
        if not value:
            raise KeyProviderError(f"env provider: environment variable {self.variable} is not set ({KEK_UNAVAILABLE})")
        return parse_kek(value, where=f"env provider: environment variable {self.variable}")

    def secret(self, name: str) -> str:
        """``VIGATRA_SECRET_<NAME>`` (upper case, ``-`` and ``.`` as ``_``), like the KEK: the weakest store."""
        check_secret_name(name)
        variable = SECRET_ENV_PREFIX + name.upper().replace("-", "_").replace(".", "_")
        value = os.environ.get(variable)
        if not value:
            raise KeyProviderError(f"env provider: environment variable {variable} is not set")
        return secret_text(value.encode("utf-8"), f"env provider: environment variable {variable}")

    def create(self) -> str:
        raise KeyProviderError(f"env provider cannot create the KEK: generate one with `{_GENERATE_HINT}`, "
                               f"put it in {self.variable} in the service environment and keep a copy offline")


class SystemdKeyProvider(SoftwareKeyProvider):
    """``LoadCredentialEncrypted=``: systemd decrypts the credential (TPM2/host key) into a ramfs."""

    name = "systemd"

    @property
    def credential(self) -> str:
        return self.settings.keys.systemd_credential

    def describe(self) -> str:
        return f"systemd provider: credential {self.credential} in $CREDENTIALS_DIRECTORY"

    def _load(self) -> bytes:
        name = self.credential
        if not name or "/" in name or name in (".", ".."):
            raise KeyProviderError(f"systemd provider: {name!r} is not a valid credential name")
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise KeyProviderError(
                f"systemd provider: $CREDENTIALS_DIRECTORY is not set ({KEK_UNAVAILABLE}); run under systemd "
                f"with `LoadCredentialEncrypted={name}` in the unit")
        path = Path(directory) / name
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            raise KeyProviderError(f"systemd provider: credential {path} does not exist ({KEK_UNAVAILABLE}); "
                                   f"add `LoadCredentialEncrypted={name}` to the unit") from None
        except OSError as exc:
            raise KeyProviderError(f"systemd provider: cannot read credential {path}: {exc.strerror}") from None
        return parse_kek(content, where=f"systemd provider: credential {path}")

    def create(self) -> str:
        name = self.credential
        raise KeyProviderError(
            f"systemd provider cannot create the KEK: as root run `{_GENERATE_HINT} | systemd-creds encrypt "
            f"--name={name} - /etc/credstore.encrypted/{name}`, add `LoadCredentialEncrypted={name}` to the unit "
            "and keep an offline copy of the plaintext key")


# ---------------------------------------------------------------------------------------------
# keyring


def _backend_name(backend: Any) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def keyring_refusal(backend: Any) -> str | None:
    """Why this keyring backend may not hold the KEK, or None if it may (SECURITY.md)."""
    cls = type(backend)
    if cls.__name__ == "PlaintextKeyring":
        return "it stores secrets base64-encoded in a plain file"
    if cls.__name__ == "Keyring" and cls.__module__ in ("keyring.backends.fail", "keyring.backends.null"):
        return "it is the placeholder keyring used when no real backend exists"
    try:
        priority = float(backend.priority)
    except Exception as exc:  # noqa: BLE001 - a backend signals "not viable" by raising from priority
        return f"it is not usable here ({type(exc).__name__})"
    if priority < 1:
        return f"its priority {priority:g} is below 1, i.e. keyring itself does not recommend it"
    return None


class KeyringKeyProvider(SoftwareKeyProvider):
    """The `keyring` library, only with a real backend (a desktop Secret Service, macOS Keychain...)."""

    name = "keyring"

    def describe(self) -> str:
        keys = self.settings.keys
        return f"keyring provider: service {keys.keyring_service!r}, entry {keys.keyring_username!r}"

    def _backend(self) -> Any:
        import keyring
        from keyring.backends.chainer import ChainerBackend

        try:
            backend = keyring.get_keyring()
        except Exception as exc:  # noqa: BLE001 - third-party backends raise anything while initialising
            raise KeyProviderError(
                f"keyring provider: no keyring backend could be loaded ({type(exc).__name__})") from None
        why = keyring_refusal(backend)
        if why is not None:
            raise KeyProviderError(f"keyring provider: refusing backend {_backend_name(backend)}: {why}; "
                                   "install a real keyring backend or choose another keys.provider")
        if isinstance(backend, ChainerBackend):
            # A chain answers from whichever member has the entry, so every member must be acceptable.
            for member in backend.backends:
                why = keyring_refusal(member)
                if why is not None:
                    raise KeyProviderError(
                        f"keyring provider: refusing backend {_backend_name(backend)}: it chains "
                        f"{_backend_name(member)} and {why}; set PYTHON_KEYRING_BACKEND to a real backend")
        return backend

    def _load(self) -> bytes:
        from keyring.errors import KeyringError, NoKeyringError

        backend = self._backend()
        keys = self.settings.keys
        where = f"keyring provider: entry {keys.keyring_service}/{keys.keyring_username} in {_backend_name(backend)}"
        try:
            value = backend.get_password(keys.keyring_service, keys.keyring_username)
        except NoKeyringError:
            raise KeyProviderError(f"keyring provider: no keyring backend is available ({KEK_UNAVAILABLE})") from None
        except KeyringError as exc:
            raise KeyProviderError(f"{where} cannot be read ({type(exc).__name__})") from None
        except Exception as exc:  # noqa: BLE001 - D-Bus and OS backends raise their own types
            raise KeyProviderError(f"{where} cannot be read ({type(exc).__name__})") from None
        if value is None:
            raise KeyProviderError(f"{where} does not exist ({KEK_UNAVAILABLE}); run `vigatra keys init`")
        return parse_kek(value, where=where)

    def secret(self, name: str) -> str:
        """The keyring entry ``name`` of the appliance's keyring service."""
        check_secret_name(name)
        backend = self._backend()
        where = f"keyring provider: entry {self.settings.keys.keyring_service}/{name} in {_backend_name(backend)}"
        try:
            value = backend.get_password(self.settings.keys.keyring_service, name)
        except Exception as exc:  # noqa: BLE001 - D-Bus and OS backends raise their own types
            raise KeyProviderError(f"{where} cannot be read ({type(exc).__name__})") from None
        if value is None:
            raise KeyProviderError(f"{where} does not exist")
        return secret_text(value.encode("utf-8"), where)

    def create(self) -> str:
        from keyring.errors import NoKeyringError

        backend = self._backend()
        keys = self.settings.keys
        where = f"keyring provider: entry {keys.keyring_service}/{keys.keyring_username} in {_backend_name(backend)}"
        try:
            if backend.get_password(keys.keyring_service, keys.keyring_username) is not None:
                raise KeyProviderError(f"{where} already exists; refusing to overwrite it")
            backend.set_password(keys.keyring_service, keys.keyring_username, new_kek_text())
        except KeyProviderError:
            raise
        except NoKeyringError:
            raise KeyProviderError("keyring provider: no keyring backend is available") from None
        except Exception as exc:  # noqa: BLE001 - D-Bus and OS backends raise their own types
            raise KeyProviderError(f"{where} cannot be written ({type(exc).__name__})") from None
        self.close()
        return f"{where}: stored a new KEK; keep an offline copy, the keyring is not a backup"
