"""After a backup restore, the series of audit exports on removable media continues, and says why.

The story (issue 25): exports go to a USB stick; the database is restored from a backup older than
the newest export; the next export must state the restored head and the gap (signed), and
`vigatra audit verify DIR` on the regulator's machine must accept the series, say what happened and
which exports the restore superseded. A database put back by hand (no restore record) still fails.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from appliance.audit.media import verify_media
from appliance.audit.verify import VerifyFailed
from appliance.store.models import AuditChainHead
from tests.backup.test_backup import add_events, backup_dir, create
from tests.keys.conftest import Box


def export(box: Box, medium: Path) -> Path:
    result = box.cli("audit", "export", "--dest", str(medium))
    assert result.exit_code == 0, result.output
    return _newest(medium)


def _newest(medium: Path) -> Path:
    return max((p for p in medium.iterdir() if p.is_dir() and not p.name.startswith(".")),
               key=lambda p: json.loads((p / "manifest.json").read_text())["created_at"])


def head_id(box: Box) -> int:
    with box.store.read() as session:
        return int(session.execute(select(AuditChainHead.last_id)).scalar_one())


def test_the_export_after_a_restore_declares_it_and_the_series_verifies(box: Box, tmp_path: Path) -> None:
    medium = tmp_path / "usb"
    medium.mkdir()
    add_events(box.store, 5)
    first = export(box, medium)
    backup = create(box, backup_dir(tmp_path))
    restored_head = json.loads((backup / "manifest.json").read_text())["audit_head"]
    add_events(box.store, 4)
    before_restore = export(box, medium)  # written before the restore: it holds events the restore takes away
    add_events(box.store, 3)
    replaced_head = head_id(box)
    box.store.dispose()
    assert box.cli("backup", "restore", str(backup)).exit_code == 0
    add_events(box.store, 2)
    after_restore = export(box, medium)

    manifest = json.loads((after_restore / "manifest.json").read_text())
    (declared,) = manifest["restores"]
    assert declared["restored_head"]["last_event_id"] == restored_head["last_event_id"]
    assert declared["restored_head"]["last_hash"] == restored_head["last_hash"]
    assert declared["replaced_head"]["last_event_id"] == replaced_head
    assert declared["not_in_trail"] == {"from_event_id": restored_head["last_event_id"] + 1,
                                        "through_event_id": replaced_head}
    # It continues the export the restored database knows as the last one.
    assert manifest["previous_manifest_sha256"] == hashlib.sha256((first / "manifest.json").read_bytes()).hexdigest()
    assert manifest["after_event_id"] == json.loads((first / "manifest.json").read_text())["through_event_id"]

    report = verify_media(medium)
    assert [s.path for s in report.series] == [first, after_restore]
    text = "\n".join(report.lines())
    assert f"restored on {declared['restored_at']} from backup {declared['backup_id']}" in text
    assert f"events {restored_head['last_event_id'] + 1}..{replaced_head} of the replaced database" in text
    assert f"superseded by that restore, still valid as written: {before_restore.name}" in text
    assert "audit export valid: 3 export(s)" in text
    cli = box.cli("audit", "verify", str(medium))
    assert cli.exit_code == 0 and "declares (signed)" in cli.output
    # The next export after that continues the series as usual, with no declaration.
    add_events(box.store, 1)
    later = export(box, medium)
    assert "restores" not in json.loads((later / "manifest.json").read_text())
    assert [s.path for s in verify_media(medium).series] == [first, after_restore, later]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # copying the file back: a by-hand SQLite restore
def test_a_database_put_back_by_hand_still_breaks_the_series(box: Box, tmp_path: Path) -> None:
    """No restore record, no declaration: two exports follow one, and verification says so."""
    medium = tmp_path / "usb"
    medium.mkdir()
    add_events(box.store, 3)
    export(box, medium)
    db_file = Path(box.store.engine.url.database or "")
    box.store.dispose()
    saved = tmp_path / "saved.db"
    shutil.copyfile(db_file, saved)
    add_events(box.store, 3)
    export(box, medium)
    box.store.dispose()
    shutil.copyfile(saved, db_file)
    for suffix in ("-wal", "-shm"):
        Path(str(db_file) + suffix).unlink(missing_ok=True)
    add_events(box.store, 2)
    export(box, medium)
    with pytest.raises(VerifyFailed, match="no backup restore explains it"):
        verify_media(medium)
