"""redact(), the logging filter and the registry of remembered secrets."""

from __future__ import annotations

import base64
import io
import logging
import os
from collections.abc import Iterator

import pytest

from appliance.crypto import REDACTED, RedactingFilter, fingerprint, redact, remember_secret
from appliance.crypto.redact import REGISTRY_LIMIT, clear_remembered_secrets, forget_secret, remembered_count

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsImV4cCI6MTcwMDAwMDAwMH0.Qm9ndXNTaWduYXR1cmVfLQ"
PEM = ("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBx3Q7mJ2T5l7c1S2yq4ZVJ8cO1Yw7e9c+qf2nN4r0Xp\n"
       "-----END PRIVATE KEY-----")


@pytest.fixture(autouse=True)
def _empty_registry() -> Iterator[None]:
    clear_remembered_secrets()
    yield
    clear_remembered_secrets()


@pytest.mark.parametrize(("text", "secret"), [
    (f"loaded key {PEM} for kalshi", "MC4CAQAwBQYDK2Vw"),
    ("truncated -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIr", "MHcCAQEEIIr"),
    (f"token {JWT} rejected", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"),
    (f"Authorization: Bearer {JWT}", "Qm9ndXNTaWduYXR1cmVfLQ"),
    ("Authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
    ("headers={'Authorization': 'Bearer opaque-token-1', 'Accept': 'json'}", "opaque-token-1"),
    ("X-API-Key: vgk_ab12cd.Zx9-secret_part", "Zx9-secret_part"),
    ("x-api-key=plainvalue123", "plainvalue123"),
    ("using vgk_ab12cd.Zx9-secret_part now", "Zx9-secret_part"),
    ("key vgk_abcdefghij_Q2hhbmdlIHRoaXMgc2VjcmV0IGFuZCBub3RoaW5nIGxlYWs_x sent", "Q2hhbmdlIHRoaXMgc2VjcmV0"),
    ("malformed vgk_nodotsecret here", "nodotsecret"),
    ('{"apiKey": "K-1", "secret": "s3cr3t!!", "passphrase": "okx pass"}', "s3cr3t!!"),
    ('{"apiKey": "K-1", "secret": "s3cr3t!!", "passphrase": "okx pass"}', "okx pass"),
    ("GET /v5/account?api_key=abc123&timestamp=1", "abc123"),
    ("CB-ACCESS-SIGN: c2lnbmF0dXJl CB-ACCESS-KEY: cbkey", "cbkey"),
    ("OK-ACCESS-PASSPHRASE: hunter2", "hunter2"),
    ("X-MBX-APIKEY: vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A", "vmPUZE6mv9SD5"),
    ("kek " + base64.b64encode(bytes(range(100, 132))).decode() + " loaded", "ZGVmZ2hpamts"),
    ("digest " + "0f" * 32 + " stored", "0f0f0f0f0f0f0f0f"),
    ("kucoin secret 5f4dcc3b-5aa7-65d6-1d83-27de8d6b882b", "5f4dcc3b"),
])
def test_credential_shapes_are_removed(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert REDACTED in out
    assert redact(out) == out  # idempotent: a record passing two handlers is not mangled


def test_ordinary_text_survives() -> None:
    text = ("user alice logged in from 10.0.0.7, key_version=2, kek file:0123456789abcdef, "
            "db /var/lib/vigatra/backups/2024-01-01/vigatra.db, monkey=3 design=4 signal=5")
    assert redact(text) == text


def test_api_key_prefix_is_kept_for_diagnosis() -> None:
    from appliance.auth import apikeys

    prefix, secret = apikeys.new_prefix(), apikeys.new_secret()
    key = apikeys.compose(prefix, secret)
    assert redact(f"key {key} used") == f"key vgk_{prefix}_{REDACTED} used"
    for line in (f"X-API-Key: {key}", f"Authorization: Bearer {key}", f'{{"api_key": "{key}"}}'):
        out = redact(line)
        assert secret not in out and f"vgk_{prefix}_{REDACTED}" in out, out
    assert redact("vgk_ab12cd.Zx9-secret_part") == f"vgk_{REDACTED}"  # not a key's shape: nothing is kept


def test_given_secrets_and_their_encodings_are_removed() -> None:
    secret = "hunter2-but-longer"
    text = (f"raw {secret} b64 {base64.b64encode(secret.encode()).decode()} "
            f"hex {secret.encode().hex()} end")
    out = redact(text, [secret])
    assert "hunter2" not in out
    assert base64.b64encode(secret.encode()).decode() not in out
    assert out.startswith("raw [REDACTED] b64 [REDACTED] hex [REDACTED]")
    assert redact("abc is short", ["abc"]) == "abc is short"  # too short to be a secret worth shredding text for


def test_a_secret_containing_another_is_removed_whole() -> None:
    assert redact("x abcdef1234567 y", ["abcdef12", "abcdef1234567"]) == f"x {REDACTED} y"
    shared = [f"-----BEGIN KEY {i:04d}-----" for i in range(500)]  # many secrets, one prefix
    assert redact("got -----BEGIN KEY 0499----- ok", shared, remembered=False) == f"got {REDACTED} ok"


def test_remembered_secrets_are_scrubbed_and_bounded() -> None:
    remember_secret("wallet-seed-words")
    assert redact("leaked wallet-seed-words here") == f"leaked {REDACTED} here"
    assert redact("leaked wallet-seed-words here", remembered=False) == "leaked wallet-seed-words here"
    forget_secret("wallet-seed-words")
    assert redact("leaked wallet-seed-words here") == "leaked wallet-seed-words here"
    for i in range(REGISTRY_LIMIT + 50):
        remember_secret(f"bulk secret {i:06d}")
    assert remembered_count() == REGISTRY_LIMIT
    assert f"bulk secret {REGISTRY_LIMIT + 49:06d}" not in redact(f"x bulk secret {REGISTRY_LIMIT + 49:06d}")
    assert redact("x bulk secret 000000") == "x bulk secret 000000"  # the oldest fell out


def _logger(filter_: logging.Filter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(filter_)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"tests.crypto.redact.{os.urandom(4).hex()}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_filter_scrubs_message_args_and_traceback() -> None:
    remember_secret("remembered-venue-secret")
    logger, stream = _logger(RedactingFilter(secrets=["constructor-secret"]))
    logger.info("calling %s with %r", "binance", {"X-MBX-APIKEY": "abcdef", "note": "constructor-secret"})
    logger.warning("venue said %s", "remembered-venue-secret rejected")
    logger.info("token %s", JWT)
    try:
        raise RuntimeError(f"request failed: Authorization: Bearer {JWT}")
    except RuntimeError:
        logger.exception("venue call failed for %s", "vgk_pre.fixsecret")
    output = stream.getvalue()
    for leaked in ("abcdef", "constructor-secret", "remembered-venue-secret", JWT[:20], "fixsecret"):
        assert leaked not in output, leaked
    assert "calling binance with" in output
    assert "Traceback" in output
    assert "RuntimeError: request failed: Authorization: [REDACTED]" in output


def test_filter_record_fields() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "password=%s user=%s", ("pw-value", "bob"), None)
    assert RedactingFilter().filter(record) is True
    assert record.args is None
    assert record.msg == f"password={REDACTED} user=bob"
    assert record.getMessage() == f"password={REDACTED} user=bob"


def test_filter_survives_bad_format_arguments() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "two %s %s", ("secret=abc",), None)
    assert RedactingFilter().filter(record) is True
    assert "abc" not in record.getMessage()


def test_fingerprint() -> None:
    key = os.urandom(32)
    fp = fingerprint("vgk_ab12.secret", key)
    assert len(fp) == 16
    assert int(fp, 16) >= 0
    assert fingerprint(b"vgk_ab12.secret", key) == fp
    assert fingerprint("vgk_ab12.secret", os.urandom(32)) != fp
    assert redact(f"api key fingerprint {fp}") == f"api key fingerprint {fp}"
    with pytest.raises(ValueError, match="16 bytes"):
        fingerprint("x", b"short")
