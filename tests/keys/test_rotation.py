"""`vigatra keys rotate`: online, resumable, audited (issue 3 items 4-5; SECURITY.md reviewer test 6).

- After a rotation every secret opens, all under the new version; the old version is retired and
  its wrapped key wiped; both steps are audited with versions and counts.
- Readers in other threads keep opening every secret while the rotation runs, and a writer that
  replaces credentials meanwhile never has them overwritten by a re-sealed old value.
- `kill -9` of a rotating process after its first batches committed: every secret still opens
  (checked continuously while it runs, from this other process); running it again finishes.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from appliance.services.keys import (
    KeyService,
    blob_header,
    load_connection_credentials,
    open_connection_credentials,
    seal_credentials,
)
from appliance.store.models import AuditEvent, Connection, KeyVersion
from tests.keys.conftest import Box, bulk_seed, sealed_rows


def versions(box: Box) -> list[tuple[int, str, int]]:
    with box.store.read() as session:
        return [(v.version, v.status, len(v.wrapped_key))
                for v in session.execute(select(KeyVersion).order_by(KeyVersion.version)).scalars()]


def test_rotate_reseals_everything_retires_the_old_key_and_is_audited(box: Box, keys: KeyService) -> None:
    seeded = box.seed(keys, connections=5, users=2)
    before = sealed_rows(box.store)
    with box.store.read() as session:
        updated = {c.id: c.updated_at for c in session.execute(select(Connection)).scalars()}

    result = box.cli("keys", "rotate", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "created data key version 2; 17 sealed value(s) to re-seal in batches of 2" in result.output
    assert "re-sealed 17/17" in result.output
    assert "rotation complete: 17 value(s) re-sealed under version 2; retired version(s) 1" in result.output

    after = sealed_rows(box.store)
    assert after.keys() == before.keys()
    assert all(after[k] != before[k] and after[k][:8] == blob_header(2) for k in after)
    assert versions(box)[0][:2] == (1, "retired") and versions(box)[0][2] == 0  # wrapped key wiped
    assert versions(box)[1][:2] == (2, "active")
    fresh = box.service()
    for (table, column, row_id), plain in seeded.values.items():
        assert fresh.open_text(None, after[(table, column, row_id)], table=table, column=column,
                               row_id=row_id) == plain
    # The process that loaded version 1 only still opens everything (it meets version 2 and loads it).
    for cid in seeded.connection_ids:
        creds = load_connection_credentials(box.store, keys, cid)
        assert creds.api_secret == seeded.values[("connections", "api_secret_sealed", cid)]
    with box.store.read() as session:
        assert {c.id: c.updated_at for c in session.execute(select(Connection)).scalars()} == updated
        events = {e.action: json.loads(e.detail) for e in session.execute(select(AuditEvent)).scalars()}
    assert events["keys.rotate_begin"]["from_versions"] == [1]
    assert events["keys.rotate_begin"]["to_version"] == 2
    assert events["keys.rotate_begin"]["counts"] == {"1": 17}
    assert events["keys.rotate"]["retired_versions"] == [1]
    assert events["keys.rotate"]["resealed"] == 17
    assert events["keys.rotate"]["counts_after"] == {"2": 17}

    again = box.cli("keys", "rotate")
    assert again.exit_code == 0, again.output
    assert [(v, s) for v, s, _n in versions(box)] == [(1, "retired"), (2, "retired"), (3, "active")]
    status = box.cli("keys", "status")
    assert status.exit_code == 0
    assert [ln.split()[-1] for ln in status.output.splitlines() if ln[:1].isdigit()] == ["0", "0", "17"]


def test_rotation_under_concurrent_readers_and_a_writer(box: Box, keys: KeyService) -> None:
    seeded = box.seed(keys, connections=120)
    expected = {cid: seeded.values[("connections", "api_secret_sealed", cid)] for cid in seeded.connection_ids}
    # Every value a row has held: a reader may see the writer's commit before the writer records it.
    history = {cid: {secret} for cid, secret in expected.items()}
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []
    opened = [0]

    def reader(view: KeyService, seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            cid = rng.choice(seeded.connection_ids)
            try:
                with box.store.read() as session:
                    creds = open_connection_credentials(session, view, cid)
                with lock:
                    if creds.api_secret not in history[cid]:
                        errors.append(f"reader {seed}: wrong secret for {cid}")
                    opened[0] += 1
            except Exception as exc:
                errors.append(f"reader {seed}: {type(exc).__name__}: {exc}")

    def writer(view: KeyService) -> None:
        """Onboarding replacing credentials while the rotation runs (must never be overwritten)."""
        rng = random.Random(99)
        while not stop.is_set():
            cid = rng.choice(seeded.connection_ids)
            secret = f"REPLACED-{rng.getrandbits(64):x}"
            with lock:
                history[cid].add(secret)
            try:
                with box.store.unit_of_work() as session:
                    conn = session.get(Connection, cid)
                    seal_credentials(session, view, conn, f"key-{cid}", secret, None)
                with lock:
                    expected[cid] = secret
            except Exception as exc:
                errors.append(f"writer: {type(exc).__name__}: {exc}")
            time.sleep(0.002)

    # Each thread has its own KeyService, as separate serving processes would, loaded before the rotation.
    threads = [threading.Thread(target=reader, args=(box.service(), n)) for n in range(3)]
    threads.append(threading.Thread(target=writer, args=(box.service(),)))
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        target, _resealed = box.service().rotate(box.store, batch_size=7)
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert errors == []
    assert opened[0] > 50
    assert target == 2
    assert [(v, s) for v, s, _n in versions(box)] == [(1, "retired"), (2, "active")]
    rows = sealed_rows(box.store)
    assert all(blob[:8] == blob_header(2) for blob in rows.values())
    fresh = box.service()
    for cid, secret in expected.items():
        assert fresh.open_text(None, rows[("connections", "api_secret_sealed", cid)], table="connections",
                               column="api_secret_sealed", row_id=cid) == secret


@pytest.mark.slow
def test_kill_9_halfway_through_rotation_then_resume(box: Box, keys: KeyService) -> None:
    plain = bulk_seed(box.store, keys, 3000)
    columns = ("api_key_sealed", "api_secret_sealed", "passphrase_sealed")
    total = 3 * len(plain)
    sample = random.Random(7).sample(sorted(plain), 200)
    errors: list[str] = []
    checks = [0]

    def open_all(view: KeyService, ids: Any) -> None:
        with box.store.read() as session:
            view.refresh(session)
            rows = {(int(r[0])): r[1:] for r in session.execute(
                select(Connection.id, *(getattr(Connection, c) for c in columns)))}
            for cid in ids:
                for column, blob, value in zip(columns, rows[cid], plain[cid], strict=True):
                    try:
                        if view.open_text(session, blob, table="connections", column=column, row_id=cid) != value:
                            errors.append(f"{column} row {cid}: wrong value")
                    except Exception as exc:
                        errors.append(f"{column} row {cid}: {exc}")

    stop = threading.Event()

    def reader() -> None:
        view = box.service()  # this process serves; the rotation runs in another one
        while not stop.is_set():
            open_all(view, sample)
            checks[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    process = box.popen("keys", "rotate", "--batch-size", "10")
    try:
        deadline = time.monotonic() + 120
        moved = 0
        while time.monotonic() < deadline and process.poll() is None:
            with box.store.read() as session:
                moved = keys.sealed_counts(session).get(2, 0)
            if moved >= 10:  # the first batch has committed: kill it partway (on a quiet machine the whole
                break        # rotation can take less than a few polls, so waiting for more batches races it)
            time.sleep(0.001)
        assert process.poll() is None, f"rotation ended before it could be killed: {process.communicate()}"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        stop.set()
        thread.join(timeout=120)
    assert errors == [] and checks[0] >= 1

    with box.store.read() as session:
        counts = keys.sealed_counts(session)
    assert counts[2] >= 10 and counts[1] > 0 and counts[1] + counts[2] == total
    assert [(v, s) for v, s, _n in versions(box)] == [(1, "retiring"), (2, "active")]
    open_all(box.service(), sorted(plain))  # a freshly started process opens every secret
    assert errors == []
    status = box.cli("keys", "status")
    assert "a rotation is in progress or was interrupted" in status.output

    resumed = box.cli_subprocess("keys", "rotate", "--batch-size", "500")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the rotation to data key version 2" in resumed.stdout
    assert f"{counts[1]} sealed value(s) to re-seal" in resumed.stdout
    assert versions(box)[0] == (1, "retired", 0)
    assert versions(box)[1][:2] == (2, "active")
    with box.store.read() as session:
        assert keys.sealed_counts(session) == {2: total}
    open_all(box.service(), sorted(plain))
    open_all(keys, sorted(plain))  # the process loaded before the rotation still opens everything
    assert errors == []
