"""`vigatra backup create|verify|restore` on SQLite and PostgreSQL, through the CLI as IT runs it.

Each test works on a configuration with the file provider (``box``, tests/keys/conftest.py) and
secrets sealed the way onboarding seals them, so "the KEK is never in a backup", "secrets stay
sealed", `keys verify` and `audit verify` after a restore are checked on real data.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

from sqlalchemy import func, select

from appliance.audit.checkpoints import signer_from
from appliance.audit.writer import AuditRecord, append
from appliance.crypto import provider_from_settings
from appliance.services.backup import list_backups, scheduled_backup
from appliance.store.models import AuditChainHead, AuditCheckpoint, AuditEvent, Connection
from appliance.store.serve_lock import hold_for_serving
from appliance.store.session import Store
from tests.keys.conftest import Box, write_kek


def backup_dir(tmp_path: Path) -> Path:
    dest = tmp_path / "backups"
    dest.mkdir(mode=0o700, exist_ok=True)
    return dest


def create(box: Box, dest: Path) -> Path:
    result = box.cli("backup", "create", "--dest", str(dest), "--print-path")
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip().splitlines()[-1])
    assert path.is_dir() and path.parent == dest
    return path


def head(store: Store) -> tuple[int, str]:
    with store.read() as session:
        row = session.execute(select(AuditChainHead)).scalar_one()
        return int(row.last_id), row.last_hash


def add_events(store: Store, count: int, action: str = "test.event") -> None:
    with store.unit_of_work() as session:
        append(session, [AuditRecord(action=action, actor_type="system") for _ in range(count)])


def connection_labels(store: Store) -> list[str]:
    with store.read() as session:
        return sorted(session.execute(select(Connection.label)).scalars())


def test_create_writes_owner_only_files_with_hashes_and_no_key(box: Box, tmp_path: Path) -> None:
    seeded = box.seed(box.service(), connections=2, users=1)
    path = create(box, backup_dir(tmp_path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    names = sorted(p.name for p in path.iterdir())
    assert names == ["config.enc", "database.enc", "manifest.json", "manifest.sig", "public_key.pem"]
    for file in path.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    manifest = json.loads((path / "manifest.json").read_bytes())
    assert manifest["appliance_id"] == "keys-test"
    assert manifest["database"]["dialect"] == box.store.dialect
    assert set(manifest["files"]) == {"database.enc", "config.enc"}
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())
    # The head the backup names is the one the database had once the backup's own event was written.
    assert (manifest["audit_head"]["last_event_id"], manifest["audit_head"]["last_hash"]) == head(box.store)
    with box.store.read() as session:
        kinds = list(session.execute(select(AuditCheckpoint.kind)).scalars())
        actions = list(session.execute(select(AuditEvent.action)).scalars())
    assert kinds[-1] == "backup" and actions[-1] == "backup.create"
    # Neither the KEK (as stored, or raw) nor any seeded secret appears anywhere in the backup.
    kek_text = box.kek_file.read_text().strip()
    kek_raw = base64.b64decode(kek_text)
    blob = b"".join(p.read_bytes() for p in path.iterdir())
    assert kek_text.encode() not in blob and kek_raw not in blob
    for secret in seeded.secrets():
        assert secret.encode() not in blob
    assert b"Alice Example" not in blob  # personal data is encrypted too, not only the sealed columns


def test_verify_passes_then_names_a_changed_byte(box: Box, tmp_path: Path) -> None:
    box.seed(box.service(), connections=1)
    path = create(box, backup_dir(tmp_path))
    ok = box.cli("backup", "verify", str(path))
    assert ok.exit_code == 0, ok.output
    assert "valid" in ok.output and "contents decrypted" in ok.output
    data = bytearray((path / "database.enc").read_bytes())
    data[len(data) // 2] ^= 0x01
    (path / "database.enc").write_bytes(bytes(data))
    bad = box.cli("backup", "verify", str(path))
    assert bad.exit_code == 1
    assert "database.enc does not match its SHA-256" in bad.output


def test_verify_refuses_an_edited_manifest(box: Box, tmp_path: Path) -> None:
    path = create(box, backup_dir(tmp_path))
    manifest = json.loads((path / "manifest.json").read_bytes())
    manifest["audit_head"]["last_event_id"] += 5
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    result = box.cli("backup", "verify", str(path))
    assert result.exit_code == 1
    assert "signature does not verify" in result.output


def test_verify_without_the_key_checks_signature_and_hashes_only(box: Box, tmp_path: Path) -> None:
    path = create(box, backup_dir(tmp_path))
    public = tmp_path / "public.pem"
    public.write_text((path / "public_key.pem").read_text())
    result = box.cli("backup", "verify", "--without-key", "--public-key", str(public), str(path))
    assert result.exit_code == 0, result.output
    assert "NOT decrypted" in result.output


def test_restore_brings_back_the_snapshot_then_verifies_chain_and_keys(box: Box, tmp_path: Path) -> None:
    box.seed(box.service(), connections=2, users=1)
    before_labels = connection_labels(box.store)
    path = create(box, backup_dir(tmp_path))
    backup_head = json.loads((path / "manifest.json").read_bytes())["audit_head"]
    # Life goes on after the backup: events and a new connection that the restore will not bring back.
    add_events(box.store, 7)
    box.seed(box.service(), connections=1)
    replaced_id, _ = head(box.store)
    box.store.dispose()

    result = box.cli("backup", "restore", str(path))
    assert result.exit_code == 0, result.output
    assert f"the replaced database ended at audit event {replaced_id}" in result.output
    assert "audit trail valid" in result.output
    assert "sealed value(s) open" in result.output and "FAILED" not in result.output
    assert connection_labels(box.store) == before_labels
    with box.store.read() as session:
        newest = session.execute(select(AuditCheckpoint.kind, AuditCheckpoint.detail)
                                 .order_by(AuditCheckpoint.id.desc()).limit(1)).one()
        restore_event = session.execute(select(AuditEvent.id, AuditEvent.action)
                                        .order_by(AuditEvent.id.desc()).limit(1)).one()
    assert newest.kind == "restore"
    detail = json.loads(newest.detail)
    assert detail["restored_head"]["last_event_id"] == backup_head["last_event_id"]
    assert detail["replaced_head"]["last_event_id"] == replaced_id
    assert restore_event.action == "backup.restore"
    assert restore_event.id == backup_head["last_event_id"] + 1  # the chain continues from the restored head
    assert box.cli("audit", "verify").exit_code == 0
    assert box.cli("keys", "verify").exit_code == 0
    assert "the replaced database is kept" in result.output
    if box.store.dialect == "sqlite":
        assert list(Path(box.store.engine.url.database or "").parent.glob("vigatra.db.replaced-*"))


def test_restore_is_refused_while_the_appliance_runs(box: Box, tmp_path: Path) -> None:
    path = create(box, backup_dir(tmp_path))
    add_events(box.store, 3)
    before = head(box.store)
    serving = hold_for_serving(box.store.engine)
    try:
        result = box.cli("backup", "restore", str(path))
    finally:
        serving.release()
    assert result.exit_code == 1
    assert "the appliance is running" in result.output and "stop it first" in result.output
    assert head(box.store) == before


def test_restore_with_another_kek_changes_nothing(box: Box, tmp_path: Path) -> None:
    path = create(box, backup_dir(tmp_path))
    add_events(box.store, 2)
    before = head(box.store)
    write_kek(box.kek_file)  # a different KEK in the configured place
    result = box.cli("backup", "restore", str(path))
    assert result.exit_code == 1
    assert "KEK unavailable" in result.output or "another KEK" in result.output
    assert head(box.store) == before


def test_restore_refuses_a_backup_of_another_appliance(box: Box, tmp_path: Path) -> None:
    path = create(box, backup_dir(tmp_path))
    box.raw["appliance_id"] = "another-appliance"
    box.config.write_text(json.dumps(box.raw))  # JSON is YAML
    before = head(box.store)
    result = box.cli("backup", "restore", str(path))
    assert result.exit_code == 1
    assert "is of appliance keys-test" in result.output
    assert head(box.store) == before


def test_backup_under_concurrent_writes_is_consistent(box: Box, tmp_path: Path) -> None:
    """Events appended while the snapshot runs: the restored chain still verifies end to end."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                add_events(box.store, 5, action="concurrent.write")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        path = create(box, backup_dir(tmp_path))
    finally:
        stop.set()
        thread.join()
    assert not errors
    box.store.dispose()
    result = box.cli("backup", "restore", str(path))
    assert result.exit_code == 0, result.output
    assert "audit trail valid" in result.output


def test_scheduled_backups_keep_the_retention_count(box: Box, tmp_path: Path) -> None:
    dest = backup_dir(tmp_path)
    manual = create(box, dest)
    box.raw["backup"] = {"dest": str(dest), "retention_count": 2}
    box.config.write_text(json.dumps(box.raw))
    settings = box.settings
    provider = provider_from_settings(settings)
    made = [scheduled_backup(box.store, settings, provider) for _ in range(3)]
    assert all(m is not None for m in made)
    remaining = list_backups(dest)
    assert manual in remaining  # made by hand: never pruned
    scheduled = [p for p in remaining if p != manual]
    assert scheduled == sorted(m.path for m in made if m is not None)[-2:]


def test_backup_refuses_the_data_dir_and_a_missing_destination(box: Box, tmp_path: Path) -> None:
    box.data_dir.mkdir(exist_ok=True)
    inside = box.cli("backup", "create", "--dest", str(box.data_dir))
    assert inside.exit_code == 1 and "data directory" in inside.output
    missing = box.cli("backup", "create", "--dest", str(tmp_path / "nope"))
    assert missing.exit_code == 1 and "does not exist" in missing.output
    with box.store.read() as session:
        assert session.execute(select(func.count()).select_from(AuditCheckpoint)
                               .where(AuditCheckpoint.kind == "backup")).scalar_one() == 0


def test_signer_is_the_audit_key(box: Box, tmp_path: Path) -> None:
    path = create(box, backup_dir(tmp_path))
    signer = signer_from(provider_from_settings(box.settings))
    assert (path / "public_key.pem").read_text() == signer.public_pem
    assert os.stat(path / "manifest.sig").st_size == 64


def test_the_scheduler_runs_backups_only_when_a_destination_is_set(box: Box, tmp_path: Path) -> None:
    from appliance.poller.jobs import extra_jobs

    assert "scheduled_backup" not in {job.id for job in extra_jobs(box.settings)}
    box.raw["backup"] = {"dest": str(backup_dir(tmp_path)), "interval_hours": 6}
    box.config.write_text(json.dumps(box.raw))
    (job,) = [job for job in extra_jobs(box.settings) if job.id == "scheduled_backup"]
    assert job.seconds == 6 * 3600
