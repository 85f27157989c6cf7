"""Password hashing and the password rules (NIST SP 800-63B).

- argon2id through argon2-cffi; the parameters travel inside the encoded hash and are upgraded on
  the next successful login when the configured cost changes.
- Length is the only rule: at least ``auth.password_min_length`` (15, or 8 when MFA is mandatory),
  at most 256 characters, no composition rules, no truncation (argon2 hashes the whole input).
- A blocklist of 30,000 common passwords ships with the appliance (zxcvbn's frequency list,
  read from the installed package; no network), plus context words (the username, "vigatra").
"""

from __future__ import annotations

import functools
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from appliance.errors import Invalid
from appliance.settings import AuthSettings

MAX_LENGTH = 256


def hasher(settings: AuthSettings) -> PasswordHasher:
    return PasswordHasher(time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib,
                          parallelism=settings.argon2_parallelism)


def normalise(password: str) -> str:
    """NFKC, as SP 800-63B recommends for Unicode passwords."""
    return unicodedata.normalize("NFKC", password)


@functools.cache
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


def check_password_rules(password: str, *, settings: AuthSettings, username: str = "") -> None:
    """Raise Invalid with a plain explanation if the password may not be used."""
    password = normalise(password)
    if len(password) < settings.password_min_length:
        raise Invalid(f"the password must be at least {settings.password_min_length} characters long",
                      field="password")
    if len(password) > MAX_LENGTH:
        raise Invalid(f"the password must be at most {MAX_LENGTH} characters long", field="password")
    lowered = password.lower()
    if lowered in common_passwords() or lowered.strip() in common_passwords():
        raise Invalid("this password appears in lists of commonly used passwords; choose another", field="password")
    if len(set(lowered)) < 4:
        raise Invalid("the password repeats too few different characters; choose another", field="password")
    for word in (username.lower(), "vigatra"):
        if word and len(word) >= 3 and word in lowered:
            raise Invalid("the password must not contain your username or the product name", field="password")


def hash_password(password: str, settings: AuthSettings) -> str:
    return hasher(settings).hash(normalise(password))


def verify_password(encoded: str, password: str, settings: AuthSettings) -> tuple[bool, str | None]:
    """(matches, new_hash_if_parameters_changed)."""
    ph = hasher(settings)
    try:
        ph.verify(encoded, normalise(password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, None
    if ph.check_needs_rehash(encoded):
        return True, ph.hash(normalise(password))
    return True, None


@functools.cache
def _dummy_hash(time_cost: int, memory: int, parallelism: int) -> str:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory, parallelism=parallelism).hash("x" * 20)


def burn_verify(password: str, settings: AuthSettings) -> None:
    """Spend the same time as a real verification, so unknown usernames are not faster."""
    encoded = _dummy_hash(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)
    verify_password(encoded, password, settings)
