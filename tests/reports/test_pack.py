"""The examination pack: written by `vigatra reports pack` (a real subprocess on the test's database), verified
offline by `vigatra reports verify` (no configuration, no database), and failing — naming the file — when one
byte of any file changes, a file is removed or a file is added. Bad periods and destinations write nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.audit.media.signed import verify_signed_directory
from appliance.audit.verify import VerifyFailed
from appliance.services.filings.pack import FORMAT
from appliance.store.models import (
    Alert,
    AlertNote,
    AuditEvent,
    CodeAcknowledgement,
    CodeVersion,
)
from tests.reports.test_reports_api import seeded
from tests.support.proc import VIGATRA
from tests.support.sim import RunningSim
from tests.sync.conftest import vigatra, write_config

CODE = b"Code of ethics v1: access persons report holdings within 10 days.\n"


def more_records(sta: Any, data: dict[str, Any]) -> None:
    """A code version and its acknowledgement, a resolved alert with a note (seeded() made a submission)."""
    now = dt.datetime.now(dt.UTC)
    with sta.store.unit_of_work() as session:
        version = CodeVersion(version=1, title="Code of ethics", filename="code.txt", media_type="text/plain",
                              content=CODE, sha256=hashlib.sha256(CODE).hexdigest(), size=len(CODE),
                              uploaded_label="alice")
        session.add(version)
        session.flush()
        session.add(CodeAcknowledgement(code_version_id=version.id, employee_id=data["employee_id"],
                                        typed_name="E Mployee"))
        alert = Alert(employee_id=data["employee_id"], kind="restricted_trade", severity="high", status="resolved",
                      title="Bought a restricted asset", resolved_at=now, resolution="pre-cleared late; warned")
        session.add(alert)
        session.flush()
        session.add(AlertNote(alert_id=alert.id, author_label="carol", text="Spoke to the employee"))


def verify_cli(path: Path) -> subprocess.CompletedProcess[str]:
    """`vigatra reports verify PATH` with no configuration at all (a regulator's machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGATRA")}
    return subprocess.run([*VIGATRA, "reports", "verify", str(path)], check=False, capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture
def pack(sta: Any, sim: RunningSim, tmp_path: Path) -> Path:
    data = seeded(sta, sim)
    more_records(sta, data)
    config = write_config(sta, tmp_path / "vigatra.yaml")
    dest = tmp_path / "usb"
    dest.mkdir()
    first = (data["today"] - dt.timedelta(days=60)).isoformat()
    done = vigatra(config, "reports", "pack", "--from", first, "--to", data["today"].isoformat(), "--dest", str(dest))
    assert done.returncode == 0, done.stderr
    (written,) = list(dest.iterdir())
    return written


def test_the_pack_holds_every_report_and_verifies_offline(pack: Path, sta: Any) -> None:
    names = {p.name for p in pack.iterdir()}
    for expected in ("manifest.json", "manifest.sig", "public_key.pem", "README.txt", "access-persons.csv",
                     "access-persons.html", "late-reports.csv", "coverage-gaps.csv", "code-versions.csv",
                     "code-of-ethics-v1.txt", "acknowledgements.csv", "tasks.csv", "submissions.csv", "reviews.csv",
                     "alerts.csv", "alert-notes.csv", "alert-evidence.csv"):
        assert expected in names, expected
    assert any(n.startswith("holdings-") and n.endswith(".csv") for n in names)
    assert any(n.startswith("transactions-") and n.endswith(".html") for n in names)
    assert any(n.startswith("submission-") and n.endswith(".json") for n in names)
    assert (pack / "code-of-ethics-v1.txt").read_bytes() == CODE
    assert "pre-cleared late; warned" in (pack / "alerts.csv").read_text()
    assert "<style>" in next(pack.glob("transactions-*.html")).read_text(), "the pack's pages carry their stylesheet"
    manifest = json.loads((pack / "manifest.json").read_text())
    assert manifest["format"] == FORMAT and manifest["period"]["to"]
    done = verify_cli(pack)
    assert done.returncode == 0, done.stderr
    assert "examination pack valid" in done.stdout
    with sta.store.read() as session:
        rows = session.execute(select(AuditEvent.outcome, AuditEvent.detail).where(
            AuditEvent.action == "reports.pack")).all()
    assert [r[0] for r in rows] == ["success"] and pack.name in rows[0][1]


def test_one_changed_byte_in_any_file_fails_naming_the_file(pack: Path, tmp_path: Path) -> None:
    for target in sorted(p.name for p in pack.iterdir()):
        copy = tmp_path / f"copy-{target}"
        shutil.copytree(pack, copy)
        data = bytearray((copy / target).read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / target).write_bytes(bytes(data))
        with pytest.raises(VerifyFailed) as failed:
            verify_signed_directory(copy, FORMAT)
        # The signature and the key are the manifest's: a change there may be named as either.
        names = {target, "manifest"} if target in ("manifest.sig", "public_key.pem") else {target}
        message = str(failed.value)
        assert any(name in message for name in names) or "does not verify" in message, (target, message)
        shutil.rmtree(copy)
    broken = tmp_path / "broken"
    shutil.copytree(pack, broken)
    victim = next(broken.glob("transactions-*.csv"))
    victim.write_bytes(victim.read_bytes().replace(b"0.25", b"0.26", 1))
    done = verify_cli(broken)
    assert done.returncode == 1 and victim.name in done.stderr and "altered" in done.stderr


def test_a_removed_or_added_file_fails(pack: Path, tmp_path: Path) -> None:
    removed = tmp_path / "removed"
    shutil.copytree(pack, removed)
    (removed / "alerts.csv").unlink()
    done = verify_cli(removed)
    assert done.returncode == 1 and "alerts.csv is missing" in done.stderr
    added = tmp_path / "added"
    shutil.copytree(pack, added)
    (added / "extra.csv").write_text("a,b\r\n")
    done = verify_cli(added)
    assert done.returncode == 1 and "extra.csv is not listed" in done.stderr


@pytest.mark.parametrize("args", [
    ["--period", "2026Q5"], ["--period", "20260"], ["--from", "2026-02-01"],
    ["--from", "2026-03-01", "--to", "2026-02-01"], ["--period", "2026", "--to", "2026-01-01"]])
def test_bad_periods_write_nothing(sta: Any, tmp_path: Path, args: list[str]) -> None:
    config = write_config(sta, tmp_path / "vigatra.yaml")
    dest = tmp_path / "usb"
    dest.mkdir()
    done = vigatra(config, "reports", "pack", *args, "--dest", str(dest))
    assert done.returncode == 1 and done.stderr.startswith("vigatra: "), done.stderr
    assert list(dest.iterdir()) == []


def test_refused_destinations_write_nothing(sta: Any, tmp_path: Path) -> None:
    config = write_config(sta, tmp_path / "vigatra.yaml")
    inside = Path(sta.settings.data_dir) / "packs"
    inside.mkdir()
    done = vigatra(config, "reports", "pack", "--period", "2026Q3", "--dest", str(inside))
    assert done.returncode == 1 and "data directory" in done.stderr
    assert list(inside.iterdir()) == []
    done = vigatra(config, "reports", "pack", "--period", "2026Q3", "--dest", str(tmp_path / "missing"))
    assert done.returncode == 1 and "does not exist" in done.stderr
