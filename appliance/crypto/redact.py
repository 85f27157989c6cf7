"""Keeping secrets out of log lines: one ``redact()`` and a logging filter that applies it.

SECURITY.md allows secrets in logs only as HMAC fingerprints (:func:`fingerprint`, keyed with a
``derive()``d key so a log reader cannot test guesses). Everything else is scrubbed twice over:

- values the code knows are secret, passed in or registered with :func:`remember_secret` (a bounded,
  process-wide registry: strings cannot be weakly referenced, so the oldest entries fall out);
- anything shaped like a credential: PEM blocks, JWTs, our API keys (``vgk_<prefix>_<secret>``: the
  public prefix is kept, ``vgk_<prefix>_[REDACTED]``, so a log still says which key; anything else
  starting ``vgk_`` becomes ``vgk_[REDACTED]``), values of credential-named headers and fields
  (Authorization, X-API-Key, CB-ACCESS-SIGN, ``"password": ...``, ``api_key=...``), and runs of 32 or
  more base64/hex characters.

The last rule over-redacts on purpose: SHA-256 hex digests and UUIDs with their hyphens are
scrubbed too, so identifiers meant to survive in logs must stay under 32 characters (fingerprints
and key ids here are 16). Absolute paths are recognised and kept.

Attach :class:`RedactingFilter` to handlers, not loggers: a logger's filters do not see records
propagated from its children.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable

REDACTED = "[REDACTED]"
# Shorter "secrets" would shred ordinary words; nothing we hold is that short.
MIN_SECRET_LEN = 6
REGISTRY_LIMIT = 4096
FINGERPRINT_LEN = 16


def fingerprint(secret: str | bytes, key: bytes) -> str:
    """HMAC-SHA256 of ``secret`` under ``key``, 16 hex digits: the only form a secret may take in logs."""
    if not isinstance(key, bytes) or len(key) < 16:
        raise ValueError("the fingerprint key must be at least 16 bytes (use KeyProvider.derive)")
    data = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, data, hashlib.sha256).hexdigest()[:FINGERPRINT_LEN]


# ---------------------------------------------------------------------------------------------
# Shapes of credentials.

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]{1,64}-----.*?(?:-----END [A-Z0-9 ]{1,64}-----|\Z)", re.DOTALL)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}")
# An API key is vgk_<10 base32 characters>_<secret> (appliance/auth/apikeys.py); the prefix is its public handle.
_API_KEY = re.compile(r"\bvgk_(?:([a-z2-7]{10})_(?=[^\s\"',;&<>(){}\[\]]))?[^\s\"',;&<>(){}\[\]]*")

# Last name segment that marks a credential: "X-MBX-APIKEY", "CB-ACCESS-SIGN", "client_secret".
_CREDENTIAL_FIELDS = (
    r"authorization|cookie|apikey|key|secret|passphrase|password|passwd|pwd|pin|token|jwt|"
    r"signature|sign|session[-_]?id|session|credentials?|auth|otp")
_ASSIGNMENT = re.compile(
    r"(?P<name>(?<![\w-])(?:[A-Za-z0-9]+[-_])*(?:" + _CREDENTIAL_FIELDS + r"))(?![\w-])"
    r"(?P<sep>[\"']?[ \t]*[:=][ \t]*)"
    r"(?!\[REDACTED\])"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'"
    r"|(?:(?:bearer|basic|digest|token|negotiate|hmac[\w-]*|aws4-hmac-sha256)[ \t]+)?[^\s\"',;&<>(){}\[\]]+)",
    re.IGNORECASE)
_LONG_RUN = re.compile(r"[A-Za-z0-9+/_-]{32,}={0,2}")


# A value that is an API key already reduced to its public prefix (optionally after a scheme: "Bearer ").
_REDUCED_KEY = re.compile(r"(?:[A-Za-z][\w-]*[ \t]+)?vgk_[a-z2-7]{10}_(?:\[REDACTED\])?")


def _assignment(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[:1] in ("'", '"') else ""
    inner = value[1:-1] if quote else value
    if _REDUCED_KEY.fullmatch(inner) and (inner.endswith(REDACTED) or match.string.startswith(REDACTED, match.end())):
        return match.group(0)
    return f"{match['name']}{match['sep']}{quote}{REDACTED}{quote}"


def _api_key(match: re.Match[str]) -> str:
    if match.string.startswith(REDACTED, match.end()):
        return match.group(0)  # already redacted by an earlier pass
    prefix = match.group(1)
    return f"vgk_{prefix}_{REDACTED}" if prefix else f"vgk_{REDACTED}"


def _looks_like_path(run: str) -> bool:
    # "/var/lib/vigatra/backup-2024": segments of one case. Base64 segments nearly always mix cases.
    if not run.startswith("/") or run.count("/") < 2:
        return False
    return all(not (any(c.isupper() for c in part) and any(c.islower() for c in part))
               for part in run.split("/"))


def _long_run(match: re.Match[str]) -> str:
    run = match.group(0)
    random_looking = any(c.isdigit() for c in run) or (any(c.isupper() for c in run) and any(c.islower() for c in run))
    if not random_looking or _looks_like_path(run):
        return run
    return REDACTED


# ---------------------------------------------------------------------------------------------
# Known secrets.


def _forms(secret: str) -> list[str]:
    """The secret and the encodings it is likely to be logged in."""
    raw = secret.encode("utf-8")
    forms = {secret, raw.hex(), base64.b64encode(raw).decode("ascii"), base64.urlsafe_b64encode(raw).decode("ascii")}
    forms |= {f.rstrip("=") for f in forms}
    return [f for f in forms if len(f) >= MIN_SECRET_LEN]


_PREFIX_LEN = 4  # <= MIN_SECRET_LEN: every form is found by its first four characters
# first four characters -> [(length, forms of that length)], longest first
_Index = dict[str, list[tuple[int, frozenset[str]]]]


def _secret_index(secrets: Iterable[str | bytes]) -> _Index:
    """Forms of the secrets keyed by their first characters, then by length.

    A scan costs a few set lookups per character of the log line whatever the number of secrets,
    also when many share a prefix (PEM headers, a venue's key format). A regex alternation of a
    few thousand secrets took most of a second to compile.
    """
    grouped: dict[str, dict[int, set[str]]] = {}
    for given in secrets:
        secret = given.decode("utf-8", "replace") if isinstance(given, bytes) else given
        if isinstance(secret, str) and len(secret) >= MIN_SECRET_LEN:
            for form in _forms(secret):
                grouped.setdefault(form[:_PREFIX_LEN], {}).setdefault(len(form), set()).add(form)
    # Longest first: a secret is removed whole before a shorter one inside it.
    return {prefix: [(length, frozenset(by_length[length])) for length in sorted(by_length, reverse=True)]
            for prefix, by_length in grouped.items()}


def _scrub_known(text: str, index: _Index) -> str:
    if not index:
        return text
    out: list[str] = []
    start = position = 0
    end = len(text) - MIN_SECRET_LEN
    while position <= end:
        buckets = index.get(text[position:position + _PREFIX_LEN])
        if buckets is not None:
            length = next((n for n, forms in buckets if text[position:position + n] in forms), 0)
            if length:
                out.append(text[start:position])
                out.append(REDACTED)
                position += length
                start = position
                continue
        position += 1
    out.append(text[start:])
    return "".join(out)


class _Registry:
    """Bounded, thread-safe set of secrets the log filter scrubs, with a cached lookup index."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._values: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._index: _Index = {}
        self._dirty = False

    def add(self, value: str) -> None:
        with self._lock:
            if value in self._values:
                self._values.move_to_end(value)  # already indexed: nothing to rebuild
                return
            self._values[value] = None
            while len(self._values) > self._limit:
                self._values.popitem(last=False)
            self._dirty = True

    def discard(self, value: str) -> None:
        with self._lock:
            if self._values.pop(value, 0) is None:
                self._dirty = True

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._index = {}
            self._dirty = False

    def __len__(self) -> int:
        return len(self._values)

    def index(self) -> _Index:
        with self._lock:
            if self._dirty:
                self._index = _secret_index(self._values)
                self._dirty = False
            return self._index


_registry = _Registry(REGISTRY_LIMIT)


def remember_secret(value: str | bytes | None) -> None:
    """Register a secret (a venue key just opened, a PIN) so every redacted log line scrubs it.

    Values shorter than MIN_SECRET_LEN are ignored; the registry keeps the newest REGISTRY_LIMIT.
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and len(value) >= MIN_SECRET_LEN:
        _registry.add(value)


def forget_secret(value: str | bytes) -> None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    _registry.discard(value)


def clear_remembered_secrets() -> None:
    """Empty the registry (tests; a process that drops all venue credentials)."""
    _registry.clear()


def remembered_count() -> int:
    return len(_registry)


def redact(text: str, secrets: Iterable[str] = (), *, remembered: bool = True) -> str:
    """``text`` with the given secrets, remembered secrets and credential-shaped values replaced."""
    if not isinstance(text, str):
        text = str(text)
    text = _scrub_known(text, _secret_index(secrets))
    if remembered:
        text = _scrub_known(text, _registry.index())
    text = _PEM.sub(REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _API_KEY.sub(_api_key, text)
    text = _ASSIGNMENT.sub(_assignment, text)
    return _LONG_RUN.sub(_long_run, text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (args merged in), exception text and stack through redact().

    The record leaves with ``args = None`` and ``exc_info = None`` (its traceback kept, redacted, in
    ``exc_text``) so no formatter can render the raw values again. It never drops a record; if
    formatting fails it logs what it safely can.
    """

    def __init__(self, secrets: Iterable[str] = (), name: str = "") -> None:
        super().__init__(name)
        self._secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not let the raw args through
            message = f"{record.msg!s} (unformattable arguments: {record.args!r})"
        record.msg = redact(message, self._secrets)
        record.args = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        return True
