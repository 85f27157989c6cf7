"""An interrupted `vigatra audit export` leaves the series intact and no process behind.

An export becomes part of the series only when it is recorded: SIGTERM while it is written removes
its files and records nothing (the failure is audited); SIGTERM while it is recorded waits until it
is in place. What a killed run leaves is tidied by the next export to the same place — a recorded
``.partial`` moved into place, an unrecorded one removed, a complete export the database never recorded
set aside as ``<name>.unrecorded`` — and `vigatra audit verify DIR` reports what it left out. Before, a
complete, signed but unrecorded export stayed in the series and the next one failed verification
("both claim to follow"). Export workers die with the exporting process, even under SIGKILL.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.audit.checkpoints import Signer
from appliance.audit.media import ExportFailed, export_to_media, verify_media
from appliance.audit.media import writer as media_writer
from appliance.audit.verify import VerifyFailed
from appliance.errors import Conflict
from appliance.store.models import AuditCheckpoint, AuditEvent
from appliance.store.session import Store
from tests.audit import test_cli
from tests.audit.conftest import APPLIANCE_ID, add_events
from tests.audit.test_cli import Installed

installed = test_cli.installed  # the fixture: an appliance made by `vigatra init`, on both databases


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


def export(store: Store, signer: Signer, data_dir: Path, dest: Path) -> media_writer.ExportResult:
    return export_to_media(store, signer, appliance_id=APPLIANCE_ID, data_dir=data_dir, dest=dest)


def recorded_exports(store: Store) -> list[str]:
    with store.read() as session:
        return [json.loads(row.detail)["directory"] for row in session.execute(
            select(AuditCheckpoint).where(AuditCheckpoint.kind == "export").order_by(AuditCheckpoint.id)).scalars()]


def export_outcomes(store: Store) -> list[str]:
    with store.read() as session:
        return list(session.execute(select(AuditEvent.outcome).where(AuditEvent.action == "audit.export")
                                    .order_by(AuditEvent.id)).scalars())


# -- through the real CLI: SIGTERM delivered to the process mid-export --------------------------------

@pytest.fixture
def cli_box(installed: Installed, tmp_path: Path) -> tuple[Installed, Path]:
    """An appliance made by `vigatra init` with 30 events, and a medium."""
    box = installed
    medium = tmp_path / "usb"
    medium.mkdir()
    add_events(box.store, 30)
    return box, medium


def sigterm_when(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, *, when: Any = None) -> None:
    """SIGTERM this process when ``module.name`` is called (``when``: only for these arguments)."""
    real = getattr(module, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if when is None or when(*args):
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)


def test_sigterm_while_an_export_is_written_removes_it_and_records_nothing(
        cli_box: tuple[Installed, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    box, medium = cli_box
    real_write_file = media_writer._write_file
    sigterm_when(monkeypatch, media_writer, "_write_file", when=lambda path, _data: path.name == "manifest.json")
    result = box.cli("audit", "export", "--dest", str(medium))
    assert result.exit_code == 1
    assert "the export was interrupted by SIGTERM; the partial export was removed and nothing was recorded" \
        in result.stderr
    assert list(medium.iterdir()) == []
    assert recorded_exports(box.store) == []
    assert export_outcomes(box.store) == ["failure"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the command's handler is gone again

    monkeypatch.setattr(media_writer, "_write_file", real_write_file)
    assert box.cli("audit", "export", "--dest", str(medium)).exit_code == 0
    assert "audit export valid: 1 export(s)" in box.cli("audit", "verify", str(medium)).stdout


def test_sigterm_while_an_export_is_recorded_waits_until_it_is_in_place(
        cli_box: tuple[Installed, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    box, medium = cli_box
    sigterm_when(monkeypatch, media_writer, "write_checkpoint")
    result = box.cli("audit", "export", "--dest", str(medium))
    assert result.exit_code == 0, result.output
    assert "note: SIGTERM arrived while the export was being recorded; it was completed first" in result.stderr
    [placed] = list(medium.iterdir())
    assert recorded_exports(box.store) == [placed.name]
    assert export_outcomes(box.store) == ["success"]


# -- what a killed run leaves, tidied by the next export ---------------------------------------------

def test_the_next_export_sets_aside_an_unrecorded_export_and_verify_says_so(
        store: Store, signer: Signer, data_dir: Path, medium: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_events(store, 10)
    first = export(store, signer, data_dir, medium)
    add_events(store, 5, start=10)
    # A run killed while it recorded the export (SIGKILL: no clean-up ran): its complete, signed files stay.
    monkeypatch.setattr(media_writer.shutil, "rmtree", lambda *_a, **_k: None)
    monkeypatch.setattr(media_writer, "write_checkpoint", lambda *_a, **_k: (_ for _ in ()).throw(
        RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        export(store, signer, data_dir, medium)
    monkeypatch.undo()
    [left] = [p for p in medium.iterdir() if p.name.startswith(".")]
    assert "partial" in left.name
    # ...and what the versions before this fix left: the same export renamed into place, unrecorded.
    unrecorded = medium / left.name[1:].split(".partial-")[0]
    shutil.copytree(left, unrecorded)
    assert [s.path.name for s in verify_media(medium).series] == [first.path.name, unrecorded.name]

    add_events(store, 3, start=15)
    latest = export(store, signer, data_dir, medium)
    assert sorted(p.name for p in medium.iterdir()) == sorted(
        [first.path.name, unrecorded.name + ".unrecorded", latest.path.name])
    report = verify_media(medium)
    assert [s.path.name for s in report.series] == [first.path.name, latest.path.name]
    assert report.lines()[0] == (f"note: {unrecorded.name}.unrecorded: not part of the series: an export the "
                                 "appliance never recorded (its run was interrupted), set aside by a later export")
    assert recorded_exports(store) == [first.path.name, latest.path.name]
    with store.read() as session:
        detail = json.loads(session.execute(select(AuditEvent.detail).where(
            AuditEvent.action == "audit.export", AuditEvent.resource_id == latest.path.name)).scalar_one())
    assert [line.split(":")[0] for line in detail["tidied"]] == [f"removed {left.name}",
                                                                 f"renamed {unrecorded.name} to "
                                                                 f"{unrecorded.name}.unrecorded"]

    # Without the set-aside, the old leftover and the new export both follow the first: the series broke.
    (medium / (unrecorded.name + ".unrecorded")).rename(unrecorded)
    with pytest.raises(VerifyFailed, match=r"all claim to follow .*no backup restore explains it"):
        verify_media(medium)


def test_a_recorded_export_that_was_not_moved_into_place_is_moved_by_the_next_export(
        store: Store, signer: Signer, data_dir: Path, medium: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_events(store, 10)
    real_rename = os.rename

    def killed_before_rename(source: Any, target: Any) -> None:
        if ".partial-" in str(source):
            raise OSError(5, "Input/output error")  # the medium went away, or SIGKILL just after the commit
        real_rename(source, target)

    monkeypatch.setattr(media_writer.os, "rename", killed_before_rename)
    with pytest.raises(ExportFailed, match="recorded but could not be moved into place"):
        export(store, signer, data_dir, medium)
    monkeypatch.undo()
    [name] = recorded_exports(store)
    [left] = list(medium.iterdir())
    assert left.name.startswith(f".{name}.partial-")
    with pytest.raises(VerifyFailed) as caught:
        verify_media(medium)
    assert str(caught.value) == (f"{medium} holds no complete audit export; {left.name}: the files of an "
                                 "interrupted export, not part of the series (the next `vigatra audit export` to "
                                 "this directory finishes or removes them)")

    add_events(store, 4, start=10)
    latest = export(store, signer, data_dir, medium)
    assert sorted(p.name for p in medium.iterdir()) == sorted([name, latest.path.name])
    assert [s.path.name for s in verify_media(medium).series] == [name, latest.path.name]


def test_one_export_at_a_time_into_a_destination(store: Store, signer: Signer, data_dir: Path,
                                                 medium: Path) -> None:
    """The tidying must never take a running export's files for an interrupted one's."""
    add_events(store, 3)
    fd = os.open(medium, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another export holds the destination
        with pytest.raises(Conflict, match=r"another export to .* is running"):
            export(store, signer, data_dir, medium)
    finally:
        os.close(fd)
    assert export(store, signer, data_dir, medium).rows == 4  # 3 events and the refused export's failure


# -- worker processes --------------------------------------------------------------------------------

_EXPORT_THEN_WAIT = """
import sys, time
from appliance.audit.export import AuditFilter, export_csv
from appliance.store.session import Store, make_engine
parts = export_csv(Store(make_engine(sys.argv[1])), AuditFilter(), workers=2, parallel_min=0, range_ids=5, page=3)
next(parts), next(parts)  # the header and the first range: the worker processes are running
print("exporting", flush=True)
time.sleep(600)
"""


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_export_workers_die_with_the_export_process(store: Store) -> None:
    add_events(store, 60)
    url = store.engine.url.render_as_string(hide_password=False)
    parent = subprocess.Popen([sys.executable, "-c", _EXPORT_THEN_WAIT, url], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "exporting"
        workers = children_of(parent.pid)
        assert len(workers) >= 2, workers  # two workers (and multiprocessing's resource tracker)
    finally:
        parent.kill()  # SIGKILL: no clean-up of its own runs
        parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.1)
    left = [pid for pid in workers if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], "export workers outlived the export process"
