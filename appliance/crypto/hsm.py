"""PKCS#11 key provider: the KEK is a non-extractable AES-256 key inside an HSM and never leaves it.

Mechanisms (chosen because python-pkcs11 >= 0.7 passes CK_GCM_PARAMS and SoftHSM2 implements it):

- wrap/unwrap: CKM_AES_GCM inside the token with the KEK, a 96-bit nonce from the host CSPRNG and
  ``format | fingerprint | context`` as associated data — the same blob layout as the software
  providers (kek.py), only the format byte differs. C_WrapKey with CKM_AES_KEY_WRAP_PAD was the
  fallback; it would need a second HMAC to bind the context, so GCM is simpler and stronger.
- derive: CKM_SHA256_HMAC inside the token with a second non-extractable generic-secret key
  labelled ``<key_label>-derive``, over ``vigatra/v1/derive/<label>``. A separate key keeps the
  AES key to one mechanism, and HMAC output is directly a 32-byte key.
- kek_id: SHA-256 over the AES key's CKA_CHECK_VALUE (where the token reports it) and the HMAC of
  ``vigatra/v1/kek-id``; first 8 bytes in hex. It changes if either key is replaced.

Caveat for real HSMs: some FIPS-mode devices refuse caller-supplied GCM nonces; those need the
vendor's IV generator, which python-pkcs11 cannot express today.

One logged-in session is kept open and every call goes through a lock: PKCS#11 sessions must not
be used from two threads at once. A lost session (HSM restarted, cable pulled) is reopened once.
``pkcs11`` is imported lazily so installations without an HSM never load it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from appliance.crypto.kek import (
    DEK_LEN,
    INFO_KEK_ID,
    KEK_FINGERPRINT_LEN,
    KEK_UNAVAILABLE,
    WRAP_FORMAT_PKCS11,
    KeyProvider,
    check_context,
    check_dek,
    check_label,
    new_nonce,
    pack_wrapped,
    read_protected_file,
    tag_failure,
    unpack_wrapped,
    wrap_aad,
)
from appliance.errors import KeyProviderError
from appliance.settings import Settings

if TYPE_CHECKING:
    from pkcs11 import Session, Token

# python-pkcs11 adds encrypt/decrypt/sign to key objects through mixins its stubs cannot express
# on SecretKey, so key handles are typed loosely.
HsmKey = Any

log = logging.getLogger(__name__)

PIN_CREDENTIAL = "vigatra-pkcs11-pin"
T = TypeVar("T")


class _Handles:
    __slots__ = ("derive_key", "fingerprint", "kek", "session")

    def __init__(self, session: Session, kek: HsmKey, derive_key: HsmKey, fingerprint: bytes) -> None:
        self.session = session
        self.kek = kek
        self.derive_key = derive_key
        self.fingerprint = fingerprint


def _kek_template() -> dict[Any, Any]:
    from pkcs11 import Attribute

    return {
        Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
        Attribute.MODIFIABLE: False, Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
        Attribute.WRAP: False, Attribute.UNWRAP: False, Attribute.SIGN: False, Attribute.VERIFY: False,
        Attribute.DERIVE: False,
    }


def _derive_template() -> dict[Any, Any]:
    from pkcs11 import Attribute

    return {
        Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
        Attribute.MODIFIABLE: False, Attribute.SIGN: True, Attribute.VERIFY: True,
        Attribute.ENCRYPT: False, Attribute.DECRYPT: False, Attribute.WRAP: False, Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
    }


class Pkcs11KeyProvider(KeyProvider):
    """An HSM reached through the vendor's PKCS#11 module (tested against SoftHSM2)."""

    name = "pkcs11"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._lock = threading.RLock()
        self._handles: _Handles | None = None

    @property
    def module(self) -> Path:
        return self.settings.keys.pkcs11_module

    @property
    def token_label(self) -> str:
        return self.settings.keys.pkcs11_token_label

    @property
    def key_label(self) -> str:
        return self.settings.keys.pkcs11_key_label

    @property
    def derive_label(self) -> str:
        return f"{self.key_label}-derive"

    def describe(self) -> str:
        return (f"pkcs11 provider: keys {self.key_label!r} and {self.derive_label!r} on token "
                f"{self.token_label!r} via {self.module}")

    # -- connection -------------------------------------------------------------------------

    def _pin(self) -> str:
        pin_file = self.settings.keys.pkcs11_pin_file
        if pin_file is not None:
            raw = read_protected_file(pin_file, provider=self.name, what="PIN file", max_bytes=256)
            where = f"PIN file {pin_file}"
        else:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise KeyProviderError(
                    "pkcs11 provider: no PIN: set keys.pkcs11_pin_file or run under systemd with "
                    f"`LoadCredentialEncrypted={PIN_CREDENTIAL}`")
            path = Path(directory) / PIN_CREDENTIAL
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise KeyProviderError(f"pkcs11 provider: cannot read PIN credential {path}: {exc.strerror}") from None
            where = f"PIN credential {path}"
        try:
            pin = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            pin = ""
        if not pin:
            raise KeyProviderError(f"pkcs11 provider: {where} holds no PIN")
        return pin

    def _token(self) -> Token:
        import pkcs11
        from pkcs11 import exceptions as px

        module = str(self.module)
        if not os.path.isfile(module):
            raise KeyProviderError(f"pkcs11 provider: module {module} does not exist (keys.pkcs11_module)")
        try:
            lib = pkcs11.lib(module)
        except px.PKCS11Error as exc:
            raise KeyProviderError(f"pkcs11 provider: cannot load module {module} ({type(exc).__name__})") from None
        try:
            return lib.get_token(token_label=self.token_label)
        except px.NoSuchToken:
            raise KeyProviderError(f"pkcs11 provider: no token labelled {self.token_label!r} in {module} "
                                   f"({KEK_UNAVAILABLE}: HSM unavailable or token not initialised)") from None
        except px.MultipleTokensReturned:
            raise KeyProviderError(f"pkcs11 provider: several tokens labelled {self.token_label!r} in {module}; "
                                   "labels must be unique") from None
        except px.PKCS11Error as exc:
            raise KeyProviderError(f"pkcs11 provider: HSM unavailable ({type(exc).__name__} from {module})") from None

    def _open_session(self, *, rw: bool) -> Session:
        from pkcs11 import exceptions as px

        token = self._token()
        pin = self._pin()
        try:
            return token.open(rw=rw, user_pin=pin)
        except px.UserAlreadyLoggedIn:
            # PKCS#11 login state is per process and token: another session of ours is logged in.
            return token.open(rw=rw)
        except px.PinIncorrect:
            raise KeyProviderError(f"pkcs11 provider: wrong PIN for token {self.token_label!r}") from None
        except px.PinLocked:
            raise KeyProviderError(f"pkcs11 provider: the user PIN of token {self.token_label!r} is locked") from None
        except (px.PinExpired, px.PinInvalid, px.PinLenRange) as exc:
            raise KeyProviderError(f"pkcs11 provider: token {self.token_label!r} rejected the PIN "
                                   f"({type(exc).__name__})") from None
        except px.PKCS11Error as exc:
            raise KeyProviderError(f"pkcs11 provider: cannot open a session on token {self.token_label!r} "
                                   f"({type(exc).__name__})") from None

    def _find_key(self, session: Session, label: str, key_type: Any) -> HsmKey:
        from pkcs11 import Attribute, ObjectClass
        from pkcs11 import exceptions as px

        try:
            key = session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=key_type, label=label)
        except px.NoSuchKey:
            raise KeyProviderError(f"pkcs11 provider: key {label!r} not found on token {self.token_label!r} "
                                   f"({KEK_UNAVAILABLE}); run `vigatra keys init`") from None
        except px.MultipleObjectsReturned:
            raise KeyProviderError(f"pkcs11 provider: several keys labelled {label!r} on token "
                                   f"{self.token_label!r}; remove the duplicates") from None
        if not key[Attribute.SENSITIVE] or key[Attribute.EXTRACTABLE]:
            raise KeyProviderError(f"pkcs11 provider: key {label!r} on token {self.token_label!r} is extractable "
                                   "or not sensitive; refusing a key that can leave the HSM")
        return key

    def _connect(self) -> _Handles:
        from pkcs11 import Attribute, KeyType
        from pkcs11 import exceptions as px

        session = self._open_session(rw=False)
        try:
            kek = self._find_key(session, self.key_label, KeyType.AES)
            derive_key = self._find_key(session, self.derive_label, KeyType.GENERIC_SECRET)
            try:
                check_value = bytes(kek[Attribute.CHECK_VALUE])
            except px.PKCS11Error:
                check_value = b""  # optional attribute; the HMAC below still identifies the key pair
            marker = _hmac(derive_key, INFO_KEK_ID)
        except KeyProviderError:
            _close_quietly(session)
            raise
        except px.PKCS11Error as exc:
            _close_quietly(session)
            raise KeyProviderError(f"pkcs11 provider: HSM error while loading keys ({type(exc).__name__})") from None
        fingerprint = hashlib.sha256(INFO_KEK_ID + check_value + marker).digest()[:KEK_FINGERPRINT_LEN]
        return _Handles(session, kek, derive_key, fingerprint)

    def _connected(self) -> _Handles:
        if self._handles is None:
            self._handles = self._connect()
        return self._handles

    def _drop(self) -> None:
        if self._handles is not None:
            _close_quietly(self._handles.session)
            self._handles = None

    def _run(self, op: Callable[[_Handles], T]) -> T:
        from pkcs11 import exceptions as px

        lost = (px.SessionClosed, px.SessionHandleInvalid, px.DeviceRemoved, px.TokenNotPresent,
                px.DeviceError, px.UserNotLoggedIn, px.KeyHandleInvalid, px.ObjectHandleInvalid)
        with self._lock:
            try:
                try:
                    return op(self._connected())
                except lost as exc:
                    log.warning("pkcs11 session lost (%s); reconnecting once", type(exc).__name__)
                    self._drop()
                    return op(self._connected())
            except px.PKCS11Error as exc:
                raise KeyProviderError(f"pkcs11 provider: HSM operation failed ({type(exc).__name__})") from None

    # -- KeyProvider --------------------------------------------------------------------------

    def check(self) -> None:
        with self._lock:
            self._drop()
            self._handles = self._connect()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def kek_id(self) -> str:
        return f"{self.name}:{self._run(lambda h: h.fingerprint).hex()}"

    def wrap(self, dek: bytes, *, context: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        check_dek(dek)
        check_context(context)

        def op(h: _Handles) -> bytes:
            nonce = new_nonce()
            params = GCMParams(nonce, wrap_aad(WRAP_FORMAT_PKCS11, h.fingerprint, context))
            sealed = h.kek.encrypt(dek, mechanism=Mechanism.AES_GCM, mechanism_param=params)
            return pack_wrapped(WRAP_FORMAT_PKCS11, h.fingerprint, nonce, bytes(sealed))

        return self._run(op)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11 import exceptions as px
        from pkcs11.mechanisms import GCMParams

        check_context(context)
        # Who answers a bad tag how: the spec says CKR_ENCRYPTED_DATA_INVALID, SoftHSM2 says
        # CKR_GENERAL_ERROR. Both mean "this blob does not authenticate" once the session works.
        rejected = (px.EncryptedDataInvalid, px.EncryptedDataLenRange, px.GeneralError, px.FunctionFailed,
                    px.DataInvalid, px.DataLenRange)

        def op(h: _Handles) -> bytes:
            parts = unpack_wrapped(wrapped, fmt=WRAP_FORMAT_PKCS11, provider=self.name,
                                   kek_id=f"{self.name}:{h.fingerprint.hex()}", context=context)
            params = GCMParams(parts.nonce, wrap_aad(WRAP_FORMAT_PKCS11, parts.fingerprint, context))
            try:
                dek = bytes(h.kek.decrypt(parts.ciphertext, mechanism=Mechanism.AES_GCM, mechanism_param=params))
            except rejected:
                raise tag_failure(context) from None
            if len(dek) != DEK_LEN:
                raise tag_failure(context)
            return dek

        return self._run(op)

    def derive(self, label: str) -> bytes:
        message = check_label(label)
        return self._run(lambda h: _hmac(h.derive_key, message))

    def create(self) -> str:
        from pkcs11 import Attribute, KeyType, ObjectClass
        from pkcs11 import exceptions as px

        with self._lock:
            self._drop()
            session = self._open_session(rw=True)
            try:
                for label in (self.key_label, self.derive_label):
                    # Drain the search: an unfinished C_FindObjects would outlive the session.
                    found = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                                      Attribute.LABEL: label}))
                    if found:
                        raise KeyProviderError(f"pkcs11 provider: key {label!r} already exists on token "
                                               f"{self.token_label!r}; refusing to create another")
                kek = session.generate_key(KeyType.AES, 256, label=self.key_label, store=True,
                                           template=_kek_template())
                try:
                    session.generate_key(KeyType.GENERIC_SECRET, 256, label=self.derive_label, store=True,
                                         template=_derive_template())
                except px.PKCS11Error:
                    kek.destroy()  # do not leave half a key pair behind
                    raise
            except px.PKCS11Error as exc:
                raise KeyProviderError(f"pkcs11 provider: cannot create keys on token {self.token_label!r} "
                                       f"({type(exc).__name__})") from None
            finally:
                _close_quietly(session)
        return (f"pkcs11 provider: generated non-extractable AES-256 key {self.key_label!r} and HMAC key "
                f"{self.derive_label!r} on token {self.token_label!r}; back up the token per the vendor's procedure")


def _hmac(key: HsmKey, message: bytes) -> bytes:
    from pkcs11 import Mechanism

    return bytes(key.sign(message, mechanism=Mechanism.SHA256_HMAC))


def _close_quietly(session: Session) -> None:
    from pkcs11 import exceptions as px

    with contextlib.suppress(px.PKCS11Error):  # the session is gone either way; nothing to release
        session.close()
