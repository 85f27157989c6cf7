"""The crypto leaf: key providers (KEK), sealing of secret columns, Ed25519 signing, log redaction.

Why one facade: STYLE.md habit 9 (crypto is a leaf behind one facade, secret columns go through one
sealing type, one ``redact()`` guards log lines). This package imports only the standard library,
``cryptography``, ``keyring``, ``pkcs11`` (lazily, HSM provider only), ``appliance.settings`` and
``appliance.errors``; the store builds the DEK table and rotation on top of it.
"""

from appliance.crypto.kek import KEK_UNAVAILABLE, KeyProvider
from appliance.crypto.providers import (
    EnvKeyProvider,
    FileKeyProvider,
    KeyringKeyProvider,
    Pkcs11KeyProvider,
    SoftwareKeyProvider,
    SystemdKeyProvider,
    provider_from_settings,
)
from appliance.crypto.redact import (
    REDACTED,
    RedactingFilter,
    clear_remembered_secrets,
    fingerprint,
    forget_secret,
    redact,
    register_request_id_tag,
    remember_secret,
)
from appliance.crypto.sealing import SEAL_LIMIT, Sealer, SealLimitReached, generate_dek
from appliance.crypto.signing import (
    load_public_key,
    public_key_id,
    public_key_pem,
    sign,
    signing_key_from_seed,
    verify,
)

__all__ = [
    "KEK_UNAVAILABLE",
    "REDACTED",
    "SEAL_LIMIT",
    "EnvKeyProvider",
    "FileKeyProvider",
    "KeyProvider",
    "KeyringKeyProvider",
    "Pkcs11KeyProvider",
    "RedactingFilter",
    "SealLimitReached",
    "Sealer",
    "SoftwareKeyProvider",
    "SystemdKeyProvider",
    "clear_remembered_secrets",
    "fingerprint",
    "forget_secret",
    "generate_dek",
    "load_public_key",
    "provider_from_settings",
    "public_key_id",
    "public_key_pem",
    "redact",
    "register_request_id_tag",
    "remember_secret",
    "sign",
    "signing_key_from_seed",
    "verify",
]
