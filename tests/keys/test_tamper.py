"""Tampering with stored ciphertext is detected, and answered (issue 3 item 6, SECURITY.md tests 1-2).

Each manipulation is made with plain SQL as a database owner would: a flipped bit in the nonce,
the ciphertext or the tag; a blob swapped between two rows or two columns; a blob replayed from a
retired key version, or re-labelled with another live key version. Each must be caught by
`keys verify` (non-zero exit, naming table/column/row and nothing else) and by
:func:`open_connection_credentials` (connection broken, critical alert, audit event, error raised).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

import pytest
from sqlalchemy import select, update

from appliance.errors import IntegrityFailure
from appliance.services.keys import (
    KeyService,
    load_connection_credentials,
    open_connection_credentials,
)
from appliance.store.models import Alert, AuditEvent, Connection, User
from tests.keys.conftest import Box, Seeded, connection

HEADER = 8  # magic, format, key version
NONCE = 12
Tamper = Callable[[Box, KeyService, Seeded], tuple[int, str]]


def blob_of(box: Box, connection_id: int, column: str) -> bytes:
    with box.store.read() as session:
        return bytes(session.execute(select(getattr(Connection, column)).where(Connection.id == connection_id))
                     .scalar_one())


def put(box: Box, connection_id: int, column: str, blob: bytes) -> None:
    with box.store.unit_of_work() as session:
        session.execute(update(Connection).where(Connection.id == connection_id).values({column: blob}))


def flip(offset_from: str) -> Tamper:
    def tamper(box: Box, keys: KeyService, seeded: Seeded) -> tuple[int, str]:
        victim = seeded.connection_ids[1]
        blob = bytearray(blob_of(box, victim, "api_secret_sealed"))
        index = {"nonce": HEADER + 5, "ciphertext": HEADER + NONCE + 3, "tag": len(blob) - 1}[offset_from]
        blob[index] ^= 0x01
        put(box, victim, "api_secret_sealed", bytes(blob))
        return victim, "api_secret_sealed"

    return tamper


def swap_rows(box: Box, keys: KeyService, seeded: Seeded) -> tuple[int, str]:
    a, b = seeded.connection_ids[0], seeded.connection_ids[1]
    put(box, b, "api_secret_sealed", blob_of(box, a, "api_secret_sealed"))
    return b, "api_secret_sealed"


def swap_columns(box: Box, keys: KeyService, seeded: Seeded) -> tuple[int, str]:
    b = seeded.connection_ids[1]
    key, secret = blob_of(box, b, "api_key_sealed"), blob_of(box, b, "api_secret_sealed")
    put(box, b, "api_key_sealed", secret)
    put(box, b, "api_secret_sealed", key)
    return b, "api_key_sealed"


def replay_retired_version(box: Box, keys: KeyService, seeded: Seeded) -> tuple[int, str]:
    b = seeded.connection_ids[1]
    old = blob_of(box, b, "api_secret_sealed")  # sealed under version 1, for this very row and column
    keys.rotate(box.store, batch_size=2)  # version 1 is retired and wiped
    put(box, b, "api_secret_sealed", old)
    return b, "api_secret_sealed"


def relabel_key_version(box: Box, keys: KeyService, seeded: Seeded) -> tuple[int, str]:
    # A rotation has begun: versions 1 (retiring) and 2 (active) are both live. Claim that a blob
    # sealed under version 1 was sealed under version 2.
    with box.store.unit_of_work() as session:
        keys.begin_rotation(session)
    b = seeded.connection_ids[1]
    blob = bytearray(blob_of(box, b, "api_secret_sealed"))
    assert struct.unpack(">I", blob[4:8]) == (1,)
    blob[4:8] = struct.pack(">I", 2)
    put(box, b, "api_secret_sealed", bytes(blob))
    return b, "api_secret_sealed"


def truncate(box: Box, keys: KeyService, seeded: Seeded) -> tuple[int, str]:
    b = seeded.connection_ids[1]
    put(box, b, "passphrase_sealed", blob_of(box, b, "passphrase_sealed")[:20])
    return b, "passphrase_sealed"


def unknown_format(box: Box, keys: KeyService, seeded: Seeded) -> tuple[int, str]:
    b = seeded.connection_ids[1]
    blob = bytearray(blob_of(box, b, "api_key_sealed"))
    blob[3] = 9
    put(box, b, "api_key_sealed", bytes(blob))
    return b, "api_key_sealed"


CASES: dict[str, Tamper] = {
    "flip-nonce": flip("nonce"),
    "flip-ciphertext": flip("ciphertext"),
    "flip-tag": flip("tag"),
    "swap-rows": swap_rows,
    "swap-columns": swap_columns,
    "replay-retired-version": replay_retired_version,
    "relabel-key-version": relabel_key_version,
    "truncated": truncate,
    "unknown-format": unknown_format,
}
EXPECTED = {"truncated": "is truncated", "unknown-format": "unknown format version 9",
            "replay-retired-version": "names unknown key version 1"}


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_detected_by_open_and_by_verify(box: Box, keys: KeyService, case: str) -> None:
    seeded = box.seed(keys, connections=3)
    victim, column = CASES[case](box, keys, seeded)
    where = f"connections.{column} row {victim}"
    bystander = seeded.connection_ids[2]

    # The serving process meets it while preparing a venue call.
    with box.store.unit_of_work() as session:
        creds = open_connection_credentials(session, keys, bystander)
        assert creds.api_secret == seeded.values[("connections", "api_secret_sealed", bystander)]
        with pytest.raises(IntegrityFailure) as raised:
            open_connection_credentials(session, keys, victim)
    message = raised.value.message
    assert where in message
    assert EXPECTED.get(case, "failed authentication") in message
    for secret in seeded.secrets():
        assert secret not in message and secret not in repr(raised.value)

    broken = connection(box.store, victim)
    assert broken.status == "broken"
    assert where in broken.status_reason
    assert connection(box.store, bystander).status != "broken"
    with box.store.read() as session:
        alerts = [(a.connection_id, a.severity, a.status) for a in
                  session.execute(select(Alert).where(Alert.kind == "integrity_failure")).scalars()]
        events = [(e.resource_type, e.resource_id, e.actor_type, e.outcome, json.loads(e.detail)["column"]) for e in
                  session.execute(select(AuditEvent).where(AuditEvent.action == "keys.integrity_failure")).scalars()]
    assert alerts == [(victim, "critical", "open")]
    assert events == [("connections", str(victim), "system", "failure", column)]

    # The operator's check names the row (and nothing else) and exits non-zero.
    result = box.cli("keys", "verify")
    assert result.exit_code == 1
    failed = sorted(line.split(": ")[0] for line in result.output.splitlines() if line.startswith("FAILED"))
    # Swapping two columns breaks both of them; every other manipulation breaks one value.
    columns = ["api_key_sealed", "api_secret_sealed"] if case == "swap-columns" else [column]
    assert failed == [f"FAILED connections.{c} row {victim}" for c in columns]
    for secret in seeded.secrets():
        assert secret not in result.output
    # verify applied the same response: still one open alert (deduplicated), one more audit event.
    with box.store.read() as session:
        assert len(session.execute(select(Alert).where(Alert.kind == "integrity_failure")).scalars().all()) == 1
        assert len(session.execute(select(AuditEvent).where(AuditEvent.action == "keys.integrity_failure"))
                   .scalars().all()) == 1 + len(columns)


def test_a_failing_value_is_never_read_as_empty(box: Box, keys: KeyService) -> None:
    seeded = box.seed(keys, connections=2)
    victim, _column = swap_rows(box, keys, seeded)
    failure = None
    with box.store.unit_of_work() as session:
        try:
            open_connection_credentials(session, keys, victim)
        except IntegrityFailure as exc:
            failure = exc
    assert failure is not None


def test_load_connection_credentials_commits_the_response_and_raises(box: Box, keys: KeyService) -> None:
    seeded = box.seed(keys, connections=2)
    victim, _column = flip("tag")(box, keys, seeded)
    with pytest.raises(IntegrityFailure):
        load_connection_credentials(box.store, keys, victim)
    assert connection(box.store, victim).status == "broken"
    good = load_connection_credentials(box.store, keys, seeded.connection_ids[0])
    assert good.api_key == seeded.values[("connections", "api_key_sealed", seeded.connection_ids[0])]
    assert "redacted" in repr(good)


def test_a_copied_totp_secret_is_reported_with_an_alert(box: Box, keys: KeyService) -> None:
    seeded = box.seed(keys, connections=0, users=2)
    a, b = seeded.user_ids
    with box.store.unit_of_work() as session:
        blob = session.get(User, a).totp_secret_sealed
        session.execute(update(User).where(User.id == b).values(totp_secret_sealed=blob))
    for _run in range(2):
        result = box.cli("keys", "verify")
        assert result.exit_code == 1
        assert f"FAILED users.totp_secret_sealed row {b}: " in result.output
    with box.store.read() as session:
        alerts = [(a.connection_id, a.detail["row"]) for a in
                  session.execute(select(Alert).where(Alert.kind == "integrity_failure")).scalars()]
    assert alerts == [(None, str(b))]


def test_a_concurrent_reseal_is_not_mistaken_for_tampering(box: Box, keys: KeyService) -> None:
    """Another process rotated and retired the version of the blob this session read first."""
    seeded = box.seed(keys, connections=1)
    cid = seeded.connection_ids[0]
    with box.store.read() as session:
        session.get(Connection, cid)  # read (and, on SQLite, the snapshot starts) before the rotation
        box.service().rotate(box.store, batch_size=1)
        creds = open_connection_credentials(session, keys, cid)
    assert creds.api_secret == seeded.values[("connections", "api_secret_sealed", cid)]
    assert connection(box.store, cid).status != "broken"
