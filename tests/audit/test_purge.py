"""`audit purge`: only beyond retention, as the owner, leaving a signed anchor the chain verifies from."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.exc import DBAPIError

from appliance.audit.checkpoints import Signer, detail_of
from appliance.audit.media import export_to_media, verify_media
from appliance.audit.purge import plan_purge, purge_before
from appliance.audit.verify import VerifyFailed, verify_database
from appliance.audit.writer import AuditRecord
from appliance.errors import Forbidden, Invalid
from appliance.settings import AuditSettings
from appliance.store.models import AuditCheckpoint, AuditEvent
from appliance.store.session import Store, make_engine
from tests.audit.conftest import APPLIANCE_ID, Owner, add_records, checkpoint, head, record

DEFAULT_DAYS = AuditSettings().retention_days  # audit.retention_days by default

NOW = dt.datetime.now(dt.UTC)
OLD = NOW - dt.timedelta(days=DEFAULT_DAYS + 100)
BEYOND = NOW - dt.timedelta(days=DEFAULT_DAYS + 1)


def seed(store: Store, old: int, recent: int) -> None:
    add_records(store, [record(i, timestamp=OLD + dt.timedelta(minutes=i)) for i in range(old)]
                + [record(old + i, timestamp=NOW - dt.timedelta(days=1)) for i in range(recent)])


def purge(store: Store, signer: Signer, before: dt.datetime = BEYOND, **kwargs: object) -> object:
    return purge_before(store, signer, appliance_id=APPLIANCE_ID, before=before, days=DEFAULT_DAYS,
                        **kwargs)  # type: ignore[arg-type]


def verify(store: Store, signer: Signer) -> object:
    return verify_database(store, appliance_id=APPLIANCE_ID, public_key_pem=signer.public_pem)


def test_retention_setting_defaults_to_six_years() -> None:
    assert AuditSettings().retention_days == 2190  # SEC 17a-4


def test_purge_leaves_a_verifiable_chain(store: Store, signer: Signer) -> None:
    seed(store, old=12, recent=5)
    checkpoint(store, signer)
    result = purge(store, signer)
    assert (result.removed, result.from_id, result.through_id) == (12, 1, 12)  # type: ignore[attr-defined]
    last, _hash, purged = head(store)
    assert (last, purged) == (18, 12)  # 17 events + the audit.purge event
    with store.read() as session:
        assert session.query(AuditEvent).count() == 6
        cp = session.execute(select(AuditCheckpoint).where(AuditCheckpoint.kind == "purge")).scalar_one()
        detail = detail_of(cp)
        assert detail["removed_count"] == 12 and detail["removed_through_id"] == 12
        assert detail["last_removed_hash"] == result.last_removed_hash  # type: ignore[attr-defined]
        assert cp.event_count == 6
        purge_event = session.get(AuditEvent, 18)
        assert purge_event is not None and purge_event.action == "audit.purge"
    report = verify(store, signer)
    assert report.events == 6 and report.purged_through_id == 12  # type: ignore[attr-defined]
    # The append-only protection is back in place after the purge.
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(delete(AuditEvent))
    # Nothing left to purge: a no-op.
    assert purge(store, signer).removed == 0  # type: ignore[attr-defined]


def test_purge_everything_old_then_more_events(store: Store, signer: Signer) -> None:
    seed(store, old=4, recent=0)
    purge(store, signer)
    add_records(store, [record(100)])
    assert verify(store, signer).events == 2  # type: ignore[attr-defined]


def test_refuses_inside_retention(store: Store, signer: Signer) -> None:
    seed(store, old=3, recent=3)
    with pytest.raises(Invalid, match="inside the retention period of 2190 days"):
        purge(store, signer, before=NOW - dt.timedelta(days=30))
    assert head(store)[2] == 0


def test_stops_at_the_first_newer_event(store: Store, signer: Signer) -> None:
    records = [record(i, timestamp=OLD) for i in range(6)]
    records[3] = record(3, timestamp=NOW)  # a newer event in the middle keeps everything after it
    add_records(store, records)
    with store.read() as session:
        plan = plan_purge(session, BEYOND)
    assert (plan.from_id, plan.through_id, plan.count) == (1, 3, 3)
    assert purge(store, signer).through_id == 3  # type: ignore[attr-defined]
    verify(store, signer)


def test_refuses_to_purge_a_broken_chain(store: Store, signer: Signer, owner: Owner) -> None:
    seed(store, old=5, recent=1)
    owner.edit(2, action="erased.evidence")
    with pytest.raises(VerifyFailed, match="event 2"):
        purge(store, signer)
    assert head(store)[2] == 0
    with store.read() as session:  # the refusal is on the record, with its reason
        outcome, detail = session.execute(select(AuditEvent.outcome, AuditEvent.detail).where(
            AuditEvent.action == "audit.purge")).one()
    assert outcome == "failure" and "event 2" in detail


def test_a_purge_inside_retention_is_refused_on_the_record(store: Store, signer: Signer) -> None:
    seed(store, old=2, recent=1)
    with pytest.raises(Invalid):
        purge_before(store, signer, appliance_id=APPLIANCE_ID, before=NOW - dt.timedelta(days=10), days=DEFAULT_DAYS)
    with store.read() as session:
        outcomes = [o for (o,) in session.execute(select(AuditEvent.outcome).where(
            AuditEvent.action == "audit.purge")).all()]
    assert outcomes == ["failure"]


def test_deleted_purge_record_or_forged_head(store: Store, signer: Signer, owner: Owner) -> None:
    seed(store, old=5, recent=2)
    purge(store, signer)
    owner.run(text("UPDATE audit_chain_head SET purged_through_id = 6"), "DELETE FROM audit_events WHERE id = 6")
    with pytest.raises(VerifyFailed, match=r"newest signed purge record .* says through 5"):
        verify(store, signer)
    owner.run(text("UPDATE audit_chain_head SET purged_through_id = 5"),
              delete(AuditCheckpoint).where(AuditCheckpoint.kind == "purge"))
    with pytest.raises(VerifyFailed, match=r"events 1\.\.5 were removed without a signed purge record"):
        verify(store, signer)


def test_export_series_across_a_purge(store: Store, signer: Signer, tmp_path: Path) -> None:
    data_dir, medium = tmp_path / "data", tmp_path / "usb"
    data_dir.mkdir()
    medium.mkdir()
    seed(store, old=6, recent=0)
    long_ago = AuditRecord(action="audit.export", actor_type="system", timestamp=OLD + dt.timedelta(days=1))
    export_to_media(store, signer, appliance_id=APPLIANCE_ID, data_dir=data_dir, dest=medium,
                    record=long_ago)  # events 1..6; its own audit event (7) is old too
    add_records(store, [record(50, timestamp=OLD + dt.timedelta(days=1))])  # 8: old, never exported
    assert purge(store, signer).through_id == 8  # type: ignore[attr-defined]  # 9 is the purge's own event
    add_records(store, [record(51)])
    result = export_to_media(store, signer, appliance_id=APPLIANCE_ID, data_dir=data_dir, dest=medium)
    assert (result.first_event_id, result.last_event_id) == (9, 10)
    report = verify_media(medium)
    assert len(report.series) == 2
    assert report.series[1].manifest["purged_gap"] == {"from_event_id": 7, "through_event_id": 8}


def test_application_role_may_export_but_not_purge(db_url: str, store: Store, signer: Signer, pg_cluster: Any,
                                                   tmp_path: Path) -> None:
    """PostgreSQL privilege model (`vigatra db grant-app-role`): INSERT and SELECT only on audit tables."""
    if not db_url.startswith("postgresql"):
        pytest.skip("roles are a PostgreSQL matter; on SQLite the file's owner is the only role")
    role = f"app_{secrets.token_hex(4)}"
    database = db_url.rsplit("/", 1)[1]
    pg_cluster.run_sql(f"CREATE ROLE {role} LOGIN")
    pg_cluster.run_sql(f'GRANT CONNECT ON DATABASE "{database}" TO {role}')
    for sql in (f"GRANT USAGE ON SCHEMA public TO {role}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
                f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints FROM {role}"):
        pg_cluster.run_sql(sql, database=database)
    app_store = Store(make_engine(db_url.replace("postgresql+psycopg://vigatra@", f"postgresql+psycopg://{role}@")))
    try:
        seed(app_store, old=4, recent=2)
        medium, data_dir = tmp_path / "usb", tmp_path / "data"
        medium.mkdir()
        data_dir.mkdir()
        export_to_media(app_store, signer, appliance_id=APPLIANCE_ID, data_dir=data_dir, dest=medium)
        verify(app_store, signer)
        with pytest.raises(Forbidden, match="needs the database owner"):
            purge(app_store, signer)
        assert head(store)[2] == 0
        assert purge(store, signer).removed == 4  # type: ignore[attr-defined]  # the owner may
        verify(app_store, signer)
    finally:
        app_store.dispose()
