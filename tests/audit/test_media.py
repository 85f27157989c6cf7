"""Exports to removable media and their offline verification (reviewer tests 10 and 11).

Both databases. Disk-full and read-only destinations use real tmpfs mounts when the tests may mount
(root in a container); the disk-full case is also simulated by an ENOSPC injected at the write call,
which runs everywhere.
"""

from __future__ import annotations

import csv
import datetime as dt
import errno
import functools
import hashlib
import itertools
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from appliance.audit import media
from appliance.audit.checkpoints import Signer
from appliance.audit.export import CSV_COLUMNS, AuditFilter, export_csv, unescape_cell
from appliance.audit.media import ExportFailed, export_to_media, verify_export, verify_media
from appliance.audit.media import writer as media_writer
from appliance.audit.verify import VerifyFailed, verify_database
from appliance.audit.writer import storable
from appliance.errors import Invalid
from appliance.store.models import AuditCheckpoint, AuditEvent
from appliance.store.session import Store
from tests.audit.conftest import APPLIANCE_ID, Owner, add_events, add_records, event_row, record, reference_csv

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def medium(tmp_path: Path) -> Path:
    d = tmp_path / "usb"
    d.mkdir()
    return d


def export(store: Store, signer: Signer, data_dir: Path, dest: Path, **kwargs: object) -> media.ExportResult:
    return export_to_media(store, signer, appliance_id=APPLIANCE_ID, data_dir=data_dir, dest=dest, **kwargs)  # type: ignore[arg-type]


def exports_in(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir())


def test_export_and_verify_offline(store: Store, signer: Signer, data_dir: Path, medium: Path) -> None:
    add_events(store, 25)
    result = export(store, signer, data_dir, medium)
    assert result.rows == 25 and (result.first_event_id, result.last_event_id) == (1, 25)
    assert exports_in(medium) == [result.path]
    assert sorted(p.name for p in result.path.iterdir()) == ["audit.csv", "manifest.json", "manifest.sig",
                                                             "public_key.pem"]
    assert result.path.name == f"{APPLIANCE_ID}_events-1-25"
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["row_count"] == 25 and manifest["first_prev_hash"] == "0" * 64
    assert manifest["appliance_id"] == APPLIANCE_ID and manifest["public_key_id"] == signer.key_id
    assert manifest["previous_manifest_sha256"] is None and manifest["mode"] == "incremental"
    header = (result.path / "audit.csv").read_text().splitlines()[0]
    assert header.startswith("user_id,action,resource_type,resource_id,ip_address,timestamp")
    summary = verify_export(result.path, public_key_pem=signer.public_pem)
    assert summary.rows == 25 and summary.manifest_sha256 == result.manifest_sha256
    # Exporting is audited and checkpointed; the chain (with those) still verifies.
    with store.read() as session:
        event = session.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
        assert event.action == "audit.export" and event.outcome == "success"
        assert result.manifest_sha256 in event.detail and result.path.name == event.resource_id
        cp = session.execute(select(AuditCheckpoint).where(AuditCheckpoint.id == result.checkpoint_id)).scalar_one()
        assert cp.kind == "export" and cp.last_event_id == 26 and result.manifest_sha256 in cp.detail
    verify_database(store, appliance_id=APPLIANCE_ID, public_key_pem=signer.public_pem)


def test_pinned_key(store: Store, signer: Signer, data_dir: Path, medium: Path) -> None:
    add_events(store, 3)
    path = export(store, signer, data_dir, medium).path
    other = Signer.from_seed(os.urandom(32))
    with pytest.raises(VerifyFailed, match="not with the expected key"):
        verify_export(path, public_key_pem=other.public_pem)


def test_one_changed_csv_byte(store: Store, signer: Signer, data_dir: Path, medium: Path) -> None:
    add_events(store, 10)
    path = export(store, signer, data_dir, medium).path
    data = bytearray((path / "audit.csv").read_bytes())
    at = data.index(b"/api/v1/employees/4")
    data[at + len(b"/api/v1/employees/")] = ord("5")
    (path / "audit.csv").write_bytes(bytes(data))
    with pytest.raises(VerifyFailed, match=r"audit\.csv: SHA-256"):
        verify_export(path)


def test_changed_manifest_field(store: Store, signer: Signer, data_dir: Path, medium: Path) -> None:
    add_events(store, 10)
    path = export(store, signer, data_dir, medium).path
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["row_count"] = 9
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with pytest.raises(VerifyFailed, match=r"manifest\.sig does not verify"):
        verify_export(path)


def test_re_signed_manifest_with_another_key(store: Store, signer: Signer, data_dir: Path, medium: Path) -> None:
    """A forger who re-signs with their own key passes only if nobody pins the key."""
    add_events(store, 4)
    path = export(store, signer, data_dir, medium).path
    forger = Signer.from_seed(os.urandom(32))
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "public_key.pem").write_text(forger.public_pem)
    manifest["files"]["public_key.pem"]["sha256"] = hashlib.sha256(forger.public_pem.encode()).hexdigest()
    manifest["public_key_id"] = forger.key_id
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (path / "manifest.json").write_bytes(body)
    (path / "manifest.sig").write_bytes(forger.sign(body))
    verify_export(path)
    with pytest.raises(VerifyFailed, match="not with the expected key"):
        verify_export(path, public_key_pem=signer.public_pem)


def test_swapped_manifests(store: Store, signer: Signer, data_dir: Path, medium: Path) -> None:
    add_events(store, 5)
    first = export(store, signer, data_dir, medium).path
    add_events(store, 5, start=5)
    second = export(store, signer, data_dir, medium).path
    for name in ("manifest.json", "manifest.sig"):
        a, b = (first / name).read_bytes(), (second / name).read_bytes()
        (first / name).write_bytes(b)
        (second / name).write_bytes(a)
    for path in (first, second):
        with pytest.raises(VerifyFailed, match="SHA-256 or size does not match"):
            verify_export(path)
    # Only the manifest swapped, not its signature:
    shutil.copyfile(first / "manifest.json", second / "manifest.json")
    with pytest.raises(VerifyFailed, match=r"manifest\.sig does not verify"):
        verify_export(second)


def test_series_links_and_a_dropped_export_fails(store: Store, signer: Signer, data_dir: Path,
                                                 medium: Path) -> None:
    paths = []
    for n in range(4):
        add_events(store, 3, start=3 * n)
        paths.append(export(store, signer, data_dir, medium).path)
    # Each export starts right after the previous one (the export's own audit event included).
    report = verify_media(medium, public_key_pem=signer.public_pem)
    assert [s.path for s in report.series] == paths
    assert report.series[-1].through_event_id == 15
    manifests = [json.loads((p / "manifest.json").read_text()) for p in paths]
    for before, after in itertools.pairwise(manifests):
        assert after["first_prev_hash"] == before["last_hash"]
        assert after["after_event_id"] == before["through_event_id"]
    shutil.rmtree(paths[2])
    with pytest.raises(VerifyFailed, match="an export between them is missing"):
        verify_media(medium)


def test_series_swapped_export_from_another_series(store: Store, signer: Signer, data_dir: Path, tmp_path: Path,
                                                   medium: Path) -> None:
    add_events(store, 3)
    export(store, signer, data_dir, medium)
    add_events(store, 3, start=3)
    second = export(store, signer, data_dir, medium).path
    # A range export of the same events is valid alone, but it is not the series' second export.
    other = tmp_path / "other"
    other.mkdir()
    extract = export(store, signer, data_dir, other, since=T0 - dt.timedelta(days=3650)).path
    shutil.rmtree(second)
    shutil.copytree(extract, medium / second.name)
    verify_media(medium)  # a range export sits outside the series: the series is now one export...
    add_events(store, 2, start=6)
    export(store, signer, data_dir, medium)  # ...and the next incremental names the removed one
    with pytest.raises(VerifyFailed, match="missing"):
        verify_media(medium)


def test_empty_incremental_export(store: Store, signer: Signer, data_dir: Path, medium: Path) -> None:
    add_events(store, 2)
    export(store, signer, data_dir, medium)
    # Nothing happened except the first export's own audit event (3); then nothing at all.
    second = export(store, signer, data_dir, medium)
    third = export(store, signer, data_dir, medium)
    assert (second.rows, third.rows) == (1, 1)  # the previous export's audit event
    report = verify_media(medium)
    assert len(report.series) == 3


def test_time_range_is_a_contiguous_id_range(store: Store, signer: Signer, data_dir: Path, medium: Path) -> None:
    records = [record(i, timestamp=T0 + dt.timedelta(hours=i)) for i in range(10)]
    # A slow request: its event is written late but carries its start time (ids and times disagree).
    records[6] = record(6, timestamp=T0 + dt.timedelta(hours=2, minutes=30))
    add_records(store, records)
    result = export(store, signer, data_dir, medium, since=T0 + dt.timedelta(hours=3),
                    until=T0 + dt.timedelta(hours=8))
    assert (result.first_event_id, result.last_event_id) == (4, 8)  # 7 (id) included although it is earlier
    summary = verify_export(result.path)
    assert summary.manifest["range"] == {"from": "2026-03-01T03:00:00.000Z", "to": "2026-03-01T08:00:00.000Z"}
    assert summary.manifest["previous_manifest_sha256"] is None and summary.mode == "range"
    assert result.path.name == f"{APPLIANCE_ID}_20260301T030000Z-20260301T080000Z"
    with pytest.raises(Invalid, match="no audit events"):
        export(store, signer, data_dir, medium, since=dt.datetime(2100, 1, 1, tzinfo=dt.UTC))


FORMULAS = ['=HYPERLINK("http://evil.example/x","click")', "+1", "@SUM(1)", "-2", "a,b", 'say "hi"',
            "line one\nline two", "\tindent", "\r\nx", "'=already quoted", "''x", "'", "'+", "\0nul", "=1+2;=3",
            "plain", "ünïcødé ✓", ""]


def test_formula_injection_round_trips(store: Store, signer: Signer, data_dir: Path, medium: Path) -> None:
    # A record escapes NUL as it is made (PostgreSQL text cannot hold it): "\0nul" is stored as "\\x00nul".
    names = [storable(n) for n in FORMULAS]
    add_records(store, [record(i, resource_id=name, user_agent=name, detail=name, path=name, action=name or "x")
                        for i, name in enumerate(FORMULAS)])
    path = export(store, signer, data_dir, medium).path
    verify_export(path)
    with open(path / "audit.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(CSV_COLUMNS)
    at = CSV_COLUMNS.index("resource_id")
    for name, row in zip(names, rows[1:], strict=True):
        cell = row[at]
        assert unescape_cell(cell) == name
        if name[:1] in ("=", "+", "-", "@", "\t", "\r", "\0"):
            assert cell == "'" + name  # a spreadsheet shows text, never evaluates it


def test_export_of_a_tampered_range_is_refused(store: Store, signer: Signer, owner: Owner, data_dir: Path,
                                               medium: Path) -> None:
    add_events(store, 8)
    owner.edit(5, resource_id="999")
    with pytest.raises(VerifyFailed, match="event 5"):
        export(store, signer, data_dir, medium)
    assert exports_in(medium) == []
    with store.read() as session:
        assert session.query(AuditCheckpoint).count() == 0
        failed = session.execute(select(AuditEvent).where(AuditEvent.action == "audit.export")).scalar_one()
        assert failed.outcome == "failure"


def test_an_export_that_stops_short_of_the_chain_head_is_refused(store: Store, signer: Signer, owner: Owner,
                                                                  data_dir: Path, medium: Path) -> None:
    """Events cut from the end of the table while the chain head still names them: the export would be a
    consistent but shorter chain, so it is refused rather than signed as if it reached the head."""
    add_events(store, 8)
    owner.truncate_tail(6, rewind_head=False)
    with pytest.raises(VerifyFailed, match=r"events 7\.\.8 are missing"):
        export(store, signer, data_dir, medium)
    assert exports_in(medium) == []
    assert _export_outcomes(store) == ["failure"]


def test_incremental_export_notices_a_rewritten_past(store: Store, signer: Signer, owner: Owner, data_dir: Path,
                                                     medium: Path) -> None:
    add_events(store, 4)
    export(store, signer, data_dir, medium)
    owner.edit(4, hash="f" * 64)  # the last exported event (the export's own audit event is 5)
    with pytest.raises(VerifyFailed, match="rewritten"):
        export(store, signer, data_dir, medium)
    assert _export_outcomes(store) == ["success", "failure"]  # refused while planning, and audited


# -- destinations -----------------------------------------------------------------------------------


def test_refuses_the_data_dir(store: Store, signer: Signer, data_dir: Path, tmp_path: Path) -> None:
    inside = data_dir / "exports"
    inside.mkdir()
    link = tmp_path / "looks-outside"
    link.symlink_to(inside)
    for dest in (data_dir, inside, link):
        with pytest.raises(Invalid, match="refusing to export into the data directory"):
            export(store, signer, data_dir, dest)
    assert list(inside.iterdir()) == []


def test_refuses_a_missing_destination(store: Store, signer: Signer, data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="does not exist"):
        export(store, signer, data_dir, tmp_path / "not-mounted")
    assert _export_outcomes(store) == ["failure"]


def _export_outcomes(store: Store) -> list[str]:
    with store.read() as session:
        return [o for (o,) in session.execute(select(AuditEvent.outcome).where(
            AuditEvent.action == "audit.export").order_by(AuditEvent.id)).all()]


def test_the_export_is_readable_by_its_owner_only(store: Store, signer: Signer, data_dir: Path,
                                                  medium: Path) -> None:
    add_events(store, 3)
    result = export(store, signer, data_dir, medium)
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in result.path.iterdir()} == {
        name: 0o600 for name in ("audit.csv", "manifest.json", "manifest.sig", "public_key.pem")}


def _mount_tmpfs(path: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                          check=False)
    return done.returncode == 0


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if not _mount_tmpfs(path, "ro,size=1m"):
        pytest.skip("running as root without permission to mount a read-only tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_refuses_a_read_only_destination(store: Store, signer: Signer, data_dir: Path, read_only_dir: Path) -> None:
    add_events(store, 2)
    with pytest.raises(Invalid, match="read-only"):
        export(store, signer, data_dir, read_only_dir)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "tiny"
    path.mkdir()
    if not _mount_tmpfs(path, "size=64k"):
        pytest.skip("cannot mount a size-limited tmpfs here (needs root); the injected ENOSPC test covers it")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def _assert_nothing_claimed(store: Store, dest: Path) -> None:
    assert list(dest.iterdir()) == []
    with store.read() as session:
        assert session.query(AuditCheckpoint).filter(AuditCheckpoint.kind == "export").count() == 0
        outcomes = session.execute(select(AuditEvent.outcome).where(AuditEvent.action == "audit.export")).all()
        assert [o[0] for o in outcomes] == ["failure"]


def test_disk_full_on_a_real_tmpfs(store: Store, signer: Signer, data_dir: Path, tiny_tmpfs: Path) -> None:
    add_events(store, 400, detail="x" * 400)  # ~270 kB of CSV into 64 kB
    with pytest.raises(ExportFailed, match="No space left on device"):
        export(store, signer, data_dir, tiny_tmpfs)
    _assert_nothing_claimed(store, tiny_tmpfs)


@pytest.mark.parametrize("failing", ["manifest.json", "manifest.sig"])
def test_disk_full_injected(store: Store, signer: Signer, data_dir: Path, medium: Path,
                            monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    add_events(store, 5)
    real = media_writer._write_file

    def full(path: Path, data: bytes) -> str:
        if path.name == failing:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(media_writer, "_write_file", full)
    with pytest.raises(ExportFailed, match=r"No space left on device.*nothing was recorded"):
        export(store, signer, data_dir, medium)
    _assert_nothing_claimed(store, medium)


def test_failed_commit_removes_the_files(store: Store, signer: Signer, data_dir: Path, medium: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    add_events(store, 5)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(media_writer, "write_checkpoint", broken)
    with pytest.raises(RuntimeError):
        export(store, signer, data_dir, medium)
    _assert_nothing_claimed(store, medium)


def test_media_csv_is_the_api_csv(store: Store, signer: Signer, data_dir: Path, medium: Path) -> None:
    """Same columns, same escaping, same bytes as GET /api/v1/audit?format=csv over the same ids."""
    names = [n for n in FORMULAS if "\0" not in n]
    add_records(store, [record(i, resource_id=name, user_agent=name, api_key_id=i if i % 2 else None,
                               status=None if i % 3 else 403) for i, name in enumerate(names)])
    result = export(store, signer, data_dir, medium)
    flt = AuditFilter(after_id=0, through_id=result.last_event_id)
    api = b"".join(part.data for part in export_csv(store, flt))
    assert (result.path / "audit.csv").read_bytes() == api == reference_csv(store, flt)


def test_media_export_rendered_by_worker_processes(store: Store, signer: Signer, data_dir: Path, medium: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest's row count and first/last ids and hashes come from parts rendered in other processes."""
    add_records(store, [record(i, user_agent="Mozilla/5.0 (KHTML, like Gecko)" if i % 4 else "-1")
                        for i in range(40)])
    monkeypatch.setattr(media_writer, "export_csv",
                        functools.partial(export_csv, workers=2, parallel_min=0, range_ids=7, page=3))
    result = export(store, signer, data_dir, medium)
    assert (result.rows, result.first_event_id, result.last_event_id) == (40, 1, 40)
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["first_event_hash"] == event_row(store, 1)["hash"]
    assert manifest["last_hash"] == event_row(store, 40)["hash"]
    assert (result.path / "audit.csv").read_bytes() == reference_csv(store, AuditFilter(through_id=40))
    verify_export(result.path, public_key_pem=signer.public_pem)


def test_sqlite_timestamp_in_another_text_form(store: Store, signer: Signer, owner: Owner, data_dir: Path,
                                               medium: Path) -> None:
    """A timestamp SQLite holds in another (equivalent) text form takes the typed path, not a false alarm."""
    if store.dialect != "sqlite":
        pytest.skip("SQLite stores timestamps as text")
    add_records(store, [record(i, timestamp=T0 + dt.timedelta(seconds=i)) for i in range(3)])
    owner.run("UPDATE audit_events SET timestamp = '2026-03-01 00:00:01' WHERE id = 2")
    verify_database(store, appliance_id=APPLIANCE_ID, public_key_pem=signer.public_pem)
    verify_export(export(store, signer, data_dir, medium).path)
    owner.run("UPDATE audit_events SET timestamp = '2026-03-01 00:00:01.002000' WHERE id = 2")
    with pytest.raises(VerifyFailed, match="event 2"):
        verify_database(store, appliance_id=APPLIANCE_ID, public_key_pem=signer.public_pem)


def test_escape_round_trip_is_exact() -> None:
    """escape_cell/unescape_cell are inverse for any text (values that begin with ' included)."""
    import random

    from appliance.audit.export import escape_cell

    rng = random.Random(11)
    for _ in range(20000):
        text = "".join(rng.choice("'=+-@\t\r\0a,\"\n") for _ in range(rng.randint(0, 5)))
        escaped = escape_cell(text)
        assert unescape_cell(escaped) == text
        assert escaped[:1] not in ("=", "+", "-", "@", "\t", "\r", "\0")
