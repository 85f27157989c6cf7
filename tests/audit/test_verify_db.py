"""`audit verify` on the database: a valid chain passes; every tampering an owner can do is named by
the first bad event id (reviewer test 9). Both databases."""

from __future__ import annotations

import datetime as dt
import os
import random

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError

from appliance.audit.chain import COLUMNS, GENESIS, event_hash, format_timestamp
from appliance.audit.checkpoints import Signer, write_rekey_checkpoint
from appliance.audit.verify import VerifyFailed, verify_database
from appliance.store.models import AuditCheckpoint, AuditEvent
from appliance.store.session import Store
from tests.audit.conftest import APPLIANCE_ID, Owner, add_events, checkpoint, head


def run_verify(store: Store, signer: Signer, **kwargs: object) -> object:
    return verify_database(store, appliance_id=APPLIANCE_ID, public_key_pem=signer.public_pem, **kwargs)  # type: ignore[arg-type]


def failure(store: Store, signer: Signer, **kwargs: object) -> VerifyFailed:
    with pytest.raises(VerifyFailed) as caught:
        run_verify(store, signer, **kwargs)
    return caught.value


def test_the_chain_hash_is_the_same_for_typed_and_text_values() -> None:
    """Verification hashes rows read as text (timestamps formatted by the database, CSV cells); the writer
    hashes typed values: one canonical form gives both the same hash."""
    rng = random.Random(5)
    alphabet = "abc=+-@'\t\r\n\",;:0123456789 ÄéЖ漢🙂\0"
    for _ in range(2000):
        values = [rng.randint(1, 10**12),
                  dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=rng.randint(0, 10**11))]
        for name in COLUMNS[2:]:
            if name in ("user_id", "api_key_id", "status"):
                values.append(rng.choice([None, rng.randint(0, 10**9)]))
            else:
                values.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))))
        as_text = [values[0], format_timestamp(values[1]), *values[2:]]
        assert event_hash(as_text) == event_hash(values)
        assert event_hash([v if v is None else str(v) for v in as_text]) == event_hash(values)


def test_valid_chain_with_checkpoints(store: Store, signer: Signer) -> None:
    add_events(store, 30)
    checkpoint(store, signer)
    add_events(store, 5, start=30)
    report = run_verify(store, signer)
    assert report.events == 35 and report.last_id == 35 and report.checkpoints == 1  # type: ignore[attr-defined]
    assert "35 events" in report.summary() and "last id 35" in report.summary()  # type: ignore[attr-defined]
    assert report.unanchored == 5  # type: ignore[attr-defined]  # not signed by a checkpoint yet


def test_empty_chain_and_empty_periods(store: Store, signer: Signer) -> None:
    """Periodic checkpoints are written even when nothing happened, and they verify."""
    first = checkpoint(store, signer, now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    second = checkpoint(store, signer, now=dt.datetime(2026, 1, 1, 1, tzinfo=dt.UTC))
    assert second > first
    with store.read() as session:
        rows = session.query(AuditCheckpoint).order_by(AuditCheckpoint.id).all()
        assert [(r.kind, r.last_event_id, r.last_hash, r.event_count) for r in rows] == [
            ("periodic", 0, GENESIS, 0), ("periodic", 0, GENESIS, 0)]
        assert rows[0].signature != rows[1].signature
    report = run_verify(store, signer)
    assert report.events == 0 and report.checkpoints == 2  # type: ignore[attr-defined]


def test_periodic_checkpoint_job(ta: object) -> None:
    from appliance.audit.checkpoints import periodic_checkpoint, signer_for

    app = ta.appliance  # type: ignore[attr-defined]
    assert periodic_checkpoint(app) < periodic_checkpoint(app)  # nothing happened in between: still written
    verify_database(app.store, appliance_id=app.settings.appliance_id, public_key_pem=signer_for(app).public_pem)


@pytest.mark.parametrize("table", ["audit_events", "audit_checkpoints"])
def test_triggers_refuse_update_and_delete(store: Store, signer: Signer, table: str) -> None:
    add_events(store, 3)
    checkpoint(store, signer)
    model = AuditEvent if table == "audit_events" else AuditCheckpoint
    for statement in (update(model).values(kind="x") if table == "audit_checkpoints" else
                      update(model).values(action="x"), delete(model)):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(statement)
    run_verify(store, signer)


def test_edited_field(store: Store, signer: Signer, owner: Owner) -> None:
    add_events(store, 20)
    checkpoint(store, signer)
    owner.edit(7, ip_address="203.0.113.9")
    exc = failure(store, signer)
    assert exc.event_id == 7 and "contents do not match" in exc.message


def test_edited_timestamp_by_a_millisecond(store: Store, signer: Signer, owner: Owner) -> None:
    add_events(store, 5)
    from tests.audit.conftest import event_row

    moved = event_row(store, 3)["timestamp"] + dt.timedelta(milliseconds=1)
    owner.edit(3, timestamp=moved)
    assert failure(store, signer).event_id == 3


def test_deleted_row(store: Store, signer: Signer, owner: Owner) -> None:
    add_events(store, 20)
    owner.delete_events(12, 13)
    exc = failure(store, signer)
    assert exc.event_id == 12 and "missing" in exc.message


def test_reordered_rows(store: Store, signer: Signer, owner: Owner) -> None:
    add_events(store, 20)
    owner.swap(9, 15)
    exc = failure(store, signer)
    assert exc.event_id == 9 and "prev_hash" in exc.message


def test_truncated_tail_detected_by_checkpoint(store: Store, signer: Signer, owner: Owner) -> None:
    add_events(store, 20)
    checkpoint(store, signer)  # signs "20 events, ending in hash H"
    owner.truncate_tail(16)  # rows 17..20 deleted and the head rewound: the chain itself is consistent
    exc = failure(store, signer)
    assert exc.event_id == 17 and "truncated" in exc.message


def test_truncated_tail_without_head_rewind(store: Store, signer: Signer, owner: Owner) -> None:
    add_events(store, 20)
    owner.truncate_tail(18, rewind_head=False)
    exc = failure(store, signer)
    assert exc.event_id == 19 and "truncated" in exc.message


def test_rewritten_chain_contradicts_checkpoint(store: Store, signer: Signer, owner: Owner) -> None:
    """An owner who edits an event and recomputes every later hash still contradicts a signature."""
    add_events(store, 10)
    checkpoint(store, signer)
    from tests.audit.conftest import event_row

    statements = []
    prev = event_row(store, 4)["hash"]
    for event_id in range(5, 11):
        row = event_row(store, event_id)
        row["prev_hash"] = prev
        if event_id == 5:
            row["action"] = "nothing.to.see"
        row["hash"] = prev = event_hash([row[c] for c in COLUMNS])
        statements.append(update(AuditEvent).where(AuditEvent.id == event_id).values(
            prev_hash=row["prev_hash"], action=row["action"], hash=row["hash"]))
    statements.append(text("UPDATE audit_chain_head SET last_hash = :h").bindparams(h=prev))
    owner.run(*statements)
    exc = failure(store, signer)
    assert exc.event_id == 10 and "rewritten at or before event 10" in exc.message


def test_checkpoint_tampering(store: Store, signer: Signer, owner: Owner) -> None:
    add_events(store, 5)
    checkpoint(store, signer)
    add_events(store, 5, start=5)
    second = checkpoint(store, signer)
    checkpoint(store, signer)
    owner.run(update(AuditCheckpoint).where(AuditCheckpoint.id == second).values(last_event_id=9, event_count=9))
    assert "signature does not verify" in failure(store, signer).message
    owner.run(delete(AuditCheckpoint).where(AuditCheckpoint.id == second))
    assert "does not follow" in failure(store, signer).message


def test_wrong_key_or_appliance(store: Store, signer: Signer) -> None:
    add_events(store, 3)
    checkpoint(store, signer)
    other = Signer.from_seed(os.urandom(32))
    assert "neither the appliance's signing key" in failure(store, other).message
    with pytest.raises(VerifyFailed, match="another appliance"):
        verify_database(store, appliance_id="someone-else", public_key_pem=signer.public_pem)


def test_rekey(store: Store, signer: Signer) -> None:
    add_events(store, 3)
    checkpoint(store, signer)
    new = Signer.from_seed(os.urandom(32))
    with store.unit_of_work() as session:
        write_rekey_checkpoint(session, new, signer.public_pem, APPLIANCE_ID)
    add_events(store, 3, start=3)
    checkpoint(store, new)
    assert run_verify(store, new).checkpoints == 3  # type: ignore[attr-defined]
    assert "neither" in failure(store, signer).message  # the old key is no longer the appliance's
    checkpoint(store, signer)  # the retired key may not sign after the rekey
    assert "neither" in failure(store, new).message


@pytest.mark.slow
def test_parallel_walk_finds_the_same_first_break(store: Store, signer: Signer, owner: Owner) -> None:
    add_events(store, 60)
    checkpoint(store, signer)
    fast = {"workers": 2, "parallel_min": 0, "chunk_events": 7, "page": 4}
    assert run_verify(store, signer, **fast).events == 60  # type: ignore[attr-defined]
    owner.edit(22, detail="changed")
    owner.delete_events(40)
    assert failure(store, signer, **fast).event_id == 22
    assert failure(store, signer, workers=1, page=5).event_id == 22


def test_chunk_boundary_breaks(store: Store, signer: Signer, owner: Owner) -> None:
    """Small pages exercise keyset paging; a link broken exactly at a chunk edge is still found."""
    add_events(store, 30)
    owner.swap(15, 16)
    assert failure(store, signer, page=5).event_id == 15
    last, _hash, _purged = head(store)
    assert last == 30


def test_verify_on_a_live_appliance(store: Store, signer: Signer) -> None:
    """Events and checkpoints appended while verification runs are not mistaken for tampering."""
    import threading

    add_events(store, 50)
    checkpoint(store, signer)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        n = 50
        try:
            while not stop.is_set():
                add_events(store, 3, start=n)
                n += 3
                checkpoint(store, signer)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(5):
            run_verify(store, signer, page=7)
    finally:
        stop.set()
        thread.join()
    assert not errors
    run_verify(store, signer)
